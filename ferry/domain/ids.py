"""Identifier rules. Every file name Ferry builds comes from an id that passed `require_uuid`."""

from __future__ import annotations

import uuid

from ferry.domain.errors import BadRequest


def new_id() -> str:
    return str(uuid.uuid4())


def is_uuid(value: object) -> bool:
    if not isinstance(value, str) or len(value) != 36:
        return False
    try:
        return str(uuid.UUID(value)) == value.lower()
    except ValueError:
        return False


def require_uuid(value: object, what: str = "id") -> str:
    """Return the canonical lower-case form of a UUID string, or raise BadRequest."""
    if not is_uuid(value):
        raise BadRequest(f"Invalid {what}: {value!r} is not a UUID.")
    assert isinstance(value, str)
    return value.lower()
