"""The migration plan and its rules, pure: which steps run, what may be migrated where, when a
mirror must switch to write-blocking, and what a restarted control plane does with an unfinished
migration. Services perform the steps and feed facts back; nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from ferry.domain.errors import BadRequest
from ferry.domain.model import BackendConfig, DiskFormat, VolumeLocation


class Step(StrEnum):
    QUEUED = "queued"
    RESERVE = "reserve"
    COPY_LAYERS = "copy-layers"
    OPEN_TARGET = "open-target"
    MIRROR = "mirror"
    VERIFY_TARGET = "verify-target"
    PIVOT = "pivot"
    COMMIT = "commit"
    CLEANUP = "cleanup"
    DONE = "done"
    ROLLBACK = "rollback"


ATTACHED_STEPS = (
    Step.RESERVE,
    Step.COPY_LAYERS,
    Step.OPEN_TARGET,
    Step.MIRROR,
    Step.VERIFY_TARGET,
    Step.PIVOT,
    Step.COMMIT,
    Step.CLEANUP,
)
DETACHED_STEPS = (Step.RESERVE, Step.COPY_LAYERS, Step.VERIFY_TARGET, Step.COMMIT, Step.CLEANUP)


class RunStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCESS = "success"
    ERROR = "error"
    CANCELLED = "cancelled"


ACTIVE = (RunStatus.QUEUED, RunStatus.RUNNING)


@dataclass(frozen=True)
class MigrationPlan:
    volume_id: str
    source: VolumeLocation
    dest: VolumeLocation
    size_bytes: int
    server_id: str | None

    @property
    def attached(self) -> bool:
        return self.server_id is not None

    @property
    def sync_top(self) -> bool:
        """Mirror only the active layer when read-only layers are copied beforehand."""
        return len(self.source.layers) > 1

    @property
    def steps(self) -> tuple[Step, ...]:
        return ATTACHED_STEPS if self.attached else DETACHED_STEPS

    @property
    def layers_to_copy(self) -> tuple[str, ...]:
        """Copied with qemu-img: every read-only layer; detached, the active one too."""
        return self.source.readonly_layers if self.attached else self.source.layers

    def next_step(self, step: Step) -> Step:
        if step is Step.QUEUED:
            return self.steps[0]
        i = self.steps.index(step)
        return self.steps[i + 1] if i + 1 < len(self.steps) else Step.DONE


def check_destination(source: VolumeLocation, source_backend: BackendConfig, dest: BackendConfig) -> None:
    """Refuse what cannot be done, with a message that says why and what to do instead."""
    if dest.name == source_backend.name:
        raise BadRequest(f"Volume is already on backend {dest.name!r}; choose another destination.")
    if dest.format is DiskFormat.RAW and len(source.layers) > 1:
        raise BadRequest(
            f"Backend {dest.name!r} is raw and holds one flat layer, but the volume has "
            f"{len(source.layers) - 1} snapshot(s): delete them first or choose a qcow2 backend."
        )


def plan(
    volume_id: str,
    source: VolumeLocation,
    dest: BackendConfig,
    dest_name_id: str,
    size_bytes: int,
    server_id: str | None,
) -> MigrationPlan:
    """Same layer ids, new name_id: the destination files never collide with the source's."""
    dest_loc = VolumeLocation(dest.name, dest_name_id, source.layers, dest.format)
    return MigrationPlan(volume_id, source, dest_loc, size_bytes, server_id)


@dataclass
class ConvergenceWatch:
    """Decides when a background mirror has stalled: the bytes left to copy have not fallen by
    at least `min_progress` for `stall_seconds`. Fed samples; no clock of its own."""

    stall_seconds: float
    min_progress: int = 1 << 20
    _best: int | None = None
    _since: float = 0.0

    def stalled(self, now: float, remaining: int) -> bool:
        if self._best is None or remaining < self._best - self.min_progress:
            self._best, self._since = remaining, now
            return False
        return now - self._since >= self.stall_seconds


class Recovery(StrEnum):
    RESUME = "resume"
    ROLLBACK = "rollback"
    COMMIT = "commit"
    CLEANUP = "cleanup"


@dataclass(frozen=True)
class RecoveryFacts:
    """What a restarted control plane finds: the last step recorded and what QEMU reports."""

    step: Step
    attached: bool
    committed: bool
    """The database already names the destination as the volume's location."""
    job_exists: bool = False
    job_failed: bool = False
    device_on_target: bool = False
    server_alive: bool = True
    pivot_completed: bool = False
    """The step log shows `job-complete` succeeded: the guest may have written to the target since."""

    @property
    def past_pivot(self) -> bool:
        """The destination may hold the newest data: only forward (commit) is safe."""
        return self.attached and (self.device_on_target or self.pivot_completed or self.step is Step.COMMIT)


def recover(f: RecoveryFacts) -> Recovery:
    """The decision table of docs/recovery.md. Never deletes the only copy of a layer: the source
    goes only after commit; the target goes only while the guest still runs on the source."""
    if f.committed or f.step in (Step.CLEANUP, Step.DONE):
        return Recovery.CLEANUP
    if f.past_pivot:
        # The pivot happened (QEMU shows it, or the log does even if QEMU died since): the target
        # is now the only current copy, the source is stale.
        return Recovery.COMMIT
    if f.step is Step.COMMIT and not f.attached:
        return Recovery.COMMIT  # detached: copies were verified before commit was entered
    if (
        f.attached
        and f.step in (Step.MIRROR, Step.VERIFY_TARGET, Step.PIVOT)
        and f.server_alive
        and f.job_exists
        and not f.job_failed
    ):
        return Recovery.RESUME  # the job kept running in QEMU: wait for it again
    return Recovery.ROLLBACK
