"""Nova's quotas at /compute/v2.1: `os-quota-sets/{project}` (show, `detail`, `defaults`, update,
delete), `os-quota-class-sets/{class}` (show, update) and `limits`.

HTTP only: parse, call `ComputeQuotas`, wrap its mappings in Nova's envelopes.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from ferry.api import deps
from ferry.api.errors import json_body
from ferry.api.openapi import body
from ferry.api.versions import at_least
from ferry.domain.errors import BadRequest
from ferry.services.compute_quotas import ComputeQuotas, Shown
from ferry.services.context import RequestContext

router = APIRouter(prefix="/compute/v2.1")
Ctx = Depends(deps.context)
Quotas = Depends(deps.compute_quotas)

LIMITS = {"type": "object", "additionalProperties": {"type": ["integer", "string", "boolean"]}}
"""A quota update: resource name to limit (-1 unlimited), and `force`."""


def shown(request: Request) -> Shown:
    return Shown(
        networks=not at_least(request, "2.36"),
        injected=not at_least(request, "2.57"),
        image_meta=not at_least(request, "2.39"),
    )


async def _part(request: Request, key: str) -> dict[str, Any]:
    b = await json_body(request)
    if key not in b:
        raise BadRequest(f"Invalid input for field/attribute {key}. Value: missing.")
    extra = sorted(k for k in b if k != key)
    if extra:
        raise BadRequest(f"Additional properties are not allowed ({', '.join(map(repr, extra))} unexpected)")
    if not isinstance(b[key], dict):
        raise BadRequest(f"Invalid input for field/attribute {key}: must be an object.")
    return dict(b[key])


@router.get("/os-quota-sets/{target}")
def show_quota_set(
    request: Request, target: str, ctx: RequestContext = Ctx, quotas: ComputeQuotas = Quotas
) -> dict[str, Any]:
    return {"quota_set": {**quotas.show(ctx, target, shown(request)), "id": target}}


@router.get("/os-quota-sets/{target}/detail")
def show_quota_set_detail(
    request: Request, target: str, ctx: RequestContext = Ctx, quotas: ComputeQuotas = Quotas
) -> dict[str, Any]:
    return {"quota_set": {**quotas.show(ctx, target, shown(request), detail=True), "id": target}}


@router.get("/os-quota-sets/{target}/defaults")
def show_default_quota_set(
    request: Request, target: str, ctx: RequestContext = Ctx, quotas: ComputeQuotas = Quotas
) -> dict[str, Any]:
    return {"quota_set": {**quotas.defaults(ctx, target, shown(request)), "id": target}}


@router.put("/os-quota-sets/{target}", openapi_extra=body("quota_set", LIMITS))
async def update_quota_set(
    request: Request, target: str, ctx: RequestContext = Ctx, quotas: ComputeQuotas = Quotas
) -> dict[str, Any]:
    wanted = await _part(request, "quota_set")
    return {"quota_set": quotas.update(ctx, target, wanted, shown(request))}


@router.delete("/os-quota-sets/{target}", status_code=202)
def delete_quota_set(target: str, ctx: RequestContext = Ctx, quotas: ComputeQuotas = Quotas) -> Response:
    quotas.delete(ctx, target)
    return Response(status_code=202)


@router.get("/os-quota-class-sets/{name}")
def show_quota_class_set(
    request: Request, name: str, ctx: RequestContext = Ctx, quotas: ComputeQuotas = Quotas
) -> dict[str, Any]:
    return {"quota_class_set": {**quotas.show_class(ctx, name, shown(request)), "id": name}}


@router.put("/os-quota-class-sets/{name}", openapi_extra=body("quota_class_set", LIMITS))
async def update_quota_class_set(
    request: Request, name: str, ctx: RequestContext = Ctx, quotas: ComputeQuotas = Quotas
) -> dict[str, Any]:
    wanted = await _part(request, "quota_class_set")
    return {"quota_class_set": quotas.update_class(ctx, name, wanted, shown(request))}


@router.get("/limits")
def show_limits(
    request: Request, ctx: RequestContext = Ctx, quotas: ComputeQuotas = Quotas
) -> dict[str, Any]:
    tenant = request.query_params.get("tenant_id")
    return {"limits": {"rate": [], "absolute": quotas.absolute(ctx, shown(request), tenant)}}
