"""Nova v2.1 os-services and os-hypervisors at /compute/v2.1 (admin): one `nova-compute` service
and one QEMU hypervisor per host, with its state (heartbeats), status (an admin's disable) and
use. A service is updated Nova's 2.53 way (`PUT /os-services/{id}` with `status`) or the legacy
way the 2.1 clients use (`PUT /os-services/disable`, `disable-log-reason`, `enable`, by host and
binary: what `openstack compute service set` sends at 2.1), and the compute `os-availability-zone`
(its one zone; `/detail` for admins, with each host's nova-compute).

HTTP only: `HostRegistry` decides who may and knows the hosts; `host_views` renders them.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import Field, StrictBool

from ferry.api import deps
from ferry.api.errors import json_body, parse
from ferry.api.host_views import COMPUTE_BINARY, ZONE, hypervisor_summary, hypervisor_view, service_view
from ferry.api.openapi import flat
from ferry.api.schemas import MAX_TEXT, Body, QueryText
from ferry.domain import hosts as ids
from ferry.domain.clock import iso
from ferry.domain.errors import BadRequest, NotFound
from ferry.domain.hosts import HostLoad
from ferry.services.context import RequestContext
from ferry.services.hosts import HostRegistry

router = APIRouter(prefix="/compute/v2.1")
Ctx = Depends(deps.context)
Hosts = Depends(deps.hosts)


class ServiceUpdateBody(Body):
    """Nova 2.53's update of a service by id."""

    status: Literal["enabled", "disabled"] | None = None
    disabled_reason: str | None = Field(default=None, min_length=1, max_length=MAX_TEXT)
    forced_down: StrictBool | None = None


class ServiceHostBody(Body):
    """The legacy update by host and binary (`disabled_reason` only for disable-log-reason)."""

    host: str = Field(min_length=1, max_length=MAX_TEXT)
    binary: str = Field(min_length=1, max_length=MAX_TEXT)
    disabled_reason: str | None = Field(default=None, min_length=1, max_length=MAX_TEXT)


@router.get("/os-services")
def list_services(
    ctx: RequestContext = Ctx, hosts: HostRegistry = Hosts, host: QueryText = None, binary: QueryText = None
) -> dict[str, Any]:
    found = hosts.list_hosts(ctx)
    if binary not in (None, COMPUTE_BINARY):
        found = []  # Ferry's hosts run one service each, nova-compute's part
    return {"services": [service_view(h) for h in found if host in (None, h.name)]}


# The legacy actions first: their paths would otherwise match `/os-services/{service_id}`.
@router.put("/os-services/disable", openapi_extra=flat(ServiceHostBody))
async def disable_service(request: Request, ctx: RequestContext = Ctx, hosts: HostRegistry = Hosts) -> Any:
    b = await _host_body(request, ctx, hosts)
    if b.disabled_reason is not None:
        raise BadRequest("A disabled_reason goes to PUT /os-services/disable-log-reason.")
    return _legacy_answer(hosts.disable(ctx, b.host), b.binary)


@router.put("/os-services/disable-log-reason", openapi_extra=flat(ServiceHostBody))
async def disable_service_with_reason(
    request: Request, ctx: RequestContext = Ctx, hosts: HostRegistry = Hosts
) -> Any:
    b = await _host_body(request, ctx, hosts)
    if b.disabled_reason is None:
        raise BadRequest("Invalid input: disable-log-reason needs a 'disabled_reason'.")
    return _legacy_answer(hosts.disable(ctx, b.host, b.disabled_reason), b.binary)


@router.put("/os-services/enable", openapi_extra=flat(ServiceHostBody))
async def enable_service(request: Request, ctx: RequestContext = Ctx, hosts: HostRegistry = Hosts) -> Any:
    b = await _host_body(request, ctx, hosts)
    if b.disabled_reason is not None:
        raise BadRequest("Invalid input: enabling a service takes no disabled_reason.")
    return _legacy_answer(hosts.enable(ctx, b.host), b.binary)


@router.put("/os-services/{service_id}", openapi_extra=flat(ServiceUpdateBody))
async def update_service(
    request: Request, service_id: str, ctx: RequestContext = Ctx, hosts: HostRegistry = Hosts
) -> dict[str, Any]:
    b = parse(ServiceUpdateBody, await json_body(request), "body")
    if b.status is None and b.forced_down is None:
        raise BadRequest("Invalid input: give 'status' (enabled or disabled) or 'forced_down'.")
    if b.forced_down:
        raise BadRequest("Forcing a service down is not supported: its state comes from its heartbeats.")
    if b.disabled_reason is not None and b.status != "disabled":
        raise BadRequest("Invalid input: 'disabled_reason' goes with status 'disabled' only.")
    found = hosts.find(ctx, service_id, ids.service_id, "Service")
    if b.status == "disabled":
        found = hosts.disable(ctx, found.name, b.disabled_reason)
    elif b.status == "enabled":
        found = hosts.enable(ctx, found.name)
    return {"service": service_view(found)}


async def _host_body(request: Request, ctx: RequestContext, hosts: HostRegistry) -> ServiceHostBody:
    b = parse(ServiceHostBody, await json_body(request), "body")
    if b.binary != COMPUTE_BINARY:
        hosts.list_hosts(ctx)  # who may ask is checked first: a member learns nothing here
        raise NotFound(f"Compute service of {b.host} with binary {b.binary} could not be found.")
    return b


def _legacy_answer(h: HostLoad, binary: str) -> dict[str, Any]:
    service = {"host": h.name, "binary": binary, "status": "enabled" if h.enabled else "disabled"}
    if not h.enabled:
        service["disabled_reason"] = h.disabled_reason or ""
    return {"service": service}


# -- hypervisors ---------------------------------------------------------------------------
@router.get("/os-hypervisors")
def list_hypervisors(ctx: RequestContext = Ctx, hosts: HostRegistry = Hosts) -> dict[str, Any]:
    return {"hypervisors": [hypervisor_summary(h) for h in hosts.list_hosts(ctx)]}


@router.get("/os-hypervisors/detail")
def list_hypervisors_detail(ctx: RequestContext = Ctx, hosts: HostRegistry = Hosts) -> dict[str, Any]:
    return {"hypervisors": [hypervisor_view(h) for h in hosts.list_hosts(ctx)]}


@router.get("/os-hypervisors/{hypervisor_id}")
def show_hypervisor(
    hypervisor_id: str, ctx: RequestContext = Ctx, hosts: HostRegistry = Hosts
) -> dict[str, Any]:
    return {"hypervisor": hypervisor_view(hosts.find(ctx, hypervisor_id, ids.hypervisor_id, "Hypervisor"))}


# -- Nova's os-availability-zone ---------------------------------------------------------------------
@router.get("/os-availability-zone")
def list_compute_zones(ctx: RequestContext = Ctx) -> dict[str, Any]:
    """Ferry's one zone (`nova`, as every server and service shows), available."""
    return {"availabilityZoneInfo": [{"zoneName": ZONE, "zoneState": {"available": True}, "hosts": None}]}


@router.get("/os-availability-zone/detail")
def list_compute_zones_detail(ctx: RequestContext = Ctx, hosts: HostRegistry = Hosts) -> dict[str, Any]:
    """Admins: the zone with each host's nova-compute, as Nova's detail shows it."""
    found = hosts.list_hosts(ctx)
    services = {
        h.name: {
            COMPUTE_BINARY: {"available": h.enabled and h.state.value == "up", "active": h.enabled,
                             "updated_at": iso(h.heartbeat_at)}
        }
        for h in found
    }  # fmt: skip
    return {"availabilityZoneInfo": [{"zoneName": ZONE, "zoneState": {"available": True}, "hosts": services}]}
