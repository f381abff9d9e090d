"""Volume and snapshot states and the rules that decide what may happen to them."""

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


class SnapshotStatus(StrEnum):
    CREATING = "creating"
    AVAILABLE = "available"
    DELETING = "deleting"
    ERROR = "error"


class MigrationStatus(StrEnum):
    """`migration_status` of a volume, as Cinder names them."""

    STARTING = "starting"
    MIGRATING = "migrating"
    SUCCESS = "success"
    ERROR = "error"


MIGRATION_BUSY = (MigrationStatus.STARTING.value, MigrationStatus.MIGRATING.value)
"""A volume in one of these migration states refuses any other change."""

DELETABLE = (VolumeStatus.AVAILABLE.value, VolumeStatus.ERROR.value, VolumeStatus.ERROR_DELETING.value)
SNAPSHOTTABLE = (VolumeStatus.AVAILABLE.value, VolumeStatus.IN_USE.value)


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
