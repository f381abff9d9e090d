"""Nova v2.1 subset at /compute/v2.1: servers, actions (incl. os-getConsoleOutput), the console
follower extension, volume attachments (incl. guarded swap), flavors and the images proxy."""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from pydantic import Field

from ferry.api import deps
from ferry.api.errors import body_part, json_body, parse
from ferry.api.schemas import Body
from ferry.api.versions import base_url
from ferry.db.models import Attachment, Flavor, Image, Server
from ferry.domain.clock import iso_z
from ferry.domain.errors import BadRequest
from ferry.domain.servers import POWER_STATE, VM_STATE
from ferry.services.app import Ferry
from ferry.services.context import RequestContext

router = APIRouter(prefix="/compute/v2.1")
Ctx = Depends(deps.context)
App = Depends(deps.ferry)


class ServerCreateBody(Body):
    name: str = Field(min_length=1, max_length=255)
    imageRef: str = Field(min_length=1, max_length=255)
    flavorRef: str = Field(min_length=1, max_length=255)


class AttachBody(Body):
    volumeId: str = Field(min_length=1, max_length=64)
    device: str | None = None


def _link(request: Request, kind: str, ident: str) -> list[dict[str, str]]:
    return [{"rel": "bookmark", "href": f"{base_url(request)}/compute/{kind}/{ident}"}]


def server_view(request: Request, s: Server, volumes: list[str]) -> dict[str, Any]:
    return {
        "id": s.id,
        "name": s.name,
        "status": s.status,
        "tenant_id": s.project_id,
        "user_id": s.user_id,
        "image": {"id": s.image_id, "links": _link(request, "images", s.image_id)},
        "flavor": {"id": s.flavor_id, "links": _link(request, "flavors", s.flavor_id)},
        "created": iso_z(s.created_at),
        "updated": iso_z(s.updated_at),
        "addresses": {},
        "metadata": {},
        "hostId": "",
        "accessIPv4": "",
        "accessIPv6": "",
        "key_name": None,
        "config_drive": "",
        "progress": 0,
        "OS-DCF:diskConfig": "MANUAL",
        "security_groups": [],
        "OS-EXT-STS:vm_state": VM_STATE.get(s.status, "error"),
        "OS-EXT-STS:task_state": s.task_state,
        "OS-EXT-STS:power_state": POWER_STATE.get(s.status, 0),
        "os-extended-volumes:volumes_attached": [{"id": v} for v in volumes],
        "fault": {"code": 500, "message": s.fault} if s.fault and s.status == "ERROR" else None,
        "links": _link(request, "servers", s.id),
    }


def attachment_view(a: Attachment) -> dict[str, Any]:
    return {"id": a.volume_id, "serverId": a.server_id, "volumeId": a.volume_id, "device": a.device}


def _servers(request: Request, app: Ferry, servers: list[Server]) -> list[dict[str, Any]]:
    vols = app.compute.volumes_attached([s.id for s in servers])
    return [server_view(request, s, vols.get(s.id, [])) for s in servers]


@router.get("/servers")
def list_servers(
    request: Request, ctx: RequestContext = Ctx, app: Ferry = App, all_tenants: str | None = None
) -> dict[str, Any]:
    servers = app.compute.list_servers(ctx, all_tenants in ("1", "true", "True"))
    return {
        "servers": [{"id": s.id, "name": s.name, "links": _link(request, "servers", s.id)} for s in servers]
    }


@router.get("/servers/detail")
def list_servers_detail(
    request: Request, ctx: RequestContext = Ctx, app: Ferry = App, all_tenants: str | None = None
) -> dict[str, Any]:
    return {
        "servers": _servers(request, app, app.compute.list_servers(ctx, all_tenants in ("1", "true", "True")))
    }


@router.post("/servers", status_code=202)
async def create_server(request: Request, ctx: RequestContext = Ctx, app: Ferry = App) -> dict[str, Any]:
    b = await body_part(request, "server", ServerCreateBody)
    server = await app.compute.create(ctx, b.name, b.imageRef, b.flavorRef)
    return {"server": {**_servers(request, app, [server])[0], "adminPass": ""}}


@router.get("/servers/{server_id}")
def show_server(
    request: Request, server_id: str, ctx: RequestContext = Ctx, app: Ferry = App
) -> dict[str, Any]:
    return {"server": _servers(request, app, [app.compute.get(ctx, server_id)])[0]}


@router.delete("/servers/{server_id}", status_code=204)
async def delete_server(server_id: str, ctx: RequestContext = Ctx, app: Ferry = App) -> Response:
    await app.compute.delete(ctx, server_id)
    return Response(status_code=204)


@router.post("/servers/{server_id}/action", status_code=202)
async def server_action(
    request: Request, server_id: str, ctx: RequestContext = Ctx, app: Ferry = App
) -> Response:
    body = await json_body(request)
    if len(body) != 1:
        raise BadRequest("Invalid input: a server action body holds exactly one action.")
    action, args = next(iter(body.items()))
    if action == "os-getConsoleOutput":
        return await console_output(app, ctx, server_id, args)
    if action == "os-stop":
        await app.compute.stop(ctx, server_id)
    elif action == "os-start":
        await app.compute.start(ctx, server_id)
    elif action == "reboot":
        kind = args.get("type", "HARD") if isinstance(args, dict) else None
        if not isinstance(kind, str):
            raise BadRequest("Invalid input: reboot.type must be HARD or SOFT.")
        await app.compute.reboot(ctx, server_id, kind.upper())
    else:
        raise BadRequest(
            f"Unknown server action {action!r}; supported: os-stop, os-start, reboot, os-getConsoleOutput."
        )
    return Response(status_code=202)


# -- console -------------------------------------------------------------------------------
CONSOLE_LENGTH = re.compile(r"-?[0-9]{1,18}")
NOT_PRINTABLE = re.compile("[\x00-\x08\x0b-\x1f]")
"""Control characters Nova strips from os-getConsoleOutput (tab and newline stay)."""


def console_length(args: object) -> int | None:
    """os-getConsoleOutput's `length` as Nova accepts it: an integer or a numeric string; -1,
    null or no length mean the whole log."""
    if not isinstance(args, dict) or set(args) - {"length"}:
        raise BadRequest("Invalid input: os-getConsoleOutput takes an object with an optional length.")
    length = args.get("length")
    if isinstance(length, str) and CONSOLE_LENGTH.fullmatch(length):
        length = int(length)
    if length is None:
        return None
    if isinstance(length, bool) or not isinstance(length, int) or length < -1:
        raise BadRequest("Invalid input: os-getConsoleOutput.length must be an integer of -1 or more.")
    return None if length == -1 else length


async def console_output(app: Ferry, ctx: RequestContext, server_id: str, args: object) -> Response:
    """Nova's os-getConsoleOutput action: 200 {"output": the last `length` lines}."""
    output = await app.compute.console_output(ctx, server_id, console_length(args))
    return JSONResponse({"output": NOT_PRINTABLE.sub("", output)})


@router.get("/servers/{server_id}/ferry-console")
async def follow_console(
    server_id: str, offset: int = 0, limit: int = 65536, ctx: RequestContext = Ctx, app: Ferry = App
) -> dict[str, Any]:
    """Ferry's extension for following a console: the log from byte `offset` (UTF-8, invalid
    bytes replaced) and the `offset` to ask for next."""
    data, after = await app.compute.console_read(ctx, server_id, offset, limit)
    return {"output": data.decode(errors="replace"), "offset": after}


# -- volume attachments --------------------------------------------------------------------
@router.get("/servers/{server_id}/os-volume_attachments")
def list_volume_attachments(server_id: str, ctx: RequestContext = Ctx, app: Ferry = App) -> dict[str, Any]:
    return {"volumeAttachments": [attachment_view(a) for a in app.compute.server_attachments(ctx, server_id)]}


@router.post("/servers/{server_id}/os-volume_attachments")
async def attach_volume(
    request: Request, server_id: str, ctx: RequestContext = Ctx, app: Ferry = App
) -> dict[str, Any]:
    b = await body_part(request, "volumeAttachment", AttachBody)
    return {"volumeAttachment": attachment_view(await app.compute.attach(ctx, server_id, b.volumeId))}


@router.get("/servers/{server_id}/os-volume_attachments/{volume_id}")
def show_volume_attachment(
    server_id: str, volume_id: str, ctx: RequestContext = Ctx, app: Ferry = App
) -> dict[str, Any]:
    for a in app.compute.server_attachments(ctx, server_id):
        if a.volume_id == volume_id:
            return {"volumeAttachment": attachment_view(a)}
    raise BadRequest(f"Volume {volume_id} is not attached to server {server_id}.")


@router.put("/servers/{server_id}/os-volume_attachments/{volume_id}", status_code=202)
async def swap_volume(
    request: Request, server_id: str, volume_id: str, ctx: RequestContext = Ctx, app: Ferry = App
) -> Response:
    """Nova's swap volume: an internal step of migration, not a user API (invariant 7)."""
    b = parse(AttachBody, (await json_body(request)).get("volumeAttachment"), "volumeAttachment")
    await app.migrations.swap_requested(ctx, server_id, volume_id, b.volumeId)
    return Response(status_code=202)


@router.delete("/servers/{server_id}/os-volume_attachments/{volume_id}", status_code=202)
async def detach_volume(
    server_id: str, volume_id: str, ctx: RequestContext = Ctx, app: Ferry = App
) -> Response:
    await app.compute.detach(ctx, server_id, volume_id)
    return Response(status_code=202)


# -- flavors and images --------------------------------------------------------------------
def flavor_view(request: Request, f: Flavor) -> dict[str, Any]:
    return {
        "id": f.id,
        "name": f.name,
        "vcpus": f.vcpus,
        "ram": f.ram_mb,
        "disk": f.disk_gib,
        "swap": "",
        "OS-FLV-EXT-DATA:ephemeral": 0,
        "rxtx_factor": 1.0,
        "os-flavor-access:is_public": True,
        "links": _link(request, "flavors", f.id),
    }


def image_view(request: Request, i: Image) -> dict[str, Any]:
    return {
        "id": i.id,
        "name": i.name,
        "status": "ACTIVE",
        "created": iso_z(i.created_at),
        "updated": iso_z(i.created_at),
        "minDisk": 0,
        "minRam": 0,
        "progress": 100,
        "metadata": {},
        "links": _link(request, "images", i.id),
    }


@router.get("/flavors")
@router.get("/flavors/detail")
def list_flavors(request: Request, ctx: RequestContext = Ctx, app: Ferry = App) -> dict[str, Any]:
    return {"flavors": [flavor_view(request, f) for f in app.images.flavors(ctx)]}


@router.get("/flavors/{flavor_id}")
def show_flavor(
    request: Request, flavor_id: str, ctx: RequestContext = Ctx, app: Ferry = App
) -> dict[str, Any]:
    return {"flavor": flavor_view(request, app.images.flavor(ctx, flavor_id))}


@router.get("/images")
@router.get("/images/detail")
def list_images(request: Request, ctx: RequestContext = Ctx, app: Ferry = App) -> dict[str, Any]:
    return {"images": [image_view(request, i) for i in app.images.list_images(ctx)]}


@router.get("/images/{image_id}")
def show_image(
    request: Request, image_id: str, ctx: RequestContext = Ctx, app: Ferry = App
) -> dict[str, Any]:
    return {"image": image_view(request, app.images.get(ctx, image_id))}
