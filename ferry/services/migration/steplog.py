"""The step log of one migration: intent before each step acts, outcome after, typed entries
(`EventKind`) with their detail, progress samples, and the cancel flag. Only this module writes
the `migrations` row of a running migration and its `migration_events`."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from ferry.db.models import Migration, MigrationEvent, Volume
from ferry.db.statements import updated_one
from ferry.domain.clock import utcnow
from ferry.domain.migration import MESSAGES, CopyMode, EventKind, RunStatus, Step
from ferry.domain.volumes import MigrationStatus
from ferry.services import failpoints

PROGRESS_INTERVAL = 0.5
"""Seconds between two progress rows: a sample per interval is plenty for a progress bar."""


class CancelledByOperator(Exception):
    """A cancel request reached this migration (raised out of the work it interrupts)."""


def event(mid: str, step: Step, kind: EventKind, **detail: Any) -> MigrationEvent:
    message = MESSAGES.get(kind)
    if message is not None:
        detail.setdefault("message", message)
    return MigrationEvent(migration_id=mid, at=utcnow(), step=step.value, event=kind.value, detail=detail)


class StepLog:
    def __init__(self, db: sessionmaker[Session], migration_id: str, volume_id: str) -> None:
        self.db = db
        self.mid = migration_id
        self.volume_id = volume_id
        self._last_progress = 0.0
        self._last_bytes = (0.0, 0)

    def write(self, step: Step, kind: EventKind, **detail: Any) -> None:
        with self.db.begin() as s:
            s.add(event(self.mid, step, kind, **detail))

    def enter(self, step: Step, *, honour_cancel: bool, **created: Any) -> None:
        """Record the intent (and what the step will create) before acting. While a cancel is
        still honoured, entering is refused once one was requested: the request and the step
        cannot pass each other."""
        failpoints.hit(f"{step.value}.before")
        with self.db.begin() as s:
            values: dict[str, Any] = {"step": step.value, "status": RunStatus.RUNNING.value}
            if step is Step.RESERVE:
                values["started_at"] = utcnow()
            stmt = update(Migration).where(Migration.id == self.mid)
            if honour_cancel:
                stmt = stmt.where(Migration.cancel_requested.is_(False))
            if not updated_one(s, stmt.values(**values)):
                raise CancelledByOperator()
            if step is Step.RESERVE:
                s.execute(
                    update(Volume)
                    .where(Volume.id == self.volume_id)
                    .values(migration_status=MigrationStatus.MIGRATING.value)
                )
            s.add(event(self.mid, step, EventKind.START, **created))

    def done(self, step: Step, **detail: Any) -> None:
        self.write(step, EventKind.DONE, **detail)
        failpoints.hit(f"{step.value}.after")

    def update(self, **values: Any) -> None:
        with self.db.begin() as s:
            s.execute(update(Migration).where(Migration.id == self.mid).values(**values))

    def copy_mode_switched(self, remaining: int) -> None:
        with self.db.begin() as s:
            s.execute(
                update(Migration)
                .where(Migration.id == self.mid)
                .values(copy_mode=CopyMode.WRITE_BLOCKING.value)
            )
            s.add(event(self.mid, Step.MIRROR, EventKind.COPY_MODE_SWITCHED, remaining=remaining))

    def progress(self, done: int, total: int, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_progress < PROGRESS_INTERVAL:
            return
        t0, b0 = self._last_bytes
        rate = (done - b0) / (now - t0) if t0 and now > t0 and done >= b0 else 0.0
        self._last_progress, self._last_bytes = now, (now, done)
        self.update(bytes_done=done, bytes_total=total, rate=rate)

    def cancel_requested(self) -> bool:
        with self.db() as s:
            return bool(s.scalar(select(Migration.cancel_requested).where(Migration.id == self.mid)))

    def speed(self) -> int:
        with self.db() as s:
            return int(s.scalar(select(Migration.speed).where(Migration.id == self.mid)) or 0)

    def recorded_step(self) -> Step | None:
        with self.db() as s:
            step = s.scalar(select(Migration.step).where(Migration.id == self.mid))
        return Step(step) if step else None

    def pivot_completed(self) -> bool:
        """The pivot-completed fact was recorded (even if QEMU has died since)."""
        with self.db() as s:
            found = s.scalar(
                select(MigrationEvent.id)
                .where(
                    MigrationEvent.migration_id == self.mid,
                    MigrationEvent.event == EventKind.PIVOT_COMPLETED.value,
                )
                .limit(1)
            )
        return found is not None
