"""Nova's os-instance-actions at /compute/v2.1/servers/{id}/os-instance-actions: a server's
actions and, per request id, the action with its events.

HTTP only: parse Nova's microversioned query (2.58 `limit`, `marker`, `changes-since`; 2.66
`changes-before`), call `InstanceActions`, render the views (2.21 deleted servers, 2.51 events for
readers, 2.58 `updated_at` and links, 2.62 `hostId`/`host`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request

from ferry.api import deps
from ferry.api.versions import at_least, base_url
from ferry.domain.clock import iso
from ferry.domain.errors import BadRequest
from ferry.services.context import RequestContext
from ferry.services.instance_actions import ActionQuery, ActionRecord, EventRecord, InstanceActions

router = APIRouter(prefix="/compute/v2.1")
Ctx = Depends(deps.context)
Actions = Depends(deps.instance_actions)


@router.get("/servers/{server_id}/os-instance-actions")
def list_actions(
    request: Request, server_id: str, ctx: RequestContext = Ctx, actions: InstanceActions = Actions
) -> dict[str, Any]:
    q = _query(request)
    found = actions.list(ctx, server_id, q, deleted=at_least(request, "2.21"))
    body: dict[str, Any] = {"instanceActions": [_action(request, a) for a in found]}
    if at_least(request, "2.58") and q.limit and len(found) == q.limit:
        after = urlencode({"limit": q.limit, "marker": found[-1].request_id})
        href = f"{base_url(request)}/compute/v2.1/servers/{server_id}/os-instance-actions?{after}"
        body["links"] = [{"rel": "next", "href": href}]
    return body


@router.get("/servers/{server_id}/os-instance-actions/{request_id}")
def show_action(
    request: Request,
    server_id: str,
    request_id: str,
    ctx: RequestContext = Ctx,
    actions: InstanceActions = Actions,
) -> dict[str, Any]:
    detail = actions.get(
        ctx, server_id, request_id, events_for_readers=at_least(request, "2.51"),
        deleted=at_least(request, "2.21"),
    )  # fmt: skip
    view = _action(request, detail.action)
    if detail.events is not None:
        view["events"] = [_event(request, e, detail.details) for e in detail.events]
    return {"instanceAction": view}


def _action(request: Request, a: ActionRecord) -> dict[str, Any]:
    view: dict[str, Any] = {
        "action": a.action,
        "instance_uuid": a.server_id,
        "request_id": a.request_id,
        "user_id": a.user_id,
        "project_id": a.project_id,
        "start_time": iso(a.start_time),
        "message": a.message,
    }
    if at_least(request, "2.58"):
        view["updated_at"] = iso(a.updated_at)
    return view


def _event(request: Request, e: EventRecord, details: bool) -> dict[str, Any]:
    view: dict[str, Any] = {
        "event": e.event,
        "start_time": iso(e.start_time),
        "finish_time": iso(e.finish_time),
        "result": e.result,
    }
    if details:
        view["traceback"] = e.traceback
    if at_least(request, "2.62"):
        view["hostId"] = e.host_id
        if details:
            view["host"] = e.host or ""
    return view


def _query(request: Request) -> ActionQuery:
    """Nova's list parameters, from the microversions that have them (earlier ones ignore them)."""
    if not at_least(request, "2.58"):
        return ActionQuery()
    p = request.query_params
    before = p.get("changes-before") if at_least(request, "2.66") else None
    return ActionQuery(
        limit=_limit(p.get("limit")),
        marker=p.get("marker"),
        changes_since=_time("changes-since", p.get("changes-since")),
        changes_before=_time("changes-before", before),
    )


def _limit(value: str | None) -> int | None:
    if value is None:
        return None
    if not value.isascii() or not value.isdigit() or len(value) > 19:
        raise BadRequest(f"Invalid input for query parameters limit: {value[:40]!r} is not an integer ≥ 0.")
    return int(value)


def _time(name: str, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        t = datetime.fromisoformat(value.strip())
    except ValueError:
        problem = f"{value[:40]!r} is not a date-time"
        raise BadRequest(f"Invalid input for query parameters {name}: {problem}.") from None
    return t.astimezone(UTC).replace(tzinfo=None) if t.tzinfo else t
