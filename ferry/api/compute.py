"""Nova v2.1 servers at /compute/v2.1/servers: life cycle, actions and volume attachments (incl. the
guarded swap). Flavors and the images proxy: `flavors.py`, `compute_images.py`.

HTTP only: parse, call `ComputeService` (and `MigrationService` for the swap), render the views.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from typing import Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import Field

from ferry.api import consoles, deps, server_migrations
from ferry.api.actions import ACTION_ANSWERS, Handler, perform
from ferry.api.compute_views import server_summary, server_view, volume_attachment_view
from ferry.api.errors import body_part, json_body, parse
from ferry.api.openapi import ANY, actions, body
from ferry.api.schemas import MAX_TEXT, Body, Key, QueryText, Tag, Value
from ferry.api.versions import at_least
from ferry.domain.errors import BadRequest, NotFound
from ferry.services.compute import ComputeService
from ferry.services.context import RequestContext
from ferry.services.migration import MigrationService
from ferry.services.records import ServerRecord
from ferry.services.server_details import ServerDetails
from ferry.services.server_migration import LiveMigrationService

router = APIRouter(prefix="/compute/v2.1")
Ctx = Depends(deps.context)
Compute = Depends(deps.compute)


class ServerCreateBody(Body):
    name: str = Field(min_length=1, max_length=255)
    imageRef: str = Field(min_length=1, max_length=255)
    flavorRef: str = Field(min_length=1, max_length=255)
    host: str | None = Field(default=None, min_length=1, max_length=255)
    """The host to run on (admins; Nova's microversion 2.74 field)."""
    key_name: str | None = Field(default=None, min_length=1, max_length=255)
    description: str | None = Field(default=None, max_length=255)
    accessIPv4: IPv4Address | None = None
    accessIPv6: IPv6Address | None = None
    metadata: dict[Key, Value] = Field(default_factory=dict)
    tags: list[Tag] = Field(default_factory=list)
    adminPass: str | None = Field(default=None, max_length=255)
    """Echoed in the answer as Nova does (else a random one); the test guest takes no password."""


class AttachBody(Body):
    volumeId: str = Field(min_length=1, max_length=64)
    device: str | None = Field(default=None, max_length=MAX_TEXT)


class RebootBody(Body):
    type: Literal["HARD", "SOFT", "hard", "soft"] = "HARD"


# The arguments each server action takes, as the OpenAPI declares them (the handlers parse them).
ARGUMENTS = {
    "os-stop": ANY,
    "os-start": ANY,
    "reboot": RebootBody,
    "os-getConsoleOutput": consoles.CONSOLE_ARGUMENTS,
    "os-migrateLive": server_migrations.MigrateLiveBody,
}


def render_servers(
    request: Request, ctx: RequestContext, compute: ComputeService, servers: Sequence[ServerRecord]
) -> list[dict[str, Any]]:
    vols = compute.volumes_attached([s.id for s in servers])
    show_host = compute.hosts.sees_server_host(ctx)
    flavors = {f.id: f for f in compute.flavors_of(servers)} if at_least(request, "2.47") else {}
    return [server_view(request, s, vols.get(s.id, []), show_host, flavors.get(s.flavor_id)) for s in servers]


@router.get("/servers")
def list_servers(
    request: Request,
    ctx: RequestContext = Ctx,
    compute: ComputeService = Compute,
    all_tenants: QueryText = None,
) -> dict[str, Any]:
    servers = compute.list_servers(ctx, all_tenants in ("1", "true", "True"))
    return {"servers": [server_summary(request, s) for s in servers]}


@router.get("/servers/detail")
def list_servers_detail(
    request: Request,
    ctx: RequestContext = Ctx,
    compute: ComputeService = Compute,
    all_tenants: QueryText = None,
) -> dict[str, Any]:
    servers = compute.list_servers(ctx, all_tenants in ("1", "true", "True"))
    return {"servers": render_servers(request, ctx, compute, servers)}


@router.post("/servers", status_code=202, openapi_extra=body("server", ServerCreateBody))
async def create_server(
    request: Request, ctx: RequestContext = Ctx, compute: ComputeService = Compute
) -> dict[str, Any]:
    b = await body_part(request, "server", ServerCreateBody)
    if b.description is not None and not at_least(request, "2.19"):
        raise BadRequest("Invalid input for field/attribute server: 'description' needs microversion 2.19.")
    if b.tags and not at_least(request, "2.52"):
        raise BadRequest("Invalid input for field/attribute server: 'tags' needs microversion 2.52.")
    details = ServerDetails(
        key_name=b.key_name,
        description=b.description,
        access_ipv4=str(b.accessIPv4) if b.accessIPv4 else None,
        access_ipv6=str(b.accessIPv6) if b.accessIPv6 else None,
        metadata=b.metadata,
        tags=tuple(b.tags),
    )
    server = await compute.create(ctx, b.name, b.imageRef, b.flavorRef, b.host, details)
    # Nova's create answer is the reservation, not the server: clients show it with a GET.
    view = render_servers(request, ctx, compute, [server])[0]
    return {
        "server": {
            "id": view["id"],
            "links": view["links"],
            "OS-DCF:diskConfig": "MANUAL",
            "security_groups": [{"name": "default"}],
            "adminPass": b.adminPass or secrets.token_urlsafe(9),
        }
    }


@router.get("/servers/{server_id}")
def show_server(
    request: Request, server_id: str, ctx: RequestContext = Ctx, compute: ComputeService = Compute
) -> dict[str, Any]:
    return {"server": render_servers(request, ctx, compute, [compute.get(ctx, server_id)])[0]}


@router.get("/servers/{server_id}/ips")
def server_ips(
    server_id: str, ctx: RequestContext = Ctx, compute: ComputeService = Compute
) -> dict[str, Any]:
    """Nova's addresses by network: none, as Ferry's servers have no network."""
    compute.get(ctx, server_id)
    return {"addresses": {}}


@router.get("/servers/{server_id}/ips/{network}")
def server_network_ips(
    server_id: str, network: str, ctx: RequestContext = Ctx, compute: ComputeService = Compute
) -> dict[str, Any]:
    compute.get(ctx, server_id)
    raise NotFound(f"Server {server_id} has no address on network {network}.")


@router.delete("/servers/{server_id}", status_code=204)
async def delete_server(
    server_id: str, ctx: RequestContext = Ctx, compute: ComputeService = Compute
) -> Response:
    await compute.delete(ctx, server_id)
    return Response(status_code=204)


@router.post(
    "/servers/{server_id}/action", status_code=202, responses=ACTION_ANSWERS, openapi_extra=actions(ARGUMENTS)
)
async def server_action(
    request: Request,
    server_id: str,
    ctx: RequestContext = Ctx,
    compute: ComputeService = Compute,
    live: LiveMigrationService = Depends(deps.live_migrations),
) -> Response:
    on = ServerActors(request, compute, live)
    return await perform(request, "server", SERVER_ACTIONS, on, ctx, server_id)


@dataclass(frozen=True)
class ServerActors:
    """The request and the services a server action may need."""

    request: Request
    compute: ComputeService
    live: LiveMigrationService


async def _stop(on: ServerActors, ctx: RequestContext, server_id: str, args: Any) -> None:
    await on.compute.stop(ctx, server_id)


async def _start(on: ServerActors, ctx: RequestContext, server_id: str, args: Any) -> None:
    await on.compute.start(ctx, server_id)


async def _reboot(on: ServerActors, ctx: RequestContext, server_id: str, args: Any) -> None:
    await on.compute.reboot(ctx, server_id, parse(RebootBody, args, "reboot").type.upper())


async def _console(on: ServerActors, ctx: RequestContext, server_id: str, args: Any) -> dict[str, Any]:
    return await consoles.console_output(on.compute, ctx, server_id, args)


async def _migrate_live(on: ServerActors, ctx: RequestContext, server_id: str, args: Any) -> None:
    await server_migrations.migrate_live(on.request, on.live, ctx, server_id, args)


# An unknown action's error lists them in this order.
SERVER_ACTIONS: dict[str, Handler[ServerActors]] = {
    "os-stop": _stop,
    "os-start": _start,
    "reboot": _reboot,
    "os-getConsoleOutput": _console,
    "os-migrateLive": _migrate_live,
}
assert SERVER_ACTIONS.keys() == ARGUMENTS.keys()


# -- volume attachments --------------------------------------------------------------------
@router.get("/servers/{server_id}/os-volume_attachments")
def list_volume_attachments(
    request: Request, server_id: str, ctx: RequestContext = Ctx, compute: ComputeService = Compute
) -> dict[str, Any]:
    attachments = compute.server_attachments(ctx, server_id)
    return {"volumeAttachments": [volume_attachment_view(request, a) for a in attachments]}


@router.post("/servers/{server_id}/os-volume_attachments", openapi_extra=body("volumeAttachment", AttachBody))
async def attach_volume(
    request: Request, server_id: str, ctx: RequestContext = Ctx, compute: ComputeService = Compute
) -> dict[str, Any]:
    b = await body_part(request, "volumeAttachment", AttachBody)
    attached = await compute.attach(ctx, server_id, b.volumeId)
    return {"volumeAttachment": volume_attachment_view(request, attached)}


@router.get("/servers/{server_id}/os-volume_attachments/{volume_id}")
def show_volume_attachment(
    request: Request,
    server_id: str,
    volume_id: str,
    ctx: RequestContext = Ctx,
    compute: ComputeService = Compute,
) -> dict[str, Any]:
    for a in compute.server_attachments(ctx, server_id):
        if a.volume_id == volume_id:
            return {"volumeAttachment": volume_attachment_view(request, a)}
    raise BadRequest(f"Volume {volume_id} is not attached to server {server_id}.")


@router.put(
    "/servers/{server_id}/os-volume_attachments/{volume_id}",
    status_code=202,
    openapi_extra=body("volumeAttachment", AttachBody),
)
async def swap_volume(
    request: Request,
    server_id: str,
    volume_id: str,
    ctx: RequestContext = Ctx,
    migrations: MigrationService = Depends(deps.migrations),
) -> Response:
    """Nova's swap volume: an internal step of migration, not a user API (invariant 7)."""
    b = parse(AttachBody, (await json_body(request)).get("volumeAttachment"), "volumeAttachment")
    await migrations.swap_requested(ctx, server_id, volume_id, b.volumeId)
    return Response(status_code=202)


@router.delete("/servers/{server_id}/os-volume_attachments/{volume_id}", status_code=202)
async def detach_volume(
    server_id: str, volume_id: str, ctx: RequestContext = Ctx, compute: ComputeService = Compute
) -> Response:
    await compute.detach(ctx, server_id, volume_id)
    return Response(status_code=202)
