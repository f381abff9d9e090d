"""Hypervisor hosts as the scheduler sees them: liveness from the age of a heartbeat, where a new
server goes, and which backends a host reaches. Pure: facts in, decisions out (no I/O, no clock:
the caller says what time it is).

A host is `up` while its last heartbeat is at most `service_down_time` old (Nova's rule and
default, 60 s). A server goes to an `up`, enabled host with the flavor's vCPUs and RAM free (a
host's capacity minus the flavors of the servers it holds, running or not, as Nova counts them);
among those, the one with the most free RAM (then vCPUs, then name: deterministic), which spreads
servers as Nova's default RAM weigher does. An admin may name the host; the rule then only checks
that one and says why it refuses.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from ferry.domain.errors import BadRequest
from ferry.domain.model import BackendConfig

SERVICE_DOWN_TIME_S = 60.0
"""Nova's `service_down_time` default."""
_IDS = uuid.UUID("6c1f5f8e-3b0a-4c55-9a43-2f4f0d1e7a10")


class HostState(StrEnum):
    UP = "up"
    DOWN = "down"


def state_of(heartbeat_at: datetime | None, now: datetime, down_after_s: float) -> HostState:
    """`up` while the last heartbeat is at most `down_after_s` old (a host that never beat is down)."""
    if heartbeat_at is None or (now - heartbeat_at).total_seconds() > down_after_s:
        return HostState.DOWN
    return HostState.UP


def service_id(host: str) -> str:
    """The id of a host's `nova-compute` service: stable, derived from its name (Nova ≥ 2.53 uses
    UUIDs too), so nothing has to store it."""
    return str(uuid.uuid5(_IDS, f"nova-compute@{host}"))


def hypervisor_id(host: str) -> str:
    return str(uuid.uuid5(_IDS, f"hypervisor@{host}"))


@dataclass(frozen=True)
class HostLoad:
    """A host now: what it offers, what its servers take, and whether it is up and enabled."""

    name: str
    address: str
    enabled: bool
    disabled_reason: str | None
    state: HostState
    vcpus: int
    ram_mb: int
    vcpus_used: int = 0
    ram_mb_used: int = 0
    servers: int = 0
    heartbeat_at: datetime | None = None
    started_at: datetime | None = None

    @property
    def free_vcpus(self) -> int:
        return self.vcpus - self.vcpus_used

    @property
    def free_ram_mb(self) -> int:
        return self.ram_mb - self.ram_mb_used

    def fits(self, need: Need) -> bool:
        return self.free_vcpus >= need.vcpus and self.free_ram_mb >= need.ram_mb


@dataclass(frozen=True)
class Need:
    """What a server asks of its host (its flavor's vCPUs and RAM)."""

    vcpus: int
    ram_mb: int

    def __str__(self) -> str:
        return f"{self.vcpus} vCPUs and {self.ram_mb} MB of RAM"


@dataclass(frozen=True)
class Placed:
    host: str


@dataclass(frozen=True)
class Refused:
    why: str


Placement = Placed | Refused


def place(hosts: Sequence[HostLoad], need: Need, requested: str | None = None) -> Placement:
    """Where a new server with `need` goes: on `requested` if given and able, else the best host."""
    if requested is not None:
        match = next((h for h in hosts if h.name == requested), None)
        if match is None:
            return Refused(f"Compute host {requested} could not be found.")
        why = _unable(match, need)
        return Refused(f"Host {requested} cannot take the server: {why}.") if why else Placed(requested)
    able = [h for h in hosts if _unable(h, need) is None]
    if able:
        return Placed(max(able, key=lambda h: (h.free_ram_mb, h.free_vcpus, h.name)).name)
    return Refused(f"No valid host was found for {need}: {_census(hosts, need)}.")


def _unable(host: HostLoad, need: Need) -> str | None:
    """Why `host` may not take a server with `need`, or None."""
    if not host.enabled:
        return f"it is disabled ({host.disabled_reason or 'no reason given'})"
    if host.state is not HostState.UP:
        return "it is down (no heartbeat within service_down_time)"
    if not host.fits(need):
        return (
            f"it has {host.free_vcpus} vCPUs and {host.free_ram_mb} MB of RAM free, the flavor needs {need}"
        )
    return None


def _census(hosts: Sequence[HostLoad], need: Need) -> str:
    if not hosts:
        return "no host has registered"
    disabled = sum(1 for h in hosts if not h.enabled)
    down = sum(1 for h in hosts if h.enabled and h.state is not HostState.UP)
    full = len(hosts) - disabled - down
    return f"of {len(hosts)} hosts, {disabled} disabled, {down} down, {full} without that much free"


# -- reachability ------------------------------------------------------------------------------
def reaches(backend: BackendConfig, host: str) -> bool:
    """A shared backend (a filesystem every host mounts) is reachable everywhere; another only
    from the hosts it lists."""
    return backend.shared or host in backend.hosts


def where_reachable(backend: BackendConfig) -> str:
    return "every host (shared)" if backend.shared else ", ".join(backend.hosts) or "no host"


def check_attach(backend: BackendConfig, host: str, server_id: str, volume_id: str) -> None:
    """Refuse to attach a volume of `backend` to a server on a host that cannot reach it."""
    if not reaches(backend, host):
        raise BadRequest(
            f"Volume {volume_id} is on backend {backend.name!r}, which host {host!r} of server "
            f"{server_id} cannot reach (reachable from: {where_reachable(backend)})."
        )


def check_migration(backend: BackendConfig, host: str, server_id: str, volume_id: str) -> None:
    """Refuse to move an attached volume to a backend its server's host cannot reach."""
    if not reaches(backend, host):
        raise BadRequest(
            f"Volume {volume_id} is attached to server {server_id} on host {host!r}, which cannot "
            f"reach backend {backend.name!r} (reachable from: {where_reachable(backend)})."
        )
