"""SQL that several services share, written once: the active migration of a volume, the clause
"not being migrated", compare-and-set updates, and compensation when a driver call fails."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Executable, Select, Update, select, update
from sqlalchemy.orm import Session, sessionmaker

from ferry.db.models import Attachment, Migration, ServerLiveMigration, Volume
from ferry.domain.errors import Conflict, FerryError
from ferry.domain.migration import ACTIVE
from ferry.domain.server_migration.plan import IN_PROGRESS as LIVE_IN_PROGRESS
from ferry.domain.volumes import MIGRATION_BUSY


def active_migration(volume_id: str) -> Select[Migration]:
    """The migration that still holds this volume, if any (at most one: `reserve` guarantees it)."""
    return select(Migration).where(Migration.volume_id == volume_id, Migration.status.in_(ACTIVE))


def active_migrations(volume_ids: list[str] | None = None) -> Select[Migration]:
    """Every migration still holding a volume (of `volume_ids`, when given)."""
    stmt = select(Migration).where(Migration.status.in_(ACTIVE))
    return stmt if volume_ids is None else stmt.where(Migration.volume_id.in_(volume_ids))


Leased = type[Migration] | type[ServerLiveMigration]
"""A table of work a conductor drives under a lease: volume or server migrations."""


def _active(model: Leased) -> Any:
    if model is Migration:
        return Migration.status.in_(ACTIVE)
    return ServerLiveMigration.status.in_(LIVE_IN_PROGRESS)


def take_lease(
    migration_id: str, me: str, now: datetime, until: datetime, *, force: bool = False,
    model: Leased = Migration,
) -> Update:  # fmt: skip
    """Claim an unfinished migration for conductor `me` unless another conductor's lease on it is
    still running (`force`: the caller knows no other conductor exists, e.g. the all-in-one)."""
    stmt = update(model).where(model.id == migration_id, _active(model))
    if not force:
        stmt = stmt.where(
            model.conductor.is_(None)
            | (model.conductor == me)
            | model.lease_until.is_(None)
            | (model.lease_until < now)
        )
    return stmt.values(conductor=me, lease_until=until)


def renew_leases(me: str, until: datetime, model: Leased = Migration) -> Update:
    return update(model).where(model.conductor == me, _active(model)).values(lease_until=until)


def held_leases(me: str) -> Select[str, bool]:
    return select(Migration.id, Migration.cancel_requested).where(
        Migration.conductor == me, Migration.status.in_(ACTIVE)
    )


def held_live_leases(me: str) -> Select[str, bool]:
    m = ServerLiveMigration
    return select(m.id, m.abort_requested).where(m.conductor == me, _active(m))


def lapsed_leases(now: datetime, model: Leased = Migration) -> Select[str]:
    """Unfinished migrations no live conductor drives (never leased, or their lease ran out)."""
    return select(model.id).where(
        _active(model),
        model.conductor.is_(None) | model.lease_until.is_(None) | (model.lease_until < now),
    )


def migrating_volume_of(server_id: str) -> Select[str]:
    """A volume attached to this server that a migration holds (the server must wait for it)."""
    return (
        select(Volume.id)
        .join(Attachment, Attachment.volume_id == Volume.id)
        .where(Attachment.server_id == server_id, Volume.migration_status.in_(MIGRATION_BUSY))
        .limit(1)
    )


def not_migrating() -> ColumnElement[bool]:
    """A volume whose data may change: no migration is starting or copying it."""
    return Volume.migration_status.is_(None) | Volume.migration_status.not_in(MIGRATION_BUSY)


def updated_one(s: Session, stmt: Update, rows: int = 1) -> bool:
    """Run a conditional UPDATE; True when it changed exactly `rows` rows."""
    return bool(s.execute(stmt).rowcount == rows)  # type: ignore[attr-defined]


def compare_and_set(s: Session, stmt: Update, refused: str, rows: int = 1) -> None:
    """Run a conditional UPDATE that must change exactly `rows` rows, else raise Conflict(refused)
    (and the caller's transaction rolls back whatever it did before)."""
    if not updated_one(s, stmt, rows):
        raise Conflict(refused)


@contextmanager
def compensate(db: sessionmaker[Session], *undo: Executable) -> Iterator[None]:
    """If the block raises a FerryError, run `undo` in one transaction of its own (put a status
    back, mark it failed, drop a half-made row) and re-raise: a claim never outlives a failure."""
    try:
        yield
    except FerryError:
        with db.begin() as s:
            for stmt in undo:
                s.execute(stmt)
        raise


__all__ = [
    "active_migration",
    "active_migrations",
    "compare_and_set",
    "compensate",
    "held_leases",
    "lapsed_leases",
    "migrating_volume_of",
    "not_migrating",
    "renew_leases",
    "take_lease",
    "updated_one",
]
