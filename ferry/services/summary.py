"""Cinder's volume summary (`GET volumes/summary`): how many volumes a project has, their total
size, and the values each metadata key takes across them."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from ferry.db.models import Volume
from ferry.services import policy
from ferry.services.context import RequestContext


class VolumeSummary:
    def __init__(self, db: sessionmaker[Session]) -> None:
        self.db = db

    def summarize(
        self, ctx: RequestContext, all_tenants: bool = False
    ) -> tuple[int, int, dict[str, list[str]]]:
        """(count, total GiB, {metadata key: its distinct values, sorted})."""
        policy.enforce(ctx, "volume:summary")
        if all_tenants:
            policy.enforce(ctx, "volume:get_all_tenants")
        stmt = select(Volume.size_gib, Volume.meta)
        if not all_tenants:
            stmt = stmt.where(Volume.project_id == ctx.project_id)
        count, size, values = 0, 0, dict[str, set[str]]()
        with self.db() as s:
            for size_gib, meta in s.execute(stmt):
                count, size = count + 1, size + size_gib
                for key, value in (meta or {}).items():
                    values.setdefault(key, set()).add(str(value))
        return count, size, {k: sorted(v) for k, v in sorted(values.items())}
