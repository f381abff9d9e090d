"""Extending an attached volume (Cinder 3.42, Nova's extend_volume) on the fake hypervisor: the
status moves in-use -> extending -> in-use, the running disk grows through the hypervisor (the
file through the storage driver when the server is shut off), refusals change nothing, and a
failure leaves `error_extending`."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from ferry import config as cfgmod
from ferry.api import versions
from ferry.api.app import create_app
from ferry.db.models import Server, Volume
from ferry.domain.errors import BadRequest, Conflict, DriverError
from ferry.domain.model import GiB
from ferry.domain.servers import ServerTaskState
from ferry.domain.volumes import MigrationStatus, VolumeStatus
from ferry.drivers.hypervisor.fake import FakeHypervisorDriver
from ferry.services import bootstrap
from ferry.services.app import Ferry
from ferry.services.identity import IdentityService
from ferry.services.images import register_image
from ferry.services.volume_create import VolumeCreate
from testkit.server import Api
from tests.unit import test_migration_service as migration_tests
from tests.unit.test_console import token
from tests.unit.test_migration_service import ADMIN, attached_volume, run, until
from tests.unit.test_refusals import rows, server_row


class HeldExtend(FakeHypervisorDriver):
    """A fake whose live extends wait for `release` (to look at the volume meanwhile)."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def extend_volume(self, server_id: str, volume_id: str, new_size: int) -> None:
        self.entered.set()
        await self.release.wait()
        await super().extend_volume(server_id, volume_id, new_size)


def make_ferry(tmp: Path, hv: FakeHypervisorDriver) -> Ferry:
    """Looked up at call time: test_remote_drivers runs these tests with the drivers proxied."""
    return migration_tests.make_ferry(tmp, hv)


def status(app: Ferry, vid: str) -> tuple[VolumeStatus, int, int | None]:
    with app.db() as s:
        vol = s.get(Volume, vid)
        assert vol is not None
        return vol.status, vol.size_gib, vol.target_size_gib


async def active_size(app: Ferry, vid: str) -> int:
    with app.db() as s:
        vol = s.get(Volume, vid)
        assert vol is not None
        loc = app.backends.location(s, vol)
    driver = app.backends.driver(loc.backend)
    return await driver.virtual_size(driver.layer_path(loc.name_id, loc.active_layer))


def test_an_in_use_extend_grows_the_running_disk_and_returns_to_in_use(tmp_path: Path) -> None:
    async def go() -> None:
        hv = HeldExtend()
        app = make_ferry(tmp_path, hv)
        sid, vid = await attached_volume(app, tmp_path, snapshots=2)  # the active overlay grows
        task = asyncio.create_task(app.volumes.extend(ADMIN, vid, 3, allow_in_use=True))
        await asyncio.wait_for(hv.entered.wait(), 10)
        # The intent is durable before the disk grows; the server takes no task meanwhile.
        assert status(app, vid) == (VolumeStatus.EXTENDING, 1, 3)
        with pytest.raises(Conflict, match="being extended"):
            await app.compute.stop(ADMIN, sid)
        assert server_row(app, sid)[:2] == ("ACTIVE", None)
        hv.release.set()
        await task
        assert status(app, vid) == (VolumeStatus.IN_USE, 3, None)
        assert ("extend_volume", sid, vid, str(3 * GiB)) in hv.calls
        assert next(d.size for d in await hv.disks(sid) if d.volume_id == vid) == 3 * GiB
        assert await active_size(app, vid) == 3 * GiB
        assert app.volumes.get(ADMIN, vid).size_gib == 3

    run(go)


def test_below_3_42_an_in_use_volume_must_be_available(tmp_path: Path) -> None:
    async def go() -> None:
        hv = FakeHypervisorDriver()
        app = make_ferry(tmp_path, hv)
        _, vid = await attached_volume(app, tmp_path)
        before = rows(app, vid)
        with pytest.raises(BadRequest, match="must be available"):
            await app.volumes.extend(ADMIN, vid, 2)
        assert rows(app, vid) == before
        assert not [c for c in hv.calls if c[0] == "extend_volume"]

    run(go)


def test_a_migrating_volume_is_not_extended(tmp_path: Path) -> None:
    async def go() -> None:
        hv = FakeHypervisorDriver()
        app = make_ferry(tmp_path, hv)
        _, vid = await attached_volume(app, tmp_path)
        with app.db.begin() as s:
            s.execute(
                update(Volume).where(Volume.id == vid).values(migration_status=MigrationStatus.MIGRATING)
            )
        before = rows(app, vid)
        with pytest.raises(Conflict, match="being migrated"):
            await app.volumes.extend(ADMIN, vid, 2, allow_in_use=True)
        assert rows(app, vid) == before and status(app, vid) == (VolumeStatus.IN_USE, 1, None)
        assert not [c for c in hv.calls if c[0] == "extend_volume"]

    run(go)


@pytest.mark.parametrize("task", [ServerTaskState.REBOOTING, ServerTaskState.MIGRATING])
def test_a_busy_server_refuses_the_extend(tmp_path: Path, task: ServerTaskState) -> None:
    async def go() -> None:
        hv = FakeHypervisorDriver()
        app = make_ferry(tmp_path, hv)
        sid, vid = await attached_volume(app, tmp_path)
        with app.db.begin() as s:
            s.execute(update(Server).where(Server.id == sid).values(task_state=task))
        before, server_before = rows(app, vid), server_row(app, sid)
        with pytest.raises(Conflict, match=f"busy \\({task}\\)"):
            await app.volumes.extend(ADMIN, vid, 2, allow_in_use=True)
        assert rows(app, vid) == before and server_row(app, sid) == server_before

    run(go)


def test_an_errored_server_refuses_the_extend(tmp_path: Path) -> None:
    async def go() -> None:
        hv = FakeHypervisorDriver()
        app = make_ferry(tmp_path, hv)
        sid, vid = await attached_volume(app, tmp_path)
        with app.db.begin() as s:
            s.execute(update(Server).where(Server.id == sid).values(status="ERROR"))
        with pytest.raises(Conflict, match="ACTIVE or SHUTOFF"):
            await app.volumes.extend(ADMIN, vid, 2, allow_in_use=True)
        assert status(app, vid) == (VolumeStatus.IN_USE, 1, None)

    run(go)


def test_a_shut_off_servers_volume_grows_offline(tmp_path: Path) -> None:
    async def go() -> None:
        hv = FakeHypervisorDriver()
        app = make_ferry(tmp_path, hv)
        sid, vid = await attached_volume(app, tmp_path)
        await app.compute.stop(ADMIN, sid)
        await app.volumes.extend(ADMIN, vid, 2, allow_in_use=True)
        assert status(app, vid) == (VolumeStatus.IN_USE, 2, None)
        assert not [c for c in hv.calls if c[0] == "extend_volume"]  # no QEMU has it open
        assert await active_size(app, vid) == 2 * GiB
        await app.compute.start(ADMIN, sid)  # boots with the grown disk
        assert server_row(app, sid)[:2] == ("ACTIVE", None)

    run(go)


def test_a_failed_live_extend_leaves_error_extending(tmp_path: Path) -> None:
    async def go() -> None:
        hv = FakeHypervisorDriver()
        app = make_ferry(tmp_path, hv)
        sid, vid = await attached_volume(app, tmp_path)
        hv.fail_next("extend_volume", DriverError("block_resize: Could not resize: Operation not permitted"))
        with pytest.raises(DriverError, match="Could not resize"):
            await app.volumes.extend(ADMIN, vid, 2, allow_in_use=True)
        assert status(app, vid)[:2] == (VolumeStatus.ERROR_EXTENDING, 1)
        assert await active_size(app, vid) == 1 * GiB
        # The server's task slot is free: it was never taken.
        await app.compute.stop(ADMIN, sid)
        await until("stopped", lambda: server_row(app, sid)[0] == "SHUTOFF")

    run(go)


def test_a_server_whose_qemu_died_answers_409_not_404(tmp_path: Path) -> None:
    async def go() -> None:
        hv = FakeHypervisorDriver()
        app = make_ferry(tmp_path, hv)
        sid, vid = await attached_volume(app, tmp_path)
        hv.crash(sid)  # still ACTIVE in the database; no process has the disk
        with pytest.raises(Conflict, match=f"Server {sid} cannot grow volume {vid}"):
            await app.volumes.extend(ADMIN, vid, 2, allow_in_use=True)
        assert status(app, vid)[:2] == (VolumeStatus.ERROR_EXTENDING, 1)

    run(go)


def test_an_available_volume_still_extends_through_the_storage_driver(tmp_path: Path) -> None:
    async def go() -> None:
        hv = FakeHypervisorDriver()
        app = make_ferry(tmp_path, hv)
        await attached_volume(app, tmp_path)
        other = (await app.volumes.create(ADMIN, VolumeCreate(size=1))).id
        await app.volumes.extend(ADMIN, other, 2, allow_in_use=True)
        assert status(app, other) == (VolumeStatus.AVAILABLE, 2, None)
        assert not [c for c in hv.calls if c[0] == "extend_volume"]

    run(go)


# -- over HTTP: os-extend's microversion gate ----------------------------------------------------
def extend_at(api: Api, vid: str, size: object, version: str | None) -> Any:
    headers = {"X-Auth-Token": api.token}
    if version is not None:
        headers["OpenStack-API-Version"] = f"volume {version}"
    path = f"/volume/v3/{api.project_id}/volumes/{vid}/action"
    return api.client.post(path, headers=headers, json={"os-extend": {"new_size": size}})


def test_os_extend_of_an_in_use_volume_needs_3_42(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Ferry advertises 3.42 once the microversion range is raised; until then this test raises it.
    if (versions._parse(versions.VOLUME_MAX) or (0, 0)) < (3, 42):
        monkeypatch.setattr(versions, "VOLUME_MAX", "3.42")
    cfg = cfgmod.default_config(tmp_path / "data")
    (tmp_path / "data").mkdir(parents=True)
    bootstrap.setup_database(cfg, bootstrap.Credentials("a", "s", "d"))
    hv = FakeHypervisorDriver()
    app = Ferry(cfg, hypervisor=hv)
    with app.db.begin() as s:
        ident = IdentityService(app.db, cfg.token_lifetime_s)
        ident.ensure_user(s, "other", "o", ident.ensure_project(s, "other"), "member")
    kernel = tmp_path / "vmlinuz"
    kernel.write_bytes(b"k")
    image = register_image(app.db, "img", kernel=str(kernel)).id
    with TestClient(create_app(app)) as client:
        other, demo = token(client, "other", "o", "other"), token(client, "demo", "d", "demo")
        sid = str(demo.ok(demo.compute("POST", "/servers", json={"server": {
            "name": "s", "imageRef": image, "flavorRef": "tiny"}}), 202)["server"]["id"])  # fmt: skip
        vid = str(demo.ok(demo.volume("POST", "/volumes", json={"volume": {"size": 1}}), 202)["volume"]["id"])
        demo.ok(demo.compute("POST", f"/servers/{sid}/os-volume_attachments", json={"volumeAttachment": {
            "volumeId": vid}}), 200)  # fmt: skip
        for version in (None, "3.0", "3.41"):
            resp = extend_at(demo, vid, 2, version)
            assert resp.status_code == 400 and "must be available" in resp.text, (version, resp.text)
        assert not [c for c in hv.calls if c[0] == "extend_volume"]
        assert extend_at(other, vid, 2, "3.42").status_code == 404  # another project's volume
        assert extend_at(demo, vid, 1, "3.42").status_code == 400  # not larger
        assert extend_at(demo, vid, "2", "3.42").status_code == 400
        resp = extend_at(demo, vid, 2, "3.42")
        assert resp.status_code == 202, resp.text
        shown = demo.ok(demo.volume("GET", f"/volumes/{vid}"))["volume"]
        assert (shown["status"], shown["size"]) == ("in-use", 2)
        assert ("extend_volume", sid, vid, str(2 * GiB)) in hv.calls
