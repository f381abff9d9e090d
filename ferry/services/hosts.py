"""Hypervisor hosts (DESIGN §9): registration and heartbeats, what admins see and change, where a
new server goes, and which hosts reach a backend. The rules are `ferry.domain.hosts`'; this module
reads the facts they need (rows, the servers' flavors, the time) and writes what they decide.

An agent registers its host when it starts and beats every `heartbeat_interval`; the all-in-one
`ferry serve` does both in-process for its own host (`local`), and beats again whenever it places
a server if its last beat is older than that, so an embedded control plane that never ran `start`
(a test, a script) still schedules on its host. This module must not start agents or talk to one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from ferry.config import HostsConfig
from ferry.db.models import Attachment, Flavor, Host, Server
from ferry.db.statements import updated_one
from ferry.domain.clock import utcnow
from ferry.domain.errors import BadRequest, NotFound
from ferry.domain.hosts import HostLoad, HostState, Need, Placed, check_migration, place, reaches, state_of
from ferry.domain.model import BackendConfig
from ferry.services import policy
from ferry.services.context import RequestContext

log = logging.getLogger(__name__)
MAX_REASON = 255


@dataclass(frozen=True)
class HostSpec:
    """What a host says of itself when it registers."""

    name: str
    address: str
    vcpus: int
    ram_mb: int


class HostRegistry:
    def __init__(
        self,
        db: sessionmaker[Session],
        config: HostsConfig,
        local: HostSpec | None = None,
        backends: tuple[BackendConfig, ...] = (),
        here: str = "ferry",
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        """`here`: the host this process runs on (the API's, for Cinder's scheduler service)."""
        self.here = here
        self.db = db
        self.config = config
        self.local = local
        self.backends = backends
        self.clock = clock
        self._last_local_beat: datetime | None = None
        self._beating: asyncio.Task[None] | None = None

    # -- agents --------------------------------------------------------------------------
    def register(self, spec: HostSpec) -> None:
        """A host's agent starts: record (or refresh) where it is and what it offers, and beat.
        An admin's disable survives it: the host stays out of scheduling until enabled."""
        now = self.clock()
        with self.db.begin() as s:
            host = s.get(Host, spec.name, with_for_update=True)
            if host is None:
                s.add(
                    Host(
                        name=spec.name,
                        address=spec.address,
                        enabled=True,
                        vcpus=spec.vcpus,
                        ram_mb=spec.ram_mb,
                        heartbeat_at=now,
                        started_at=now,
                    )
                )
            else:
                host.address, host.vcpus, host.ram_mb = spec.address, spec.vcpus, spec.ram_mb
                host.heartbeat_at = host.started_at = now
        if self.local is not None and spec.name == self.local.name:
            self._last_local_beat = now

    def heartbeat(self, name: str) -> None:
        now = self.clock()
        with self.db.begin() as s:
            if not updated_one(s, update(Host).where(Host.name == name).values(heartbeat_at=now)):
                raise NotFound(f"Host {name} has not registered.")
        if self.local is not None and name == self.local.name:
            self._last_local_beat = now

    async def start_local(self) -> None:
        """The all-in-one control plane: register its own host and beat until `stop`."""
        if self.local is None:
            return
        self.register(self.local)
        self._beating = asyncio.get_running_loop().create_task(self._beat_local(self.local.name))

    async def _beat_local(self, name: str) -> None:
        while True:
            await asyncio.sleep(self.config.heartbeat_interval)
            try:
                self.heartbeat(name)
            except Exception as e:  # a database hiccup: the next beat tries again
                log.warning("host %s: heartbeat failed: %s", name, e)

    async def stop(self) -> None:
        if self._beating is not None:
            self._beating.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._beating

    def _beat_local_if_due(self) -> None:
        if self.local is None:
            return
        last = self._last_local_beat
        if last is None:
            self.register(self.local)
        elif (self.clock() - last).total_seconds() >= self.config.heartbeat_interval:
            self.heartbeat(self.local.name)

    # -- admins ----------------------------------------------------------------------------
    def list_hosts(self, ctx: RequestContext) -> list[HostLoad]:
        policy.enforce(ctx, "host:get")
        with self.db() as s:
            return self.loads(s)

    def get(self, ctx: RequestContext, name: str) -> HostLoad:
        policy.enforce(ctx, "host:get")
        with self.db() as s:
            return self._load(s, name)

    def find(self, ctx: RequestContext, ident: str, id_of: Callable[[str], str], what: str) -> HostLoad:
        """The host whose derived id (`domain.hosts.service_id`, `hypervisor_id`) is `ident`."""
        found = next((h for h in self.list_hosts(ctx) if id_of(h.name) == ident), None)
        if found is None:
            raise NotFound(f"{what} {ident} could not be found.")
        return found

    def reaching(self, ctx: RequestContext) -> list[tuple[BackendConfig, HostLoad]]:
        """Each configured backend with each registered host that reaches it (Cinder's volume
        services: one per backend and host)."""
        hosts = self.list_hosts(ctx)
        return [(b, h) for b in self.backends for h in hosts if reaches(b, h.name)]

    def disable(self, ctx: RequestContext, name: str, reason: str | None = None) -> HostLoad:
        """Take a host out of scheduling (its servers keep running)."""
        if reason is not None and len(reason) > MAX_REASON:
            raise BadRequest(f"A disabled reason is at most {MAX_REASON} characters.")
        return self._set_enabled(ctx, name, False, reason or None)

    def enable(self, ctx: RequestContext, name: str) -> HostLoad:
        return self._set_enabled(ctx, name, True, None)

    def _set_enabled(self, ctx: RequestContext, name: str, enabled: bool, reason: str | None) -> HostLoad:
        policy.enforce(ctx, "host:manage")
        with self.db.begin() as s:
            self._load(s, name)
            s.execute(update(Host).where(Host.name == name).values(enabled=enabled, disabled_reason=reason))
            return self._load(s, name)

    # -- scheduling and reachability -------------------------------------------------------
    def choose_host(self, s: Session, flavor: Flavor, requested: str | None = None) -> str:
        """The host a new server of `flavor` goes to (in the caller's transaction, which inserts
        the server: on PostgreSQL the hosts stay locked until then, so two creates never both
        take a host's last vCPU)."""
        self._beat_local_if_due()
        decision = place(self.loads(s, lock=True), Need(flavor.vcpus, flavor.ram_mb), requested)
        if isinstance(decision, Placed):
            return decision.host
        raise BadRequest(decision.why)

    def host_of_server(self, server_id: str) -> str:
        with self.db() as s:
            host = s.scalar(select(Server.host).where(Server.id == server_id))
        if host is None:
            raise NotFound(f"Server {server_id} could not be found.")
        return host

    def is_up(self, name: str) -> bool:
        """Whether `name`'s agent beat within `service_down_time` (asked before every remote
        call and while one waits: one indexed row)."""
        with self.db() as s:
            beat = s.scalar(select(Host.heartbeat_at).where(Host.name == name))
        return state_of(beat, self.clock(), self.config.service_down_time) is HostState.UP

    def up_hosts_reaching(self, backend: BackendConfig) -> list[str]:
        now = self.clock()
        with self.db() as s:
            rows = s.execute(select(Host.name, Host.heartbeat_at).order_by(Host.name)).all()
        down_after = self.config.service_down_time
        return [
            n for n, beat in rows if reaches(backend, n) and state_of(beat, now, down_after) is HostState.UP
        ]

    def hosts_reaching(self, backend: BackendConfig) -> list[str]:
        """The registered hosts from which `backend` is reachable."""
        with self.db() as s:
            return [n for n in s.scalars(select(Host.name).order_by(Host.name)) if reaches(backend, n)]

    def sees_server_host(self, ctx: RequestContext) -> bool:
        """Whether the caller sees where servers run (Nova's extended server attributes)."""
        return policy.allowed(ctx, "server:extended_attributes")

    # -- reading ---------------------------------------------------------------------------
    def loads(self, s: Session, lock: bool = False) -> list[HostLoad]:
        """Every host with its servers' use of it, and its state now."""
        stmt = select(Host).order_by(Host.name)
        hosts = list(s.scalars(stmt.with_for_update() if lock else stmt))
        use = {
            name: (int(vcpus or 0), int(ram or 0), int(count))
            for name, vcpus, ram, count in s.execute(
                select(Server.host, func.sum(Flavor.vcpus), func.sum(Flavor.ram_mb), func.count(Server.id))
                .join(Flavor, Flavor.id == Server.flavor_id)
                .group_by(Server.host)
            )
        }
        now = self.clock()
        return [self._as_load(h, use.get(h.name, (0, 0, 0)), now) for h in hosts]

    def _load(self, s: Session, name: str) -> HostLoad:
        found = next((h for h in self.loads(s) if h.name == name), None)
        if found is None:
            raise NotFound(f"Host {name} could not be found.")
        return found

    def _as_load(self, h: Host, use: tuple[int, int, int], now: datetime) -> HostLoad:
        return HostLoad(
            name=h.name,
            address=h.address,
            enabled=h.enabled,
            disabled_reason=h.disabled_reason,
            state=state_of(h.heartbeat_at, now, self.config.service_down_time),
            vcpus=h.vcpus,
            ram_mb=h.ram_mb,
            vcpus_used=use[0],
            ram_mb_used=use[1],
            servers=use[2],
            heartbeat_at=h.heartbeat_at,
            started_at=h.started_at,
        )


def check_destination_reach(s: Session, volume_id: str, dest: BackendConfig) -> None:
    """Refuse to move an attached volume to a backend its server's host cannot reach."""
    attached = s.execute(
        select(Server.id, Server.host)
        .join(Attachment, Attachment.server_id == Server.id)
        .where(Attachment.volume_id == volume_id)
    ).first()
    if attached is not None:
        check_migration(dest, attached.host, attached.id, volume_id)
