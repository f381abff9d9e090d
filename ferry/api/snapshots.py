"""Cinder v3 snapshots at /volume/v3/{project_id}/snapshots: list (summary and detail), show,
create, update, delete.

HTTP only: parse, call `SnapshotService`, render `snapshot_view`. As Cinder's, the create and update
answers and the summary list are the plain view; show and the detailed list add the
`os-extended-snapshot-attributes:*`.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from ferry.api import deps
from ferry.api.errors import body_part
from ferry.api.openapi import body
from ferry.api.pages import next_links
from ferry.api.schemas import Count, QueryText, SnapshotCreateBody, SnapshotUpdateBody, flag, metadata_filter
from ferry.api.versions import at_least
from ferry.api.views import listing, snapshot_view
from ferry.domain.errors import NotFound
from ferry.services.context import RequestContext
from ferry.services.records import SnapshotRecord
from ferry.services.snapshots import SnapshotFilter, SnapshotService

router = APIRouter(prefix="/volume/v3/{project_id}")
Ctx = Depends(deps.project_context)
Snapshots = Depends(deps.snapshots)


def view(request: Request, snap: SnapshotRecord, *, extended: bool) -> dict[str, Any]:
    """A snapshot as the request's microversion has it (`user_id` from 3.41)."""
    return snapshot_view(snap, extended=extended, user_id=at_least(request, "3.41", "volume"))


def _filter(
    request: Request,
    all_tenants: QueryText = None,
    volume_id: QueryText = None,
    name: QueryText = None,
    status: QueryText = None,
    metadata: QueryText = None,
    limit: Count | None = None,
    offset: Count | None = None,
    marker: QueryText = None,
    sort: QueryText = None,
    sort_key: QueryText = None,
    sort_dir: QueryText = None,
) -> SnapshotFilter:
    """The list query parameters of Cinder's GET snapshots and snapshots/detail (the `metadata`
    filter is Cinder's from 3.22)."""
    return SnapshotFilter(
        all_tenants=flag(all_tenants),
        volume_id=volume_id,
        name=name,
        status=status,
        metadata=metadata_filter(metadata) if at_least(request, "3.22", "volume") else None,
        limit=limit,
        offset=offset,
        marker=marker,
        sort=sort,
        sort_key=sort_key,
        sort_dir=sort_dir,
    )


@router.get("/snapshots")
def list_snapshots(
    request: Request,
    project_id: str,
    ctx: RequestContext = Ctx,
    snapshots: SnapshotService = Snapshots,
    f: SnapshotFilter = Depends(_filter),
) -> Response:
    views = [view(request, s, extended=False) for s in snapshots.find(ctx, f)]
    return listing("snapshots", views, next_links(request, project_id, "snapshots", views))


@router.get("/snapshots/detail")
def list_snapshots_detail(
    request: Request,
    project_id: str,
    ctx: RequestContext = Ctx,
    snapshots: SnapshotService = Snapshots,
    f: SnapshotFilter = Depends(_filter),
) -> Response:
    views = [view(request, s, extended=True) for s in snapshots.find(ctx, f)]
    return listing("snapshots", views, next_links(request, project_id, "snapshots/detail", views))


@router.post("/snapshots", status_code=202, openapi_extra=body("snapshot", SnapshotCreateBody))
async def create_snapshot(
    request: Request, project_id: str, ctx: RequestContext = Ctx, snapshots: SnapshotService = Snapshots
) -> dict[str, Any]:
    b = await body_part(request, "snapshot", SnapshotCreateBody)
    if b.volume_id is None:  # Cinder looks the volume up, and finds none
        raise NotFound("Volume None could not be found.")
    snap = await snapshots.create(ctx, b.volume_id, b.name, b.description, b.metadata)
    return {"snapshot": view(request, snap, extended=False)}


@router.get("/snapshots/{snapshot_id}")
def show_snapshot(
    request: Request,
    project_id: str,
    snapshot_id: str,
    ctx: RequestContext = Ctx,
    snapshots: SnapshotService = Snapshots,
) -> dict[str, Any]:
    return {"snapshot": view(request, snapshots.get(ctx, snapshot_id), extended=True)}


@router.put("/snapshots/{snapshot_id}", openapi_extra=body("snapshot", SnapshotUpdateBody))
async def update_snapshot(
    request: Request,
    project_id: str,
    snapshot_id: str,
    ctx: RequestContext = Ctx,
    snapshots: SnapshotService = Snapshots,
) -> dict[str, Any]:
    b = await body_part(request, "snapshot", SnapshotUpdateBody)
    snap = snapshots.update(ctx, snapshot_id, b.model_dump(exclude_unset=True))
    return {"snapshot": view(request, snap, extended=False)}


@router.delete("/snapshots/{snapshot_id}", status_code=202)
async def delete_snapshot(
    project_id: str, snapshot_id: str, ctx: RequestContext = Ctx, snapshots: SnapshotService = Snapshots
) -> Response:
    await snapshots.delete(ctx, snapshot_id)
    return Response(status_code=202)
