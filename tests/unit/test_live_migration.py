"""Server live migration (issue 12) on the fake hypervisor fleet: the machine's path through the
service, the step log, the host recorded once, and the refusals (nothing changed by any)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import update

from ferry import config as cfgmod
from ferry.db.models import Host
from ferry.domain.errors import BadRequest, Conflict, Forbidden
from ferry.domain.server_migration import LiveFacts, LiveOutcome, settle_live
from ferry.drivers.hypervisor.fake import FakeHypervisorDriver
from ferry.services import bootstrap
from ferry.services.app import Ferry
from ferry.services.context import RequestContext
from ferry.services.hosts import HostSpec
from tests.unit.test_migration_service import ADMIN, attached_volume, run, until

MEMBER = RequestContext("u-member", "p-admin", frozenset({"member", "reader"}))


def control_plane(tmp: Path, hv: FakeHypervisorDriver) -> Ferry:
    cfg = cfgmod.default_config(tmp / "data")
    cfg = replace(cfg, migration=replace(cfg.migration, lease_s=0.6))
    (tmp / "data").mkdir(parents=True, exist_ok=True)
    bootstrap.setup_database(cfg, bootstrap.Credentials("a", "s", "d"))
    return Ferry(cfg, hypervisor=hv)


async def server_with_volume(app: Ferry, tmp: Path) -> tuple[str, str]:
    """A server with a volume on the all-in-one's host, then a second host to move it to."""
    sid, vid = await attached_volume(app, tmp)
    app.hosts.register(HostSpec("hv2", "127.0.0.3", 64, 65536))
    return sid, vid


def status(app: Ferry, sid: str) -> tuple[str, str | None, str]:
    srv = app.compute.get(ADMIN, sid)
    return str(srv.status), srv.task_state, srv.host


def test_a_server_moves_to_the_other_host_and_its_host_is_recorded_once(tmp_path: Path) -> None:
    async def go() -> None:
        hv = FakeHypervisorDriver()
        app = control_plane(tmp_path, hv)
        await app.live.resume_all()
        sid, vid = await server_with_volume(app, tmp_path)
        row = await app.live.migrate(ADMIN, sid, "hv2")
        assert row.source_host == "ferry" and row.dest_host == "hv2"
        await app.live.wait(row.id)
        done = app.live.get(ADMIN, sid, str(row.number))
        assert done.status == "completed", done.error
        assert status(app, sid) == ("ACTIVE", None, "hv2")
        dest = hv.on_host("hv2")
        assert await dest.run_state(sid) == "running" and await hv.run_state(sid) is None
        assert [d.serial for d in await dest.disks(sid)] == [vid]
        events = [(e.step, e.event) for e in app.live.events(row.id)]
        assert ("verify", "serials-checked") in events and events[-1][1] == "completed"
        assert done.serials_checked == 1
        await app.live.stop()

    run(go)


def test_an_abort_before_the_switchover_leaves_the_guest_on_its_host(tmp_path: Path) -> None:
    async def go() -> None:
        hv = FakeHypervisorDriver()
        hv.live_hold = True  # the RAM copy does not finish until the test says so
        app = control_plane(tmp_path, hv)
        await app.live.resume_all()
        sid, _ = await server_with_volume(app, tmp_path)
        row = await app.live.migrate(ADMIN, sid, None)  # scheduled: the only other host
        await until("copying", lambda: app.live.get(ADMIN, sid, row.id).step == "migrate")
        assert status(app, sid)[1] == "migrating"
        await app.live.abort(ADMIN, sid, row.id)
        await app.live.wait(row.id)
        assert app.live.get(ADMIN, sid, row.id).status == "cancelled"
        assert status(app, sid) == ("ACTIVE", None, "ferry")
        assert await hv.run_state(sid) == "running" and await hv.on_host("hv2").run_state(sid) is None
        await app.live.stop()

    run(go)


def test_refusals_change_nothing(tmp_path: Path) -> None:
    async def go() -> None:
        hv = FakeHypervisorDriver()
        app = control_plane(tmp_path, hv)
        sid, vid = await server_with_volume(app, tmp_path)
        cases: list[tuple[RequestContext, str | None, type[Exception], str | None]] = [
            (MEMBER, "hv2", Forbidden, None),
            (ADMIN, "ferry", BadRequest, "already runs on host ferry"),
            (ADMIN, "nowhere", BadRequest, "nowhere"),
        ]
        for ctx, host, error, says in cases:
            with pytest.raises(error, match=says):
                await app.live.migrate(ctx, sid, host)
        app.hosts.register(HostSpec("hv3", "127.0.0.4", 64, 65536))
        with app.db.begin() as s:  # hv3's agent went silent long ago
            s.execute(update(Host).where(Host.name == "hv3").values(heartbeat_at=datetime(2020, 1, 1)))
        with pytest.raises(BadRequest, match="hv3"):
            await app.live.migrate(ADMIN, sid, "hv3")
        app.hosts.disable(ADMIN, "hv2", "maintenance")
        with pytest.raises(BadRequest, match="hv2"):
            await app.live.migrate(ADMIN, sid, "hv2")
        app.hosts.enable(ADMIN, "hv2")
        await app.migrations.resume_all()
        hv.fail_next("wait_mirror", asyncio.CancelledError())  # keep the mirror from ending
        await app.migrations.migrate(
            ADMIN, vid, "bulk" if app.volumes.get(ADMIN, vid).backend == "fast" else "fast"
        )
        with pytest.raises(Conflict, match=f"volume {vid} is being migrated"):
            await app.live.migrate(ADMIN, sid, "hv2")
        assert status(app, sid)[2] == "ferry" and app.live.list_for_server(ADMIN, sid) == []
        await app.migrations.stop()

    run(go)


@pytest.mark.parametrize(
    ("facts", "outcome"),
    [
        (LiveFacts(True, None, "running"), LiveOutcome.CLEANUP),
        (LiveFacts(True, "postmigrate", "running"), LiveOutcome.CLEANUP),
        (LiveFacts(False, "postmigrate", "running"), LiveOutcome.COMMIT),
        (LiveFacts(False, None, "running"), LiveOutcome.COMMIT),
        (LiveFacts(False, "running", "inmigrate"), LiveOutcome.ROLL_BACK),
        (LiveFacts(False, "paused", "inmigrate"), LiveOutcome.ROLL_BACK),
        (LiveFacts(False, "running", None), LiveOutcome.ROLL_BACK),
        (LiveFacts(False, "postmigrate", None), LiveOutcome.RESUME_SOURCE),
        (LiveFacts(False, "postmigrate", "inmigrate"), LiveOutcome.RESUME_SOURCE),
        (LiveFacts(False, None, None), LiveOutcome.LOST),
        (LiveFacts(False, None, "inmigrate"), LiveOutcome.LOST),
    ],
)
def test_the_recovery_table_keeps_exactly_one_guest(facts: LiveFacts, outcome: LiveOutcome) -> None:
    assert settle_live(facts).outcome is outcome


def test_the_machine_settles_every_failure_once() -> None:
    from ferry.domain.live import LiveProgress, LiveState
    from ferry.domain.server_migration import machine as lm
    from ferry.domain.server_migration.plan import LiveStatus, LiveStep

    # Before the switchover: a failure rolls back, and the rollback's end finishes it.
    for step in (LiveStep.PREPARE, LiveStep.VERIFY, LiveStep.MIGRATE):
        m = lm.LiveMachine(step)
        action = m.feed(lm.Failed("boom"))
        assert isinstance(action, lm.RollBack) and action.status is LiveStatus.FAILED
        assert m.feed(lm.Done(step)) == lm.Finish(LiveStatus.FAILED, "boom")
    # From the switchover on: the facts decide.
    for step in (LiveStep.SWITCHOVER, LiveStep.COMMIT):
        m = lm.LiveMachine(step)
        assert isinstance(m.feed(lm.Failed("boom")), lm.Inspect)
        assert m.feed(lm.Recovered(LiveFacts(False, "postmigrate", "running"))) == lm.Perform(LiveStep.COMMIT)
    # A source that cannot be cleaned up does not loop: the guest runs, recorded, on the destination.
    m = lm.LiveMachine(LiveStep.CLEANUP)
    finished = m.feed(lm.Failed("quit refused"))
    assert isinstance(finished, lm.Finish) and finished.status is LiveStatus.COMPLETED
    # The forward path, and an abort refused past the switchover.
    m = lm.LiveMachine()
    assert m.start() == lm.Perform(LiveStep.PREPARE)
    assert m.feed(lm.Done(LiveStep.PREPARE)) == lm.Perform(LiveStep.VERIFY)
    assert m.feed(lm.Done(LiveStep.VERIFY)) == lm.Perform(LiveStep.MIGRATE)
    assert m.feed(lm.Done(LiveStep.MIGRATE)) == lm.Watch()
    assert m.feed(lm.Sampled(LiveProgress(LiveState.ACTIVE))) == lm.Watch()
    assert m.feed(lm.Sampled(LiveProgress(LiveState.PRE_SWITCHOVER))) == lm.Perform(LiveStep.SWITCHOVER)
    with pytest.raises(lm.IllegalTransition):
        m.feed(lm.AbortRequested())
    assert m.feed(lm.Done(LiveStep.SWITCHOVER)) == lm.Perform(LiveStep.COMMIT)
    assert m.feed(lm.Done(LiveStep.COMMIT)) == lm.Perform(LiveStep.CLEANUP)
    assert m.feed(lm.Done(LiveStep.CLEANUP)) == lm.Finish(LiveStatus.COMPLETED)
