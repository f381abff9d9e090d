"""Cinder v3 volume types at /volume/v3/{project_id}/types, with their extra specs.

HTTP only: parse, call `TypeService`, render `type_view` (the extra specs the caller may read;
`qos_specs_id` in show and list for admins, as tempest's schemas and Cinder's views have it).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from ferry.api import deps
from ferry.api.errors import body_part, json_body
from ferry.api.openapi import body
from ferry.api.schemas import Pairs, QueryText, TypeCreateBody, TypeUpdateBody, string_pairs
from ferry.api.views import stored, type_view
from ferry.domain.errors import BadRequest
from ferry.services.context import RequestContext
from ferry.services.records import VolumeTypeRecord
from ferry.services.types import TypeService

router = APIRouter(prefix="/volume/v3/{project_id}")
Ctx = Depends(deps.project_context)
Types = Depends(deps.types)


def _shown(t: VolumeTypeRecord, ctx: RequestContext, types: TypeService) -> dict[str, Any]:
    return type_view(t, types.visible_specs(ctx, t.extra_specs), qos=ctx.is_admin)


def public_filter(value: str | None) -> bool | None:
    """Cinder's `is_public` list filter: absent is True, `none` is every type, else a boolean."""
    if value is None:
        return True
    v = value.strip().lower()
    if v == "none":
        return None
    if v in ("1", "true", "t", "yes", "y", "on"):
        return True
    if v in ("0", "false", "f", "no", "n", "off"):
        return False
    raise BadRequest(f"Invalid is_public filter [{value[:40]}].")


@router.get("/types")
def list_types(
    project_id: str, is_public: QueryText = None, ctx: RequestContext = Ctx, types: TypeService = Types
) -> dict[str, Any]:
    found = types.list_types(ctx, public_filter(is_public))
    return {"volume_types": [_shown(t, ctx, types) for t in found]}


@router.post("/types", openapi_extra=body("volume_type", TypeCreateBody))
async def create_type(
    request: Request, project_id: str, ctx: RequestContext = Ctx, types: TypeService = Types
) -> dict[str, Any]:
    b = await body_part(request, "volume_type", TypeCreateBody)
    vt = types.create(ctx, b.name, b.description, b.is_public, b.extra_specs)
    return {"volume_type": type_view(vt, vt.extra_specs)}


@router.get("/types/{type_id}")
def show_type(
    project_id: str, type_id: str, ctx: RequestContext = Ctx, types: TypeService = Types
) -> dict[str, Any]:
    # Cinder answers `types/default` with the default type before looking for a type of that id.
    vt = types.default(ctx) if type_id == "default" else types.get(ctx, type_id)
    return {"volume_type": _shown(vt, ctx, types)}


@router.put("/types/{type_id}", openapi_extra=body("volume_type", TypeUpdateBody))
async def update_type(
    request: Request, project_id: str, type_id: str, ctx: RequestContext = Ctx, types: TypeService = Types
) -> dict[str, Any]:
    b = await body_part(request, "volume_type", TypeUpdateBody)
    vt = types.update(ctx, type_id, b.model_dump(exclude_unset=True))
    return {"volume_type": type_view(vt, vt.extra_specs, access=False)}


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


def _pairs(value: object) -> dict[str, str]:
    try:
        return string_pairs(value, "extra_specs")
    except ValueError as e:
        raise BadRequest(f"Invalid input: {e}.") from None


@router.post("/types/{type_id}/extra_specs", openapi_extra=body("extra_specs", Pairs))
async def set_specs(
    request: Request, project_id: str, type_id: str, ctx: RequestContext = Ctx, types: TypeService = Types
) -> dict[str, Any]:
    raw = await json_body(request)
    if "extra_specs" not in raw:
        raise BadRequest("Invalid input: missing 'extra_specs' in request body.")
    return {"extra_specs": types.set_specs(ctx, type_id, _pairs(raw["extra_specs"]))}


@router.get("/types/{type_id}/extra_specs/{key}")
def show_spec(
    project_id: str, type_id: str, key: str, ctx: RequestContext = Ctx, types: TypeService = Types
) -> dict[str, Any]:
    return stored(types.spec(ctx, type_id, key))


@router.put("/types/{type_id}/extra_specs/{key}", openapi_extra=body("extra_specs", Pairs))
async def update_spec(
    request: Request,
    project_id: str,
    type_id: str,
    key: str,
    ctx: RequestContext = Ctx,
    types: TypeService = Types,
) -> dict[str, Any]:
    # Cinder's rule: the body is exactly {key: value}, its one key the one the URL names.
    raw = await json_body(request)
    pairs = _pairs(raw)
    if key not in pairs:
        raise BadRequest("Request body and URI mismatch.")
    if len(pairs) > 1:
        raise BadRequest("Request body contains too many items.")
    return types.set_specs(ctx, type_id, pairs)


@router.delete("/types/{type_id}/extra_specs/{key}", status_code=202)
def unset_spec(
    project_id: str, type_id: str, key: str, ctx: RequestContext = Ctx, types: TypeService = Types
) -> Response:
    types.unset_spec(ctx, type_id, key)
    return Response(status_code=202)
