"""Who is asking: the request context every service call takes."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class RequestContext:
    user_id: str
    project_id: str
    roles: frozenset[str] = field(default_factory=frozenset)
    user_name: str = ""
    project_name: str = ""

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles

    @property
    def is_service(self) -> bool:
        return "service" in self.roles

    @property
    def can_write(self) -> bool:
        return bool(self.roles & {"member", "admin", "service"})


def system_context() -> RequestContext:
    """The control plane acting on its own (reconciliation, workers)."""
    return RequestContext(user_id="ferry", project_id="", roles=frozenset({"admin", "service"}))
