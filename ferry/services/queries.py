"""Loading resources with project isolation, and keyset pagination shared by every list call."""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import Select, and_, func, or_, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from ferry.db.models import Attachment, Server, Snapshot, Volume, VolumeType, VolumeTypeProject
from ferry.domain.errors import BadRequest, NotFound
from ferry.domain.ids import is_uuid
from ferry.domain.servers import ServerStatus, ServerTaskState
from ferry.domain.volumes import VolumeStatus
from ferry.services.context import RequestContext

T = TypeVar("T", Volume, Snapshot, Server)
MAX_LIMIT = 1000


def get_owned(s: Session, model: type[T], ctx: RequestContext, ident: str, what: str) -> T:
    """Load a row of the caller's project (any project for admins). Others' rows are not found."""
    row = s.get(model, ident) if is_uuid(ident) else None
    if row is None or (row.project_id != ctx.project_id and not ctx.is_admin):
        raise NotFound(f"{what} {ident} could not be found.")
    return row


def get_volume(s: Session, ctx: RequestContext, ident: str) -> Volume:
    return get_owned(s, Volume, ctx, ident, "Volume")


def get_type(s: Session, ref: str, ctx: RequestContext | None = None) -> VolumeType:
    """A type by id or name. With a caller's context, a private type exists only for admins and
    the projects it is shared with (Cinder's type access): others are told it is not found."""
    vt = s.get(VolumeType, ref) if is_uuid(ref) else None
    if vt is None:
        vt = s.scalar(select(VolumeType).where(VolumeType.name == ref))
    if vt is None or (ctx is not None and not type_visible(s, vt, ctx)):
        raise NotFound(f"Volume type {ref} could not be found.")
    return vt


def type_visible(s: Session, vt: VolumeType, ctx: RequestContext) -> bool:
    if vt.is_public or ctx.is_admin:
        return True
    return s.get(VolumeTypeProject, (vt.id, ctx.project_id)) is not None


def attachment_of(s: Session, volume_id: str) -> Attachment | None:
    return s.scalar(select(Attachment).where(Attachment.volume_id == volume_id))


def running_server(s: Session, volume_id: str) -> str | None:
    """The server whose running process has the volume open, if any: its layers change live."""
    att = attachment_of(s, volume_id)
    if att is None:
        return None
    server = s.get(Server, att.server_id)
    return server.id if server is not None and server.status is ServerStatus.ACTIVE else None


def server_task(s: Session, volume_id: str) -> tuple[str, ServerTaskState] | None:
    """The server this volume is attached to and the life-cycle task it is busy with, if any."""
    att = attachment_of(s, volume_id)
    server = s.get(Server, att.server_id) if att is not None else None
    if server is None or server.task_state is None:
        return None
    return server.id, server.task_state


def being_copied_into(s: Session, source: InstrumentedAttribute[str | None], source_id: str) -> str | None:
    """A volume still being created from `source_id` through the column `source`
    (`Volume.snapshot_id` or `Volume.source_volid`), if any: its source must stay until it is done."""
    return s.scalar(
        select(Volume.id).where(source == source_id, Volume.status == VolumeStatus.CREATING).limit(1)
    )


SORT_KEYS = {"created_at", "updated_at", "name", "size", "status", "id"}
SORT_ALIASES = {"display_name": "name"}
"""Cinder's database names for sort keys, which its API accepts too."""


def parse_sort(sort: str | None, sort_key: str | None, sort_dir: str | None) -> tuple[str, bool]:
    """Return (column, descending). Accepts Cinder's `sort=key:dir` and `sort_key`/`sort_dir`."""
    key, direction = "created_at", "desc"
    if sort:
        first = sort.split(",")[0]
        key, _, d = first.partition(":")
        direction = d or "desc"
    elif sort_key:
        key, direction = sort_key, sort_dir or "desc"
    elif sort_dir:
        direction = sort_dir
    key, direction = SORT_ALIASES.get(key.strip(), key.strip()), direction.strip().lower()
    if key not in SORT_KEYS:
        raise BadRequest(f"Invalid sort key {key!r}; use one of {', '.join(sorted(SORT_KEYS))}.")
    if direction not in ("asc", "desc"):
        raise BadRequest(f"Invalid sort direction {direction!r}; use asc or desc.")
    return key, direction == "desc"


def check_limit(limit: int | None) -> int | None:
    if limit is None:
        return None
    if limit < 0:
        raise BadRequest("limit must be a non-negative integer.")
    return min(limit, MAX_LIMIT)


def paginate(
    s: Session,
    stmt: Select[Any],
    model: Any,
    key: str,
    desc: bool,
    marker: str | None,
    limit: int | None,
    offset: int | None = None,
) -> Select[Any]:
    """Keyset pagination on (key, id): no OFFSET scans, stable under inserts. A missing name sorts
    as an empty one (NULL compares to nothing, and databases disagree on where NULLs sort)."""
    col = getattr(model, "size_gib" if key == "size" else key)
    if key == "name":
        col = func.coalesce(col, "")
    if marker is not None:
        row = s.get(model, marker) if is_uuid(marker) else None
        if row is None:
            raise NotFound(f"Marker {marker} could not be found.")
        mval = getattr(row, "size_gib" if key == "size" else key)
        if key == "name":
            mval = mval or ""
        if desc:
            stmt = stmt.where(or_(col < mval, and_(col == mval, model.id < row.id)))
        else:
            stmt = stmt.where(or_(col > mval, and_(col == mval, model.id > row.id)))
    order = (col.desc(), model.id.desc()) if desc else (col.asc(), model.id.asc())
    stmt = stmt.order_by(*order)
    if offset:  # Cinder's `offset`: skip that many after the marker
        stmt = stmt.offset(offset)
    if limit is not None:
        stmt = stmt.limit(limit)
    return stmt
