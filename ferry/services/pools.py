"""Backends as the scheduler sees them (admin): each pool's statistics for Cinder's get_pools, and
the capabilities a volume service reports (capabilities/{host}), both from the same
`domain.scheduling.reported_capabilities` that extra specs are matched against."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from ferry.domain.errors import NotFound
from ferry.domain.scheduling import PoolStats
from ferry.services import policy
from ferry.services.context import RequestContext
from ferry.services.storage import Backends


class PoolService:
    def __init__(self, db: sessionmaker[Session], backends: Backends) -> None:
        self.db = db
        self.backends = backends

    async def pools(self, ctx: RequestContext) -> list[PoolStats]:
        """Every backend's capacity, provisioning and filesystem usage."""
        policy.enforce(ctx, "backend:get_pools")
        with self.db() as s:
            return await self.backends.pool_stats_with_usage(s)

    def capabilities(self, ctx: RequestContext, service: str) -> tuple[str, PoolStats]:
        """The pool of Cinder's volume service `host@backend` (a `#pool` suffix is allowed, as
        get_pools names it) and the service's name; an unknown one is not found. The host is this
        control plane's or one the backend lists in its `hosts`."""
        policy.enforce(ctx, "backend:get_capabilities")
        host, _, rest = service.partition("@")
        name = rest.split("#", 1)[0]
        backend = next((b for b in self.backends.config.backends if b.name == name), None)
        hosts = {self.backends.config.host_name, *(backend.hosts if backend else ())}
        if backend is None or host not in hosts:
            raise NotFound(f"Can't find service: {service}")
        with self.db() as s:
            pool = next(p for p in self.backends.pool_stats(s) if p.backend.name == name)
        return f"{host}@{name}", pool
