"""Cinder v3 snapshots at /volume/v3/{project_id}/snapshots: list, show, create, update, delete.
The list (summary) and create/update answers are Cinder's plain view; show and detail add the
extended snapshot attributes. Filters and fields follow the request's microversion.

HTTP only: parse, call `SnapshotService`, render `snapshot_view`. As Cinder's, the create and update
answers and the summary list are the plain view; show and the detailed list add the
`os-extended-snapshot-attributes:*`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from ferry.api import deps
from ferry.api.errors import body_part
from ferry.api.list_filters import asked_filters, snapshot_matching
from ferry.api.openapi import body
from ferry.api.paging import next_links
from ferry.api.schemas import Count, QueryText, SnapshotCreateBody, SnapshotUpdateBody, flag, strict_flag
from ferry.api.versions import at_least
from ferry.api.view_versions import SNAPSHOT_GATES, gated
from ferry.api.views import listing, snapshot_view
from ferry.domain.errors import BadRequest, NotFound
from ferry.services.context import RequestContext
from ferry.services.records import SnapshotRecord
from ferry.services.snapshots import SnapshotService

router = APIRouter(prefix="/volume/v3/{project_id}")
Ctx = Depends(deps.project_context)
Snapshots = Depends(deps.snapshots)


def _shown(
    request: Request, ctx: RequestContext, snapshots: SnapshotService, views: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    return gated(request, views, SNAPSHOT_GATES, admin=snapshots.volumes.sees_admin_fields(ctx))


def _one(
    request: Request, ctx: RequestContext, snapshots: SnapshotService, snap: SnapshotRecord, *, extended: bool
) -> dict[str, Any]:
    return {"snapshot": _shown(request, ctx, snapshots, [snapshot_view(snap, extended=extended)])[0]}


@dataclass(frozen=True)
class SnapshotQuery:
    """The list query parameters of Cinder's GET snapshots and snapshots/detail (besides filters)."""

    all_tenants: str | None
    volume_id: str | None
    limit: int | None
    marker: str | None
    sort: str | None
    sort_key: str | None
    sort_dir: str | None
    offset: int | None

    def sorts_by_name(self) -> bool:
        keys = [part.partition(":")[0].strip() for part in (self.sort or "").split(",")]
        return "name" in keys or self.sort_key == "name"


def _query(
    all_tenants: QueryText = None,
    volume_id: QueryText = None,
    limit: Count | None = None,
    marker: QueryText = None,
    sort: QueryText = None,
    sort_key: QueryText = None,
    sort_dir: QueryText = None,
    offset: Count | None = None,
) -> SnapshotQuery:
    return SnapshotQuery(all_tenants, volume_id, limit, marker, sort, sort_key, sort_dir, offset)


Query = Depends(_query)


@router.get("/snapshots")
def list_snapshots(
    request: Request,
    project_id: str,
    ctx: RequestContext = Ctx,
    snapshots: SnapshotService = Snapshots,
    q: SnapshotQuery = Query,
) -> Response:
    return _listing(request, ctx, snapshots, q, extended=False)


@router.get("/snapshots/detail")
def list_snapshots_detail(
    request: Request,
    project_id: str,
    ctx: RequestContext = Ctx,
    snapshots: SnapshotService = Snapshots,
    q: SnapshotQuery = Query,
) -> Response:
    return _listing(request, ctx, snapshots, q, extended=True)


def _listing(
    request: Request, ctx: RequestContext, snapshots: SnapshotService, q: SnapshotQuery, *, extended: bool
) -> Response:
    if q.sorts_by_name() and not at_least(request, "3.30", "volume"):
        raise BadRequest("Invalid input: sorting snapshots by name needs volume microversion 3.30 or later.")
    asked = asked_filters(request, "snapshot", snapshots.volumes.sees_admin_fields(ctx))
    snaps = snapshots.list_snapshots(
        ctx,
        q.volume_id,
        flag(q.all_tenants),
        q.limit,
        q.marker,
        q.sort,
        matching=snapshot_matching(asked),
        sort_key=q.sort_key,
        sort_dir=q.sort_dir,
        offset=q.offset,
    )
    views = _shown(request, ctx, snapshots, [snapshot_view(s, extended=extended) for s in snaps])
    count = None
    if at_least(request, "3.45", "volume") and flag(request.query_params.get("with_count")):
        # 3.45: every snapshot the filters match, past the page
        matched = snapshots.list_snapshots(
            ctx,
            q.volume_id,
            flag(q.all_tenants),
            None,
            None,
            q.sort,
            matching=snapshot_matching(asked),
            sort_key=q.sort_key,
            sort_dir=q.sort_dir,
        )
        count = len(matched)
    return listing("snapshots", views, next_links(request, views, q.limit), count)


@router.post("/snapshots", status_code=202, openapi_extra=body("snapshot", SnapshotCreateBody))
async def create_snapshot(
    request: Request, project_id: str, ctx: RequestContext = Ctx, snapshots: SnapshotService = Snapshots
) -> dict[str, Any]:
    b = await body_part(request, "snapshot", SnapshotCreateBody)
    if b.volume_id is None:  # Cinder looks the volume up, and finds none
        raise NotFound("Volume None could not be found.")
    # Below 3.66 Cinder snapshots an attached volume only when asked with force=true.
    force = (b.force is not None and strict_flag(b.force, "snapshot.force")) or at_least(
        request, "3.66", "volume"
    )
    snap = await snapshots.create(ctx, b.volume_id, b.name, b.description, b.metadata, force=force)
    return _one(request, ctx, snapshots, snap, extended=False)


@router.get("/snapshots/{snapshot_id}")
def show_snapshot(
    request: Request,
    project_id: str,
    snapshot_id: str,
    ctx: RequestContext = Ctx,
    snapshots: SnapshotService = Snapshots,
) -> dict[str, Any]:
    return _one(request, ctx, snapshots, snapshots.get(ctx, snapshot_id), extended=True)


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
    return _one(request, ctx, snapshots, snap, extended=False)


@router.delete("/snapshots/{snapshot_id}", status_code=202)
async def delete_snapshot(
    project_id: str, snapshot_id: str, ctx: RequestContext = Ctx, snapshots: SnapshotService = Snapshots
) -> Response:
    await snapshots.delete(ctx, snapshot_id)
    return Response(status_code=202)
