"""The migration machine alone: no database, files or driver. A small simulated world performs
each action the way the migration service does (what it records, what QEMU would show), so every
crash, cancel and failure at every step of both paths is replayed as facts, and the invariants are
checked on what is left: exactly one authoritative copy, the source deleted only after commit,
the destination never deleted after the pivot."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import pytest

from ferry.domain.migration import ATTACHED_STEPS, DETACHED_STEPS, RecoveryFacts, RunStatus, Step
from ferry.domain.migration import machine as mm
from ferry.domain.migration.recovery import Cause, Recovery, settle

LIMITS = mm.Limits(stall_seconds=3.0, ready_timeout_s=60.0)
PATHS = {"attached": ATTACHED_STEPS, "detached": DETACHED_STEPS}


class Crash(Exception):
    """The control plane died here: the machine's memory is gone, the world stays."""


@dataclass
class World:
    """What the database, the step log, QEMU and the backends hold."""

    attached: bool
    recorded: Step = Step.QUEUED
    pivot_logged: bool = False
    on_target: bool = False
    job: bool = False
    committed: bool = False
    source: bool = True
    target: bool = False
    status: RunStatus | None = None
    log: list[str] = field(default_factory=list)

    def facts(self) -> RecoveryFacts:
        return RecoveryFacts(
            step=self.recorded,
            attached=self.attached,
            committed=self.committed,
            job_exists=self.job,
            device_on_target=self.on_target,
            pivot_completed=self.pivot_logged,
        )

    def perform(self, action: mm.Action) -> mm.Fact:
        self.log.append(type(action).__name__)
        match action:
            case mm.Reserve():
                self.recorded = Step.RESERVE
            case mm.CopyLayers():
                self.recorded, self.target = Step.COPY_LAYERS, True
            case mm.OpenTarget():
                self.recorded, self.target, self.job = Step.OPEN_TARGET, True, True
            case mm.Mirror() | mm.WatchMirror():
                self.recorded = Step.MIRROR
                return mm.MirrorSample(1.0, 64, 64, ready=True, actively_synced=False, write_blocking=False)
            case mm.CloseMirror():
                return mm.StepDone(Step.MIRROR)
            case mm.VerifyTarget():
                self.recorded = Step.VERIFY_TARGET
            case mm.Pivot():
                self.recorded = Step.PIVOT
                self.on_target, self.job, self.pivot_logged = True, False, True
                return mm.PivotCompleted()
            case mm.ConfirmPivot():
                return mm.PivotConfirmed(3.0)
            case mm.Commit():
                self.recorded, self.committed = Step.CLEANUP, True
                return mm.StepDone(Step.COMMIT)
            case mm.Cleanup():
                assert self.committed, "the source is deleted only after commit"
                self.recorded, self.source = Step.CLEANUP, False
            case mm.Inspect():
                return mm.Recovered(self.facts())
            case mm.Rollback():
                assert not self.on_target and not self.committed, "rolled back past the pivot"
                self.recorded, self.job, self.target = Step.ROLLBACK, False, False
            case mm.Finish(status):
                self.status = status
                if status is RunStatus.SUCCESS:
                    self.recorded = Step.DONE
            case mm.Abandon():
                self.status = RunStatus.ERROR
        return mm.StepDone(self.recorded)


def machine(world: World, steps: tuple[Step, ...]) -> mm.MigrationMachine:
    """A machine as the service builds one from the database."""
    return mm.MigrationMachine(steps, LIMITS, step=world.recorded, pivot_completed=world.pivot_logged)


def drive(
    world: World,
    m: mm.MigrationMachine,
    action: mm.Action,
    *,
    crash: tuple[str, str] | None = None,
    fail: tuple[str, str] | None = None,
    cancel_at: str | None = None,
) -> None:
    """Perform until the machine finishes. `crash=(action, "before"|"after")` dies there;
    `fail=(action, "before"|"after")` turns that action's outcome into Failed (its effect applied
    or not); `cancel_at` delivers a cancel instead of performing that action."""
    failed = False
    while True:
        name = type(action).__name__
        if crash == (name, "before"):
            raise Crash(name)
        if name == cancel_at and m.cancellable:
            cancel_at = None
            action = m.feed(mm.CancelRequested())
            continue
        if fail == (name, "before") and not failed:
            failed = True
            action = m.feed(mm.Failed(f"{name} failed"))
            continue
        fact = world.perform(action)
        if isinstance(action, mm.Finish | mm.Abandon):
            return
        if crash == (name, "after"):
            raise Crash(name)
        if fail == (name, "after") and not failed:
            failed = True
            fact = mm.Failed(f"{name} failed after its effect")
        action = m.feed(fact)


def run_with_restarts(
    world: World, steps: tuple[Step, ...], crashes: list[tuple[str, str]], **kw: object
) -> None:
    m = machine(world, steps)
    action = m.start()
    for crash in [*crashes, None]:
        try:
            drive(world, m, action, crash=crash, **kw)  # type: ignore[arg-type]
            return
        except Crash:
            m = machine(world, steps)
            action = m.restart()


def assert_one_copy(world: World) -> None:
    """Exactly one authoritative, complete copy, whatever happened."""
    assert world.status in (RunStatus.SUCCESS, RunStatus.ERROR, RunStatus.CANCELLED), world.log
    if world.status is RunStatus.SUCCESS:
        assert world.committed and world.target and not world.source, world.log
    else:
        assert not world.committed and world.source and not world.target and not world.job, world.log


def actions_of(steps: tuple[Step, ...]) -> list[str]:
    world = World(attached=Step.MIRROR in steps)
    m = machine(world, steps)
    drive(world, m, m.start())
    return world.log


# -- the happy paths ------------------------------------------------------------------------
@pytest.mark.parametrize("path", PATHS)
def test_each_path_runs_its_steps_in_order(path: str) -> None:
    steps = PATHS[path]
    world = World(attached=path == "attached")
    m = machine(world, steps)
    drive(world, m, m.start())
    assert world.status is RunStatus.SUCCESS and m.finished
    assert_one_copy(world)
    want = {
        "attached": [
            "Reserve",
            "CopyLayers",
            "OpenTarget",
            "Mirror",
            "CloseMirror",
            "VerifyTarget",
            "Pivot",
            "ConfirmPivot",
            "Commit",
            "Cleanup",
            "Finish",
        ],
        "detached": ["Reserve", "CopyLayers", "VerifyTarget", "Commit", "Cleanup", "Finish"],
    }[path]
    assert world.log == want


# -- crash matrix: every action of both paths, before and after, then a second crash anywhere ------
def _crash_cases() -> list[tuple[str, tuple[str, str], tuple[str, str] | None]]:
    cases: list[tuple[str, tuple[str, str], tuple[str, str] | None]] = []
    for path, steps in PATHS.items():
        names = sorted(set(actions_of(steps)) | {"Inspect", "Rollback"})
        points = [(n, w) for n in names for w in ("before", "after")]
        firsts = [(n, w) for n, w in points if n in actions_of(steps) and n != "Finish"]
        for first in firsts:
            cases.append((path, first, None))
            cases.extend((path, first, second) for second in points if second[0] != "Finish")
    return cases


@pytest.mark.parametrize(("path", "first", "second"), _crash_cases())
def test_crash_anywhere_then_anywhere_again_leaves_one_copy(
    path: str, first: tuple[str, str], second: tuple[str, str] | None
) -> None:
    world = World(attached=path == "attached")
    run_with_restarts(world, PATHS[path], [first] + ([second] if second else []))
    assert_one_copy(world)
    if world.pivot_logged or world.on_target:
        assert world.status is RunStatus.SUCCESS, "past the pivot only forward is safe"


@pytest.mark.parametrize("path", PATHS)
def test_crash_before_the_pivot_rolls_back_and_after_commits(path: str) -> None:
    steps = PATHS[path]
    seen_pivot = False
    for name in actions_of(steps)[:-1]:
        world = World(attached=path == "attached")
        run_with_restarts(world, steps, [(name, "after")])
        seen_pivot = seen_pivot or name in ("Pivot", "Commit")
        if name == "Mirror" or name == "CloseMirror":
            assert world.status is RunStatus.SUCCESS  # the job kept running: resumed
        elif seen_pivot or name == "Cleanup":
            assert world.status is RunStatus.SUCCESS, name
        elif name != "VerifyTarget" or path == "detached":
            assert world.status is RunStatus.ERROR, name


# -- cancel at every action -------------------------------------------------------------------
@pytest.mark.parametrize(("path", "at"), [(p, n) for p, s in PATHS.items() for n in actions_of(s)[:-1]])
def test_cancel_is_honoured_until_the_pivot_and_refused_after(path: str, at: str) -> None:
    steps = PATHS[path]
    world = World(attached=path == "attached")
    m = machine(world, steps)
    drive(world, m, m.start(), cancel_at=at)
    assert_one_copy(world)
    order = actions_of(steps)
    # Attached: honoured up to the moment job-complete is issued; detached: until commit begins.
    before_pivot = (
        order.index(at) <= order.index("Pivot")
        if path == "attached"
        else order.index(at) < order.index("Commit")
    )
    assert world.status is (RunStatus.CANCELLED if before_pivot else RunStatus.SUCCESS), world.log


def test_cancel_past_the_pivot_is_an_illegal_transition() -> None:
    world = World(attached=True)
    m = machine(world, ATTACHED_STEPS)
    action = m.start()
    while not isinstance(action, mm.ConfirmPivot):
        action = m.feed(world.perform(action))
    assert not m.cancellable
    with pytest.raises(mm.IllegalTransition):
        m.feed(mm.CancelRequested())


# -- failure at every action, with and without its effect ---------------------------------------
@pytest.mark.parametrize(
    ("path", "at", "when"),
    [(p, n, w) for p, s in PATHS.items() for n in actions_of(s)[:-1] for w in ("before", "after")],
)
def test_failure_anywhere_rolls_back_before_the_pivot_and_finishes_after(
    path: str, at: str, when: str
) -> None:
    steps = PATHS[path]
    world = World(attached=path == "attached")
    m = machine(world, steps)
    drive(world, m, m.start(), fail=(at, when))
    assert_one_copy(world)
    if world.on_target or world.committed:
        assert world.status is RunStatus.SUCCESS
    else:
        assert world.status is RunStatus.ERROR


def test_a_failure_while_settling_abandons_instead_of_looping() -> None:
    m = mm.MigrationMachine(ATTACHED_STEPS, LIMITS)
    m.start()
    assert isinstance(m.feed(mm.Failed("copy failed")), mm.Inspect)
    action = m.feed(mm.Failed("QEMU unreachable"))
    assert isinstance(action, mm.Abandon) and "rollback failed" in action.reason and m.finished


# -- the mirror's decisions ---------------------------------------------------------------------
def at_mirror() -> mm.MigrationMachine:
    m = mm.MigrationMachine(ATTACHED_STEPS, LIMITS, step=Step.OPEN_TARGET)
    assert isinstance(m.feed(mm.StepDone(Step.OPEN_TARGET)), mm.Mirror)
    return m


def sample(
    now: float, offset: int, *, ready: bool = False, synced: bool = False, wb: bool = False
) -> mm.MirrorSample:
    return mm.MirrorSample(now, offset, 100 << 20, ready, synced, wb)


def test_mirror_waits_then_closes_when_ready() -> None:
    m = at_mirror()
    assert m.feed(sample(0, 10 << 20)) == mm.WatchMirror(LIMITS.sample_interval)
    assert m.feed(sample(0.5, 100 << 20, ready=True)) == mm.CloseMirror(100 << 20)


def test_a_stalled_mirror_switches_to_write_blocking_then_needs_active_sync() -> None:
    m = at_mirror()
    m.feed(sample(0, 50 << 20))
    assert isinstance(m.feed(sample(1, 50 << 20)), mm.WatchMirror)
    assert m.feed(sample(3.5, 50 << 20)) == mm.SwitchToWriteBlocking(50 << 20)
    assert isinstance(m.feed(mm.CopyModeSwitched()), mm.WatchMirror)
    # READY in write-blocking mode is not enough: wait (the bug was a busy loop here)
    assert m.feed(sample(4, 100 << 20, ready=True, wb=True)) == mm.WatchMirror(LIMITS.sample_interval)
    assert isinstance(m.feed(sample(5, 100 << 20, ready=True, synced=True, wb=True)), mm.CloseMirror)


def test_a_mirror_that_never_converges_fails_at_the_deadline() -> None:
    m = at_mirror()
    m.feed(sample(0, 1, wb=True))
    action = m.feed(sample(LIMITS.ready_timeout_s + 1, 2, wb=True))
    assert isinstance(action, mm.Inspect) and "in time" in action.reason


def test_a_job_that_ends_on_its_own_is_a_failure() -> None:
    m = at_mirror()
    action = m.feed(mm.JobEnded("No space left on device"))
    assert isinstance(action, mm.Inspect) and action.cause is Cause.FAILURE
    assert "No space left" in action.reason


@pytest.mark.parametrize(
    "fact",
    [mm.PivotCompleted(), mm.PivotConfirmed(1.0), mm.StepDone(Step.COMMIT), mm.CopyModeSwitched()],
)
def test_facts_out_of_place_are_illegal(fact: mm.Fact) -> None:
    m = mm.MigrationMachine(ATTACHED_STEPS, LIMITS)
    m.start()
    with pytest.raises(mm.IllegalTransition):
        m.feed(fact)


def test_detached_has_no_pivot_and_a_finished_machine_takes_nothing() -> None:
    m = mm.MigrationMachine(DETACHED_STEPS, LIMITS, step=Step.VERIFY_TARGET)
    assert isinstance(m.feed(mm.StepDone(Step.VERIFY_TARGET)), mm.Commit)
    with pytest.raises(mm.IllegalTransition):
        m.feed(mm.PivotCompleted())
    m = mm.MigrationMachine(DETACHED_STEPS, LIMITS, step=Step.CLEANUP)
    assert m.feed(mm.StepDone(Step.CLEANUP)) == mm.Finish(RunStatus.SUCCESS)
    with pytest.raises(mm.IllegalTransition):
        m.feed(mm.StepDone(Step.CLEANUP))


def test_recovered_without_an_inspection_is_illegal() -> None:
    m = mm.MigrationMachine(ATTACHED_STEPS, LIMITS)
    m.start()
    with pytest.raises(mm.IllegalTransition):
        m.feed(mm.Recovered(RecoveryFacts(Step.RESERVE, attached=True, committed=False)))


# -- the settle table for each cause ------------------------------------------------------------
@pytest.mark.parametrize(
    ("step", "attached", "on_target", "logged", "committed"),
    list(itertools.product(list(Step), [True, False], [True, False], [True, False], [True, False])),
)
def test_settle_after_failure_or_cancel_never_resumes_and_never_rolls_back_past_the_pivot(
    step: Step, attached: bool, on_target: bool, logged: bool, committed: bool
) -> None:
    f = RecoveryFacts(
        step, attached, committed, job_exists=True, device_on_target=on_target, pivot_completed=logged
    )
    for cause in (Cause.FAILURE, Cause.CANCEL):
        decision = settle(f, cause)
        assert decision is not Recovery.RESUME
        if committed:
            assert decision is Recovery.CLEANUP
        elif f.past_pivot:
            assert decision is Recovery.COMMIT
        else:
            assert decision is Recovery.ROLLBACK
