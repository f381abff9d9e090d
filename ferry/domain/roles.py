"""The roles a user can hold on a project, and which weaker roles each one implies (as in
Keystone: admin ⇒ member ⇒ reader). Pure: no I/O; who may do what is `services/policy.py`."""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum


class Role(StrEnum):
    READER = "reader"
    MEMBER = "member"
    ADMIN = "admin"
    SERVICE = "service"
    """Ferry's own services calling each other (Nova's swap, migration completion)."""


IMPLIED = {Role.ADMIN: frozenset({Role.MEMBER, Role.READER}), Role.MEMBER: frozenset({Role.READER})}
WRITERS = frozenset({Role.MEMBER, Role.ADMIN, Role.SERVICE})
"""The roles that may change a project's resources."""


def with_implied(roles: Iterable[Role]) -> frozenset[Role]:
    """The roles held, and every role they imply."""
    held = frozenset(roles)
    return held.union(*(IMPLIED.get(r, frozenset()) for r in held))
