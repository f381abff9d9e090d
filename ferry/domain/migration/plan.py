"""The migration plan, pure: the steps of each path, the run and copy-mode states, and what may be
migrated where. The machine (`machine.py`) walks the plan; nothing here does I/O."""

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
"""A migration in one of these states still holds its volume."""


class CopyMode(StrEnum):
    """How the mirror copies: background first, write-blocking when a busy guest stalls it."""

    BACKGROUND = "background"
    WRITE_BLOCKING = "write-blocking"


NO_RETURN = frozenset({Step.PIVOT, Step.COMMIT, Step.CLEANUP, Step.DONE})
"""Steps past the point of no return: the guest may already write to the destination, so a cancel
is refused and a failure finishes forward instead of rolling back."""


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
