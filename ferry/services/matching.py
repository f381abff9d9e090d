"""List filters beyond a list call's own: column equality, Cinder's "like" filters (`name~=abc`,
from volume microversion 3.34) and metadata subsets (volumes; snapshots from 3.22).

The API decides which filters a request may use (`ferry.api.list_filters`); this narrows the query.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Select, String, cast, false, select
from sqlalchemy.orm import Session


@dataclass(frozen=True)
class Matching:
    """`equal`: column -> value; `like`: column -> substring; `metadata`: pairs every row must hold."""

    equal: dict[str, Any] = field(default_factory=dict)
    like: dict[str, str] = field(default_factory=dict)
    metadata: dict[str, str] | None = None
    image_meta: dict[str, str] | None = None
    """Pairs every row's `volume_image_metadata` must hold (volumes' `glance_metadata`, 3.4)."""
    nothing: bool = False
    """A filter no row can match (a group filter: Ferry has no groups)."""


def narrow(s: Session, stmt: Select[Any], model: Any, m: Matching) -> Select[Any]:
    """`stmt` narrowed to the rows of `model` that `m` matches."""
    if m.nothing:
        return stmt.where(false())
    for key, value in m.equal.items():
        stmt = stmt.where(getattr(model, key) == value)
    for key, text in m.like.items():
        escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        stmt = stmt.where(cast(getattr(model, key), String).like(f"%{escaped}%", escape="\\"))
    for column, pairs in (("meta", m.metadata), ("image_meta", m.image_meta)):
        if pairs:
            # JSON containment differs between SQLite and PostgreSQL: match the pairs here, then
            # keep the query (and its keyset pagination) on the ids that hold them.
            want = pairs.items()
            rows = s.execute(select(model.id, getattr(model, column)))
            stmt = stmt.where(model.id.in_([ident for ident, held in rows if want <= (held or {}).items()]))
    return stmt
