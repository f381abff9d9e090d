"""Cinder v3 snapshots at /volume/v3/{project_id}/snapshots: list, show, create, update, delete.

HTTP only: parse, call `SnapshotService`, render `snapshot_view`.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from ferry.api import deps
from ferry.api.errors import body_part
from ferry.api.openapi import body
from ferry.api.schemas import Count, QueryText, SnapshotCreateBody, SnapshotUpdateBody, flag
from ferry.api.views import listing, snapshot_view
from ferry.services.context import RequestContext
from ferry.services.snapshots import SnapshotService

router = APIRouter(prefix="/volume/v3/{project_id}")
Ctx = Depends(deps.project_context)
Snapshots = Depends(deps.snapshots)


@router.get("/snapshots")
@router.get("/snapshots/detail")
def list_snapshots(
    project_id: str,
    ctx: RequestContext = Ctx,
    snapshots: SnapshotService = Snapshots,
    all_tenants: QueryText = None,
    volume_id: QueryText = None,
    limit: Count | None = None,
    marker: QueryText = None,
    sort: QueryText = None,
) -> Response:
    snaps = snapshots.list_snapshots(ctx, volume_id, flag(all_tenants), limit, marker, sort)
    return listing("snapshots", [snapshot_view(s) for s in snaps])


@router.post("/snapshots", status_code=202, openapi_extra=body("snapshot", SnapshotCreateBody))
async def create_snapshot(
    request: Request, project_id: str, ctx: RequestContext = Ctx, snapshots: SnapshotService = Snapshots
) -> dict[str, Any]:
    b = await body_part(request, "snapshot", SnapshotCreateBody)
    snap = await snapshots.create(ctx, b.volume_id, b.name, b.description, b.metadata)
    return {"snapshot": snapshot_view(snap)}


@router.get("/snapshots/{snapshot_id}")
def show_snapshot(
    project_id: str, snapshot_id: str, ctx: RequestContext = Ctx, snapshots: SnapshotService = Snapshots
) -> dict[str, Any]:
    return {"snapshot": snapshot_view(snapshots.get(ctx, snapshot_id))}


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
    return {"snapshot": snapshot_view(snap)}


@router.delete("/snapshots/{snapshot_id}", status_code=202)
async def delete_snapshot(
    project_id: str, snapshot_id: str, ctx: RequestContext = Ctx, snapshots: SnapshotService = Snapshots
) -> Response:
    await snapshots.delete(ctx, snapshot_id)
    return Response(status_code=202)
