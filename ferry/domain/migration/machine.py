"""The migration as a sans-I/O state machine (cf. h11): typed facts in, typed actions out.

`MigrationMachine` owns every decision of a migration: which step comes next, when a mirror has
converged or stalled, when it is too late to wait for it, whether a cancel is still honoured (the
point of no return is the pivot), and how an unfinished migration is settled (`recovery.settle`).
The migration service performs each action and feeds back what happened; it decides nothing.
An illegal fact (one the machine cannot receive in its state) raises `IllegalTransition`.
"""

from __future__ import annotations

from dataclasses import dataclass

from ferry.domain.migration.convergence import ConvergenceWatch, converged
from ferry.domain.migration.plan import NO_RETURN, RunStatus, Step
from ferry.domain.migration.recovery import Cause, Recovery, RecoveryFacts, settle


class IllegalTransition(Exception):
    """The machine was fed a fact that cannot happen in its state: a bug in the caller."""


# -- facts: what the service observed ------------------------------------------------------------
@dataclass(frozen=True)
class StepDone:
    step: Step


@dataclass(frozen=True)
class MirrorSample:
    """The mirror job as QEMU reports it, at `now` (the caller's monotonic clock)."""

    now: float
    offset: int
    length: int
    ready: bool
    actively_synced: bool
    write_blocking: bool

    @property
    def remaining(self) -> int:
        return self.length - self.offset


@dataclass(frozen=True)
class JobEnded:
    """The mirror job concluded (or failed) on its own, before the pivot."""

    error: str | None


@dataclass(frozen=True)
class CopyModeSwitched:
    pass


@dataclass(frozen=True)
class PivotCompleted:
    """`job-complete` returned: the guest may write to the destination only from now on."""


@dataclass(frozen=True)
class PivotConfirmed:
    pivot_ms: float


@dataclass(frozen=True)
class CancelRequested:
    pass


@dataclass(frozen=True)
class Failed:
    reason: str


@dataclass(frozen=True)
class Recovered:
    """What `Inspect` found in the database and in QEMU."""

    facts: RecoveryFacts


Fact = (
    StepDone
    | MirrorSample
    | JobEnded
    | CopyModeSwitched
    | PivotCompleted
    | PivotConfirmed
    | CancelRequested
    | Failed
    | Recovered
)


# -- actions: what the service must do next --------------------------------------------------------
@dataclass(frozen=True)
class Reserve:
    pass


@dataclass(frozen=True)
class CopyLayers:
    pass


@dataclass(frozen=True)
class OpenTarget:
    pass


@dataclass(frozen=True)
class Mirror:
    """Enter the mirror step and sample the job."""


@dataclass(frozen=True)
class WatchMirror:
    """Wait until the job converges or ends, at most `timeout` seconds, then sample it."""

    timeout: float


@dataclass(frozen=True)
class SwitchToWriteBlocking:
    remaining: int


@dataclass(frozen=True)
class CloseMirror:
    """The mirror converged: record the step done with its final progress."""

    bytes: int


@dataclass(frozen=True)
class VerifyTarget:
    pass


@dataclass(frozen=True)
class Pivot:
    pass


@dataclass(frozen=True)
class ConfirmPivot:
    pass


@dataclass(frozen=True)
class Commit:
    pass


@dataclass(frozen=True)
class Cleanup:
    pass


@dataclass(frozen=True)
class Inspect:
    """Gather `RecoveryFacts` and feed them back as `Recovered`."""

    cause: Cause
    reason: str


@dataclass(frozen=True)
class Rollback:
    """Undo everything before the pivot; the source stays the only copy and is untouched."""

    reason: str
    cancelled: bool
    server_died: bool


@dataclass(frozen=True)
class Finish:
    status: RunStatus
    error: str | None = None


@dataclass(frozen=True)
class Abandon:
    """Even settling failed: mark the migration failed and touch no file (doctor shows leftovers)."""

    reason: str


Action = (
    Reserve
    | CopyLayers
    | OpenTarget
    | Mirror
    | WatchMirror
    | SwitchToWriteBlocking
    | CloseMirror
    | VerifyTarget
    | Pivot
    | ConfirmPivot
    | Commit
    | Cleanup
    | Inspect
    | Rollback
    | Finish
    | Abandon
)

STEP_ACTIONS: dict[Step, Action] = {
    Step.RESERVE: Reserve(),
    Step.COPY_LAYERS: CopyLayers(),
    Step.OPEN_TARGET: OpenTarget(),
    Step.MIRROR: Mirror(),
    Step.VERIFY_TARGET: VerifyTarget(),
    Step.PIVOT: Pivot(),
    Step.COMMIT: Commit(),
    Step.CLEANUP: Cleanup(),
}


@dataclass(frozen=True)
class Limits:
    stall_seconds: float
    """Switch to write-blocking when the bytes left have not fallen for this long."""
    ready_timeout_s: float
    """Give up when the mirror has not converged this long after its first sample."""
    sample_interval: float = 0.5
    """QEMU sends no progress events: sample the job this often while waiting."""


class MigrationMachine:
    """One migration's decisions. Build it with `start()` for a new run or `restart()` for one a
    previous control plane left unfinished; then `feed` every fact and perform what it returns."""

    def __init__(
        self,
        steps: tuple[Step, ...],
        limits: Limits,
        *,
        step: Step = Step.QUEUED,
        pivot_completed: bool = False,
    ) -> None:
        self.steps = steps
        self.limits = limits
        self.step = step
        self.pivot_completed = pivot_completed
        self.decision: Recovery | None = None
        """The settle decision last taken (for the step log)."""
        self.finished = False
        self._cause: Cause | None = None
        self._reason = ""
        self._watch = ConvergenceWatch(limits.stall_seconds)
        self._deadline: float | None = None

    @property
    def attached(self) -> bool:
        return Step.MIRROR in self.steps

    @property
    def settling(self) -> bool:
        return self._cause is not None

    @property
    def cancellable(self) -> bool:
        """A cancel is honoured until `job-complete` is issued: after it the guest may run on the
        destination. Requests are refused earlier, from the pivot step on (`NO_RETURN`)."""
        return (
            not self.settling
            and not self.finished
            and not self.pivot_completed
            and (self.step not in NO_RETURN or self.step is Step.PIVOT)
        )

    # -- entry points -------------------------------------------------------------------------
    def start(self) -> Action:
        if self.step is not Step.QUEUED:
            raise IllegalTransition(f"a migration at {self.step} cannot start again: restart() it")
        return self._begin(self._next(Step.QUEUED))

    def restart(self) -> Action:
        """A previous control plane left this migration at `self.step`."""
        if self.step is Step.QUEUED:
            return self.start()
        return self._inspect(Cause.RESTART, f"control plane restarted during {self.step}; rolled back")

    def feed(self, fact: Fact) -> Action:
        if self.finished:
            raise IllegalTransition(f"migration already finished; got {fact}")
        match fact:
            case Failed(reason):
                return self._failed(reason)
            case CancelRequested():
                if not self.cancellable:
                    raise IllegalTransition(f"cancel past the point of no return (at {self.step})")
                return self._inspect(Cause.CANCEL, "cancelled by the operator")
            case Recovered(facts):
                return self._recovered(facts)
            case MirrorSample() | JobEnded() | CopyModeSwitched():
                self._expect(Step.MIRROR, fact)
                return self._mirror(fact)
            case PivotCompleted():
                self._expect(Step.PIVOT, fact)
                self.pivot_completed = True
                return ConfirmPivot()
            case PivotConfirmed():
                self._expect(Step.PIVOT, fact)
                if not self.pivot_completed:
                    raise IllegalTransition("pivot confirmed before it completed")
                return self._begin(self._next(Step.PIVOT))
            case StepDone(step):
                self._expect(step, fact)
                if step is Step.ROLLBACK:
                    cancelled = self._cause is Cause.CANCEL
                    status = RunStatus.CANCELLED if cancelled else RunStatus.ERROR
                    return self._finish(Finish(status, None if cancelled else self._reason))
                return self._begin(self._next(step))
        raise IllegalTransition(f"unknown fact {fact!r}")

    # -- the run ------------------------------------------------------------------------------
    def _next(self, step: Step) -> Step:
        if step is Step.QUEUED:
            return self.steps[0]
        i = self.steps.index(step)
        return self.steps[i + 1] if i + 1 < len(self.steps) else Step.DONE

    def _begin(self, step: Step) -> Action:
        self.step = step
        if step is Step.DONE:
            return self._finish(Finish(RunStatus.SUCCESS))
        if step is Step.MIRROR:
            self._watch = ConvergenceWatch(self.limits.stall_seconds)
            self._deadline = None
        return STEP_ACTIONS[step]

    def _expect(self, step: Step, fact: Fact) -> None:
        if self.step is not step or (step is not Step.ROLLBACK and step not in self.steps):
            raise IllegalTransition(f"{fact} while at {self.step}")

    def _mirror(self, fact: MirrorSample | JobEnded | CopyModeSwitched) -> Action:
        interval = self.limits.sample_interval
        if isinstance(fact, CopyModeSwitched):
            return WatchMirror(interval)
        if isinstance(fact, JobEnded):
            return self._failed(f"mirror job ended before the pivot: {fact.error or 'concluded'}")
        if converged(fact.ready, fact.actively_synced, fact.write_blocking):
            return CloseMirror(fact.length)
        if self._deadline is None:
            self._deadline = fact.now + self.limits.ready_timeout_s
        if not fact.write_blocking and self._watch.stalled(fact.now, fact.remaining):
            return SwitchToWriteBlocking(fact.remaining)
        if fact.now > self._deadline:
            return self._failed("mirror did not become ready in time")
        return WatchMirror(min(interval, max(self._deadline - fact.now, 0.0)))

    # -- settling -----------------------------------------------------------------------------
    def _failed(self, reason: str) -> Action:
        if self._cause in (Cause.FAILURE, Cause.CANCEL):
            # Settling itself failed: stop here rather than loop; nothing more is touched.
            return self._finish(Abandon(f"{self._reason}; rollback failed: {reason}"))
        return self._inspect(Cause.FAILURE, reason)

    def _inspect(self, cause: Cause, reason: str) -> Action:
        self._cause, self._reason = cause, reason
        return Inspect(cause, reason)

    def _recovered(self, facts: RecoveryFacts) -> Action:
        if self._cause is None:
            raise IllegalTransition("facts recovered without an inspection")
        self.decision = settle(facts, self._cause)
        self.pivot_completed = self.pivot_completed or facts.past_pivot
        if self.decision is Recovery.RESUME:
            self._cause = None  # back to a normal run
            return self._begin(Step.MIRROR)
        if self.decision is Recovery.COMMIT:
            return self._begin(Step.COMMIT)
        if self.decision is Recovery.CLEANUP:
            return self._begin(Step.CLEANUP)
        self.step = Step.ROLLBACK
        died = facts.attached and not facts.server_alive
        return Rollback(self._reason, self._cause is Cause.CANCEL, died)

    def _finish(self, action: Finish | Abandon) -> Action:
        self.finished = True
        return action
