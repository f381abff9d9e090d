"""The column type for every enum Ferry stores (`enum_type`), and the name rule of its constraints.

Choice: SQLAlchemy's own `Enum` over VARCHAR rather than a `TypeDecorator`. It stores each member
as its string value, exactly the strings the columns held before they were typed, so old rows
read back and the API output does not change; it reads rows back as members; it refuses a
non-member twice: in Python before the statement is sent (`validate_strings`: a `StatementError`
wrapping `LookupError`), and in the database through a CHECK constraint, so a value written
around the ORM is refused too. Not a native PostgreSQL ENUM: adding a member to one is an
`ALTER TYPE` that SQLite has no counterpart for; here a new member is a migration that
replaces the CHECK constraint, on both databases alike.

Each CHECK is named `ck_<table>_<column>` (`NAMING`, set on the models' metadata), so migrations
can name the one they replace. This module knows no table: `models.py` puts the type on columns.
"""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy import Enum

NAMING = {"ck": "ck_%(table_name)s_%(column_0_name)s"}
"""Constraint names by table and column (only CHECKs; other constraints keep their names)."""


def enum_type(enum: type[StrEnum], length: int) -> Enum:
    """A VARCHAR(`length`) column holding members of `enum` (stored as their values)."""
    return Enum(
        enum,
        name=None,  # unnamed, so NAMING names the CHECK after its column, not after the enum
        native_enum=False,
        create_constraint=True,
        validate_strings=True,
        values_callable=_values,
        length=length,
    )


def _values(enum: type[StrEnum]) -> list[str]:
    return [member.value for member in enum]
