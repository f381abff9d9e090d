"""Cinder v3 type access and encryption at /volume/v3/{project_id}/types/{id}/…:
`action` (`addProjectAccess`, `removeProjectAccess`), `os-volume-type-access`, and `encryption`
(Ferry encrypts no volume: every type answers `{}`, creating one is refused).

HTTP only: parse, call `TypeAccess` / `TypeService`, render.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from ferry.api import deps
from ferry.api.errors import json_body
from ferry.api.openapi import actions, body
from ferry.domain.errors import BadRequest, NotFound
from ferry.services.context import RequestContext
from ferry.services.type_access import TypeAccess
from ferry.services.types import TypeService

router = APIRouter(prefix="/volume/v3/{project_id}")
Ctx = Depends(deps.project_context)
Access = Depends(deps.type_access)
Types = Depends(deps.types)
ACTIONS = ("addProjectAccess", "removeProjectAccess")
PROJECT = {"type": "object", "required": ["project"], "properties": {"project": {"type": "string"}}}
ENCRYPTION = {"type": "object", "description": "refused: Ferry does not encrypt volumes"}


async def _encryption_body(request: Request) -> None:
    if not isinstance((await json_body(request)).get("encryption"), dict):
        raise BadRequest("Invalid input: the body must hold an 'encryption' object.")


def _project(part: object) -> str:
    project = part.get("project") if isinstance(part, dict) else None
    if not isinstance(project, str) or not project.strip():
        raise BadRequest("Invalid input: 'project' must be a project id.")
    if len(project) > 255:
        raise BadRequest("Invalid input: 'project' is longer than 255 characters.")
    return project


@router.post(
    "/types/{type_id}/action", status_code=202, openapi_extra=actions(dict.fromkeys(ACTIONS, PROJECT))
)
async def type_action(
    request: Request, project_id: str, type_id: str, ctx: RequestContext = Ctx, access: TypeAccess = Access
) -> Response:
    raw = await json_body(request)
    names = [name for name in ACTIONS if name in raw]
    if len(names) != 1:
        raise BadRequest(f"Invalid input: the body must hold exactly one of {', '.join(ACTIONS)}.")
    project = _project(raw[names[0]])
    if names[0] == "addProjectAccess":
        access.add(ctx, type_id, project)
    else:
        access.remove(ctx, type_id, project)
    return Response(status_code=202)


@router.get("/types/{type_id}/os-volume-type-access")
def list_access(
    project_id: str, type_id: str, ctx: RequestContext = Ctx, access: TypeAccess = Access
) -> dict[str, Any]:
    vt_id, projects = access.projects(ctx, type_id)
    return {"volume_type_access": [{"volume_type_id": vt_id, "project_id": p} for p in projects]}


@router.get("/types/{type_id}/encryption")
def show_encryption(
    project_id: str, type_id: str, ctx: RequestContext = Ctx, types: TypeService = Types
) -> dict[str, Any]:
    return types.encryption(ctx, type_id)


@router.get("/types/{type_id}/encryption/{key}")
def show_encryption_item(
    project_id: str, type_id: str, key: str, ctx: RequestContext = Ctx, types: TypeService = Types
) -> dict[str, Any]:
    types.encryption(ctx, type_id)
    raise NotFound(f"Volume type encryption for type {type_id} does not exist.")


@router.post("/types/{type_id}/encryption", openapi_extra=body("encryption", ENCRYPTION))
async def create_encryption(
    request: Request, project_id: str, type_id: str, ctx: RequestContext = Ctx, types: TypeService = Types
) -> Response:
    await _encryption_body(request)
    types.refuse_encryption(ctx, type_id)
    raise AssertionError("unreachable: refuse_encryption always raises")


@router.put("/types/{type_id}/encryption/{encryption_id}", openapi_extra=body("encryption", ENCRYPTION))
async def update_encryption(
    request: Request,
    project_id: str,
    type_id: str,
    encryption_id: str,
    ctx: RequestContext = Ctx,
    types: TypeService = Types,
) -> Response:
    await _encryption_body(request)
    types.encryption(ctx, type_id)
    raise NotFound(f"Volume type encryption for type {type_id} does not exist.")


@router.delete("/types/{type_id}/encryption/{encryption_id}", status_code=202)
def delete_encryption(
    project_id: str, type_id: str, encryption_id: str, ctx: RequestContext = Ctx, types: TypeService = Types
) -> Response:
    types.encryption(ctx, type_id)
    raise NotFound(f"Volume type encryption for type {type_id} does not exist.")
