"""What an administrator may force on a volume or a snapshot (Cinder's admin actions
`os-reset_status`, and the snapshot status a driver may report with `os-update_snapshot_status`),
as rules over the facts Ferry keeps true: an attachment row exists exactly while a server holds
the volume, and a `deleting` status is a delete that a restart completes.

Pure: no I/O. Refusals are `BadRequest`s naming what to do instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

from ferry.domain.errors import BadRequest
from ferry.domain.volumes import MigrationStatus, SnapshotStatus, VolumeStatus

CINDER_ATTACH_STATUSES = ("attached", "detached")
"""The attach statuses Cinder's `os-reset_status` takes."""
NO_MIGRATION = "none"
"""Cinder's word, in `os-reset_status`, for clearing a volume's migration status."""

PROGRESS_BY_STATUS = {
    SnapshotStatus.CREATING: (SnapshotStatus.CREATING, SnapshotStatus.AVAILABLE, SnapshotStatus.ERROR),
    SnapshotStatus.DELETING: (SnapshotStatus.DELETING, SnapshotStatus.ERROR_DELETING),
}
"""`os-update_snapshot_status`: the statuses a snapshot may report from each status it is in."""


@dataclass(frozen=True)
class VolumeReset:
    status: VolumeStatus | None = None
    attach_status: str | None = None
    migration_status: MigrationStatus | None = None
    clear_migration: bool = False


E = TypeVar("E", VolumeStatus, SnapshotStatus, MigrationStatus)


def _member(enum: type[E], value: str, what: str) -> E:
    try:
        return enum(value.strip().lower())
    except ValueError:
        valid = ", ".join(m.value for m in enum)
        raise BadRequest(f"{what}: {value!r} is invalid, valid statuses are: {valid}.") from None


def volume_reset(
    status: str | None, attach_status: str | None, migration_status: str | None, *, attached: bool
) -> VolumeReset:
    """The reset an `os-reset_status` body asks for, checked against whether the volume is attached."""
    if not (status or attach_status or migration_status):
        raise BadRequest("Must specify 'status', 'attach_status' or 'migration_status' for update.")
    new = _member(VolumeStatus, status, "Volume status") if status else None
    if new is VolumeStatus.DELETING:
        raise BadRequest("Cannot reset-state to deleting: delete the volume (os-force_delete) instead.")
    if new is VolumeStatus.IN_USE and not attached:
        raise BadRequest("Cannot reset-state to in-use because volume does not have any attachments.")
    if new is VolumeStatus.AVAILABLE and attached:
        raise BadRequest(
            "Cannot reset-state to available: the volume is attached to a server (detach it, or "
            "os-force_detach it, first; or reset it to error)."
        )
    attach = attach_status.strip().lower() if attach_status else None
    if attach is not None:
        if attach not in CINDER_ATTACH_STATUSES:
            raise BadRequest(
                f"Volume attach status: {attach_status!r} is invalid, valid statuses are: "
                f"{', '.join(CINDER_ATTACH_STATUSES)}."
            )
        if (attach == "attached") != attached:
            raise BadRequest(
                f"Cannot reset attach_status to {attach}: the volume is "
                f"{'attached' if attached else 'not attached'} (Ferry's attachments follow the "
                "hypervisor: attach or detach the volume, or os-force_detach it)."
            )
    clear = migration_status is not None and migration_status.strip().lower() == NO_MIGRATION
    migration = (
        _member(MigrationStatus, migration_status, "Volume migration status")
        if migration_status and not clear
        else None
    )
    return VolumeReset(new, attach, migration, clear)


def snapshot_reset(status: object) -> SnapshotStatus:
    if not isinstance(status, str) or not status:
        raise BadRequest("Invalid input: os-reset_status needs a 'status' string.")
    return _member(SnapshotStatus, status, "Snapshot status")


def snapshot_report(
    current: SnapshotStatus, status: object, progress: object
) -> tuple[SnapshotStatus, str | None]:
    """What `os-update_snapshot_status` may record: a status allowed from `current`, and a
    progress that is an integer percentage (`"80%"`)."""
    if not isinstance(status, str) or not status:
        raise BadRequest("Invalid input: os-update_snapshot_status needs a 'status' string.")
    allowed = PROGRESS_BY_STATUS.get(current)
    if allowed is None:
        raise BadRequest(f"Snapshot status {current} not allowed for update_snapshot_status.")
    new = _member(SnapshotStatus, status, "Snapshot status")
    if new not in allowed:
        raise BadRequest(f"Provided snapshot status {new} not allowed for snapshot with status {current}.")
    if progress is None or progress == "":
        return new, None
    if not isinstance(progress, str) or not progress.endswith("%") or not progress[:-1].isdigit():
        raise BadRequest("progress must be an integer percentage.")
    if not 0 <= int(progress[:-1]) <= 100:
        raise BadRequest("progress must be an integer percentage between 0 and 100.")
    return new, progress
