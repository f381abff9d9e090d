"""The steps of a server's live migration and the statuses Nova shows for it."""

from __future__ import annotations

from enum import StrEnum


class LiveStep(StrEnum):
    QUEUED = "queued"
    PREPARE = "prepare"
    """The destination's agent starts QEMU waiting for the guest, every disk from its recorded
    location, in its slot, serial = volume id."""
    VERIFY = "verify"
    """Before any guest byte moves: each destination disk's serial is its volume id and its
    chain is the database's location."""
    MIGRATE = "migrate"
    """The source sends the guest's RAM until it pauses before the switchover."""
    SWITCHOVER = "switchover"
    """Verified once more, then the devices' state goes across and the destination runs."""
    COMMIT = "commit"
    """The server's host becomes the destination, in one transaction."""
    CLEANUP = "cleanup"
    """The source QEMU (post-migrate, paused for good) quits."""
    DONE = "done"


FORWARD = (
    LiveStep.PREPARE,
    LiveStep.VERIFY,
    LiveStep.MIGRATE,
    LiveStep.SWITCHOVER,
    LiveStep.COMMIT,
    LiveStep.CLEANUP,
)
ABORTABLE = (LiveStep.QUEUED, LiveStep.PREPARE, LiveStep.VERIFY, LiveStep.MIGRATE)
"""Before the switchover an abort (or a failure) leaves the guest where it was."""


class LiveStatus(StrEnum):
    """A migration record's `status`, as Nova names them."""

    QUEUED = "queued"
    PREPARING = "preparing"
    RUNNING = "running"
    POST_MIGRATING = "post-migrating"
    COMPLETED = "completed"
    ERROR = "error"
    CANCELLED = "cancelled"
    FAILED = "failed"


STATUS_OF = {
    LiveStep.QUEUED: LiveStatus.QUEUED,
    LiveStep.PREPARE: LiveStatus.PREPARING,
    LiveStep.VERIFY: LiveStatus.PREPARING,
    LiveStep.MIGRATE: LiveStatus.RUNNING,
    LiveStep.SWITCHOVER: LiveStatus.RUNNING,
    LiveStep.COMMIT: LiveStatus.POST_MIGRATING,
    LiveStep.CLEANUP: LiveStatus.POST_MIGRATING,
    LiveStep.DONE: LiveStatus.COMPLETED,
}
IN_PROGRESS = (LiveStatus.QUEUED, LiveStatus.PREPARING, LiveStatus.RUNNING, LiveStatus.POST_MIGRATING)
