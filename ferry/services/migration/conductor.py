"""This process as a conductor: the identity it drives migrations under and its leases on them.

A conductor drives a migration only while it holds its lease; it renews the leases of every
migration it drives, and adopts (through the recovery table: `MigrationMachine.restart`) any
unfinished migration whose lease lapsed because its conductor died. Two conductors never drive
one migration: taking a lease is a conditional update.
"""

from __future__ import annotations

import os
import socket

from sqlalchemy.orm import Session, sessionmaker

from ferry.db.models import Migration
from ferry.db.statements import (
    Leased,
    held_leases,
    held_live_leases,
    lapsed_leases,
    renew_leases,
    take_lease,
    updated_one,
)
from ferry.domain.clock import utcnow
from ferry.domain.ids import new_id
from ferry.domain.migration.lease import LeaseTerms


class Conductor:
    def __init__(self, db: sessionmaker[Session], terms: LeaseTerms, model: Leased = Migration) -> None:
        """`model`: the table of what it drives (volume migrations; server live migrations)."""
        self.db = db
        self.terms = terms
        self.model = model
        self.id = f"{socket.gethostname()}:{os.getpid()}:{new_id()[:8]}"

    def take(self, migration_id: str, *, force: bool = False) -> bool:
        """Claim the migration; False when another live conductor drives it."""
        now = utcnow()
        until = self.terms.until(now)
        with self.db.begin() as s:
            return updated_one(
                s, take_lease(migration_id, self.id, now, until, force=force, model=self.model)
            )

    def renew(self) -> tuple[set[str], set[str]]:
        """Extend every lease this conductor holds: the migrations it still holds, and those of
        them whose cancel was asked for (through another API worker, perhaps)."""
        held_now = held_leases if self.model is Migration else held_live_leases
        with self.db.begin() as s:
            s.execute(renew_leases(self.id, self.terms.until(utcnow()), self.model))
            held = {mid: cancel for mid, cancel in s.execute(held_now(self.id))}
        return set(held), {mid for mid, cancel in held.items() if cancel}

    def lapsed(self) -> list[str]:
        with self.db() as s:
            return list(s.scalars(lapsed_leases(utcnow(), self.model)))
