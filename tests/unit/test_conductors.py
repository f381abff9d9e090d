"""Conductor leases (issue 11): two conductors over one database never drive one migration, and
when the conductor driving a migration dies, another adopts it once its lease lapses and finishes
it through the recovery table (the job kept running in the hypervisor meanwhile)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

from ferry import config as cfgmod
from ferry.db.models import Migration
from ferry.domain.errors import HostDown
from ferry.domain.migration.convergence import MirrorCondition
from ferry.domain.model import DiskChain
from ferry.drivers.hypervisor.base import MirrorStatus
from ferry.drivers.hypervisor.fake import FakeHypervisorDriver
from ferry.services import bootstrap
from ferry.services.app import Ferry
from testkit.scenario import other_backend
from tests.unit.test_migration_service import ADMIN, attached_volume, run, until

LEASE_S = 0.6


def conductor(tmp: Path, hv: FakeHypervisorDriver) -> Ferry:
    """A control plane over the shared data dir and the shared (fake) hypervisor."""
    cfg = cfgmod.default_config(tmp / "data")
    cfg = replace(cfg, migration=replace(cfg.migration, lease_s=LEASE_S))
    if not (tmp / "data" / "ferry.db").exists():
        (tmp / "data").mkdir(parents=True, exist_ok=True)
        bootstrap.setup_database(cfg, bootstrap.Credentials("a", "s", "d"))
    return Ferry(cfg, hypervisor=hv)


def lease(app: Ferry, migration_id: str) -> str | None:
    with app.db() as s:
        mig = s.get(Migration, migration_id)
        assert mig is not None
        return mig.conductor


def test_a_live_conductors_migration_is_never_taken_and_a_dead_ones_is_adopted(tmp_path: Path) -> None:
    async def go() -> None:
        hv = FakeHypervisorDriver()
        a, b = conductor(tmp_path, hv), conductor(tmp_path, hv)
        await a.migrations.resume_all(exclusive=False)
        await b.migrations.resume_all(exclusive=False)
        sid, vid = await attached_volume(a, tmp_path)
        mig = await a.migrations.migrate(ADMIN, vid, other_backend(a.volumes.get(ADMIN, vid).backend))
        job = await until("mirror", lambda: next(iter(hv.servers[sid].jobs), None))
        assert lease(a, mig.id) == a.migrations.conductor.id
        # Several lease lengths pass while A lives: B never takes the migration over.
        await asyncio.sleep(LEASE_S * 3)  # a window of lease renewals, not a synchronisation
        assert lease(a, mig.id) == a.migrations.conductor.id and mig.id not in b.migrations.runs.tasks
        # A dies (its tasks end where they are; its leases are no longer renewed).
        await a.migrations.stop()
        await until("adopted", lambda: lease(b, mig.id) == b.migrations.conductor.id, timeout=10)
        hv.make_ready(sid, job)  # the job kept running in QEMU: B resumed waiting for it
        await until("done", lambda: b.migrations.report(ADMIN, vid).migration.status == "success")
        report = b.migrations.report(ADMIN, vid)
        assert any(e.event == "restarted" and e.detail.get("decision") == "resume" for e in report.events)
        assert b.volumes.get(ADMIN, vid).backend == mig.dst_backend
        assert not await b.doctor.check(ADMIN)
        await b.migrations.stop()

    run(go)


def test_a_new_migration_is_leased_from_its_creation(tmp_path: Path) -> None:
    async def go() -> None:
        hv = FakeHypervisorDriver()
        a = conductor(tmp_path, hv)
        _, vid = await attached_volume(a, tmp_path)
        mig = await a.migrations.migrate(ADMIN, vid, other_backend(a.volumes.get(ADMIN, vid).backend))
        assert mig.conductor == a.migrations.conductor.id and mig.lease_until is not None
        b = conductor(tmp_path, hv)
        assert not b.migrations.conductor.take(mig.id)  # another live conductor's: refused
        assert mig.id not in b.migrations.conductor.lapsed()
        await a.migrations.stop()

    run(go)


class HostThatGoesDown(FakeHypervisorDriver):
    """The fake hypervisor, on a host whose agent can stop answering (`go_down`)."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self._went_down = asyncio.Event()

    def go_down(self) -> None:
        self.down = True
        self._went_down.set()

    def come_up(self) -> None:
        self.down = False
        self._went_down = asyncio.Event()

    def _check(self) -> None:
        if self.down:
            raise HostDown("host h1 is down: cannot perform it there")

    async def wait_mirror(
        self, server_id: str, job_id: str, until: MirrorCondition, timeout: float
    ) -> MirrorStatus:
        """The agent's wait, which the caller gives up when the host goes down."""
        self._check()
        waiting = asyncio.ensure_future(super().wait_mirror(server_id, job_id, until, timeout))
        down = asyncio.ensure_future(self._went_down.wait())
        await asyncio.wait({waiting, down}, return_when=asyncio.FIRST_COMPLETED)
        down.cancel()
        if waiting.done():
            return waiting.result()
        waiting.cancel()
        raise HostDown("host h1 is down")

    async def mirror_status(self, server_id: str, job_id: str) -> MirrorStatus | None:
        self._check()
        return await super().mirror_status(server_id, job_id)

    async def is_running(self, server_id: str) -> bool:
        self._check()
        return await super().is_running(server_id)

    async def cancel_mirror(self, server_id: str, job_id: str, target: DiskChain) -> None:
        self._check()
        await super().cancel_mirror(server_id, job_id, target)


def test_a_migration_whose_host_is_down_waits_with_its_lease_and_finishes_when_it_returns(
    tmp_path: Path,
) -> None:
    async def go() -> None:
        hv = HostThatGoesDown()
        a = conductor(tmp_path, hv)
        await a.migrations.resume_all(exclusive=False)
        sid, vid = await attached_volume(a, tmp_path)
        mig = await a.migrations.migrate(ADMIN, vid, other_backend(a.volumes.get(ADMIN, vid).backend))
        job = await until("mirror", lambda: next(iter(hv.servers[sid].jobs), None))
        hv.go_down()
        await until("waiting", lambda: mig.id not in a.migrations.runs.tasks, timeout=10)
        await asyncio.sleep(LEASE_S * 3)  # several keeper ticks ask the host again, and wait again
        assert a.migrations.report(ADMIN, vid).migration.status == "running"  # no rollback blind
        assert lease(a, mig.id) == a.migrations.conductor.id and job in hv.servers[sid].jobs
        hv.come_up()
        hv.make_ready(sid, job)
        await until("done", lambda: a.migrations.report(ADMIN, vid).migration.status == "success", timeout=10)
        assert a.volumes.get(ADMIN, vid).backend == mig.dst_backend
        await a.migrations.stop()

    run(go)


def test_a_cancel_asked_of_another_conductor_reaches_the_one_driving(tmp_path: Path) -> None:
    async def go() -> None:
        hv = FakeHypervisorDriver()
        a, b = conductor(tmp_path, hv), conductor(tmp_path, hv)
        await a.migrations.resume_all(exclusive=False)
        sid, vid = await attached_volume(a, tmp_path)
        source = a.volumes.get(ADMIN, vid).backend
        await a.migrations.migrate(ADMIN, vid, other_backend(source))
        await until("mirror", lambda: next(iter(hv.servers[sid].jobs), None))
        await b.migrations.cancel(ADMIN, vid)  # another API worker took the request
        await until(
            "cancelled", lambda: a.migrations.report(ADMIN, vid).migration.status != "running", timeout=10
        )
        assert a.migrations.report(ADMIN, vid).migration.status == "cancelled"
        assert a.volumes.get(ADMIN, vid).backend == source and not hv.servers[sid].jobs
        await a.migrations.stop()

    run(go)
