"""A refused request changes nothing (issue 10, item 4): each refusal leaves every row it looked at
exactly as it was, and what the API reports as released is released."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from ferry.db.models import Server, Snapshot, Volume
from ferry.domain.errors import Conflict
from ferry.domain.ids import new_id
from ferry.domain.model import LayerFile
from ferry.drivers.hypervisor.fake import FakeHypervisorDriver
from ferry.services.app import Ferry
from ferry.services.volume_create import VolumeCreate
from ferry.services.volumes import VolumeFilter
from testkit.scenario import other_backend
from tests.unit.test_migration_service import ADMIN, AutoReadyDriver, attached_volume, make_ferry, run, until


def rows(app: Ferry, volume_id: str) -> dict[str, Any]:
    """Everything a refused request could have touched, as plain values."""
    with app.db() as s:
        vol = s.get(Volume, volume_id)
        assert vol is not None
        snaps = s.query(Snapshot).filter(Snapshot.volume_id == volume_id).order_by(Snapshot.id).all()
        return {
            "volume": (vol.status, vol.migration_status, vol.next_layer_position, vol.updated_at),
            "snapshots": [(sn.id, sn.status, sn.updated_at) for sn in snaps],
        }


def server_row(app: Ferry, server_id: str) -> tuple[Any, ...]:
    with app.db() as s:
        srv = s.get(Server, server_id)
        assert srv is not None
        return (srv.status, srv.task_state, srv.updated_at, srv.fault)


def creating_clone(app: Ferry, **source: str) -> str:
    """A volume still being created from a source (as a clone in flight looks in the database)."""
    with app.db.begin() as s:
        model = s.get(Volume, source.get("source_volid") or s.get(Snapshot, source["snapshot_id"]).volume_id)
        assert model is not None
        clone = Volume(
            **{
                c: getattr(model, c)
                for c in ("project_id", "user_id", "size_gib", "backend", "created_at", "updated_at")
            },
            id=new_id(),
            name="clone",
            status="creating",
            name_id=new_id(),
            active_layer_id=new_id(),
            meta={},
            **source,
        )
        s.add(clone)
        return clone.id


@pytest.mark.parametrize("source", ["volume", "snapshot"])
def test_a_refused_cascade_delete_keeps_every_snapshot(tmp_path: Path, source: str) -> None:
    async def go() -> None:
        app = make_ferry(tmp_path, FakeHypervisorDriver())
        vid = (await app.volumes.create(ADMIN, VolumeCreate(size=1, name="v"))).id
        snap = await app.snapshots.create(ADMIN, vid, "s1", None, {})
        await app.snapshots.create(ADMIN, vid, "s2", None, {})
        creating_clone(app, **({"source_volid": vid} if source == "volume" else {"snapshot_id": snap.id}))
        before = rows(app, vid)
        with pytest.raises(Conflict, match="being copied into"):
            await app.volumes.delete(ADMIN, vid, cascade=True)
        assert rows(app, vid) == before
        assert len(before["snapshots"]) == 2 and all(st == "available" for _, st, _ in before["snapshots"])

    run(go)


def test_a_cascade_delete_waits_for_a_snapshot_being_created(tmp_path: Path) -> None:
    async def go() -> None:
        app = make_ferry(tmp_path, FakeHypervisorDriver())
        vid = (await app.volumes.create(ADMIN, VolumeCreate(size=1, name="v"))).id
        snap = await app.snapshots.create(ADMIN, vid, "s1", None, {})
        with app.db.begin() as s:
            s.execute(update(Snapshot).where(Snapshot.id == snap.id).values(status="creating"))
        before = rows(app, vid)
        with pytest.raises(Conflict, match="creating"):
            await app.volumes.delete(ADMIN, vid, cascade=True)
        assert rows(app, vid) == before

    run(go)


def test_a_cascade_delete_takes_the_volume_and_its_snapshots_at_once(tmp_path: Path) -> None:
    async def go() -> None:
        app = make_ferry(tmp_path, FakeHypervisorDriver())
        vid = (await app.volumes.create(ADMIN, VolumeCreate(size=1, name="v"))).id
        for i in range(3):
            await app.snapshots.create(ADMIN, vid, f"s{i}", None, {})
        vol = app.volumes.get(ADMIN, vid)
        vdir = Path(app.backends.driver(vol.backend).volume_dir(vol.name_id))
        await app.volumes.delete(ADMIN, vid, cascade=True)
        assert not app.snapshots.list_snapshots(ADMIN, volume_id=None) and not vdir.exists()
        assert not app.volumes.list_volumes(ADMIN, VolumeFilter())

    run(go)


def test_refused_server_actions_leave_the_server_as_it_was(tmp_path: Path) -> None:
    async def go() -> None:
        hv = FakeHypervisorDriver()
        app = make_ferry(tmp_path, hv)
        sid, vid = await attached_volume(app, tmp_path)
        await app.migrations.migrate(ADMIN, vid, other_backend(app.volumes.get(ADMIN, vid).backend))
        job = await until("mirror", lambda: next(iter(hv.servers[sid].jobs), None))
        for action in (app.compute.delete, app.compute.stop, app.compute.start):
            before = server_row(app, sid)
            with pytest.raises(Conflict):
                await action(ADMIN, sid)
            assert server_row(app, sid) == before, action.__name__
        assert server_row(app, sid)[1] is None  # no task left claimed
        hv.make_ready(sid, job)
        await until("success", lambda: app.volumes.get(ADMIN, vid).migration_status == "success")
        await app.compute.stop(ADMIN, sid)  # released: the refused delete left nothing behind
        assert app.compute.get(ADMIN, sid).status == "SHUTOFF"

    run(go)


class HeldCleanup(AutoReadyDriver):
    """Holds a migration in its cleanup step (dropping the old block nodes) until released."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()
        self.holding = asyncio.Event()

    async def drop_files(self, server_id: str, files: tuple[LayerFile, ...]) -> None:
        self.holding.set()
        await self.release.wait()
        await super().drop_files(server_id, files)


def test_migration_success_is_reported_only_once_nothing_holds_the_volume(tmp_path: Path) -> None:
    async def go() -> None:
        hv = HeldCleanup()
        app = make_ferry(tmp_path, hv)
        sid, vid = await attached_volume(app, tmp_path)
        home = app.volumes.get(ADMIN, vid).backend
        mig = await app.migrations.migrate(ADMIN, vid, other_backend(home))
        await asyncio.wait_for(hv.holding.wait(), 30)
        vol = app.volumes.get(ADMIN, vid)
        assert vol.backend == mig.dst_backend  # committed, cleanup still running
        assert vol.migration_status == "migrating"  # so it is not reported as done yet
        with pytest.raises(Conflict):
            await app.compute.stop(ADMIN, sid)
        hv.release.set()
        await until("success", lambda: app.volumes.get(ADMIN, vid).migration_status == "success")
        back = await app.migrations.migrate(ADMIN, vid, home)  # what success reports, it enforces
        await app.migrations.wait(back.id)
        assert app.migrations.report(ADMIN, vid).migration.status == "success"

    run(go)


def test_a_migration_is_refused_while_the_server_is_busy(tmp_path: Path) -> None:
    async def go() -> None:
        app = make_ferry(tmp_path, AutoReadyDriver())
        sid, vid = await attached_volume(app, tmp_path)
        with app.db.begin() as s:
            s.execute(update(Server).where(Server.id == sid).values(task_state="powering-off"))
        before = rows(app, vid)
        with pytest.raises(Conflict, match="busy"):
            await app.migrations.migrate(ADMIN, vid, other_backend(app.volumes.get(ADMIN, vid).backend))
        assert rows(app, vid) == before

    run(go)


def test_a_type_deleted_while_a_volume_of_it_is_created_is_a_conflict(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The other side of the type-delete race: the type goes between the create's lookup and its
    insert (the foreign key then fails): a 409 that says so, and no volume row."""
    from ferry.db.models import VolumeType
    from ferry.services import volume_create as volumes_module

    async def go() -> None:
        app = make_ferry(tmp_path, FakeHypervisorDriver())
        with app.db.begin() as s:
            s.add(VolumeType(id=new_id(), name="doomed", is_public=True, extra_specs={}))
        chosen = volumes_module.choose_backend

        def choose_then_lose_the_type(*args: Any, **kwargs: Any) -> Any:
            with app.db.begin() as other:  # another request deletes the type meanwhile
                other.query(VolumeType).filter(VolumeType.name == "doomed").delete()
            return chosen(*args, **kwargs)

        monkeypatch.setattr(volumes_module, "choose_backend", choose_then_lose_the_type)
        with pytest.raises(Conflict, match="was deleted"):
            await app.volumes.create(ADMIN, VolumeCreate(size=1, name="v", volume_type="doomed"))
        assert not app.volumes.list_volumes(ADMIN, VolumeFilter())

    run(go)
