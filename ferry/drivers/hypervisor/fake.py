"""An in-memory HypervisorDriver for unit tests of the services (cf. nova/virt/fake.py).

Owns: fake servers with disks (serial, file chain) and mirror jobs that a test steps by hand
(`set_progress`, `make_ready`, `make_synced`, `conclude`), a server crash (`crash`),
failure injection (`fail_next`), and a serial console a test can print on (`write_console`; a
spawn prints `BOOT_LINE`). Does not move data: a pivot just puts the disk on the target
files; a live extend grows an existing active file as QEMU's block_resize would. Same contract
as the QEMU driver: NotFound for unknown servers, disks and jobs, Conflict when no slot is free,
DriverError on timeout or when the server dies.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path

from ferry.domain.errors import BadRequest, Conflict, DriverError, FerryError, NotFound
from ferry.domain.live import DiskSlot, LiveProgress, LiveSettings, LiveState
from ferry.domain.migration.convergence import MirrorCondition
from ferry.domain.model import DiskChain, LayerFile
from ferry.drivers.hypervisor import fake_live
from ferry.drivers.hypervisor.base import DiskInfo, HypervisorDriver, JobStatus, MirrorStatus, ServerSpec
from ferry.drivers.hypervisor.console import MAX_TAIL, chunk_bounds, last_lines
from ferry.drivers.hypervisor.fake_live import Fleet
from ferry.drivers.storage.qemu_img import QemuImg

FINISHED = (JobStatus.CONCLUDED, JobStatus.NULL)
BOOT_LINE = "FAKE-BOOT"
"""What a fake server prints on its console when it is spawned (followed by its id)."""


@dataclass
class FakeJob:
    volume_id: str
    target: DiskChain
    sync_top: bool
    speed: int
    status: MirrorStatus

    @property
    def target_files(self) -> tuple[str, ...]:
        return tuple(layer.path for layer in reversed(self.target.layers))


@dataclass
class FakeServer:
    spec: ServerSpec
    running: bool = True
    disks: dict[str, DiskChain] = field(default_factory=dict)
    limits: dict[str, dict[str, int]] = field(default_factory=dict)
    """Each disk's throttle (`set_disk_limits`), by volume id."""
    serials: dict[str, str] = field(default_factory=dict)
    jobs: dict[str, FakeJob] = field(default_factory=dict)
    opened_targets: dict[str, tuple[str, ...]] = field(default_factory=dict)
    console: bytearray = field(default_factory=bytearray)
    """The serial console log: a fresh one on every spawn, as QEMU truncates its log file."""
    run_state: str = "running"
    live: fake_live.FakeLive | None = None
    sizes: dict[str, int] = field(default_factory=dict)
    """Disk sizes a live extend set, by volume id (a disk never extended reports none)."""


class FakeHypervisorDriver(HypervisorDriver):
    def __init__(
        self, slots: int = 8, disk_bytes: int = 64 << 20, host: str = "ferry", fleet: Fleet | None = None
    ) -> None:
        self.host = host
        self.fleet = fleet or Fleet()
        self.fleet.hosts.setdefault(host, self)
        self.live_hold = False
        """Hold every live migration this host sends in `active` until `release_live`."""
        self.slots = slots
        self.disk_bytes = disk_bytes
        self.servers: dict[str, FakeServer] = {}
        self.calls: list[tuple[str, ...]] = []
        """Every driver call as (method, server_id, ...), for tests that check the order."""
        self._faults: dict[str, list[FerryError]] = defaultdict(list)
        self._waiters: set[asyncio.Event] = set()

    # -- test hooks ----------------------------------------------------------------------
    def fail_next(self, method: str, error: FerryError) -> None:
        """Make the next call of `method` raise `error` (before doing anything)."""
        self._faults[method].append(error)

    def set_progress(self, server_id: str, job_id: str, offset: int) -> None:
        self._update(server_id, job_id, offset=offset)

    def make_ready(self, server_id: str, job_id: str) -> None:
        job = self._job(server_id, job_id)
        self._update(server_id, job_id, status=JobStatus.READY, ready=True, offset=job.status.length)

    def make_synced(self, server_id: str, job_id: str) -> None:
        """Write-blocking mode caught up: actively-synced (QEMU sends no event for it)."""
        self._update(server_id, job_id, actively_synced=True)

    def conclude(self, server_id: str, job_id: str, error: str | None = None) -> None:
        """The job ends on its own (e.g. an I/O error on the target)."""
        self._update(server_id, job_id, status=JobStatus.CONCLUDED, error=error)

    def set_target_chain(self, server_id: str, job_id: str, files: tuple[str, ...]) -> None:
        """What QEMU reports as the target's chain, e.g. only the top: opened without backing."""
        self._server(server_id).opened_targets[job_id] = files

    def set_serial(self, server_id: str, volume_id: str, serial: str) -> None:
        self._server(server_id).serials[volume_id] = serial

    def write_console(self, server_id: str, text: str) -> None:
        """The guest prints `text` on its serial console."""
        self._server(server_id).console += text.encode()

    def crash(self, server_id: str) -> None:
        """The QEMU process dies: disks and jobs are gone, waiters get DriverError."""
        server = self._server(server_id)
        server.running = False
        server.disks.clear()
        server.jobs.clear()
        self._notify()

    # -- life cycle ----------------------------------------------------------------------
    async def spawn(self, spec: ServerSpec) -> None:
        self._enter("spawn", spec.server_id)
        server = self.servers.get(spec.server_id)
        if server is not None and server.running:
            return
        if len(spec.disks) > self.slots:
            raise Conflict(f"server {spec.server_id}: {len(spec.disks)} disks but {self.slots} slots")
        self.servers[spec.server_id] = FakeServer(spec, disks={d.volume_id: d for d in spec.disks})
        self.write_console(spec.server_id, f"{BOOT_LINE} {spec.server_id}\n")

    async def reconnect(self, server_id: str) -> bool:
        self._enter("reconnect", server_id)
        server = self.servers.get(server_id)
        return server is not None and server.running

    async def is_running(self, server_id: str) -> bool:
        server = self.servers.get(server_id)
        return server is not None and server.running

    async def stop(self, server_id: str) -> None:
        self._enter("stop", server_id)
        if server_id in self.servers:
            self.crash(server_id)

    async def destroy(self, server_id: str) -> None:
        self._enter("destroy", server_id)
        if server_id in self.servers:
            self.crash(server_id)
            del self.servers[server_id]

    async def console_output(self, server_id: str, length: int | None = None) -> str:
        console = self._server(server_id).console
        tail = console[-MAX_TAIL:]
        return last_lines(bytes(tail), length, partial=len(tail) < len(console))

    async def console_read(self, server_id: str, offset: int, limit: int = 65536) -> tuple[bytes, int]:
        limit = chunk_bounds(offset, limit)
        console = self._server(server_id).console
        if offset > len(console):
            offset = 0
        data = bytes(console[offset : offset + limit])
        return data, offset + len(data)

    async def close(self) -> None:
        self._enter("close")

    # -- disks ---------------------------------------------------------------------------
    async def set_disk_limits(self, server_id: str, volume_id: str, limits: dict[str, int]) -> None:
        self._enter("set_disk_limits", server_id, volume_id)
        self._disk(server_id, volume_id)
        self._running(server_id).limits[volume_id] = dict(limits)

    async def attach_disk(self, server_id: str, chain: DiskChain) -> None:
        self._enter("attach_disk", server_id, chain.volume_id)
        server = self._running(server_id)
        current = server.disks.get(chain.volume_id)
        if current is not None:
            if current.active != chain.active:
                raise Conflict(f"volume {chain.volume_id} is already attached with other files")
            return
        if len(server.disks) >= self.slots:
            raise Conflict(
                f"server {server_id} has no free hotplug slot ({self.slots} root ports, all in use)"
            )
        server.disks[chain.volume_id] = chain

    async def detach_disk(self, server_id: str, volume_id: str) -> None:
        self._enter("detach_disk", server_id, volume_id)
        self._running(server_id).disks.pop(volume_id, None)
        self._running(server_id).limits.pop(volume_id, None)

    async def disks(self, server_id: str) -> list[DiskInfo]:
        server = self._running(server_id)
        return [
            DiskInfo(v, server.serials.get(v, v), _files(c), server.sizes.get(v))
            for v, c in server.disks.items()
        ]

    async def serial(self, server_id: str, volume_id: str) -> str:
        self._disk(server_id, volume_id)
        return self._server(server_id).serials.get(volume_id, volume_id)

    async def snapshot_disk(self, server_id: str, volume_id: str, new_active: LayerFile) -> None:
        self._enter("snapshot_disk", server_id, volume_id, new_active.path)
        chain = self._disk(server_id, volume_id)
        if chain.active != new_active:
            self._server(server_id).disks[volume_id] = replace(chain, layers=(*chain.layers, new_active))

    async def merge_layer(self, server_id: str, volume_id: str, layer: LayerFile) -> None:
        self._enter("merge_layer", server_id, volume_id, layer.path)
        chain = self._disk(server_id, volume_id)
        if chain.active == layer:
            raise DriverError(f"{layer.path} is the active layer; only a snapshot layer can be merged")
        layers = tuple(x for x in chain.layers if x != layer)
        self._server(server_id).disks[volume_id] = replace(chain, layers=layers)

    async def extend_volume(self, server_id: str, volume_id: str, new_size: int) -> None:
        self._enter("extend_volume", server_id, volume_id, str(new_size))
        active = self._disk(server_id, volume_id).active
        sizes = self._server(server_id).sizes
        if new_size < sizes.get(volume_id, 0):
            raise BadRequest(f"volume {volume_id}: cannot shrink the disk to {new_size} bytes")
        path = Path(active.path)
        if path.is_file() and (await QemuImg().info(path, active.format)).virtual_size < new_size:
            # What QEMU's block_resize does to the image it has open (no QEMU has it open here).
            await QemuImg().resize(path, active.format, new_size)
        sizes[volume_id] = new_size

    # -- mirror --------------------------------------------------------------------------
    async def start_mirror(
        self, server_id: str, volume_id: str, job_id: str, target: DiskChain, *, sync_top: bool, speed: int
    ) -> None:
        self._enter("start_mirror", server_id, volume_id, job_id)
        self._disk(server_id, volume_id)
        server = self._server(server_id)
        if job_id not in server.jobs:
            status = MirrorStatus(job_id, JobStatus.RUNNING, 0, self.disk_bytes, False, False, False)
            server.jobs[job_id] = FakeJob(volume_id, target, sync_top, speed, status)

    async def mirror_status(self, server_id: str, job_id: str) -> MirrorStatus | None:
        self._enter("mirror_status", server_id, job_id)
        job = self._running(server_id).jobs.get(job_id)
        return None if job is None else job.status

    async def wait_mirror(
        self, server_id: str, job_id: str, until: MirrorCondition, timeout: float
    ) -> MirrorStatus:
        self._enter("wait_mirror", server_id, job_id)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if not await self.is_running(server_id):
                raise DriverError(f"server {server_id} died while waiting for mirror job {job_id}")
            status = self._job(server_id, job_id).status
            if status.status in FINISHED or status.satisfies(until):
                return status
            if not await self._changed(deadline - loop.time()):
                raise DriverError(f"timed out after {timeout:g} s waiting for mirror job {job_id}")

    async def set_mirror_speed(self, server_id: str, job_id: str, speed: int) -> None:
        self._enter("set_mirror_speed", server_id, job_id, str(speed))
        self._job(server_id, job_id).speed = speed

    async def set_write_blocking(self, server_id: str, job_id: str) -> None:
        self._enter("set_write_blocking", server_id, job_id)
        self._update(server_id, job_id, write_blocking=True)

    async def target_chain(self, server_id: str, job_id: str) -> tuple[str, ...]:
        job = self._job(server_id, job_id)
        return self._server(server_id).opened_targets.get(job_id, job.target_files)

    async def pivot(self, server_id: str, job_id: str) -> None:
        self._enter("pivot", server_id, job_id)
        server = self._running(server_id)
        job = self._job(server_id, job_id)
        if job.status.status not in (*FINISHED, JobStatus.READY):
            raise DriverError(f"mirror job {job_id} is {job.status.status}, not ready: cannot complete")
        del server.jobs[job_id]
        if job.status.error:
            raise DriverError(f"mirror job {job_id} concluded with an error: {job.status.error}")
        server.disks[job.volume_id] = job.target

    async def cancel_mirror(self, server_id: str, job_id: str, target: DiskChain) -> None:
        self._enter("cancel_mirror", server_id, job_id)
        self._running(server_id).jobs.pop(job_id, None)
        self._notify()

    async def drop_files(self, server_id: str, files: tuple[LayerFile, ...]) -> None:
        self._enter("drop_files", server_id, *(f.path for f in files))
        self._running(server_id)

    # -- live migration (fake_live.py) ---------------------------------------------------
    def on_host(self, host: str) -> FakeHypervisorDriver:
        if host not in self.fleet.hosts:
            FakeHypervisorDriver(self.slots, self.disk_bytes, host, self.fleet)
        return self.fleet.hosts[host]

    def release_live(self, server_id: str) -> None:
        fake_live.release(self, server_id)

    async def disk_slots(self, server_id: str) -> tuple[DiskSlot, ...]:
        self._enter("disk_slots", server_id)
        return fake_live.slots_of(self, server_id)

    async def prepare_incoming(self, spec: ServerSpec, slots: tuple[DiskSlot, ...], address: str) -> str:
        self._enter("prepare_incoming", spec.server_id)
        fake_live.check_incoming(self, spec.server_id)
        if spec.server_id not in self.servers or not self.servers[spec.server_id].running:
            disks = {d.volume_id: d for d in spec.disks}
            self.servers[spec.server_id] = FakeServer(spec, disks=disks, run_state="inmigrate")
        return fake_live.prepare(self, spec.server_id, address)

    async def start_live_migration(self, server_id: str, uri: str, settings: LiveSettings) -> None:
        self._enter("start_live_migration", server_id)
        fake_live.start(self, server_id, uri, settings)

    async def live_progress(self, server_id: str) -> LiveProgress:
        self._enter("live_progress", server_id)
        live = self._running(server_id).live
        return live.progress if live is not None else LiveProgress(LiveState.NONE)

    async def wait_live(self, server_id: str, until: tuple[LiveState, ...], timeout: float) -> LiveProgress:
        self._enter("wait_live", server_id)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            now = await self.live_progress(server_id)
            if now.state in until or now.state.ended:
                return now
            if not await self._changed(deadline - loop.time()):
                return now

    async def set_live_limits(self, server_id: str, settings: LiveSettings) -> None:
        self._enter("set_live_limits", server_id)
        live = self._running(server_id).live
        if live is not None:
            live.settings = settings

    async def continue_live(self, server_id: str) -> None:
        self._enter("continue_live", server_id)
        fake_live.switch_over(self, server_id)

    async def force_live(self, server_id: str) -> None:
        self._enter("force_live", server_id)
        fake_live.release(self, server_id)

    async def cancel_live(self, server_id: str) -> None:
        self._enter("cancel_live", server_id)
        fake_live.cancel(self, server_id)

    async def resume_guest(self, server_id: str) -> None:
        self._enter("resume_guest", server_id)
        self._running(server_id).run_state = "running"

    async def run_state(self, server_id: str) -> str | None:
        server = self.servers.get(server_id)
        return server.run_state if server is not None and server.running else None

    # -- internals -----------------------------------------------------------------------
    def _enter(self, method: str, *args: str) -> None:
        self.calls.append((method, *args))
        if self._faults[method]:
            raise self._faults[method].pop(0)

    def _server(self, server_id: str) -> FakeServer:
        try:
            return self.servers[server_id]
        except KeyError:
            raise NotFound(f"server {server_id} does not exist") from None

    def _running(self, server_id: str) -> FakeServer:
        server = self._server(server_id)
        if not server.running:
            raise NotFound(f"server {server_id} is not running")
        return server

    def _disk(self, server_id: str, volume_id: str) -> DiskChain:
        chain = self._running(server_id).disks.get(volume_id)
        if chain is None:
            raise NotFound(f"volume {volume_id} is not attached")
        return chain

    def _job(self, server_id: str, job_id: str) -> FakeJob:
        job = self._running(server_id).jobs.get(job_id)
        if job is None:
            raise NotFound(f"server {server_id} has no mirror job {job_id}")
        return job

    def _update(self, server_id: str, job_id: str, **changes: object) -> None:
        job = self._job(server_id, job_id)
        job.status = replace(job.status, **changes)  # type: ignore[arg-type]
        self._notify()

    def _notify(self) -> None:
        for waiter in self._waiters:
            waiter.set()

    async def _changed(self, timeout: float) -> bool:
        """Wait until a hook changes something (True) or `timeout` passes (False)."""
        waiter = asyncio.Event()
        self._waiters.add(waiter)
        try:
            await asyncio.wait_for(waiter.wait(), max(timeout, 0.0))
            return True
        except TimeoutError:
            return False
        finally:
            self._waiters.discard(waiter)


def _files(chain: DiskChain) -> tuple[str, ...]:
    return tuple(layer.path for layer in reversed(chain.layers))
