"""Time in one form: naive UTC datetimes (what every table stores)."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def iso(dt: datetime | None) -> str | None:
    return dt.isoformat(timespec="microseconds") if dt else None


def iso_z(dt: datetime) -> str:
    return dt.isoformat(timespec="microseconds") + "Z"
