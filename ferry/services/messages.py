"""User messages (Cinder's `messages` API): leaving one when an asynchronous operation fails, and
listing, showing and deleting them. A project sees its own (another's are not found), an admin
every project's. Expired messages are never listed; they are deleted by one indexed statement
at start and at most every `purge_every_s` when a message is left (never a scan on a read)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, delete, or_, select
from sqlalchemy.orm import Session, sessionmaker

from ferry.config import MessagesConfig
from ferry.db.models import Message
from ferry.domain import messages as dmsg
from ferry.domain.clock import utcnow
from ferry.domain.errors import BadRequest, NotFound
from ferry.domain.ids import is_uuid, new_id
from ferry.services import policy
from ferry.services.context import RequestContext
from ferry.services.queries import check_limit


@dataclass(frozen=True)
class Origin:
    """Whose request an operation serves: the project its message goes to, the request it names."""

    project_id: str
    request_id: str = ""

    @classmethod
    def of(cls, ctx: RequestContext) -> Origin:
        return cls(ctx.project_id, ctx.request_id)


@dataclass
class MessageBook:
    """Leaves messages in the caller's transaction, so a status and the message saying why it
    changed commit together."""

    config: MessagesConfig = field(default_factory=MessagesConfig)
    _purged_at: float = 0.0

    def leave(
        self,
        s: Session,
        origin: Origin,
        event: dmsg.Event,
        resource_uuid: str | None,
        level: dmsg.Level = dmsg.Level.ERROR,
    ) -> None:
        now = utcnow()
        s.add(
            Message(
                id=new_id(),
                project_id=origin.project_id,
                request_id=origin.request_id,
                resource_type=event.resource,
                resource_uuid=resource_uuid,
                event_id=event.event_id,
                action_id=event.action.code,
                detail_id=event.detail.code,
                message_level=level,
                created_at=now,
                expires_at=dmsg.guaranteed_until(now, self.config.ttl_s),
            )
        )
        if time.monotonic() - self._purged_at >= self.config.purge_every_s:
            self._purged_at = time.monotonic()
            s.execute(delete(Message).where(Message.expires_at < now))


@dataclass
class MessageFilter:
    filters: dict[str, str] = field(default_factory=dict)
    limit: int | None = None
    marker: str | None = None
    offset: int | None = None
    sort_key: str = "created_at"
    desc: bool = True


def parse_sort(sort: str | None, sort_key: str | None, sort_dir: str | None) -> tuple[str, bool]:
    """Cinder's `sort=key:dir` or `sort_key`/`sort_dir`, over the message's sort keys."""
    key, direction = "created_at", "desc"
    if sort:
        key, _, d = sort.split(",")[0].partition(":")
        direction = d or "desc"
    elif sort_key:
        key, direction = sort_key, sort_dir or "desc"
    if key not in dmsg.SORT_KEYS:
        raise BadRequest(f"Invalid sort key {key!r}; use one of {', '.join(sorted(dmsg.SORT_KEYS))}.")
    if direction not in ("asc", "desc"):
        raise BadRequest(f"Invalid sort direction {direction!r}; use asc or desc.")
    return key, direction == "desc"


class MessageService:
    def __init__(self, db: sessionmaker[Session]) -> None:
        self.db = db

    def purge_expired(self) -> int:
        """Delete the expired messages (by the `expires_at` index); at start, as Cinder's reaper."""
        with self.db.begin() as s:
            gone = s.execute(delete(Message).where(Message.expires_at < utcnow()))
            return int(gone.rowcount)  # type: ignore[attr-defined]

    def _visible(self, ctx: RequestContext) -> Any:
        where = Message.expires_at >= utcnow()
        return where if ctx.is_admin else and_(where, Message.project_id == ctx.project_id)

    def get(self, ctx: RequestContext, message_id: str) -> Message:
        policy.enforce(ctx, "message:get")
        with self.db() as s:
            return self._load(s, ctx, message_id)

    def _load(self, s: Session, ctx: RequestContext, message_id: str) -> Message:
        msg = (
            s.scalar(select(Message).where(Message.id == message_id, self._visible(ctx)))
            if is_uuid(message_id)
            else None
        )
        if msg is None:
            raise NotFound(f"Message {message_id} could not be found.")
        return msg

    def delete(self, ctx: RequestContext, message_id: str) -> None:
        policy.enforce(ctx, "message:delete")
        with self.db.begin() as s:
            s.delete(self._load(s, ctx, message_id))

    def list_messages(self, ctx: RequestContext, f: MessageFilter) -> list[Message]:
        policy.enforce(ctx, "message:get")
        unknown = sorted(set(f.filters) - set(dmsg.FILTERS))
        if unknown:
            raise BadRequest(f"Invalid filters {', '.join(unknown)} are found in query options.")
        if f.offset is not None and f.offset < 0:
            raise BadRequest("offset must be a non-negative integer.")
        stmt = select(Message).where(self._visible(ctx))
        enums: dict[str, Any] = {"resource_type": dmsg.Resource, "message_level": dmsg.Level}
        for name, value in f.filters.items():
            if name in enums and value not in {m.value for m in enums[name]}:
                return []  # no message has a type or level Ferry does not have
            stmt = stmt.where(getattr(Message, name) == value)
        col = getattr(Message, dmsg.SORT_KEYS[f.sort_key])
        with self.db() as s:
            if f.marker is not None:
                mark = self._load(s, ctx, f.marker) if is_uuid(f.marker) else None
                if mark is None:
                    raise NotFound(f"Marker {f.marker} could not be found.")
                mval = getattr(mark, dmsg.SORT_KEYS[f.sort_key])
                if f.desc:
                    stmt = stmt.where(or_(col < mval, and_(col == mval, Message.id < mark.id)))
                else:
                    stmt = stmt.where(or_(col > mval, and_(col == mval, Message.id > mark.id)))
            order = (col.desc(), Message.id.desc()) if f.desc else (col.asc(), Message.id.asc())
            stmt = stmt.order_by(*order)
            limit = check_limit(f.limit)
            if limit is not None:
                stmt = stmt.limit(limit)
            if f.offset:
                stmt = stmt.offset(f.offset)
            return list(s.scalars(stmt))
