"""`LiveMachine`: what to do next in a server's live migration, from what just happened.

Facts in (`Done`, `Sampled`, `Failed`, `AbortRequested`, `Recovered`), actions out. It never
touches QEMU or the database; the service performs each action and feeds back its outcome.
Before the switchover every failure (or an abort) rolls back: the guest stays on the source.
From the switchover on, a failure is settled from what both hosts' QEMUs say (`Inspect`, then
`recovery.settle_live`), as after a crash.
"""

from __future__ import annotations

from dataclasses import dataclass

from ferry.domain.live import LiveProgress, LiveState
from ferry.domain.server_migration.plan import ABORTABLE, LiveStatus, LiveStep
from ferry.domain.server_migration.recovery import LiveFacts, LiveOutcome, settle_live


# -- facts ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Done:
    step: LiveStep


@dataclass(frozen=True)
class Sampled:
    progress: LiveProgress


@dataclass(frozen=True)
class Failed:
    reason: str


@dataclass(frozen=True)
class AbortRequested:
    pass


@dataclass(frozen=True)
class Recovered:
    facts: LiveFacts


Fact = Done | Sampled | Failed | AbortRequested | Recovered


# -- actions ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Perform:
    """Carry out a forward step (prepare, verify, migrate, switchover, commit, cleanup)."""

    step: LiveStep


@dataclass(frozen=True)
class Watch:
    """Wait for the source to pause before its switchover, recording progress meanwhile."""


@dataclass(frozen=True)
class Inspect:
    """Read both hosts' run states (and whether the host was recorded) for the table."""

    reason: str


@dataclass(frozen=True)
class RollBack:
    reason: str
    status: LiveStatus
    resume_source: bool = False


@dataclass(frozen=True)
class Finish:
    status: LiveStatus
    reason: str | None = None


Action = Perform | Watch | Inspect | RollBack | Finish


class IllegalTransition(Exception):
    pass


NEXT = {
    LiveStep.PREPARE: LiveStep.VERIFY,
    LiveStep.VERIFY: LiveStep.MIGRATE,
    LiveStep.SWITCHOVER: LiveStep.COMMIT,
    LiveStep.COMMIT: LiveStep.CLEANUP,
}


class LiveMachine:
    def __init__(self, step: LiveStep = LiveStep.QUEUED) -> None:
        self.step = step
        self.settling: Action | None = None
        """The rollback or inspection under way, once the forward path is left."""

    def start(self) -> Action:
        return self._go(LiveStep.PREPARE)

    def restart(self) -> Action:
        """After a crash: what QEMU says decides (the step alone cannot)."""
        self.settling = Inspect("the conductor restarted")
        return self.settling

    def feed(self, fact: Fact) -> Action:
        if isinstance(fact, Recovered):
            return self._settle(fact.facts)
        if isinstance(self.settling, RollBack):
            return self._rolled_back(fact, self.settling)
        if isinstance(fact, AbortRequested):
            return self._failed("aborted by an admin", LiveStatus.CANCELLED)
        if isinstance(fact, Failed):
            return self._failed(fact.reason, LiveStatus.FAILED)
        if isinstance(fact, Sampled):
            return self._sampled(fact.progress)
        return self._done(fact.step)

    def _done(self, step: LiveStep) -> Action:
        if step is not self.step:
            raise IllegalTransition(f"{step} done while at {self.step}")
        if step is LiveStep.MIGRATE:
            return Watch()
        if step is LiveStep.CLEANUP:
            self.step = LiveStep.DONE
            return Finish(LiveStatus.COMPLETED)
        if step not in NEXT:
            raise IllegalTransition(f"no step after {step}")
        return self._go(NEXT[step])

    def _sampled(self, p: LiveProgress) -> Action:
        if self.step is not LiveStep.MIGRATE:
            raise IllegalTransition(f"a migration sample at {self.step}")
        if p.state is LiveState.PRE_SWITCHOVER:
            return self._go(LiveStep.SWITCHOVER)
        if p.state.ended:  # failed or cancelled before the switchover: the source still runs it
            return self._failed(p.error or f"the migration {p.state}", LiveStatus.FAILED)
        return Watch()

    def _failed(self, reason: str, status: LiveStatus) -> Action:
        if self.step is LiveStep.CLEANUP and status is LiveStatus.FAILED:
            # The guest runs on the destination, recorded: a source left behind is doctor's to list.
            self.step = LiveStep.DONE
            return Finish(LiveStatus.COMPLETED, f"the source was not cleaned up: {reason}")
        if self.step in ABORTABLE:
            self.settling = RollBack(reason, status)
            return self.settling
        if status is LiveStatus.CANCELLED:
            raise IllegalTransition(f"abort at {self.step}: past the switchover")
        self.settling = Inspect(reason)
        return self.settling

    def _settle(self, facts: LiveFacts) -> Action:
        reason = self.settling.reason if isinstance(self.settling, Inspect) else "recovered"
        decision = settle_live(facts)
        if decision.outcome is LiveOutcome.COMMIT:
            self.settling = None
            return self._go(LiveStep.COMMIT)
        if decision.outcome is LiveOutcome.CLEANUP:
            self.settling = None
            return self._go(LiveStep.CLEANUP)
        if decision.outcome is LiveOutcome.LOST:
            return Finish(LiveStatus.ERROR, f"{reason}: {decision.why}")
        resume = decision.outcome is LiveOutcome.RESUME_SOURCE
        self.settling = RollBack(f"{reason}: {decision.why}", LiveStatus.FAILED, resume_source=resume)
        return self.settling

    def _rolled_back(self, fact: Fact, rollback: RollBack) -> Action:
        if isinstance(fact, Done):
            return Finish(rollback.status, rollback.reason)
        if isinstance(fact, Failed):
            return Finish(LiveStatus.ERROR, f"{rollback.reason}; rolling back failed: {fact.reason}")
        return rollback  # an abort while rolling back changes nothing

    def _go(self, step: LiveStep) -> Action:
        self.step = step
        return Perform(step)
