"""Cinder v3 user messages at /volume/v3/{project_id}/messages (microversion 3.3; 3.5 adds
filters, sorting and pagination): list, show, delete.

HTTP only: `MessageService` decides who sees which message and queries them.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from ferry.api import deps
from ferry.api.versions import at_least, base_url
from ferry.domain.clock import iso
from ferry.domain.errors import BadRequest, NotFound
from ferry.domain.messages import user_message
from ferry.services.context import RequestContext
from ferry.services.messages import MessageFilter, MessageService, parse_sort
from ferry.services.records import MessageRecord

router = APIRouter(prefix="/volume/v3/{project_id}")
Ctx = Depends(deps.project_context)
Messages = Depends(deps.messages)
PAGING = ("limit", "marker", "offset", "sort", "sort_key", "sort_dir")


def _gate(request: Request) -> None:
    if not at_least(request, "3.3", "volume"):  # Cinder: the resource does not exist below 3.3
        raise NotFound("The resource could not be found.")


def message_view(m: MessageRecord, base: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": m.id,
        "event_id": m.event_id,
        "user_message": user_message(m.action_id, m.detail_id),
        "message_level": str(m.message_level),
        "created_at": iso(m.created_at),
        "guaranteed_until": iso(m.expires_at),
        "request_id": m.request_id,
        "links": [
            {"rel": "self", "href": f"{base}/volume/v3/{m.project_id}/messages/{m.id}"},
            {"rel": "bookmark", "href": f"{base}/volume/{m.project_id}/messages/{m.id}"},
        ],
    }
    if m.resource_type:
        out["resource_type"] = str(m.resource_type)
    if m.resource_uuid:
        out["resource_uuid"] = m.resource_uuid
    return out


def _count(params: dict[str, str], name: str) -> int | None:
    raw = params.get(name)
    if raw is None:
        return None
    if not raw.isdigit() or len(raw) > 18:
        raise BadRequest(f"Invalid input: {name} must be a non-negative integer, not {raw[:40]!r}.")
    return int(raw)


def _filter(request: Request) -> MessageFilter:
    if not at_least(request, "3.5", "volume"):  # before 3.5 the list takes no parameters
        return MessageFilter()
    params = dict(request.query_params)
    key, desc = parse_sort(params.get("sort"), params.get("sort_key"), params.get("sort_dir"))
    return MessageFilter(
        filters={k: v for k, v in params.items() if k not in PAGING},
        limit=_count(params, "limit"),
        marker=params.get("marker"),
        offset=_count(params, "offset"),
        sort_key=key,
        desc=desc,
    )


@router.get("/messages")
def list_messages(
    request: Request, project_id: str, ctx: RequestContext = Ctx, messages: MessageService = Messages
) -> dict[str, Any]:
    _gate(request)
    f = _filter(request)
    found = messages.list_messages(ctx, f)
    base = base_url(request)
    out: dict[str, Any] = {"messages": [message_view(m, base) for m in found]}
    if f.limit and len(found) == f.limit:
        href = f"{base}/volume/v3/{project_id}/messages?limit={f.limit}&marker={found[-1].id}"
        out["messages_links"] = [{"rel": "next", "href": href}]
    return out


@router.get("/messages/{message_id}")
def show_message(
    request: Request,
    project_id: str,
    message_id: str,
    ctx: RequestContext = Ctx,
    messages: MessageService = Messages,
) -> dict[str, Any]:
    _gate(request)
    return {"message": message_view(messages.get(ctx, message_id), base_url(request))}


@router.delete("/messages/{message_id}", status_code=204)
def delete_message(
    request: Request,
    project_id: str,
    message_id: str,
    ctx: RequestContext = Ctx,
    messages: MessageService = Messages,
) -> Response:
    _gate(request)
    messages.delete(ctx, message_id)
    return Response(status_code=204)
