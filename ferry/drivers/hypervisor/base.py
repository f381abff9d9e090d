"""The contract between the compute/migration services and a hypervisor (cf. Nova virt/driver.py).

One QEMU process per server. Disks are keyed by volume id: the device id is `disk-<volume id>`
and its serial is the volume id. Methods raise `DriverError` (with the root cause) on failure and
`NotFound` for an unknown server or disk. Services never build QMP; drivers never decide policy.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from enum import StrEnum

from ferry.domain.live import DiskSlot, LiveProgress, LiveSettings, LiveState
from ferry.domain.migration.convergence import MirrorCondition
from ferry.domain.model import DiskChain, LayerFile


@dataclass(frozen=True)
class ServerSpec:
    server_id: str
    vcpus: int
    ram_mb: int
    kernel: str | None = None
    initrd: str | None = None
    cmdline: str = ""
    boot_disk: LayerFile | None = None
    disks: tuple[DiskChain, ...] = ()


@dataclass(frozen=True)
class DiskInfo:
    """One attached disk as the hypervisor reports it."""

    volume_id: str
    serial: str
    files: tuple[str, ...]
    """Image files of the device's chain, active first."""
    size: int | None = None
    """The disk's virtual size in bytes as the hypervisor has it open (None: not reported)."""


class JobStatus(StrEnum):
    CREATED = "created"
    RUNNING = "running"
    PAUSED = "paused"
    READY = "ready"
    STANDBY = "standby"
    WAITING = "waiting"
    PENDING = "pending"
    ABORTING = "aborting"
    CONCLUDED = "concluded"
    NULL = "null"


@dataclass(frozen=True)
class MirrorStatus:
    job_id: str
    status: JobStatus
    offset: int
    length: int
    ready: bool
    actively_synced: bool
    write_blocking: bool
    error: str | None = None

    def satisfies(self, condition: MirrorCondition) -> bool:
        return condition.holds(self.ready, self.actively_synced, self.write_blocking)


class HypervisorDriver(abc.ABC):
    # -- life cycle --------------------------------------------------------------------
    @abc.abstractmethod
    async def spawn(self, spec: ServerSpec) -> None:
        """Start the server's process (in its own session, surviving the control plane) with
        `spec.disks` attached, and connect to it."""

    @abc.abstractmethod
    async def reconnect(self, server_id: str) -> bool:
        """Re-attach to a server started by an earlier control plane. False if it is dead."""

    @abc.abstractmethod
    async def is_running(self, server_id: str) -> bool: ...

    @abc.abstractmethod
    async def stop(self, server_id: str) -> None:
        """Stop the process (quit; kill after a grace period). Idempotent."""

    @abc.abstractmethod
    async def destroy(self, server_id: str) -> None:
        """Stop and remove every runtime file of the server. Idempotent."""

    @abc.abstractmethod
    async def console_output(self, server_id: str, length: int | None = None) -> str:
        """The last `length` lines of the server's serial console log (cf. Nova's
        `get_console_output`), decoded as UTF-8 with replacement; the whole log when None. Reads
        at most the last `console.MAX_TAIL` bytes. NotFound when the server has no log; a
        stopped server's log is still there until `destroy`."""

    @abc.abstractmethod
    async def console_read(self, server_id: str, offset: int, limit: int = 65536) -> tuple[bytes, int]:
        """Up to `limit` bytes (at most `console.MAX_CHUNK`) of the console log from byte `offset`,
        and the offset to read from next: a follower calls again with it. An offset past the end
        (the log began anew when the server was started again) reads from 0. BadRequest for a
        negative offset or a limit below 1; NotFound as for `console_output`."""

    async def close(self) -> None:  # noqa: B027 - optional hook, default no-op
        """Drop every connection, leaving the servers running (control-plane shutdown)."""

    # -- disks -------------------------------------------------------------------------
    @abc.abstractmethod
    async def attach_disk(self, server_id: str, chain: DiskChain) -> None:
        """Hot-plug a virtio-blk disk with serial = volume id. Raises Conflict when no hotplug
        slot is free."""

    @abc.abstractmethod
    async def detach_disk(self, server_id: str, volume_id: str) -> None:
        """Unplug (waits for DEVICE_DELETED) and drop every node of the disk. Idempotent."""

    @abc.abstractmethod
    async def disks(self, server_id: str) -> list[DiskInfo]: ...

    @abc.abstractmethod
    async def set_disk_limits(self, server_id: str, volume_id: str, limits: dict[str, int]) -> None:
        """Throttle an attached disk as a front-end QoS spec says (`domain.qos.disk_limits`:
        Nova's `total_bytes_sec`, `read_iops_sec`, … keys; an empty dict lifts every limit).
        Sets values: idempotent."""

    @abc.abstractmethod
    async def snapshot_disk(self, server_id: str, volume_id: str, new_active: LayerFile) -> None:
        """Live external snapshot: `new_active` (already created, backed by the current active
        file) becomes the disk's active layer."""

    @abc.abstractmethod
    async def merge_layer(self, server_id: str, volume_id: str, layer: LayerFile) -> None:
        """Live snapshot delete: stream read-only `layer` into the layer above it and drop it from
        the chain (block-stream). The file itself is left for the caller to delete."""

    @abc.abstractmethod
    async def extend_volume(self, server_id: str, volume_id: str, new_size: int) -> None:
        """Grow an attached disk under the running guest to `new_size` bytes (cf. Nova's virt
        driver `extend_volume`, libvirt's `blockResize`): the image file open in the hypervisor is
        grown through it (QMP `block_resize` of the disk's active layer), never behind its back,
        and the guest is told of the new capacity. The caller has checked the size and owns the
        volume's chain for the duration. Idempotent: a disk already of `new_size` is left.
        BadRequest for a size below the disk's; NotFound for an unknown server or disk."""

    # -- mirror ------------------------------------------------------------------------
    @abc.abstractmethod
    async def start_mirror(
        self, server_id: str, volume_id: str, job_id: str, target: DiskChain, *, sync_top: bool, speed: int
    ) -> None:
        """Open `target` (explicit backing chain, discard/detect-zeroes unmap) and start a
        `blockdev-mirror` of the disk's active layer onto it (auto-dismiss off, background copy).
        Idempotent: an existing job with that id is left running."""

    @abc.abstractmethod
    async def mirror_status(self, server_id: str, job_id: str) -> MirrorStatus | None:
        """Current state of the job, or None when QEMU has no such job."""

    @abc.abstractmethod
    async def wait_mirror(
        self, server_id: str, job_id: str, until: MirrorCondition, timeout: float
    ) -> MirrorStatus:
        """Wait, driven by QMP job events, until the job's status satisfies `until` or the job
        concludes.
        Raises DriverError on timeout or when the server dies."""

    @abc.abstractmethod
    async def set_mirror_speed(self, server_id: str, job_id: str, speed: int) -> None: ...

    @abc.abstractmethod
    async def set_write_blocking(self, server_id: str, job_id: str) -> None:
        """Switch the job to `copy-mode: write-blocking` so that it converges."""

    @abc.abstractmethod
    async def target_chain(self, server_id: str, job_id: str) -> tuple[str, ...]:
        """Files of the mirror target's node chain as QEMU has it open, active first."""

    @abc.abstractmethod
    async def pivot(self, server_id: str, job_id: str) -> None:
        """job-complete; wait until concluded; raise DriverError when the job ended with an
        error; dismiss it. Afterwards the device runs on the target chain."""

    @abc.abstractmethod
    async def cancel_mirror(self, server_id: str, job_id: str, target: DiskChain) -> None:
        """Cancel (force) and dismiss the job if it exists, then drop the target's nodes.
        Idempotent; the guest stays on the source."""

    @abc.abstractmethod
    async def drop_files(self, server_id: str, files: tuple[LayerFile, ...]) -> None:
        """Drop the block nodes of files no device uses any more (after a pivot), given base
        first as in a chain; nodes are deleted top first. Idempotent."""

    @abc.abstractmethod
    async def serial(self, server_id: str, volume_id: str) -> str:
        """The disk's serial as QEMU holds it (`qom-get`)."""

    # -- live migration (the conductor addresses each call to the source or the destination) -
    def on_host(self, host: str) -> HypervisorDriver:
        """This contract on `host`. A local driver serves only its own host; a remote one
        (`coordination.RemoteHypervisor`) sends there."""
        return self

    @abc.abstractmethod
    async def disk_slots(self, server_id: str) -> tuple[DiskSlot, ...]:
        """Source: the root port of every attached disk, by volume id."""

    @abc.abstractmethod
    async def prepare_incoming(self, spec: ServerSpec, slots: tuple[DiskSlot, ...], address: str) -> str:
        """Destination: start the server's process waiting for an incoming migration on `address`,
        `spec.disks` in `slots`; the URI the source sends to. Idempotent."""

    @abc.abstractmethod
    async def start_live_migration(self, server_id: str, uri: str, settings: LiveSettings) -> None:
        """Source: start sending the guest to `uri`, pausing before the switchover. Idempotent."""

    @abc.abstractmethod
    async def live_progress(self, server_id: str) -> LiveProgress: ...

    @abc.abstractmethod
    async def wait_live(self, server_id: str, until: tuple[LiveState, ...], timeout: float) -> LiveProgress:
        """Wait (on migration events) until the state is one of `until`, the migration ended or
        `timeout` passed; the progress then (a watcher records it between waits)."""

    @abc.abstractmethod
    async def set_live_limits(self, server_id: str, settings: LiveSettings) -> None: ...

    @abc.abstractmethod
    async def continue_live(self, server_id: str) -> None:
        """Source, paused before the switchover: switch over. Idempotent."""

    @abc.abstractmethod
    async def force_live(self, server_id: str) -> None:
        """Make the migration complete at its next pass, however long the pause."""

    @abc.abstractmethod
    async def cancel_live(self, server_id: str) -> None:
        """Cancel the outgoing migration; the guest runs on here. Idempotent."""

    @abc.abstractmethod
    async def resume_guest(self, server_id: str) -> None:
        """Run a guest left paused (`paused`, `postmigrate`) here again. Idempotent."""

    @abc.abstractmethod
    async def run_state(self, server_id: str) -> str | None:
        """The process's run state (`running`, `inmigrate`, `postmigrate`, `paused`…); None when
        it does not run."""
