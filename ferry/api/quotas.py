"""Cinder v3 quotas at /volume/v3/{project_id}: `os-quota-sets/{target}` (show, `?usage=True`,
update, delete, `defaults`), `os-quota-class-sets/{class}` (show, update) and `limits`.

HTTP only: parse, call `QuotaService`, wrap its mappings in Cinder's envelopes.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from ferry.api import deps
from ferry.api.errors import json_body
from ferry.api.openapi import body
from ferry.api.schemas import QueryText
from ferry.api.versions import at_least
from ferry.domain.errors import BadRequest
from ferry.services.context import RequestContext
from ferry.services.quotas import QuotaService

router = APIRouter(prefix="/volume/v3/{project_id}")
Ctx = Depends(deps.project_context)
Quotas = Depends(deps.quotas)

LIMITS = {"type": "object", "additionalProperties": {"type": ["integer", "string"]}}
"""A quota update: resource name to limit (-1 unlimited)."""
TRUE, FALSE = ("1", "t", "true", "on", "y", "yes"), ("0", "f", "false", "off", "n", "no")


def _strict_flag(name: str, value: str | None) -> bool:
    """A boolean query parameter as Cinder's `get_bool_param` reads it: anything else is a 400."""
    if value is None:
        return False
    if value.lower() in TRUE:
        return True
    if value.lower() in FALSE:
        return False
    raise BadRequest(f"Invalid value {value[:40]!r} for parameter {name}: expected a boolean.")


async def _part(request: Request, key: str) -> dict[str, Any]:
    """`{key: {...}}`, the one key of a quota update's body."""
    b = await json_body(request)
    extra = [k for k in b if k != key]
    if key not in b:
        raise BadRequest(f"Invalid input: missing '{key}' in request body.")
    if extra:
        raise BadRequest(f"Invalid input: additional properties are not allowed ({', '.join(extra)}).")
    part = b[key]
    if not isinstance(part, dict):
        raise BadRequest(f"Invalid input: '{key}' must be an object.")
    return part


@router.get("/os-quota-sets/{target}")
def show_quota_set(
    project_id: str,
    target: str,
    usage: QueryText = None,
    ctx: RequestContext = Ctx,
    quotas: QuotaService = Quotas,
) -> dict[str, Any]:
    return {"quota_set": {**quotas.show(ctx, target, _strict_flag("usage", usage)), "id": target}}


@router.get("/os-quota-sets/{target}/defaults")
def show_default_quota_set(
    project_id: str, target: str, ctx: RequestContext = Ctx, quotas: QuotaService = Quotas
) -> dict[str, Any]:
    return {"quota_set": {**quotas.defaults(ctx, target), "id": target}}


@router.put("/os-quota-sets/{target}", openapi_extra=body("quota_set", LIMITS))
async def update_quota_set(
    request: Request, project_id: str, target: str, ctx: RequestContext = Ctx, quotas: QuotaService = Quotas
) -> dict[str, Any]:
    return {"quota_set": quotas.update(ctx, target, await _part(request, "quota_set"))}


@router.delete("/os-quota-sets/{target}")
def delete_quota_set(
    project_id: str, target: str, ctx: RequestContext = Ctx, quotas: QuotaService = Quotas
) -> Response:
    quotas.delete(ctx, target)
    return Response(status_code=200)


@router.get("/os-quota-class-sets/{name}")
def show_quota_class_set(
    project_id: str, name: str, ctx: RequestContext = Ctx, quotas: QuotaService = Quotas
) -> dict[str, Any]:
    return {"quota_class_set": {**quotas.show_class(ctx, name), "id": name}}


@router.put("/os-quota-class-sets/{name}", openapi_extra=body("quota_class_set", LIMITS))
async def update_quota_class_set(
    request: Request, project_id: str, name: str, ctx: RequestContext = Ctx, quotas: QuotaService = Quotas
) -> dict[str, Any]:
    return {"quota_class_set": quotas.update_class(ctx, name, await _part(request, "quota_class_set"))}


@router.get("/limits")
def show_limits(
    request: Request,
    project_id: str,
    ctx: RequestContext = Ctx,
    quotas: QuotaService = Quotas,
) -> dict[str, Any]:
    # From 3.39 an admin may ask for another project's (`?project_id=`); before, it is ignored.
    target = request.query_params.get("project_id") if at_least(request, "3.39", "volume") else None
    return {"limits": {"rate": [], "absolute": quotas.absolute(ctx, target)}}
