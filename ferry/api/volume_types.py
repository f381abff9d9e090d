"""Cinder v3 volume types at /volume/v3/{project_id}/types, with their extra specs.

HTTP only: parse, call `TypeService`, render `type_view` (extra specs shown to admins only).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from ferry.api import deps
from ferry.api.errors import body_part, json_body
from ferry.api.openapi import body
from ferry.api.schemas import Pairs, TypeCreateBody, TypeUpdateBody, string_pairs
from ferry.api.views import stored, type_view
from ferry.domain.errors import BadRequest
from ferry.services.context import RequestContext
from ferry.services.types import TypeService

router = APIRouter(prefix="/volume/v3/{project_id}")
Ctx = Depends(deps.project_context)
Types = Depends(deps.types)


@router.get("/types")
def list_types(project_id: str, ctx: RequestContext = Ctx, types: TypeService = Types) -> dict[str, Any]:
    return {"volume_types": [type_view(t, ctx.is_admin) for t in types.list_types(ctx)]}


@router.post("/types", openapi_extra=body("volume_type", TypeCreateBody))
async def create_type(
    request: Request, project_id: str, ctx: RequestContext = Ctx, types: TypeService = Types
) -> dict[str, Any]:
    b = await body_part(request, "volume_type", TypeCreateBody)
    return {
        "volume_type": type_view(types.create(ctx, b.name, b.description, b.is_public, b.extra_specs), True)
    }


@router.get("/types/{type_id}")
def show_type(
    project_id: str, type_id: str, ctx: RequestContext = Ctx, types: TypeService = Types
) -> dict[str, Any]:
    return {"volume_type": type_view(types.get(ctx, type_id), ctx.is_admin)}


@router.put("/types/{type_id}", openapi_extra=body("volume_type", TypeUpdateBody))
async def update_type(
    request: Request, project_id: str, type_id: str, ctx: RequestContext = Ctx, types: TypeService = Types
) -> dict[str, Any]:
    b = await body_part(request, "volume_type", TypeUpdateBody)
    return {"volume_type": type_view(types.update(ctx, type_id, b.model_dump(exclude_unset=True)), True)}


@router.delete("/types/{type_id}", status_code=202)
def delete_type(
    project_id: str, type_id: str, ctx: RequestContext = Ctx, types: TypeService = Types
) -> Response:
    types.delete(ctx, type_id)
    return Response(status_code=202)


@router.get("/types/{type_id}/extra_specs")
def list_specs(
    project_id: str, type_id: str, ctx: RequestContext = Ctx, types: TypeService = Types
) -> dict[str, Any]:
    return {"extra_specs": stored(types.specs(ctx, type_id))}


@router.post("/types/{type_id}/extra_specs", openapi_extra=body("extra_specs", Pairs))
async def set_specs(
    request: Request, project_id: str, type_id: str, ctx: RequestContext = Ctx, types: TypeService = Types
) -> dict[str, Any]:
    try:
        specs = string_pairs((await json_body(request)).get("extra_specs"), "extra_specs")
    except ValueError as e:
        raise BadRequest(f"Invalid input: {e}.") from None
    return {"extra_specs": stored(types.set_specs(ctx, type_id, specs))}


@router.delete("/types/{type_id}/extra_specs/{key}", status_code=202)
def unset_spec(
    project_id: str, type_id: str, key: str, ctx: RequestContext = Ctx, types: TypeService = Types
) -> Response:
    types.unset_spec(ctx, type_id, key)
    return Response(status_code=202)
