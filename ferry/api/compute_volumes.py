"""Nova v2.1's volume and snapshot proxies at /compute/v2.1/os-volumes and os-snapshots: the same
volumes and snapshots as the block storage API, in Nova's camelCase views. Gone from compute
microversion 2.36 on, as in Nova (clients use the block storage API then).

HTTP only: parse, call `VolumeService`/`SnapshotService`, render Nova's views."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import Field, StrictInt, field_validator

from ferry.api import deps
from ferry.api.errors import body_part
from ferry.api.openapi import body
from ferry.api.schemas import Body, Count, Name, Pairs, Text, strict_flag, string_pairs
from ferry.api.versions import at_least
from ferry.api.views import stored
from ferry.domain.clock import iso
from ferry.domain.errors import NotFound
from ferry.domain.volumes import VolumeStatus
from ferry.services.context import RequestContext
from ferry.services.records import SnapshotRecord, VolumeRecord
from ferry.services.snapshots import SnapshotService
from ferry.services.types import TypeService
from ferry.services.volume_create import VolumeCreate
from ferry.services.volumes import VolumeFilter, VolumeService

router = APIRouter(prefix="/compute/v2.1")
Ctx = Depends(deps.context)
Volumes = Depends(deps.volumes)
Snapshots = Depends(deps.snapshots)
Types = Depends(deps.types)
GONE = "2.36"
"""The compute microversion that removed the proxies (Nova's `max_version` for them is 2.35)."""


class NovaVolumeBody(Body):
    # Nova's schema: size is required, an integer (or digit string) of at least 1.
    size: StrictInt = Field(ge=1)
    display_name: str | None = Name
    display_description: str | None = Text
    volume_type: str | None = Name
    metadata: Pairs = Field(default_factory=dict)
    availability_zone: str | None = Name
    snapshot_id: str | None = Name

    @field_validator("metadata", mode="before")
    @classmethod
    def _metadata(cls, v: object) -> dict[str, str]:
        return {} if v is None else string_pairs(v, "metadata")

    @field_validator("size", mode="before")
    @classmethod
    def _size(cls, v: object) -> object:
        return int(v) if isinstance(v, str) and v.isdigit() else v


class NovaSnapshotBody(Body):
    volume_id: str = Field(max_length=255)
    display_name: str | None = Name
    display_description: str | None = Text
    force: bool | str | None = None


def _proxied(request: Request) -> None:
    if at_least(request, GONE):
        raise NotFound(
            f"The volume proxy API is gone from compute microversion {GONE}: use the block storage API."
        )


def _volume_views(
    vols: Sequence[VolumeRecord], volumes: VolumeService, names: dict[str, str]
) -> list[dict[str, Any]]:
    atts = volumes.attachments([v.id for v in vols if v.status != VolumeStatus.AVAILABLE])
    views = []
    for v in vols:
        a = atts.get(v.id)
        views.append(
            {
                "id": v.id,
                "status": v.status,
                "size": v.size_gib,
                "availabilityZone": "nova",
                "createdAt": iso(v.created_at),
                # Nova shows an unattached volume's attachments as one empty object.
                "attachments": [
                    {"id": v.id, "volumeId": v.id, "serverId": a.server_id, "device": a.device} if a else {}
                ],
                "displayName": v.name,
                "displayDescription": v.description,
                "volumeType": names.get(v.volume_type_id or "", v.volume_type_id),
                "snapshotId": v.snapshot_id,
                "metadata": stored(v.meta),
            }
        )
    return views


def _type_names(ctx: RequestContext, types: TypeService) -> dict[str, str]:
    return {t.id: t.name for t in types.list_types(ctx)}


def _snapshot_view(s: SnapshotRecord) -> dict[str, Any]:
    return {
        "id": s.id,
        "volumeId": s.volume_id,
        "status": s.status,
        "size": s.size_gib,
        "createdAt": iso(s.created_at),
        "displayName": s.name,
        "displayDescription": s.description,
    }


# -- os-volumes ------------------------------------------------------------------------------
@router.get("/os-volumes")
@router.get("/os-volumes/detail")
def list_volumes(
    request: Request,
    ctx: RequestContext = Ctx,
    volumes: VolumeService = Volumes,
    types: TypeService = Types,
    limit: Count | None = None,
    offset: Count | None = None,
) -> dict[str, Any]:
    _proxied(request)
    vols = volumes.list_volumes(ctx, VolumeFilter(limit=limit, offset=offset))
    return {"volumes": _volume_views(vols, volumes, _type_names(ctx, types) if vols else {})}


@router.get("/os-volumes/{volume_id}")
def show_volume(
    request: Request,
    volume_id: str,
    ctx: RequestContext = Ctx,
    volumes: VolumeService = Volumes,
    types: TypeService = Types,
) -> dict[str, Any]:
    _proxied(request)
    vol = volumes.get(ctx, volume_id)
    return {"volume": _volume_views([vol], volumes, _type_names(ctx, types))[0]}


@router.post("/os-volumes", openapi_extra=body("volume", NovaVolumeBody))
async def create_volume(
    request: Request,
    ctx: RequestContext = Ctx,
    volumes: VolumeService = Volumes,
    types: TypeService = Types,
) -> dict[str, Any]:
    _proxied(request)
    b = await body_part(request, "volume", NovaVolumeBody)
    vol = await volumes.create(
        ctx,
        VolumeCreate(
            size=b.size,
            name=b.display_name,
            description=b.display_description,
            volume_type=b.volume_type,
            metadata=b.metadata,
            snapshot_id=b.snapshot_id,
        ),
    )
    return {"volume": _volume_views([vol], volumes, _type_names(ctx, types))[0]}


@router.delete("/os-volumes/{volume_id}", status_code=202)
async def delete_volume(
    request: Request, volume_id: str, ctx: RequestContext = Ctx, volumes: VolumeService = Volumes
) -> Response:
    _proxied(request)
    await volumes.delete(ctx, volume_id)
    return Response(status_code=202)


# -- os-snapshots ----------------------------------------------------------------------------
@router.get("/os-snapshots")
@router.get("/os-snapshots/detail")
def list_snapshots(
    request: Request,
    ctx: RequestContext = Ctx,
    snapshots: SnapshotService = Snapshots,
    limit: Count | None = None,
    offset: Count | None = None,
) -> dict[str, Any]:
    _proxied(request)
    snaps = snapshots.list_snapshots(ctx, limit=limit, offset=offset)
    return {"snapshots": [_snapshot_view(s) for s in snaps]}


@router.get("/os-snapshots/{snapshot_id}")
def show_snapshot(
    request: Request, snapshot_id: str, ctx: RequestContext = Ctx, snapshots: SnapshotService = Snapshots
) -> dict[str, Any]:
    _proxied(request)
    return {"snapshot": _snapshot_view(snapshots.get(ctx, snapshot_id))}


@router.post("/os-snapshots", openapi_extra=body("snapshot", NovaSnapshotBody))
async def create_snapshot(
    request: Request, ctx: RequestContext = Ctx, snapshots: SnapshotService = Snapshots
) -> dict[str, Any]:
    _proxied(request)
    b = await body_part(request, "snapshot", NovaSnapshotBody)
    force = b.force is not None and strict_flag(b.force, "snapshot.force")  # Nova passes it to Cinder
    snap = await snapshots.create(ctx, b.volume_id, b.display_name, b.display_description, {}, force=force)
    return {"snapshot": _snapshot_view(snap)}


@router.delete("/os-snapshots/{snapshot_id}", status_code=202)
async def delete_snapshot(
    request: Request, snapshot_id: str, ctx: RequestContext = Ctx, snapshots: SnapshotService = Snapshots
) -> Response:
    _proxied(request)
    await snapshots.delete(ctx, snapshot_id)
    return Response(status_code=202)
