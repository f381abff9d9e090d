"""Which conductor drives a migration: a lease with an expiry, renewed while the conductor lives.
Pure: the caller passes the time."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class LeaseTerms:
    length_s: float = 30.0

    @property
    def renew_every_s(self) -> float:
        """Renewed three times per length: one missed renewal never loses a live conductor's hold."""
        return self.length_s / 3

    def until(self, now: datetime) -> datetime:
        return now + timedelta(seconds=self.length_s)
