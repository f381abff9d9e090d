"""The drivers of each process role (DESIGN §9).

- `all`: the embedded default, `ferry serve`: local QEMU and file drivers, one host (its own).
- `api`: the stateless API tier, `ferry serve --role api`: no driver of its own. Every driver
  call is an action on the PostgreSQL host queue, addressed to the agent of the host that runs
  the server (hypervisor) or of an up host that reaches the backend (storage).
- `agent`: `ferry agent --host NAME`: local QEMU (its own run directory) and the file drivers of
  the backends its host reaches, performing the actions addressed to that host.

This module only assembles; where a call goes is the host registry's answer, what it does is
the drivers'.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from sqlalchemy import Engine

from ferry.config import Config
from ferry.coordination.hypervisor import RemoteHypervisor
from ferry.coordination.postgres import PostgresQueue
from ferry.coordination.queue import HostQueue
from ferry.coordination.storage import RemoteStorage
from ferry.domain.errors import BadRequest, HostDown
from ferry.domain.hosts import reaches
from ferry.domain.model import BackendConfig
from ferry.drivers.hypervisor.base import HypervisorDriver
from ferry.drivers.storage.base import StorageDriver
from ferry.drivers.storage.file import FileStorageDriver
from ferry.services.hosts import HostRegistry


class ProcessRole(StrEnum):
    ALL = "all"
    API = "api"
    AGENT = "agent"


@dataclass(frozen=True)
class AgentHost:
    """Who an agent is: its host's name, the address its QEMUs bind, its run directory."""

    name: str
    address: str
    run_dir: Path


@dataclass
class Drivers:
    hypervisor: HypervisorDriver
    storage: dict[str, StorageDriver]
    queue: HostQueue | None = None
    """The host queue the remote drivers send through (the API tier's), closed with them."""


def require_postgresql(config: Config, role: ProcessRole) -> None:
    if not config.database_url.startswith("postgresql"):
        raise BadRequest(
            f'--role {role.value} needs PostgreSQL (database_url = "postgresql+psycopg2://…"): the '
            "hosts coordinate through it; the embedded SQLite default serves one host (`ferry serve`)."
        )


def local_drivers(
    config: Config, agent: AgentHost | None = None, hypervisor: HypervisorDriver | None = None
) -> Drivers:
    """QEMU (or `hypervisor`, a test's) and file drivers on this machine: every backend for the
    all-in-one, the reachable ones for an agent."""
    from ferry.drivers.hypervisor.qemu import QemuDriver, servers_root

    backends = config.backends
    if agent is not None:
        backends = tuple(b for b in backends if reaches(b, agent.name))
    storage: dict[str, StorageDriver] = {b.name: FileStorageDriver(b) for b in backends}
    if hypervisor is not None:
        return Drivers(hypervisor, storage)
    h = config.hypervisor
    if h.driver == "fake":
        from ferry.drivers.hypervisor.fake import FakeHypervisorDriver

        return Drivers(FakeHypervisorDriver(), storage)
    root = servers_root(agent.run_dir if agent is not None else config.run_dir)
    try:
        hv = QemuDriver(root, qemu_binary=h.qemu, accel=h.accel, root_ports=h.root_ports)
    except ValueError as e:  # a run dir too deep for a unix socket path
        raise BadRequest(str(e)) from None
    return Drivers(hv, storage)


def remote_drivers(config: Config, engine: Engine, hosts: HostRegistry) -> Drivers:
    """The API tier's drivers: proxies over the PostgreSQL queue, to hosts that are up."""
    queue = PostgresQueue(engine, reachable=hosts.is_up)

    async def host_of(server_id: str) -> str:
        return hosts.host_of_server(server_id)

    storage: dict[str, StorageDriver] = {
        b.name: RemoteStorage(queue, b, BackendHosts(hosts, b)) for b in config.backends
    }
    return Drivers(RemoteHypervisor(queue, host_of), storage, queue)


class BackendHosts:
    """Picks, call after call, the next up host that reaches one backend: a shared backend's
    copies spread over its hosts."""

    def __init__(self, hosts: HostRegistry, backend: BackendConfig) -> None:
        self.hosts = hosts
        self.backend = backend
        self._turn = itertools.count()

    async def __call__(self) -> str:
        up = self.hosts.up_hosts_reaching(self.backend)
        if not up:
            raise HostDown(f"backend {self.backend.name}: no host that reaches it is up")
        return up[next(self._turn) % len(up)]
