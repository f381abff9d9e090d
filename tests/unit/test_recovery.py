"""Issue 10's crash matrix in-process (fake hypervisor, real files, real qemu-img, real SQLite):
every failpoint of a volume or server operation `abort`s the operation as a crash would, a new
control plane starts over the same data dir, and everything is settled — no transitional state,
no `.part` or unowned file, database sizes equal file sizes, `ferry doctor` clean."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from ferry.config import DoctorConfig
from ferry.db.models import Server, Snapshot, Volume
from ferry.domain.clock import utcnow
from ferry.domain.model import GiB
from ferry.domain.servers import ServerStatus
from ferry.domain.settling import UNSETTLED_VOLUME
from ferry.domain.volumes import SNAPSHOT_UNSETTLED, VolumeStatus
from ferry.drivers.hypervisor.fake import FakeHypervisorDriver
from ferry.services import failpoints
from ferry.services.app import Ferry
from ferry.services.images import register_image
from ferry.services.volume_create import VolumeCreate
from tests.unit.test_migration_service import ADMIN, make_ferry, run


@dataclass
class World:
    """One control plane and what a case works on."""

    tmp: Path
    hv: FakeHypervisorDriver
    app: Ferry
    vid: str = ""
    sid: str = ""
    source: str = ""


async def server(w: World, attach: bool = False) -> None:
    kernel = w.tmp / "vmlinuz"
    kernel.write_bytes(b"k")
    image = register_image(w.app.db, "img", kernel=str(kernel))
    w.sid = (await w.app.compute.create(ADMIN, "s", image.id, "tiny")).id
    if attach:
        await w.app.compute.attach(ADMIN, w.sid, w.vid)


async def volume(w: World) -> None:
    w.vid = (await w.app.volumes.create(ADMIN, VolumeCreate(size=1, name="v"))).id


async def clone(w: World) -> None:
    await volume(w)
    w.source, w.vid = w.vid, ""
    w.vid = (await w.app.volumes.create(ADMIN, VolumeCreate(source_volid=w.source, size=2))).id


async def from_snapshot(w: World) -> None:
    await volume(w)
    w.source = (await w.app.snapshots.create(ADMIN, w.vid, "s", None, {})).id
    w.vid = ""
    w.vid = (await w.app.volumes.create(ADMIN, VolumeCreate(snapshot_id=w.source))).id


Step = Callable[[World], Awaitable[None]]


def nothing(w: World) -> Awaitable[None]:
    return asyncio.sleep(0)


CASES: dict[str, tuple[Step, Step, Step, str]] = {
    # failpoint: (setup, the interrupted operation, check after restart, expected volume status)
    # Creating an empty volume (the request itself is cut).
    "volume-create.after_row": (nothing, volume, nothing, "error"),
    "volume-create.before_file": (nothing, volume, nothing, "error"),
    "volume-create.after_file": (nothing, volume, nothing, "available"),
    # Clones and volumes from snapshots (the background copy is cut).
    "clone:volume-create.before_file": (nothing, clone, nothing, "error"),
    "clone:volume-create.after_file": (nothing, clone, nothing, "available"),
    "from-snapshot:volume-create.before_file": (nothing, from_snapshot, nothing, "error"),
    "from-snapshot:volume-create.after_file": (nothing, from_snapshot, nothing, "available"),
    # Extend: rolled back or completed from the file's real size.
    "volume-extend.before_resize": (
        volume,
        lambda w: w.app.volumes.extend(ADMIN, w.vid, 3),
        nothing,
        "available",
    ),
    "volume-extend.after_resize": (
        volume,
        lambda w: w.app.volumes.extend(ADMIN, w.vid, 3),
        nothing,
        "available",
    ),
    # Extend of an in-use volume under a running guest: QEMU's size of the disk decides; with
    # the server shut off, the file's (the storage driver grew it offline). Back to in-use.
    "in-use:volume-extend.before_resize": (
        lambda w: _attached(w),
        lambda w: w.app.volumes.extend(ADMIN, w.vid, 3, allow_in_use=True),
        lambda w: _extend_calls(w, 0),
        "in-use",
    ),
    "in-use:volume-extend.after_resize": (
        lambda w: _attached(w),
        lambda w: w.app.volumes.extend(ADMIN, w.vid, 3, allow_in_use=True),
        lambda w: _extend_calls(w, 1),
        "in-use",
    ),
    "shut-off:volume-extend.before_resize": (
        lambda w: _attached(w, stopped=True),
        lambda w: w.app.volumes.extend(ADMIN, w.vid, 3, allow_in_use=True),
        lambda w: _extend_calls(w, 0),
        "in-use",
    ),
    "shut-off:volume-extend.after_resize": (
        lambda w: _attached(w, stopped=True),
        lambda w: w.app.volumes.extend(ADMIN, w.vid, 3, allow_in_use=True),
        lambda w: _extend_calls(w, 0),
        "in-use",
    ),
    # Delete: always finished.
    "volume-delete.before_retire": (volume, lambda w: w.app.volumes.delete(ADMIN, w.vid), nothing, "gone"),
    "volume-delete.after_retire": (volume, lambda w: w.app.volumes.delete(ADMIN, w.vid), nothing, "gone"),
    # A cascade delete: the volume and every snapshot go together.
    "cascade:volume-delete.before_retire": (
        lambda w: _with_snapshots(w),
        lambda w: w.app.volumes.delete(ADMIN, w.vid, cascade=True),
        nothing,
        "gone",
    ),
    "cascade:volume-delete.after_retire": (
        lambda w: _with_snapshots(w),
        lambda w: w.app.volumes.delete(ADMIN, w.vid, cascade=True),
        nothing,
        "gone",
    ),
    # Attach and detach: what the (fake) QEMU has decides.
    "attach.before_plug": (volume, lambda w: server(w, attach=True), nothing, "available"),
    "attach.after_plug": (volume, lambda w: server(w, attach=True), nothing, "in-use"),
    "detach.before_unplug": (
        lambda w: _attached(w),
        lambda w: w.app.compute.detach(ADMIN, w.sid, w.vid),
        nothing,
        "in-use",
    ),
    "detach.after_unplug": (
        lambda w: _attached(w),
        lambda w: w.app.compute.detach(ADMIN, w.sid, w.vid),
        nothing,
        "available",
    ),
    # Servers: the task state is settled from whether the process runs.
    "server-boot.before_spawn": (nothing, server, lambda w: _server_is(w, ServerStatus.ERROR), "none"),
    "server-boot.after_spawn": (nothing, server, lambda w: _server_is(w, ServerStatus.ACTIVE), "none"),
    "server-stop.after_stop": (
        server,
        lambda w: w.app.compute.stop(ADMIN, w.sid),
        lambda w: _server_is(w, ServerStatus.SHUTOFF),
        "none",
    ),
    "server-reboot.after_stop": (
        server,
        lambda w: w.app.compute.reboot(ADMIN, w.sid, "HARD"),
        lambda w: _server_is(w, ServerStatus.SHUTOFF),
        "none",
    ),
    "server-delete.before_destroy": (
        lambda w: _attached(w),
        lambda w: w.app.compute.delete(ADMIN, w.sid),
        lambda w: _server_is(w, None),
        "available",
    ),
    "server-delete.after_destroy": (
        lambda w: _attached(w),
        lambda w: w.app.compute.delete(ADMIN, w.sid),
        lambda w: _server_is(w, None),
        "available",
    ),
}


async def _with_snapshots(w: World) -> None:
    await volume(w)
    for i in range(2):
        await w.app.snapshots.create(ADMIN, w.vid, f"s{i}", None, {})


async def _attached(w: World, stopped: bool = False) -> None:
    await volume(w)
    await server(w, attach=True)
    if stopped:
        await w.app.compute.stop(ADMIN, w.sid)


async def _extend_calls(w: World, count: int) -> None:
    """How many live extends reached the hypervisor (a shut-off server's disk grows offline)."""
    assert [c for c in w.hv.calls if c[0] == "extend_volume"] == [
        ("extend_volume", w.sid, w.vid, str(3 * GiB))
    ] * count


async def _server_is(w: World, status: ServerStatus | None) -> None:
    with w.app.db() as s:
        srv = s.get(Server, w.sid)
        assert (srv.status if srv else None) is status
        assert srv is None or srv.task_state is None


async def interrupt(w: World, point: str, operation: Step) -> None:
    """Run `operation` with `point` armed to abort, as a crash would cut it."""
    failpoints.ARMED.clear()
    failpoints.ARMED[point] = "abort"
    try:
        try:
            await operation(w)
        except failpoints.Abort:
            return
        # A copy runs in the background: wait for it to die at the failpoint.
        tasks = list(w.app.volumes._tasks)
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert any(isinstance(r, failpoints.Abort) for r in results), f"{point} never fired"
    finally:
        failpoints.ARMED.clear()
        # An interrupted create never answered its id.
        w.vid, w.sid = w.vid or newest(w.app, Volume), w.sid or newest(w.app, Server)


def newest(app: Ferry, model: type[Volume] | type[Server]) -> str:
    with app.db() as s:
        return s.scalar(select(model.id).order_by(model.created_at.desc()).limit(1)) or ""


async def assert_settled(app: Ferry, case: str) -> None:
    with app.db() as s:
        stuck = s.execute(select(Volume.id, Volume.status).where(Volume.status.in_(UNSETTLED_VOLUME))).all()
        assert not stuck, (case, stuck)
        snaps = s.scalars(select(Snapshot.id).where(Snapshot.status.in_(SNAPSHOT_UNSETTLED))).all()
        assert not snaps, (case, snaps)
        tasks = s.execute(select(Server.id, Server.task_state).where(Server.task_state.is_not(None))).all()
        assert not tasks, (case, tasks)
        sized = [
            (vol.size_gib, app.backends.location(s, vol))
            for vol in s.scalars(
                select(Volume).where(Volume.status.in_((VolumeStatus.AVAILABLE, VolumeStatus.IN_USE)))
            )
        ]
    for driver in app.backends.drivers.values():
        assert not driver.stored_partials(), (case, driver.stored_partials())
    for size, loc in sized:
        driver = app.backends.driver(loc.backend)
        assert await driver.virtual_size(driver.layer_path(loc.name_id, loc.active_layer)) == size * GiB, case
    assert not await app.doctor.check(ADMIN), case


@pytest.mark.parametrize("case", CASES)
def test_crash_at_every_failpoint_is_settled_at_start(tmp_path: Path, case: str) -> None:
    setup, operation, check, want = CASES[case]
    point = case.rsplit(":", 1)[-1]

    async def go() -> None:
        hv = FakeHypervisorDriver()
        w = World(tmp_path, hv, make_ferry(tmp_path, hv))
        await setup(w)
        await interrupt(w, point, operation)
        w.app = make_ferry(tmp_path, hv)  # a new control plane; the (fake) QEMU processes live on
        await w.app.start()
        await check(w)
        await assert_settled(w.app, case)
        with w.app.db() as s:
            vol = s.get(Volume, w.vid) if w.vid else None
            if want != "none":
                assert (vol.status if vol else "gone") == want, case
            if vol is not None and vol.status is VolumeStatus.ERROR:
                assert vol.status_reason, case
        if vol is not None and point.startswith("volume-extend"):
            assert (
                vol.size_gib == (3 if point.endswith("after_resize") else 1) and vol.target_size_gib is None
            )
        if vol is not None and vol.status is VolumeStatus.ERROR:
            await w.app.volumes.delete(ADMIN, w.vid)  # the way out
        if w.source and "clone" in case:
            await w.app.volumes.delete(ADMIN, w.source)  # no longer "being copied into"
        await assert_settled(w.app, case)
        await w.app.stop()

    run(go)


def test_a_partial_copy_left_by_a_crash_is_removed_at_start(tmp_path: Path) -> None:
    async def go() -> None:
        hv = FakeHypervisorDriver()
        w = World(tmp_path, hv, make_ferry(tmp_path, hv))
        await interrupt(w, "volume-create.before_file", volume)
        with w.app.db() as s:
            vol = s.get(Volume, w.vid)
            assert vol is not None
            driver = w.app.backends.driver(vol.backend)
            part = driver.part_path(vol.name_id, vol.active_layer_id)  # type: ignore[attr-defined]
        part.parent.mkdir(parents=True, exist_ok=True)
        part.write_bytes(b"\0" * 65536)  # what a copy cut mid-way leaves
        stray = driver.part_path(vol.name_id, "0f1e2d3c-0000-4000-8000-000000000001")  # type: ignore[attr-defined]
        stray.write_bytes(b"x")
        w.app = make_ferry(tmp_path, hv)
        await w.app.start()
        assert not part.exists() and not stray.exists()
        assert w.app.volumes.get(ADMIN, w.vid).status == "error"
        await assert_settled(w.app, "partial")

    run(go)


def test_doctor_reports_stuck_statuses_and_unowned_files_and_repairs_them(tmp_path: Path) -> None:
    async def go() -> None:
        hv = FakeHypervisorDriver()
        app = make_ferry(tmp_path, hv)
        app = Ferry(replace(app.config, doctor=DoctorConfig(stuck_after_s=60)), hypervisor=hv)
        w = World(tmp_path, hv, app)
        await volume(w)
        stuck = w.vid
        await volume(w)
        with app.db() as s:  # a lost task: extending for an hour, its file never grown
            long_ago = utcnow() - timedelta(hours=1)
            s.execute(
                update(Volume)
                .where(Volume.id == stuck)
                .values(status=VolumeStatus.EXTENDING, target_size_gib=2, updated_at=long_ago)
            )
            s.commit()
            vol = s.get(Volume, w.vid)
            assert vol is not None
            driver = app.backends.driver(vol.backend)
            root = Path(driver.config.path)
        orphan = root / "volume-0f1e2d3c-0000-4000-8000-000000000002"
        orphan.mkdir()
        (orphan / "0f1e2d3c-0000-4000-8000-000000000003.qcow2").write_bytes(b"x")
        part = driver.part_path(vol.name_id, "0f1e2d3c-0000-4000-8000-000000000004")  # type: ignore[attr-defined]
        part.write_bytes(b"x")
        for p in (orphan / "0f1e2d3c-0000-4000-8000-000000000003.qcow2", part):
            os.utime(p, (time.time() - 3600, time.time() - 3600))
        kinds = {d.kind: d for d in await app.doctor.check(ADMIN)}
        assert set(kinds) == {"stuck-volume", "orphan-file", "partial-file"}, kinds
        assert all(d.repair == "ferry doctor --repair" for d in kinds.values())
        report = await app.doctor.repair(ADMIN)
        assert len(report.repaired) == 3 and not report.drift, report
        assert app.volumes.get(ADMIN, stuck).status == "available"  # the file still had 1 GiB
        assert not orphan.exists() and not part.exists()
        await assert_settled(app, "repair")

    run(go)


def test_doctor_reports_a_size_mismatch_with_its_repair(tmp_path: Path) -> None:
    async def go() -> None:
        hv = FakeHypervisorDriver()
        w = World(tmp_path, hv, make_ferry(tmp_path, hv))
        await volume(w)
        with w.app.db() as s:  # what an extend without a durable target could leave
            s.execute(update(Volume).where(Volume.id == w.vid).values(size_gib=2))
            s.commit()
        [drift] = await w.app.doctor.check(ADMIN)
        assert drift.kind == "size-mismatch" and drift.resource == w.vid
        assert "ferry volume delete" in drift.repair

    run(go)
