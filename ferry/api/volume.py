"""Cinder v3 subset at /volume/v3/{project_id}: volumes, snapshots, types, pools, attachments."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response

from ferry.api import deps
from ferry.api.errors import body_part, json_body, parse
from ferry.api.schemas import (
    ExtendBody,
    MigrateBody,
    RetypeBody,
    SetSpeedBody,
    SnapshotCreateBody,
    SnapshotUpdateBody,
    TypeCreateBody,
    TypeUpdateBody,
    VolumeCreateBody,
    VolumeUpdateBody,
)
from ferry.api.versions import base_url
from ferry.api.views import (
    listing,
    migration_view,
    pool_view,
    snapshot_view,
    type_view,
    volume_summary,
    volume_view,
)
from ferry.db.models import VolumeRecord
from ferry.domain.errors import BadRequest
from ferry.domain.volumes import VolumeStatus
from ferry.services import policy
from ferry.services.app import Ferry
from ferry.services.context import RequestContext
from ferry.services.volumes import VolumeCreate, VolumeFilter

router = APIRouter(prefix="/volume/v3/{project_id}")
Ctx = Depends(deps.project_context)
App = Depends(deps.ferry)


def _base(request: Request, project_id: str) -> str:
    return f"{base_url(request)}/volume/v3/{project_id}"


def _bool(value: str | None) -> bool:
    return (value or "").lower() in ("1", "true", "yes", "on")


def render_volumes(
    app: Ferry, ctx: RequestContext, vols: Sequence[VolumeRecord], base: str
) -> list[dict[str, Any]]:
    admin = policy.allowed(ctx, "volume:admin_fields")
    # Only volumes that can have one are looked up: an available volume has no attachment (both
    # change in one transaction), a volume with an active migration has a migration_status.
    atts = app.volumes.attachments([v.id for v in vols if v.status != VolumeStatus.AVAILABLE])
    types = {t.id: t.name for t in app.types.list_types(ctx)} if vols else {}
    migrating = [v.id for v in vols if v.migration_status is not None]
    migrations = app.migrations.active_for(migrating) if admin else {}
    return [
        volume_view(
            v,
            base,
            attachment=atts.get(v.id),
            type_name=types.get(v.volume_type_id or ""),
            admin=admin,
            host=app.backends.host_attr(v.backend),
            migration=migrations.get(v.id),
        )
        for v in vols
    ]


# -- volumes -------------------------------------------------------------------------------
def _filter(
    all_tenants: str | None = None,
    name: str | None = None,
    status: str | None = None,
    limit: int | None = None,
    marker: str | None = None,
    sort: str | None = None,
    sort_key: str | None = None,
    sort_dir: str | None = None,
) -> VolumeFilter:
    """The list query parameters of Cinder's GET volumes and volumes/detail."""
    return VolumeFilter(
        name=name,
        status=status,
        all_tenants=_bool(all_tenants),
        limit=limit,
        marker=marker,
        sort=sort,
        sort_key=sort_key,
        sort_dir=sort_dir,
    )


@router.get("/volumes")
def list_volumes(
    request: Request,
    project_id: str,
    ctx: RequestContext = Ctx,
    app: Ferry = App,
    f: VolumeFilter = Depends(_filter),
) -> Response:
    base = _base(request, project_id)
    return listing("volumes", [volume_summary(v, base) for v in app.volumes.list_volumes(ctx, f)])


@router.get("/volumes/detail")
def list_volumes_detail(
    request: Request,
    project_id: str,
    ctx: RequestContext = Ctx,
    app: Ferry = App,
    f: VolumeFilter = Depends(_filter),
) -> Response:
    vols = app.volumes.list_volumes(ctx, f)
    return listing("volumes", render_volumes(app, ctx, vols, _base(request, project_id)))


@router.post("/volumes", status_code=202)
async def create_volume(
    request: Request, project_id: str, ctx: RequestContext = Ctx, app: Ferry = App
) -> dict[str, Any]:
    b = await body_part(request, "volume", VolumeCreateBody)
    if b.size is None and not (b.snapshot_id or b.source_volid):
        raise BadRequest("Invalid input: 'size' is required.")
    vol = await app.volumes.create(
        ctx,
        VolumeCreate(
            size=b.size,
            name=b.name,
            description=b.description,
            volume_type=b.volume_type,
            metadata=b.metadata,
            snapshot_id=b.snapshot_id,
            source_volid=b.source_volid,
        ),
    )
    return {"volume": render_volumes(app, ctx, [vol], _base(request, project_id))[0]}


@router.get("/volumes/{volume_id}")
def show_volume(
    request: Request, project_id: str, volume_id: str, ctx: RequestContext = Ctx, app: Ferry = App
) -> dict[str, Any]:
    vol = app.volumes.get(ctx, volume_id)
    return {"volume": render_volumes(app, ctx, [vol], _base(request, project_id))[0]}


@router.put("/volumes/{volume_id}")
async def update_volume(
    request: Request, project_id: str, volume_id: str, ctx: RequestContext = Ctx, app: Ferry = App
) -> dict[str, Any]:
    b = await body_part(request, "volume", VolumeUpdateBody)
    vol = app.volumes.update(ctx, volume_id, b.model_dump(exclude_unset=True))
    return {"volume": render_volumes(app, ctx, [vol], _base(request, project_id))[0]}


@router.delete("/volumes/{volume_id}", status_code=202)
async def delete_volume(
    project_id: str, volume_id: str, cascade: str | None = None, ctx: RequestContext = Ctx, app: Ferry = App
) -> Response:
    if _bool(cascade):
        for snap in app.snapshots.list_snapshots(ctx, volume_id=app.volumes.get(ctx, volume_id).id):
            await app.snapshots.delete_now(ctx, snap.id)
    await app.volumes.delete(ctx, volume_id, cascade=_bool(cascade))
    return Response(status_code=202)


@router.get("/volumes/{volume_id}/metadata")
def get_metadata(
    volume_id: str, project_id: str, ctx: RequestContext = Ctx, app: Ferry = App
) -> dict[str, Any]:
    return {"metadata": app.volumes.get(ctx, volume_id).meta or {}}


@router.post("/volumes/{volume_id}/metadata")
async def set_metadata(
    request: Request, volume_id: str, project_id: str, ctx: RequestContext = Ctx, app: Ferry = App
) -> dict[str, Any]:
    meta = (await json_body(request)).get("metadata")
    if not isinstance(meta, dict):
        raise BadRequest("Invalid input: 'metadata' must be an object.")
    parsed = parse(VolumeUpdateBody, {"metadata": meta}, "metadata").metadata or {}
    merged = {**(app.volumes.get(ctx, volume_id).meta or {}), **parsed}
    return {"metadata": app.volumes.update(ctx, volume_id, {"metadata": merged}).meta}


@router.post("/volumes/{volume_id}/action", status_code=202)
async def volume_action(
    request: Request, project_id: str, volume_id: str, ctx: RequestContext = Ctx, app: Ferry = App
) -> Response:
    body = await json_body(request)
    if len(body) != 1:
        raise BadRequest("Invalid input: a volume action body holds exactly one action.")
    action, args = next(iter(body.items()))
    handler = ACTIONS.get(action)
    if handler is None:
        raise BadRequest(f"Unknown volume action {action!r}; supported: {', '.join(sorted(ACTIONS))}.")
    result = await handler(app, ctx, volume_id, args)
    if result is None:
        return Response(status_code=202)
    return JSONResponse(result, status_code=200)


async def _extend(app: Ferry, ctx: RequestContext, volume_id: str, args: Any) -> None:
    await app.volumes.extend(ctx, volume_id, parse(ExtendBody, args, "os-extend").new_size)


async def _migrate(app: Ferry, ctx: RequestContext, volume_id: str, args: Any) -> None:
    b = parse(MigrateBody, args, "os-migrate_volume")
    await app.migrations.migrate(ctx, volume_id, b.host, speed=b.bytes_per_sec)


async def _retype(app: Ferry, ctx: RequestContext, volume_id: str, args: Any) -> None:
    b = parse(RetypeBody, args, "os-retype")
    await app.migrations.retype(ctx, volume_id, b.new_type, b.migration_policy)


async def _cancel(app: Ferry, ctx: RequestContext, volume_id: str, args: Any) -> None:
    await app.migrations.cancel(ctx, volume_id)


async def _set_speed(app: Ferry, ctx: RequestContext, volume_id: str, args: Any) -> None:
    await app.migrations.set_speed(
        ctx, volume_id, parse(SetSpeedBody, args, "ferry-migrate_set_speed").bytes_per_sec
    )


async def _completion(app: Ferry, ctx: RequestContext, volume_id: str, args: Any) -> dict[str, Any]:
    return await app.migrations.completion(ctx, volume_id)


ACTIONS: dict[str, Any] = {
    "os-extend": _extend,
    "os-migrate_volume": _migrate,
    "os-retype": _retype,
    "ferry-migrate_cancel": _cancel,
    "ferry-migrate_set_speed": _set_speed,
    "os-migrate_volume_completion": _completion,
}


@router.get("/volumes/{volume_id}/migration")
def show_migration(
    project_id: str, volume_id: str, ctx: RequestContext = Ctx, app: Ferry = App
) -> dict[str, Any]:
    """Ferry extension: the volume's latest migration with its progress and step log."""
    return {"migration": migration_view(app.migrations.report(ctx, volume_id))}


# -- snapshots -----------------------------------------------------------------------------
@router.get("/snapshots")
@router.get("/snapshots/detail")
def list_snapshots(
    project_id: str,
    ctx: RequestContext = Ctx,
    app: Ferry = App,
    all_tenants: str | None = None,
    volume_id: str | None = None,
    limit: int | None = Query(None),
    marker: str | None = None,
    sort: str | None = None,
) -> Response:
    snaps = app.snapshots.list_snapshots(ctx, volume_id, _bool(all_tenants), limit, marker, sort)
    return listing("snapshots", [snapshot_view(s) for s in snaps])


@router.post("/snapshots", status_code=202)
async def create_snapshot(
    request: Request, project_id: str, ctx: RequestContext = Ctx, app: Ferry = App
) -> dict[str, Any]:
    b = await body_part(request, "snapshot", SnapshotCreateBody)
    snap = await app.snapshots.create(ctx, b.volume_id, b.name, b.description, b.metadata)
    return {"snapshot": snapshot_view(snap)}


@router.get("/snapshots/{snapshot_id}")
def show_snapshot(
    project_id: str, snapshot_id: str, ctx: RequestContext = Ctx, app: Ferry = App
) -> dict[str, Any]:
    return {"snapshot": snapshot_view(app.snapshots.get(ctx, snapshot_id))}


@router.put("/snapshots/{snapshot_id}")
async def update_snapshot(
    request: Request, project_id: str, snapshot_id: str, ctx: RequestContext = Ctx, app: Ferry = App
) -> dict[str, Any]:
    b = await body_part(request, "snapshot", SnapshotUpdateBody)
    return {
        "snapshot": snapshot_view(app.snapshots.update(ctx, snapshot_id, b.model_dump(exclude_unset=True)))
    }


@router.delete("/snapshots/{snapshot_id}", status_code=202)
async def delete_snapshot(
    project_id: str, snapshot_id: str, ctx: RequestContext = Ctx, app: Ferry = App
) -> Response:
    await app.snapshots.delete(ctx, snapshot_id)
    return Response(status_code=202)


# -- types ---------------------------------------------------------------------------------
@router.get("/types")
def list_types(project_id: str, ctx: RequestContext = Ctx, app: Ferry = App) -> dict[str, Any]:
    return {"volume_types": [type_view(t, ctx.is_admin) for t in app.types.list_types(ctx)]}


@router.post("/types")
async def create_type(
    request: Request, project_id: str, ctx: RequestContext = Ctx, app: Ferry = App
) -> dict[str, Any]:
    b = await body_part(request, "volume_type", TypeCreateBody)
    return {
        "volume_type": type_view(
            app.types.create(ctx, b.name, b.description, b.is_public, b.extra_specs), True
        )
    }


@router.get("/types/{type_id}")
def show_type(project_id: str, type_id: str, ctx: RequestContext = Ctx, app: Ferry = App) -> dict[str, Any]:
    return {"volume_type": type_view(app.types.get(ctx, type_id), ctx.is_admin)}


@router.put("/types/{type_id}")
async def update_type(
    request: Request, project_id: str, type_id: str, ctx: RequestContext = Ctx, app: Ferry = App
) -> dict[str, Any]:
    b = await body_part(request, "volume_type", TypeUpdateBody)
    return {"volume_type": type_view(app.types.update(ctx, type_id, b.model_dump(exclude_unset=True)), True)}


@router.delete("/types/{type_id}", status_code=202)
def delete_type(project_id: str, type_id: str, ctx: RequestContext = Ctx, app: Ferry = App) -> Response:
    app.types.delete(ctx, type_id)
    return Response(status_code=202)


@router.get("/types/{type_id}/extra_specs")
def list_specs(project_id: str, type_id: str, ctx: RequestContext = Ctx, app: Ferry = App) -> dict[str, Any]:
    policy.enforce(ctx, "type:manage")
    return {"extra_specs": app.types.get(ctx, type_id).extra_specs or {}}


@router.post("/types/{type_id}/extra_specs")
async def set_specs(
    request: Request, project_id: str, type_id: str, ctx: RequestContext = Ctx, app: Ferry = App
) -> dict[str, Any]:
    specs = (await json_body(request)).get("extra_specs")
    if not isinstance(specs, dict) or not all(
        isinstance(v, str) and isinstance(k, str) for k, v in specs.items()
    ):
        raise BadRequest("Invalid input: 'extra_specs' must be an object of strings.")
    return {"extra_specs": app.types.set_specs(ctx, type_id, specs)}


@router.delete("/types/{type_id}/extra_specs/{key}", status_code=202)
def unset_spec(
    project_id: str, type_id: str, key: str, ctx: RequestContext = Ctx, app: Ferry = App
) -> Response:
    app.types.unset_spec(ctx, type_id, key)
    return Response(status_code=202)


# -- pools and attachments -----------------------------------------------------------------
@router.get("/scheduler-stats/get_pools")
async def get_pools(
    project_id: str, detail: str | None = None, ctx: RequestContext = Ctx, app: Ferry = App
) -> dict[str, Any]:
    policy.enforce(ctx, "backend:get_pools")
    with app.db() as s:
        pools = await app.backends.pool_stats_with_usage(s)
    return {"pools": [pool_view(p, app.backends.host_attr(p.backend.name), _bool(detail)) for p in pools]}


@router.get("/attachments")
@router.get("/attachments/detail")
def list_attachments(project_id: str, ctx: RequestContext = Ctx, app: Ferry = App) -> dict[str, Any]:
    return {"attachments": [_attachment(a) for a in app.compute.list_attachments(ctx)]}


@router.get("/attachments/{attachment_id}")
def show_attachment(
    project_id: str, attachment_id: str, ctx: RequestContext = Ctx, app: Ferry = App
) -> dict[str, Any]:
    return {"attachment": _attachment(app.compute.get_attachment(ctx, attachment_id))}


def _attachment(a: Any) -> dict[str, Any]:
    return {
        "id": a.id,
        "volume_id": a.volume_id,
        "instance": a.server_id,
        "status": "attached",
        "attach_mode": "rw",
        "attached_at": a.created_at.isoformat(),
        "detached_at": None,
        "connection_info": {"driver_volume_type": "file"},
    }
