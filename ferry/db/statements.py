"""SQL that several services share, written once: the active migration of a volume, the clause
"not being migrated", compare-and-set updates, and compensation when a driver call fails."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import ColumnElement, Select, Update, select
from sqlalchemy.orm import Session, sessionmaker

from ferry.db.models import Migration, Volume
from ferry.domain.errors import Conflict, FerryError
from ferry.domain.migration import ACTIVE
from ferry.domain.volumes import MIGRATION_BUSY


def active_migration(volume_id: str) -> Select[Migration]:
    """The migration that still holds this volume, if any (at most one: `reserve` guarantees it)."""
    return select(Migration).where(Migration.volume_id == volume_id, Migration.status.in_(ACTIVE))


def active_migrations(volume_ids: list[str]) -> Select[Migration]:
    return select(Migration).where(Migration.volume_id.in_(volume_ids), Migration.status.in_(ACTIVE))


def not_migrating() -> ColumnElement[bool]:
    """A volume whose data may change: no migration is starting or copying it."""
    return Volume.migration_status.is_(None) | Volume.migration_status.not_in(MIGRATION_BUSY)


def compare_and_set(s: Session, stmt: Update, refused: str) -> None:
    """Run a conditional UPDATE that must change exactly one row, else raise Conflict(refused)."""
    if s.execute(stmt).rowcount != 1:  # type: ignore[attr-defined]
        raise Conflict(refused)


@contextmanager
def compensate(db: sessionmaker[Session], stmt: Update, **values: Any) -> Iterator[None]:
    """If the block raises a FerryError, run `stmt.values(**values)` in its own transaction (put a
    status back, or mark it failed) and re-raise: the caller's claim never outlives a failure."""
    try:
        yield
    except FerryError:
        with db.begin() as s:
            s.execute(stmt.values(**values))
        raise


__all__ = ["active_migration", "active_migrations", "compare_and_set", "compensate", "not_migrating"]
