"""Cinder v3 os-services and os-hosts at /volume/v3/{project_id} (admin): a `cinder-volume` per
backend and host that reaches it (`host@backend`) and the `cinder-scheduler` of the API that
answers, what `openstack volume service list` shows; disable, enable, freeze and thaw them; and the
volume usage of a `cinder-volume` host.

HTTP only: `VolumeServices` decides who may see and change them and which hosts reach which backend.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from ferry.api import deps
from ferry.api.errors import json_body
from ferry.api.host_views import cinder_host_view, cinder_service_view, host_usage_view
from ferry.api.schemas import QueryText
from ferry.api.versions import at_least
from ferry.domain.errors import BadRequest
from ferry.services.context import RequestContext
from ferry.services.volume_services import VolumeServices

router = APIRouter(prefix="/volume/v3/{project_id}")
Ctx = Depends(deps.project_context)
Services = Depends(deps.volume_services)
CHANGES = ("enable", "disable", "disable-log-reason", "freeze", "thaw")


@router.get("/os-services")
def list_volume_services(
    request: Request,
    project_id: str,
    ctx: RequestContext = Ctx,
    services: VolumeServices = Services,
    host: QueryText = None,
    binary: QueryText = None,
) -> dict[str, Any]:
    views = [cinder_service_view(s) for s in services.find(ctx, host or None, binary or None)]
    if not at_least(request, "3.7", "volume"):  # a service's `cluster` is Cinder's from 3.7 on
        for v in views:
            v.pop("cluster", None)
    if at_least(request, "3.49", "volume"):  # and a cinder-volume's `backend_state` from 3.49
        for v in views:
            if v["binary"] == "cinder-volume":
                v["backend_state"] = v["state"]
    return {"services": views}


def _text(body: dict[str, Any], key: str, *, required: bool = True) -> str | None:
    value = body.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise BadRequest(f"Invalid input: '{key}' must be a non-empty string.")
    return value


@router.put("/os-services/enable")
@router.put("/os-services/disable")
@router.put("/os-services/disable-log-reason")
@router.put("/os-services/freeze")
@router.put("/os-services/thaw")
async def change_volume_service(
    request: Request, project_id: str, ctx: RequestContext = Ctx, services: VolumeServices = Services
) -> Any:
    change = request.url.path.rsplit("/", 1)[-1]  # one of CHANGES: the routes above
    body = await json_body(request)
    if "host" not in body or body["host"] in (None, ""):
        raise BadRequest("Host field is missing.")
    host = _text(body, "host")
    assert host is not None
    if change in ("freeze", "thaw"):
        services.set_frozen(ctx, host, change == "freeze")
        return Response(status_code=200)
    service = _text(body, "service", required=False)
    binary = _text(body, "binary", required=False)
    if not (binary or service):
        raise BadRequest("Invalid input: 'binary' is required.")
    reason = None
    if change == "disable-log-reason" and "disabled_reason" in body:
        reason = _text(body, "disabled_reason")
    svc = services.set_enabled(ctx, host, binary or service or "", change == "enable", reason)
    out: dict[str, Any] = {
        "host": host,
        "service": service or "",
        "binary": binary or "",
        "status": "enabled" if svc.enabled else "disabled",
        "disabled": not svc.enabled,
    }
    if change != "disable":
        out["disabled_reason"] = svc.disabled_reason
    return out


@router.get("/os-hosts")
def list_volume_hosts(
    project_id: str, ctx: RequestContext = Ctx, services: VolumeServices = Services, zone: QueryText = None
) -> dict[str, Any]:
    """Cinder's os-hosts: every enabled service (an unknown zone lists none)."""
    listed = [s for s in services.find(ctx) if s.enabled]
    views = [cinder_host_view(s) for s in listed]
    return {"hosts": [v for v in views if zone in (None, "", v["zone"])]}


@router.get("/os-hosts/{host_name}")
def show_volume_host(
    project_id: str, host_name: str, ctx: RequestContext = Ctx, services: VolumeServices = Services
) -> dict[str, Any]:
    return {"host": [host_usage_view(host_name, u) for u in services.usage(ctx, host_name)]}
