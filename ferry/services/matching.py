"""List filters beyond a list call's own: column equality, Cinder's "like" filters (`name~=abc`,
from volume microversion 3.34) and metadata subsets (volumes; snapshots from 3.22).

The API decides which filters a request may use (`ferry.api.list_filters`); this narrows the query.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Select, String, cast, false
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
        for key, value in (pairs or {}).items():
            stmt = _holding(s, stmt, model, column, key, value)
    return stmt


def _holding(s: Session, stmt: Select[Any], model: Any, column: str, key: str, value: str) -> Select[Any]:
    """`stmt` narrowed to rows whose JSON `column` holds `key`: `value`. In SQL (`->>` on
    PostgreSQL, `json_extract` on SQLite) for the keys a JSON path can name; a key with a quote
    or a backslash in it is matched here, among the rows the query already narrowed to."""
    col = getattr(model, column)
    if '"' not in key and "\\" not in key:
        return stmt.where(col[key].as_string() == value)
    rows = s.execute(stmt.with_only_columns(model.id, col))
    return stmt.where(model.id.in_([ident for ident, held in rows if (held or {}).get(key) == value]))
