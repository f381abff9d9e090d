"""Cinder v3 volumes at /volume/v3/{project_id}/volumes: list, show, create, update, delete,
metadata, actions (extend, migrate, retype, …) and Ferry's migration report.

HTTP only: parse the request, call the services, render the views. Policy and every query live in
the services.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from ferry.api import deps
from ferry.api.actions import ACTION_ANSWERS, Handler, perform
from ferry.api.errors import body_part, json_body, parse
from ferry.api.list_filters import asked_filters, volume_matching
from ferry.api.openapi import ANY, actions, body
from ferry.api.paging import next_links
from ferry.api.schemas import (
    Count,
    ExtendBody,
    MigrateBody,
    MigrationCompletionBody,
    QueryText,
    RetypeBody,
    RevertBody,
    SetSpeedBody,
    VolumeCreateBody,
    VolumeUpdateBody,
    flag,
)
from ferry.api.versions import at_least, base_url
from ferry.api.view_versions import VOLUME_GATES, gated
from ferry.api.views import listing, migration_view, volume_summary, volume_view
from ferry.api.volume_actions import VOLUME_ACTIONS, VOLUME_ARGUMENTS, VolumeActors
from ferry.api.volume_gates import refuse_backup_source, refuse_cluster
from ferry.api.volume_images import UploadImageBody, upload_image
from ferry.domain.errors import BadRequest
from ferry.domain.volumes import VolumeStatus
from ferry.services.compute import ComputeService
from ferry.services.context import RequestContext
from ferry.services.metadata import MetadataService
from ferry.services.migration import MigrationService
from ferry.services.records import VolumeRecord
from ferry.services.revert import revert_to_snapshot
from ferry.services.snapshots import SnapshotService
from ferry.services.storage import Backends
from ferry.services.types import TypeService
from ferry.services.volume_admin import VolumeAdmin
from ferry.services.volume_create import VolumeCreate
from ferry.services.volume_images import VolumeUploads
from ferry.services.volumes import VolumeFilter, VolumeService

router = APIRouter(prefix="/volume/v3/{project_id}")
Ctx = Depends(deps.project_context)
Volumes = Depends(deps.volumes)
Migrations = Depends(deps.migrations)


def _base(request: Request, project_id: str) -> str:
    return f"{base_url(request)}/volume/v3/{project_id}"


@dataclass(frozen=True)
class VolumeDetails:
    """Renders detailed volume views: each shows its attachment, type name and host, and for callers
    who may see them its migration status (the progress is at `GET …/volumes/{id}/migration`:
    Cinder's view has no field for it)."""

    volumes: VolumeService
    types: TypeService
    backends: Backends

    def render(self, ctx: RequestContext, vols: Sequence[VolumeRecord], base: str) -> list[dict[str, Any]]:
        admin = self.volumes.sees_admin_fields(ctx)
        # Only volumes that can have one are looked up: an available volume has no attachment (both
        # change in one transaction). A migration's progress is Ferry's `…/migration` report:
        # tempest's schemas forbid a `migration_progress` here.
        atts = self.volumes.attachments([v.id for v in vols if v.status != VolumeStatus.AVAILABLE])
        types = {t.id: t.name for t in self.types.list_types(ctx)} if vols else {}
        return [
            volume_view(
                v,
                base,
                attachment=atts.get(v.id),
                type_name=types.get(v.volume_type_id or ""),
                admin=admin,
                host=self.backends.host_attr(v.backend),  # None: unplaced
            )
            for v in vols
        ]

    def shown(
        self, request: Request, ctx: RequestContext, vols: Sequence[VolumeRecord], base: str
    ) -> list[dict[str, Any]]:
        """The detailed views as the request's microversion and the caller have them."""
        views = self.render(ctx, vols, base)
        return gated(request, views, VOLUME_GATES, admin=self.volumes.sees_admin_fields(ctx))

    def one(
        self,
        ctx: RequestContext,
        vol: VolumeRecord,
        request: Request,
        project_id: str,
        *,
        extended: bool = True,
    ) -> dict[str, Any]:
        """The `{"volume": …}` body of a single volume. Cinder's create and update answers are the
        plain view: the `os-vol-*` extension attributes are only added to show and list."""
        view = self.shown(request, ctx, [vol], _base(request, project_id))[0]
        if not extended:  # nor the image metadata: Cinder's extension adds it to show and list only
            view = {k: v for k, v in view.items() if not k.startswith(("os-vol-", "volume_image_metadata"))}
        return {"volume": view}


async def volume_details(
    volumes: VolumeService = Volumes,
    types: TypeService = Depends(deps.types),
    backends: Backends = Depends(deps.backends),
) -> VolumeDetails:
    return VolumeDetails(volumes, types, backends)


Details = Depends(volume_details)


# -- list and show -------------------------------------------------------------------------
def _filter(
    request: Request,
    ctx: RequestContext = Ctx,
    volumes: VolumeService = Volumes,
    all_tenants: QueryText = None,
    name: QueryText = None,
    status: QueryText = None,
    limit: Count | None = None,
    marker: QueryText = None,
    sort: QueryText = None,
    sort_key: QueryText = None,
    sort_dir: QueryText = None,
    offset: Count | None = None,
) -> VolumeFilter:
    """The list query parameters of Cinder's GET volumes and volumes/detail."""
    asked = asked_filters(request, "volume", volumes.sees_admin_fields(ctx))
    return VolumeFilter(
        name=name,
        status=status,
        all_tenants=flag(all_tenants),
        limit=limit,
        marker=marker,
        sort=sort,
        sort_key=sort_key,
        sort_dir=sort_dir,
        matching=volume_matching(request, asked),
        offset=offset,
    )


@router.get("/volumes")
def list_volumes(
    request: Request,
    project_id: str,
    ctx: RequestContext = Ctx,
    volumes: VolumeService = Volumes,
    f: VolumeFilter = Depends(_filter),
) -> Response:
    base = _base(request, project_id)
    views = [volume_summary(v, base) for v in volumes.list_volumes(ctx, f)]
    return listing("volumes", views, next_links(request, views, f.limit), _count(request, ctx, volumes, f))


@router.get("/volumes/detail")
def list_volumes_detail(
    request: Request,
    project_id: str,
    ctx: RequestContext = Ctx,
    volumes: VolumeService = Volumes,
    details: VolumeDetails = Details,
    f: VolumeFilter = Depends(_filter),
) -> Response:
    views = details.shown(request, ctx, volumes.list_volumes(ctx, f), _base(request, project_id))
    return listing("volumes", views, next_links(request, views, f.limit), _count(request, ctx, volumes, f))


def _count(request: Request, ctx: RequestContext, volumes: VolumeService, f: VolumeFilter) -> int | None:
    """3.45's `count` with `?with_count=true`: every volume the filters match, past the page."""
    if not (at_least(request, "3.45", "volume") and flag(request.query_params.get("with_count"))):
        return None
    return len(volumes.list_volumes(ctx, replace(f, limit=None, marker=None, offset=None)))


@router.get("/volumes/{volume_id}")
def show_volume(
    request: Request,
    project_id: str,
    volume_id: str,
    ctx: RequestContext = Ctx,
    volumes: VolumeService = Volumes,
    details: VolumeDetails = Details,
) -> dict[str, Any]:
    return details.one(ctx, volumes.get(ctx, volume_id), request, project_id)


@router.get("/volumes/{volume_id}/migration")
def show_migration(
    project_id: str, volume_id: str, ctx: RequestContext = Ctx, migrations: MigrationService = Migrations
) -> dict[str, Any]:
    """Ferry extension: the volume's latest migration with its progress and step log."""
    return {"migration": migration_view(migrations.report(ctx, volume_id))}


# -- create, change, delete ----------------------------------------------------------------
@router.post("/volumes", status_code=202, openapi_extra=body("volume", VolumeCreateBody))
async def create_volume(
    request: Request,
    project_id: str,
    ctx: RequestContext = Ctx,
    volumes: VolumeService = Volumes,
    details: VolumeDetails = Details,
) -> dict[str, Any]:
    b = await body_part(request, "volume", VolumeCreateBody)
    if at_least(request, "3.47", "volume"):
        refuse_backup_source(await json_body(request))
    if b.size is None and not (b.snapshot_id or b.source_volid or b.imageRef):
        raise BadRequest("Invalid input: 'size' is required.")
    vol = await volumes.create(
        ctx,
        VolumeCreate(
            size=b.size,
            name=b.name,
            description=b.description,
            volume_type=b.volume_type,
            metadata=b.metadata,
            snapshot_id=b.snapshot_id,
            source_volid=b.source_volid,
            availability_zone=b.availability_zone,
            image_ref=b.imageRef,
        ),
    )
    return details.one(ctx, vol, request, project_id, extended=False)


@router.put("/volumes/{volume_id}", openapi_extra=body("volume", VolumeUpdateBody))
async def update_volume(
    request: Request,
    project_id: str,
    volume_id: str,
    ctx: RequestContext = Ctx,
    volumes: VolumeService = Volumes,
    details: VolumeDetails = Details,
) -> dict[str, Any]:
    b = await body_part(request, "volume", VolumeUpdateBody)
    vol = volumes.update(ctx, volume_id, b.model_dump(exclude_unset=True))
    return details.one(ctx, vol, request, project_id, extended=False)


@router.delete("/volumes/{volume_id}", status_code=202)
async def delete_volume(
    request: Request,
    project_id: str,
    volume_id: str,
    cascade: QueryText = None,
    force: QueryText = None,
    ctx: RequestContext = Ctx,
    volumes: VolumeService = Volumes,
) -> Response:
    # `force` is a parameter from 3.23 (admins); before it Cinder ignores it.
    forced = flag(force) and at_least(request, "3.23", "volume")
    await volumes.delete(ctx, volume_id, cascade=flag(cascade), force=forced)
    return Response(status_code=202)


# -- actions -------------------------------------------------------------------------------
# The arguments each action takes, as the OpenAPI declares them (the handlers below parse them).
ARGUMENTS = {
    "ferry-migrate_cancel": ANY,
    "ferry-migrate_set_speed": SetSpeedBody,
    "os-extend": ExtendBody,
    "os-migrate_volume": MigrateBody,
    "os-migrate_volume_completion": MigrationCompletionBody,
    "os-retype": RetypeBody,
    "revert": RevertBody,
    **VOLUME_ARGUMENTS,
    "os-volume_upload_image": UploadImageBody,
}


@router.post(
    "/volumes/{volume_id}/action",
    status_code=202,
    responses=ACTION_ANSWERS,
    openapi_extra=actions(ARGUMENTS),
)
async def volume_action(
    request: Request,
    project_id: str,
    volume_id: str,
    ctx: RequestContext = Ctx,
    volumes: VolumeService = Volumes,
    migrations: MigrationService = Migrations,
    snapshots: SnapshotService = Depends(deps.snapshots),
    admin: VolumeAdmin = Depends(deps.volume_admin),
    metadata: MetadataService = Depends(deps.metadata),
    compute: ComputeService = Depends(deps.compute),
    uploads: VolumeUploads = Depends(deps.volume_uploads),
) -> Response:
    actors = VolumeActors(
        volumes,
        migrations,
        admin,
        metadata,
        compute,
        snapshots,
        uploads,
        in_use_extend=at_least(request, "3.42", "volume"),
        clusters=at_least(request, "3.16", "volume"),
    )
    table = ACTIONS if at_least(request, "3.40", "volume") else BEFORE_REVERT
    return await perform(request, "volume", table, actors, ctx, volume_id)


async def _extend(on: VolumeActors, ctx: RequestContext, volume_id: str, args: Any) -> None:
    new_size = parse(ExtendBody, args, "os-extend").new_size
    await on.volumes.extend(ctx, volume_id, new_size, allow_in_use=on.in_use_extend)


async def _migrate(on: VolumeActors, ctx: RequestContext, volume_id: str, args: Any) -> None:
    if on.clusters:
        refuse_cluster(args)
    b = parse(MigrateBody, args, "os-migrate_volume")
    await on.migrations.migrate(ctx, volume_id, b.host, speed=b.bytes_per_sec)


async def _retype(on: VolumeActors, ctx: RequestContext, volume_id: str, args: Any) -> None:
    b = parse(RetypeBody, args, "os-retype")
    await on.migrations.retype(ctx, volume_id, b.new_type, b.migration_policy)


async def _revert(on: VolumeActors, ctx: RequestContext, volume_id: str, args: Any) -> None:
    await revert_to_snapshot(on.snapshots, ctx, volume_id, parse(RevertBody, args, "revert").snapshot_id)


async def _cancel(on: VolumeActors, ctx: RequestContext, volume_id: str, args: Any) -> None:
    await on.migrations.cancel(ctx, volume_id)


async def _set_speed(on: VolumeActors, ctx: RequestContext, volume_id: str, args: Any) -> None:
    speed = parse(SetSpeedBody, args, "ferry-migrate_set_speed").bytes_per_sec
    await on.migrations.set_speed(ctx, volume_id, speed)


async def _completion(on: VolumeActors, ctx: RequestContext, volume_id: str, args: Any) -> dict[str, Any]:
    return await on.migrations.completion(ctx, volume_id)


# In name order: an unknown action's error lists them as written here.
ACTIONS: dict[str, Handler[VolumeActors]] = dict(
    sorted(
        {
            "ferry-migrate_cancel": _cancel,
            "ferry-migrate_set_speed": _set_speed,
            "os-extend": _extend,
            "os-migrate_volume": _migrate,
            "os-migrate_volume_completion": _completion,
            "os-retype": _retype,
            "revert": _revert,
            "os-volume_upload_image": upload_image,
            **VOLUME_ACTIONS,
        }.items()
    )
)
assert ACTIONS.keys() == ARGUMENTS.keys()
BEFORE_REVERT = {name: handler for name, handler in ACTIONS.items() if name != "revert"}
"""The actions before volume microversion 3.40 (revert to snapshot)."""
