"""Nova's live migration: the server action `os-migrateLive`, the server's migrations (list, show,
abort, force complete) and `os-migrations`.

HTTP only: parse, call `LiveMigrationService`, render Nova's views.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import Field

from ferry.api import deps
from ferry.api.errors import json_body, parse
from ferry.api.openapi import body
from ferry.api.schemas import Body, QueryText
from ferry.api.versions import at_least, base_url
from ferry.domain.clock import iso
from ferry.domain.errors import BadRequest
from ferry.services.context import RequestContext
from ferry.services.records import LiveMigrationRecord
from ferry.services.server_migration import LiveMigrationService
from ferry.services.server_migration.requests import MigrationFilter

router = APIRouter(prefix="/compute/v2.1")
Ctx = Depends(deps.context)
Live = Depends(deps.live_migrations)
MAX_BANDWIDTH = 1 << 40


class MigrateLiveBody(Body):
    host: str | None = Field(default=None, min_length=1, max_length=255)
    block_migration: bool | Literal["auto"] = "auto"
    """Only shared storage is offered: false or "auto" (true is refused)."""
    disk_over_commit: bool | None = None
    """Before microversion 2.25; ignored (Ferry never overcommits disks)."""
    force: bool | None = None
    """Microversions 2.30 to 2.67: with a host, skip the scheduler. Ferry checks the host anyway."""
    ferry_bandwidth: int = Field(default=0, ge=0, le=MAX_BANDWIDTH)
    """Ferry extension: bytes per second for the memory copy (0: unlimited)."""


async def migrate_live(
    request: Request, live: LiveMigrationService, ctx: RequestContext, server_id: str, args: Any
) -> None:
    b = parse(MigrateLiveBody, args, "os-migrateLive")
    if b.force is not None and at_least(request, "2.68"):
        raise BadRequest("Invalid input: 'force' was removed in compute microversion 2.68.")
    if b.disk_over_commit is not None and at_least(request, "2.25"):
        raise BadRequest("Invalid input: 'disk_over_commit' was removed in compute microversion 2.25.")
    if b.block_migration is True:
        raise BadRequest("Block migration is not offered: every volume lives on storage both hosts reach.")
    await live.migrate(ctx, server_id, b.host, b.ferry_bandwidth)


def server_migration_view(m: LiveMigrationRecord) -> dict[str, Any]:
    return {
        "id": m.number,
        "uuid": m.id,
        "server_uuid": m.server_id,
        "status": m.status,
        "source_compute": m.source_host,
        "source_node": m.source_host,
        "dest_compute": m.dest_host,
        "dest_node": m.dest_host,
        "dest_host": m.dest_host,
        "memory_total_bytes": m.memory_total,
        "memory_processed_bytes": m.memory_processed,
        "memory_remaining_bytes": m.memory_remaining,
        "disk_total_bytes": 0,
        "disk_processed_bytes": 0,
        "disk_remaining_bytes": 0,
        "created_at": iso(m.created_at),
        "updated_at": iso(m.updated_at),
        "user_id": m.user_id,
        "project_id": m.project_id,
        "ferry:step": m.step,
        "ferry:downtime_ms": m.downtime_ms,
        "ferry:expected_downtime_ms": m.expected_downtime_ms,
        "ferry:dirty_rate_bytes_per_sec": m.dirty_rate,
        "ferry:serials_checked": m.serials_checked,
        "ferry:error": m.error,
    }


def migration_view(request: Request, m: LiveMigrationRecord) -> dict[str, Any]:
    """An `os-migrations` entry."""
    href = f"{base_url(request)}/compute/v2.1/servers/{m.server_id}/migrations/{m.number}"
    return {
        "id": m.number,
        "uuid": m.id,
        "instance_uuid": m.server_id,
        "status": m.status,
        "migration_type": "live-migration",
        "source_compute": m.source_host,
        "source_node": m.source_host,
        "dest_compute": m.dest_host,
        "dest_node": m.dest_host,
        "dest_host": m.dest_host,
        "old_instance_type_id": None,
        "new_instance_type_id": None,
        "created_at": iso(m.created_at),
        "updated_at": iso(m.updated_at),
        "user_id": m.user_id,
        "project_id": m.project_id,
        "links": [{"rel": "self", "href": href}]
        if m.status in ("queued", "preparing", "running", "post-migrating")
        else [],
    }


@router.get("/servers/{server_id}/migrations")
def list_server_migrations(
    server_id: str, ctx: RequestContext = Ctx, live: LiveMigrationService = Live
) -> dict[str, Any]:
    return {"migrations": [server_migration_view(m) for m in live.list_for_server(ctx, server_id)]}


@router.get("/servers/{server_id}/migrations/{migration_id}")
def show_server_migration(
    server_id: str, migration_id: str, ctx: RequestContext = Ctx, live: LiveMigrationService = Live
) -> dict[str, Any]:
    return {"migration": server_migration_view(live.get(ctx, server_id, migration_id))}


@router.delete("/servers/{server_id}/migrations/{migration_id}", status_code=202)
async def abort_server_migration(
    server_id: str, migration_id: str, ctx: RequestContext = Ctx, live: LiveMigrationService = Live
) -> Response:
    await live.abort(ctx, server_id, migration_id)
    return Response(status_code=202)


class ForceCompleteBody(Body):
    force_complete: None = None


@router.post(
    "/servers/{server_id}/migrations/{migration_id}/action",
    status_code=202,
    openapi_extra=body("force_complete", ForceCompleteBody),
)
async def server_migration_action(
    request: Request,
    server_id: str,
    migration_id: str,
    ctx: RequestContext = Ctx,
    live: LiveMigrationService = Live,
) -> Response:
    payload = await json_body(request)
    if list(payload) != ["force_complete"] or payload["force_complete"] is not None:
        raise BadRequest('Invalid input: the only migration action is {"force_complete": null}.')
    await live.force_complete(ctx, server_id, migration_id)
    return Response(status_code=202)


@router.get("/os-migrations")
def list_migrations(
    request: Request,
    host: QueryText = None,
    status: QueryText = None,
    migration_type: QueryText = None,
    instance_uuid: QueryText = None,
    user_id: QueryText = None,
    project_id: QueryText = None,
    ctx: RequestContext = Ctx,
    live: LiveMigrationService = Live,
) -> dict[str, Any]:
    """Ferry's migrations are all live migrations: another `migration_type` lists none."""
    if migration_type not in (None, "live-migration"):
        return {"migrations": []}
    f = MigrationFilter(host, status, instance_uuid, user_id, project_id)
    return {"migrations": [migration_view(request, m) for m in live.list_all(ctx, f)]}
