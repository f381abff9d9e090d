"""Live migration for the fake hypervisor: a fleet of fake hosts (`on_host`) whose servers move
from one to another as QEMU's do, stepped by a test (`hold_live`, `release_live`).

A destination is prepared in `inmigrate` and listens on a fake URI; the source goes `active`,
then (unless held) `pre-switchover`; `continue_live` completes it: the source is `postmigrate`,
the destination `running` on the same disks. A cancel, or a destination that dies, leaves the
source running. Does not move data.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from ferry.domain.errors import Conflict, DriverError, NotFound
from ferry.domain.live import DiskSlot, LiveProgress, LiveSettings, LiveState

if TYPE_CHECKING:
    from ferry.drivers.hypervisor.fake import FakeHypervisorDriver


@dataclass
class Fleet:
    """The fake hosts of one test, by name, and the destinations listening on them."""

    hosts: dict[str, FakeHypervisorDriver] = field(default_factory=dict)
    listening: dict[str, tuple[FakeHypervisorDriver, str]] = field(default_factory=dict)
    """URI -> (destination host, server id)."""


@dataclass
class FakeLive:
    """A server's side of a live migration."""

    progress: LiveProgress
    uri: str | None = None
    settings: LiveSettings = field(default_factory=LiveSettings)


def slots_of(fake: FakeHypervisorDriver, server_id: str) -> tuple[DiskSlot, ...]:
    server = fake._running(server_id)
    return tuple(DiskSlot(vid, f"rp{k}") for k, vid in enumerate(server.disks))


def prepare(fake: FakeHypervisorDriver, server_id: str, address: str) -> str:
    uri = f"fake:{address}:{server_id}"
    fake.fleet.listening[uri] = (fake, server_id)
    return uri


def start(fake: FakeHypervisorDriver, server_id: str, uri: str, settings: LiveSettings) -> None:
    server = fake._running(server_id)
    if server.live is not None and not server.live.progress.state.ended:
        return  # under way
    if uri not in fake.fleet.listening:
        raise DriverError(f"live migration of {server_id} to {uri}: connection refused")
    state = LiveState.ACTIVE if fake.live_hold else LiveState.PRE_SWITCHOVER
    server.live = FakeLive(LiveProgress(state, memory_total=server.spec.ram_mb << 20), uri, settings)
    fake._notify()


def release(fake: FakeHypervisorDriver, server_id: str) -> None:
    """The RAM is across: the source pauses before its switchover."""
    live = _live(fake, server_id)
    if live.progress.state is LiveState.ACTIVE:
        done = live.progress.memory_total
        live.progress = replace(live.progress, state=LiveState.PRE_SWITCHOVER, memory_processed=done)
    fake._notify()


def switch_over(fake: FakeHypervisorDriver, server_id: str) -> None:
    live = _live(fake, server_id)
    if live.progress.state is not LiveState.PRE_SWITCHOVER:
        return
    assert live.uri is not None
    dest, dest_id = fake.fleet.listening.pop(live.uri, (None, ""))
    if dest is None or not dest._server(dest_id).running:
        live.progress = replace(live.progress, state=LiveState.FAILED, error="destination gone")
        fake._notify()
        return
    dest._server(dest_id).run_state = "running"
    source = fake._server(server_id)
    source.run_state = "postmigrate"
    live.progress = replace(live.progress, state=LiveState.COMPLETED, memory_remaining=0, downtime_ms=1)
    fake._notify()
    dest._notify()


def cancel(fake: FakeHypervisorDriver, server_id: str) -> None:
    live = _live(fake, server_id)
    if live.progress.state.ended:
        return
    live.progress = replace(live.progress, state=LiveState.CANCELLED)
    if live.uri is not None:  # QEMU's destination exits when its incoming stream breaks
        dest, dest_id = fake.fleet.listening.pop(live.uri, (None, ""))
        if dest is not None:
            dest.crash(dest_id)
    fake._notify()


def _live(fake: FakeHypervisorDriver, server_id: str) -> FakeLive:
    live = fake._running(server_id).live
    if live is None:
        raise NotFound(f"server {server_id} is not migrating")
    return live


def check_incoming(fake: FakeHypervisorDriver, server_id: str) -> None:
    server = fake.servers.get(server_id)
    if server is not None and server.running and server.run_state != "inmigrate":
        raise Conflict(f"server {server_id} already runs on this host")
