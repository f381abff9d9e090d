"""Cinder v3 volumes at /volume/v3/{project_id}/volumes: list, show, create, update, delete,
metadata, actions (extend, migrate, retype, …) and Ferry's migration report.

HTTP only: parse the request, call the services, render the views. Policy and every query live in
the services.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from ferry.api import deps
from ferry.api.actions import ACTION_ANSWERS, Handler, perform
from ferry.api.errors import body_part, json_body, parse
from ferry.api.openapi import ANY, actions, body
from ferry.api.schemas import (
    Count,
    ExtendBody,
    MigrateBody,
    MigrationCompletionBody,
    Pairs,
    QueryText,
    RetypeBody,
    SetSpeedBody,
    VolumeCreateBody,
    VolumeUpdateBody,
    flag,
)
from ferry.api.versions import at_least, base_url
from ferry.api.views import listing, migration_view, stored, volume_summary, volume_view
from ferry.api.volume_images import UploadImageBody, upload_image
from ferry.domain.errors import BadRequest
from ferry.domain.volumes import VolumeStatus
from ferry.services.context import RequestContext
from ferry.services.migration import MigrationService
from ferry.services.records import VolumeRecord
from ferry.services.storage import Backends
from ferry.services.types import TypeService
from ferry.services.volume_images import VolumeUploads
from ferry.services.volumes import VolumeCreate, VolumeFilter, VolumeService

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
        # change in one transaction), a volume with an active migration has a migration_status.
        atts = self.volumes.attachments([v.id for v in vols if v.status != VolumeStatus.AVAILABLE])
        types = {t.id: t.name for t in self.types.list_types(ctx)} if vols else {}
        images = self.volumes.image_metadata([v.id for v in vols])
        return [
            volume_view(
                v,
                base,
                attachment=atts.get(v.id),
                type_name=types.get(v.volume_type_id or ""),
                admin=admin,
                host=self.backends.host_attr(v.backend),
                image_metadata=images.get(v.id),
            )
            for v in vols
        ]

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
        view = versioned(request, self.render(ctx, [vol], _base(request, project_id)))[0]
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

LATER_FIELDS = (("cluster_name", "3.61"), ("volume_type_id", "3.63"))
"""Fields Cinder added to a volume's view in these microversions (Ferry serves up to 3.27)."""


def versioned(request: Request, views: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The views as the request's volume microversion has them."""
    later = [key for key, version in LATER_FIELDS if not at_least(request, version, "volume")]
    for view in views:
        for key in later:
            view.pop(key, None)
    return views


# -- list and show -------------------------------------------------------------------------
def _filter(
    all_tenants: QueryText = None,
    name: QueryText = None,
    status: QueryText = None,
    limit: Count | None = None,
    marker: QueryText = None,
    sort: QueryText = None,
    sort_key: QueryText = None,
    sort_dir: QueryText = None,
) -> VolumeFilter:
    """The list query parameters of Cinder's GET volumes and volumes/detail."""
    return VolumeFilter(
        name=name,
        status=status,
        all_tenants=flag(all_tenants),
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
    volumes: VolumeService = Volumes,
    f: VolumeFilter = Depends(_filter),
) -> Response:
    base = _base(request, project_id)
    return listing("volumes", [volume_summary(v, base) for v in volumes.list_volumes(ctx, f)])


@router.get("/volumes/detail")
def list_volumes_detail(
    request: Request,
    project_id: str,
    ctx: RequestContext = Ctx,
    volumes: VolumeService = Volumes,
    details: VolumeDetails = Details,
    f: VolumeFilter = Depends(_filter),
) -> Response:
    vols = volumes.list_volumes(ctx, f)
    return listing("volumes", versioned(request, details.render(ctx, vols, _base(request, project_id))))


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
    project_id: str,
    volume_id: str,
    cascade: str | None = None,
    ctx: RequestContext = Ctx,
    volumes: VolumeService = Volumes,
) -> Response:
    await volumes.delete(ctx, volume_id, cascade=flag(cascade))
    return Response(status_code=202)


@router.get("/volumes/{volume_id}/metadata")
def get_metadata(
    volume_id: str, project_id: str, ctx: RequestContext = Ctx, volumes: VolumeService = Volumes
) -> dict[str, Any]:
    return {"metadata": stored(volumes.get(ctx, volume_id).meta)}


@router.post("/volumes/{volume_id}/metadata", openapi_extra=body("metadata", Pairs))
async def set_metadata(
    request: Request,
    volume_id: str,
    project_id: str,
    ctx: RequestContext = Ctx,
    volumes: VolumeService = Volumes,
) -> dict[str, Any]:
    meta = (await json_body(request)).get("metadata")
    if not isinstance(meta, dict):
        raise BadRequest("Invalid input: 'metadata' must be an object.")
    parsed = parse(VolumeUpdateBody, {"metadata": meta}, "metadata").metadata or {}
    merged = {**(volumes.get(ctx, volume_id).meta or {}), **parsed}
    return {"metadata": stored(volumes.update(ctx, volume_id, {"metadata": merged}).meta)}


# -- actions -------------------------------------------------------------------------------
@dataclass(frozen=True)
class VolumeActors:
    """The services a volume action calls."""

    volumes: VolumeService
    migrations: MigrationService
    uploads: VolumeUploads


# The arguments each action takes, as the OpenAPI declares them (the handlers below parse them).
ARGUMENTS = {
    "ferry-migrate_cancel": ANY,
    "ferry-migrate_set_speed": SetSpeedBody,
    "os-extend": ExtendBody,
    "os-migrate_volume": MigrateBody,
    "os-migrate_volume_completion": MigrationCompletionBody,
    "os-retype": RetypeBody,
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
    uploads: VolumeUploads = Depends(deps.volume_uploads),
) -> Response:
    actors = VolumeActors(volumes, migrations, uploads)
    return await perform(request, "volume", ACTIONS, actors, ctx, volume_id)


async def _extend(on: VolumeActors, ctx: RequestContext, volume_id: str, args: Any) -> None:
    await on.volumes.extend(ctx, volume_id, parse(ExtendBody, args, "os-extend").new_size)


async def _migrate(on: VolumeActors, ctx: RequestContext, volume_id: str, args: Any) -> None:
    b = parse(MigrateBody, args, "os-migrate_volume")
    await on.migrations.migrate(ctx, volume_id, b.host, speed=b.bytes_per_sec)


async def _retype(on: VolumeActors, ctx: RequestContext, volume_id: str, args: Any) -> None:
    b = parse(RetypeBody, args, "os-retype")
    await on.migrations.retype(ctx, volume_id, b.new_type, b.migration_policy)


async def _cancel(on: VolumeActors, ctx: RequestContext, volume_id: str, args: Any) -> None:
    await on.migrations.cancel(ctx, volume_id)


async def _set_speed(on: VolumeActors, ctx: RequestContext, volume_id: str, args: Any) -> None:
    speed = parse(SetSpeedBody, args, "ferry-migrate_set_speed").bytes_per_sec
    await on.migrations.set_speed(ctx, volume_id, speed)


async def _completion(on: VolumeActors, ctx: RequestContext, volume_id: str, args: Any) -> dict[str, Any]:
    return await on.migrations.completion(ctx, volume_id)


# In name order: an unknown action's error lists them as written here.
ACTIONS: dict[str, Handler[VolumeActors]] = {
    "ferry-migrate_cancel": _cancel,
    "ferry-migrate_set_speed": _set_speed,
    "os-extend": _extend,
    "os-migrate_volume": _migrate,
    "os-migrate_volume_completion": _completion,
    "os-retype": _retype,
    "os-volume_upload_image": upload_image,
}
assert ACTIONS.keys() == ARGUMENTS.keys()
