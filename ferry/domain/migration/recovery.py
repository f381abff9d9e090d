"""What to do with a migration that did not run to its end, as one decision table (docs/recovery.md):
after a restart of the control plane, and after a step failed. Fed facts gathered from the step log,
QEMU and the backends; returns a decision. Never deletes the only copy of a layer: the source goes
only after commit; the target goes only while the guest still runs on the source."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from ferry.domain.migration.plan import Step


class Recovery(StrEnum):
    RESUME = "resume"
    ROLLBACK = "rollback"
    COMMIT = "commit"
    CLEANUP = "cleanup"


class Cause(StrEnum):
    """Why the migration is being settled."""

    RESTART = "restart"
    """The control plane restarted: QEMU may have carried on without it."""
    FAILURE = "failure"
    """A step failed: nothing is left to wait for."""
    CANCEL = "cancel"
    """The operator cancelled before the point of no return."""


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
    """The step log records the pivot-completed fact: the guest may have written to the target since."""

    @property
    def past_pivot(self) -> bool:
        """The destination may hold the newest data: only forward (commit) is safe."""
        return self.attached and (self.device_on_target or self.pivot_completed or self.step is Step.COMMIT)


def recover(f: RecoveryFacts) -> Recovery:
    """The decision table of docs/recovery.md."""
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


def settle(f: RecoveryFacts, cause: Cause) -> Recovery:
    """`recover` for any cause: after a failure or a cancel there is no job to wait for, so what a
    restart would resume is rolled back; past the pivot every cause finishes forward."""
    if cause is Cause.RESTART:
        return recover(f)
    if f.committed:
        return Recovery.CLEANUP
    if f.past_pivot:
        return Recovery.COMMIT
    return Recovery.ROLLBACK
