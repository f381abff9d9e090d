"""Nova's instance actions: the durable record of each server action Ferry performs, and its
reading (`os-instance-actions`).

The writers are one-line hooks in the services that act: `begin` in the transaction that claims
the work (so a refused request leaves no record, and an accepted one always has one), `finish` in
the one that ends it. A life-cycle action (create, start, stop, reboot, delete, live-migration)
ends when its task slot is released (`task_ended`): at most one is open per server. An event's
`traceback` holds a short reason for admins, never exception text for other callers.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql import Update

from ferry.db.models import InstanceActionEvent, InstanceActionRow, Server
from ferry.domain.clock import utcnow
from ferry.domain.errors import BadRequest, FerryError, NotFound
from ferry.domain.instance_actions import EVENT, LIFE_CYCLE, EventResult, InstanceAction
from ferry.services import policy
from ferry.services.context import RequestContext

MAX_LIMIT = 1000
"""Nova's `osapi_max_limit`: a page never holds more."""
ERROR_MESSAGE = "Error"
"""An action's `message` once one of its events failed (as Nova sets it; the reason is the
event's, for admins)."""


# -- writing ---------------------------------------------------------------------------------
def begin(s: Session, ctx: RequestContext, server: Server, action: InstanceAction) -> int:
    """Record `action` on `server` with its one event started; the event's id (for `finish`)."""
    now = utcnow()
    row = InstanceActionRow(
        server_id=server.id, project_id=server.project_id, user_id=ctx.user_id,
        request_id=ctx.request_id or f"req-{uuid.uuid4()}", action=action, message=None,
        start_time=now, updated_at=now,
    )  # fmt: skip
    s.add(row)
    s.flush()
    event = InstanceActionEvent(action_id=row.id, event=EVENT[action], host=server.host, start_time=now)
    s.add(event)
    s.flush()
    return event.id


def finish(s: Session, event_id: int | None, error: str | None = None) -> None:
    """End the event: `Success`, or `Error` with `error` as the reason admins read."""
    if event_id is None:
        return
    event = s.get(InstanceActionEvent, event_id)
    if event is None or event.finish_time is not None:
        return
    now = utcnow()
    event.finish_time = now
    event.result = EventResult.ERROR if error else EventResult.SUCCESS
    event.traceback = error
    values = {"updated_at": now, **({"message": ERROR_MESSAGE} if error else {})}
    s.execute(update(InstanceActionRow).where(InstanceActionRow.id == event.action_id).values(**values))


def failed(event_id: int, why: str) -> tuple[Update, Update]:
    """The statements that end the event as an `Error` (for `db.statements.compensate`)."""
    now = utcnow()
    action = select(InstanceActionEvent.action_id).where(InstanceActionEvent.id == event_id)
    return (
        update(InstanceActionEvent)
        .where(InstanceActionEvent.id == event_id, InstanceActionEvent.finish_time.is_(None))
        .values(finish_time=now, result=EventResult.ERROR, traceback=why),
        update(InstanceActionRow)
        .where(InstanceActionRow.id == action.scalar_subquery())
        .values(message=ERROR_MESSAGE, updated_at=now),
    )


def task_ended(s: Session, server_id: str, error: str | None = None) -> None:
    """The server's life-cycle task slot was released: end its open life-cycle event."""
    for event_id in _open_events(s, server_id, LIFE_CYCLE):
        finish(s, event_id, error)


def settled(s: Session, server_id: str, action: InstanceAction, error: str | None = None) -> None:
    """A restart settled what the server's `action` (an attach or a detach) was doing: end its
    open event with that outcome, so that no event stays started forever."""
    for event_id in _open_events(s, server_id, (action,)):
        finish(s, event_id, error)


def _open_events(s: Session, server_id: str, actions: Iterable[InstanceAction]) -> list[int]:
    return list(
        s.scalars(
            select(InstanceActionEvent.id)
            .join(InstanceActionRow, InstanceActionRow.id == InstanceActionEvent.action_id)
            .where(
                InstanceActionRow.server_id == server_id,
                InstanceActionRow.action.in_(tuple(actions)),
                InstanceActionEvent.finish_time.is_(None),
            )
        )
    )


@asynccontextmanager
async def recorded(
    db: sessionmaker[Session], ctx: RequestContext, server_id: str, action: InstanceAction
) -> AsyncIterator[None]:
    """Record `action` around the block: its event ends `Error` with the reason if a FerryError
    leaves the block, else `Success`."""
    with db.begin() as s:
        server = s.get(Server, server_id)
        event_id = begin(s, ctx, server, action) if server is not None else None
    try:
        yield
    except FerryError as e:
        with db.begin() as s:
            finish(s, event_id, e.message)
        raise
    with db.begin() as s:
        finish(s, event_id)


# -- reading ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class EventRecord:
    event: str
    start_time: datetime
    finish_time: datetime | None
    result: str | None
    traceback: str | None
    host: str | None
    host_id: str


@dataclass(frozen=True)
class ActionRecord:
    action: str
    request_id: str
    server_id: str
    user_id: str
    project_id: str
    start_time: datetime
    updated_at: datetime
    message: str | None


@dataclass(frozen=True)
class ActionDetail:
    """An action as its caller may see it: `events` None when hidden (before 2.51, to
    non-admins); `details` (traceback, host) for admins only."""

    action: ActionRecord
    events: list[EventRecord] | None
    details: bool


@dataclass(frozen=True)
class ActionQuery:
    """Nova's 2.58 list parameters (2.66 adds `changes_before`)."""

    limit: int | None = None
    marker: str | None = None
    changes_since: datetime | None = None
    changes_before: datetime | None = None


class InstanceActions:
    """Reads a server's instance actions, with Nova's default policy: project readers see their
    servers' actions; event details are for admins; another project's server is not found."""

    def __init__(self, db: sessionmaker[Session]) -> None:
        self.db = db

    def list(
        self, ctx: RequestContext, server_id: str, q: ActionQuery, *, deleted: bool = False
    ) -> list[ActionRecord]:
        policy.enforce(ctx, "server:instance_actions")
        if q.changes_since and q.changes_before and q.changes_since > q.changes_before:
            raise BadRequest("The value of changes-since must be less than or equal to changes-before.")
        A = InstanceActionRow
        with self.db() as s:
            self._check_server(s, ctx, server_id, deleted)
            stmt = select(A).where(A.server_id == server_id).order_by(A.start_time.desc(), A.id.desc())
            if q.marker is not None:
                m = s.scalars(select(A).where(A.server_id == server_id, A.request_id == q.marker)).first()
                if m is None:
                    raise BadRequest(f"Marker {q.marker} could not be found.")
                earlier = and_(A.start_time == m.start_time, A.id < m.id)
                stmt = stmt.where(or_(A.start_time < m.start_time, earlier))
            if q.changes_since is not None:
                stmt = stmt.where(A.updated_at >= q.changes_since)
            if q.changes_before is not None:
                stmt = stmt.where(A.updated_at <= q.changes_before)
            stmt = stmt.limit(min(MAX_LIMIT, q.limit if q.limit is not None else MAX_LIMIT))
            return [_action(r) for r in s.scalars(stmt)]

    def get(
        self, ctx: RequestContext, server_id: str, request_id: str, *, events_for_readers: bool,
        deleted: bool = False,
    ) -> ActionDetail:  # fmt: skip
        policy.enforce(ctx, "server:instance_actions")
        details = policy.allowed(ctx, "server:instance_action_events")
        A = InstanceActionRow
        with self.db() as s:
            self._check_server(s, ctx, server_id, deleted)
            row = s.scalars(
                select(A).where(A.server_id == server_id, A.request_id == request_id).order_by(A.id.desc())
            ).first()
            if row is None:
                raise NotFound(f"Action {request_id} could not be found.")
            if not (details or events_for_readers):
                return ActionDetail(_action(row), None, details)
            events = s.scalars(
                select(InstanceActionEvent)
                .where(InstanceActionEvent.action_id == row.id)
                .order_by(InstanceActionEvent.start_time.desc(), InstanceActionEvent.id.desc())
            )
            return ActionDetail(_action(row), [_event(e, row.project_id) for e in events], details)

    def _check_server(self, s: Session, ctx: RequestContext, server_id: str, deleted: bool) -> None:
        """The server must be the caller's (any for admins); a deleted one's record counts as it
        when `deleted` (Nova's 2.21)."""
        server = s.get(Server, server_id)
        project: str | None = server.project_id if server is not None else None
        if server is None and deleted:
            owner = select(InstanceActionRow.project_id).where(InstanceActionRow.server_id == server_id)
            project = s.scalars(owner).first()
        if project is None or (project != ctx.project_id and not ctx.is_admin):
            raise NotFound(f"Server {server_id} could not be found.")


def host_id(project_id: str, host: str | None) -> str:
    """Nova's `hostId`: the host hashed with the project, so projects cannot compare hosts."""
    return hashlib.sha224((project_id + host).encode()).hexdigest() if host else ""


def _action(r: InstanceActionRow) -> ActionRecord:
    return ActionRecord(
        action=str(r.action), request_id=r.request_id, server_id=r.server_id, user_id=r.user_id,
        project_id=r.project_id, start_time=r.start_time, updated_at=r.updated_at, message=r.message,
    )  # fmt: skip


def _event(e: InstanceActionEvent, project_id: str) -> EventRecord:
    return EventRecord(
        event=e.event, start_time=e.start_time, finish_time=e.finish_time,
        result=str(e.result) if e.result else None, traceback=e.traceback, host=e.host,
        host_id=host_id(project_id, e.host),
    )  # fmt: skip
