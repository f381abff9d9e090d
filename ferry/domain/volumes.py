"""Volume, snapshot and attachment states, and the rules that decide what may happen to them.

Every state Ferry stores is a member of one of these enums (the database refuses any other value);
the sets below say which states allow an action. Pure: no I/O.
"""

from __future__ import annotations

from enum import StrEnum

from ferry.domain.errors import BadRequest

MAX_SIZE_GIB = 16 * 1024
MAX_NAME = 255
MAX_DESCRIPTION = 4096
MAX_METADATA_ITEMS = 64


class VolumeStatus(StrEnum):
    CREATING = "creating"
    AVAILABLE = "available"
    IN_USE = "in-use"
    ATTACHING = "attaching"
    DETACHING = "detaching"
    DELETING = "deleting"
    EXTENDING = "extending"
    ERROR = "error"
    ERROR_DELETING = "error_deleting"
    ERROR_EXTENDING = "error_extending"
    MAINTENANCE = "maintenance"
    """Only an administrator's `os-reset_status` puts a volume here (and takes it out)."""


class SnapshotStatus(StrEnum):
    CREATING = "creating"
    AVAILABLE = "available"
    DELETING = "deleting"
    ERROR = "error"
    ERROR_DELETING = "error_deleting"


class AttachmentStatus(StrEnum):
    """An attachment row exists from the attach request on; it is deleted on detach."""

    ATTACHING = "attaching"
    ATTACHED = "attached"


class MigrationStatus(StrEnum):
    """`migration_status` of a volume, as Cinder names them."""

    STARTING = "starting"
    MIGRATING = "migrating"
    SUCCESS = "success"
    ERROR = "error"


MIGRATION_BUSY = (MigrationStatus.STARTING, MigrationStatus.MIGRATING)
"""A volume in one of these migration states refuses any other change."""

DELETABLE = (VolumeStatus.AVAILABLE, VolumeStatus.ERROR, VolumeStatus.ERROR_DELETING)
FORCE_DELETABLE = tuple(v for v in VolumeStatus if v is not VolumeStatus.DELETING)
"""`os-force_delete` (admins) takes a volume in any status but `deleting` (a delete already under way)."""
SNAPSHOTTABLE = (VolumeStatus.AVAILABLE, VolumeStatus.IN_USE)

VOLUME_ACTION = {
    VolumeStatus.ATTACHING: "attach",
    VolumeStatus.DETACHING: "detach",
    VolumeStatus.EXTENDING: "extend",
    VolumeStatus.DELETING: "delete",
}
"""The action a move into each transitional status is, as a refusal names it ("Cannot extend ...")."""

SNAPSHOT_DELETABLE = (SnapshotStatus.AVAILABLE, SnapshotStatus.ERROR, SnapshotStatus.ERROR_DELETING)
"""A failed merge can be retried: merging a layer is idempotent. (Tuples, not sets: refusals list
them in this order.)"""
SNAPSHOT_UNSETTLED = (SnapshotStatus.CREATING, SnapshotStatus.DELETING)
"""What a control-plane crash can leave a snapshot in; settled at the next start."""


def check_size(size: object, *, minimum: int = 1) -> int:
    if isinstance(size, bool) or not isinstance(size, int):
        raise BadRequest(f"Invalid size {size!r}: must be a whole number of GiB.")
    if size < minimum or size > MAX_SIZE_GIB:
        raise BadRequest(f"Invalid size {size}: must be between {minimum} and {MAX_SIZE_GIB} GiB.")
    return size


def check_metadata(meta: dict[str, str]) -> dict[str, str]:
    if len(meta) > MAX_METADATA_ITEMS:
        raise BadRequest(f"Too many metadata items (at most {MAX_METADATA_ITEMS}).")
    for k, v in meta.items():
        if not k or len(k) > 255 or len(v) > 255:
            raise BadRequest("Metadata keys must be 1-255 characters and values at most 255.")
    return meta
