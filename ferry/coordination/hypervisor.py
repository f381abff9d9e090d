"""`RemoteHypervisor`: the hypervisor contract, each method a driver call sent to the agent of the
host that runs the server (`host_of(server_id)`, injected: the host registry decides).

Holds no state of its own and decides nothing; a failure on the agent is raised here as the
same error class. Timeouts: each call is bounded by `timeout`, the long ones (a pivot, a merge)
by `slow_timeout`, and `wait_mirror` by its own timeout plus `timeout`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from ferry.coordination.calls import DriverCall, Target
from ferry.coordination.queue import HostQueue
from ferry.domain.live import DiskSlot, LiveProgress, LiveSettings, LiveState
from ferry.domain.migration.convergence import MirrorCondition
from ferry.domain.model import DiskChain, LayerFile
from ferry.drivers.hypervisor.base import DiskInfo, HypervisorDriver, MirrorStatus, ServerSpec

HostOf = Callable[[str], Awaitable[str]]
"""Server id -> the name of the host that runs it."""


class RemoteHypervisor(HypervisorDriver):
    def __init__(
        self, queue: HostQueue, host_of: HostOf, *, timeout: float = 120.0, slow_timeout: float = 3900.0
    ) -> None:
        self.queue = queue
        self.host_of = host_of
        self.timeout = timeout
        self.slow_timeout = slow_timeout

    async def _call(
        self, method: str, server_id: str, *args: Any, timeout: float | None = None, **kw: Any
    ) -> Any:
        host = await self.host_of(server_id)
        call = DriverCall(Target.HYPERVISOR, None, method, (server_id, *args), kw)
        return await self.queue.call(host, call, timeout=timeout or self.timeout)

    # -- life cycle ----------------------------------------------------------------------
    async def spawn(self, spec: ServerSpec) -> None:
        host = await self.host_of(spec.server_id)
        call = DriverCall(Target.HYPERVISOR, None, "spawn", (spec,))
        await self.queue.call(host, call, timeout=self.timeout)

    async def reconnect(self, server_id: str) -> bool:
        return bool(await self._call("reconnect", server_id))

    async def is_running(self, server_id: str) -> bool:
        return bool(await self._call("is_running", server_id))

    async def stop(self, server_id: str) -> None:
        await self._call("stop", server_id)

    async def destroy(self, server_id: str) -> None:
        await self._call("destroy", server_id)

    async def console_output(self, server_id: str, length: int | None = None) -> str:
        out: str = await self._call("console_output", server_id, length)
        return out

    async def console_read(self, server_id: str, offset: int, limit: int = 65536) -> tuple[bytes, int]:
        data, after = await self._call("console_read", server_id, offset, limit)
        return data, after

    async def close(self) -> None:
        """Nothing to drop: the agents hold the QMP connections, the caller owns the queue."""

    # -- disks ---------------------------------------------------------------------------
    async def attach_disk(self, server_id: str, chain: DiskChain) -> None:
        await self._call("attach_disk", server_id, chain)

    async def detach_disk(self, server_id: str, volume_id: str) -> None:
        await self._call("detach_disk", server_id, volume_id)

    async def disks(self, server_id: str) -> list[DiskInfo]:
        out: list[DiskInfo] = await self._call("disks", server_id)
        return out

    async def set_disk_limits(self, server_id: str, volume_id: str, limits: dict[str, int]) -> None:
        await self._call("set_disk_limits", server_id, volume_id, limits)

    async def snapshot_disk(self, server_id: str, volume_id: str, new_active: LayerFile) -> None:
        await self._call("snapshot_disk", server_id, volume_id, new_active)

    async def merge_layer(self, server_id: str, volume_id: str, layer: LayerFile) -> None:
        await self._call("merge_layer", server_id, volume_id, layer, timeout=self.slow_timeout)

    async def extend_volume(self, server_id: str, volume_id: str, new_size: int) -> None:
        await self._call("extend_volume", server_id, volume_id, new_size)

    # -- mirror --------------------------------------------------------------------------
    async def start_mirror(
        self, server_id: str, volume_id: str, job_id: str, target: DiskChain, *, sync_top: bool, speed: int
    ) -> None:
        await self._call("start_mirror", server_id, volume_id, job_id, target, sync_top=sync_top, speed=speed)

    async def mirror_status(self, server_id: str, job_id: str) -> MirrorStatus | None:
        out: MirrorStatus | None = await self._call("mirror_status", server_id, job_id)
        return out

    async def wait_mirror(
        self, server_id: str, job_id: str, until: MirrorCondition, timeout: float
    ) -> MirrorStatus:
        bound = timeout + self.timeout  # the agent's own wait, and the way there and back
        out: MirrorStatus = await self._call("wait_mirror", server_id, job_id, until, timeout, timeout=bound)
        return out

    async def set_mirror_speed(self, server_id: str, job_id: str, speed: int) -> None:
        await self._call("set_mirror_speed", server_id, job_id, speed)

    async def set_write_blocking(self, server_id: str, job_id: str) -> None:
        await self._call("set_write_blocking", server_id, job_id)

    async def target_chain(self, server_id: str, job_id: str) -> tuple[str, ...]:
        out: tuple[str, ...] = await self._call("target_chain", server_id, job_id)
        return out

    async def pivot(self, server_id: str, job_id: str) -> None:
        await self._call("pivot", server_id, job_id, timeout=self.slow_timeout)

    async def cancel_mirror(self, server_id: str, job_id: str, target: DiskChain) -> None:
        await self._call("cancel_mirror", server_id, job_id, target)

    async def drop_files(self, server_id: str, files: tuple[LayerFile, ...]) -> None:
        await self._call("drop_files", server_id, files)

    async def serial(self, server_id: str, volume_id: str) -> str:
        out: str = await self._call("serial", server_id, volume_id)
        return out

    # -- live migration ------------------------------------------------------------------
    def on_host(self, host: str) -> RemoteHypervisor:
        async def there(_: str) -> str:
            return host

        return RemoteHypervisor(self.queue, there, timeout=self.timeout, slow_timeout=self.slow_timeout)

    async def disk_slots(self, server_id: str) -> tuple[DiskSlot, ...]:
        out: tuple[DiskSlot, ...] = await self._call("disk_slots", server_id)
        return out

    async def prepare_incoming(self, spec: ServerSpec, slots: tuple[DiskSlot, ...], address: str) -> str:
        host = await self.host_of(spec.server_id)
        call = DriverCall(Target.HYPERVISOR, None, "prepare_incoming", (spec, slots, address))
        out: str = await self.queue.call(host, call, timeout=self.timeout)
        return out

    async def start_live_migration(self, server_id: str, uri: str, settings: LiveSettings) -> None:
        await self._call("start_live_migration", server_id, uri, settings)

    async def live_progress(self, server_id: str) -> LiveProgress:
        out: LiveProgress = await self._call("live_progress", server_id)
        return out

    async def wait_live(self, server_id: str, until: tuple[LiveState, ...], timeout: float) -> LiveProgress:
        bound = timeout + self.timeout  # the agent's own wait, and the way there and back
        out: LiveProgress = await self._call("wait_live", server_id, until, timeout, timeout=bound)
        return out

    async def set_live_limits(self, server_id: str, settings: LiveSettings) -> None:
        await self._call("set_live_limits", server_id, settings)

    async def continue_live(self, server_id: str) -> None:
        await self._call("continue_live", server_id)

    async def force_live(self, server_id: str) -> None:
        await self._call("force_live", server_id)

    async def cancel_live(self, server_id: str) -> None:
        await self._call("cancel_live", server_id)

    async def resume_guest(self, server_id: str) -> None:
        await self._call("resume_guest", server_id)

    async def run_state(self, server_id: str) -> str | None:
        out: str | None = await self._call("run_state", server_id)
        return out
