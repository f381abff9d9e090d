"""Who is asking: the request context every service call takes."""

from __future__ import annotations

from dataclasses import dataclass, field

from ferry.domain.roles import WRITERS, Role


@dataclass(frozen=True)
class RequestContext:
    user_id: str
    project_id: str
    roles: frozenset[Role] = field(default_factory=frozenset)
    user_name: str = ""
    project_name: str = ""
    request_id: str = ""
    """The API request acting (`x-openstack-request-id`): user messages name it, instance actions are
    filed under it."""

    @property
    def is_admin(self) -> bool:
        return Role.ADMIN in self.roles

    @property
    def is_service(self) -> bool:
        return Role.SERVICE in self.roles

    @property
    def can_write(self) -> bool:
        return bool(self.roles & WRITERS)


def system_context() -> RequestContext:
    """The control plane acting on its own (reconciliation, workers)."""
    return RequestContext(user_id="ferry", project_id="", roles=frozenset({Role.ADMIN, Role.SERVICE}))
