"""Nova's instance actions (`os-instance-actions`): every server action Ferry performs is
recorded under its request id with its event; readers see their own servers' actions, events by
microversion (2.51), details (traceback, host) for admins only; another project's server is 404;
2.58 pages; bad input a 400. The API half runs a real `ferry serve` (fake hypervisor); the
extend, the detach refusal and the live migration run in process."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ferry.domain.errors import Conflict
from ferry.domain.model import DiskChain
from ferry.drivers.hypervisor.fake import FakeHypervisorDriver
from ferry.services.app import Ferry
from ferry.services.images import register_image
from ferry.services.instance_actions import ActionQuery
from ferry.services.volume_create import VolumeCreate
from testkit.server import Api, FerryServer
from tests.conftest import fake_hypervisor_server, kernel_image
from tests.unit.test_api_hosts import openstack
from tests.unit.test_live_migration import MEMBER, control_plane, server_with_volume
from tests.unit.test_migration_service import ADMIN, attached_volume, make_ferry, run, until

pytestmark = pytest.mark.db
V = {"OpenStack-API-Version": "compute 2.80"}
V21 = {"OpenStack-API-Version": "compute 2.1"}
V250 = {"OpenStack-API-Version": "compute 2.50"}
V257 = {"OpenStack-API-Version": "compute 2.57"}
UNKNOWN = "00000000-0000-4000-8000-000000000000"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FerryServer]:
    yield from fake_hypervisor_server(tmp_path_factory.mktemp("ferry"))


@pytest.fixture(scope="module")
def image(server: FerryServer, tmp_path_factory: pytest.TempPathFactory) -> str:
    return kernel_image(server, tmp_path_factory.mktemp("image"), "actions-img")


@pytest.fixture(scope="module")
def reader(server: FerryServer) -> Api:
    return server.api(server.add_user("actions-reader", "actions-reader-pw", "demo", "reader"))


@pytest.fixture(scope="module")
def other(server: FerryServer) -> Api:
    return server.api(server.add_user("actions-other", "actions-other-pw", "actions-other", "member"))


def boot(api: Api, image: str) -> str:
    return booted(api, image)[0]


def booted(api: Api, image: str) -> tuple[str, str]:
    """A new server's id and the request id of its create."""
    body = {"server": {"name": "s", "imageRef": image, "flavorRef": "1"}}
    resp = api.compute("POST", "/servers", json=body)
    sid: str = api.ok(resp, 202)["server"]["id"]
    rid = resp.headers["x-compute-request-id"]  # Nova's name for it, on the compute API
    assert rid == resp.headers["x-openstack-request-id"] and rid.startswith("req-")
    return sid, rid


def action(api: Api, sid: str, body: dict[str, Any]) -> str:
    resp = api.compute("POST", f"/servers/{sid}/action", json=body)
    assert resp.status_code == 202, resp.text
    return resp.headers["x-openstack-request-id"]


def actions(api: Api, sid: str, headers: dict[str, str] = V, **params: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = api.ok(
        api.compute("GET", f"/servers/{sid}/os-instance-actions", headers=headers, params=params)
    )["instanceActions"]
    return found


def show(api: Api, sid: str, rid: str, headers: dict[str, str] = V) -> dict[str, Any]:
    got: dict[str, Any] = api.ok(
        api.compute("GET", f"/servers/{sid}/os-instance-actions/{rid}", headers=headers)
    )["instanceAction"]
    return got


def test_each_server_action_is_recorded_under_its_request_id(demo: Api, admin: Api, image: str) -> None:
    sid, create = booted(demo, image)
    stop = action(demo, sid, {"os-stop": None})
    start = action(demo, sid, {"os-start": None})
    reboot = action(demo, sid, {"reboot": {"type": "HARD"}})
    vid = demo.ok(demo.volume("POST", "/volumes", json={"volume": {"size": 1}}), 202)["volume"]["id"]
    attach = demo.compute(
        "POST", f"/servers/{sid}/os-volume_attachments", json={"volumeAttachment": {"volumeId": vid}}
    )
    assert attach.status_code == 200, attach.text
    detach = demo.compute("DELETE", f"/servers/{sid}/os-volume_attachments/{vid}")
    assert detach.status_code == 202, detach.text
    listed = actions(demo, sid)
    assert [a["action"] for a in listed] == [
        "detach_volume", "attach_volume", "reboot", "start", "stop", "create"
    ]  # fmt: skip
    by_name = {a["action"]: a for a in listed}
    assert [by_name[n]["request_id"] for n in ("create", "stop", "start", "reboot")] == [
        create,
        stop,
        start,
        reboot,
    ]
    assert by_name["attach_volume"]["request_id"] == attach.headers["x-openstack-request-id"]
    assert by_name["detach_volume"]["request_id"] == detach.headers["x-openstack-request-id"]
    first = listed[-1]
    assert set(first) == {
        "action", "instance_uuid", "request_id", "user_id", "project_id", "start_time", "message",
        "updated_at",
    }  # fmt: skip
    assert first["instance_uuid"] == sid and first["message"] is None
    events = {a["action"]: show(admin, sid, a["request_id"])["events"] for a in listed}
    assert {n: [(e["event"], e["result"]) for e in ev] for n, ev in events.items()} == {
        "create": [("compute__do_build_and_run_instance", "Success")],
        "stop": [("compute_stop_instance", "Success")],
        "start": [("compute_start_instance", "Success")],
        "reboot": [("compute_reboot_instance", "Success")],
        "attach_volume": [("compute_attach_volume", "Success")],
        "detach_volume": [("compute_detach_volume", "Success")],
    }
    assert all(e["finish_time"] and e["host"] == "ferry" for ev in events.values() for e in ev)


def test_events_by_microversion_and_role(demo: Api, admin: Api, reader: Api, image: str) -> None:
    sid = boot(demo, image)
    rid = actions(demo, sid)[0]["request_id"]
    assert "events" not in show(demo, sid, rid, V250)  # before 2.51: events are the admins'
    assert "events" in show(admin, sid, rid, V250)
    member = show(reader, sid, rid)["events"][0]  # 2.51+: readers see them, without details
    assert "traceback" not in member and "host" not in member
    assert member["hostId"] and member["result"] == "Success"
    for_admin = show(admin, sid, rid)["events"][0]
    assert for_admin["traceback"] is None and for_admin["host"] == "ferry"
    assert for_admin["hostId"] == member["hostId"]
    old = show(admin, sid, rid, V21)
    assert "updated_at" not in old and "hostId" not in old["events"][0]  # 2.58, 2.62
    assert "updated_at" not in actions(reader, sid, V257)[0]


def test_another_projects_server_and_unknown_ids_are_404(demo: Api, other: Api, image: str) -> None:
    sid = boot(demo, image)
    rid = actions(demo, sid)[0]["request_id"]
    for path in (f"/servers/{sid}/os-instance-actions", f"/servers/{sid}/os-instance-actions/{rid}",
                 f"/servers/{UNKNOWN}/os-instance-actions", f"/servers/{sid}/os-instance-actions/req-nope",
                 "/servers/not-a-uuid/os-instance-actions"):  # fmt: skip
        resp = other.compute("GET", path, headers=V) if "req-nope" not in path else demo.compute("GET", path)
        assert resp.status_code == 404, (path, resp.text)


def test_a_deleted_servers_actions_stay_readable_from_2_21(demo: Api, image: str) -> None:
    sid = boot(demo, image)
    assert demo.compute("DELETE", f"/servers/{sid}").status_code == 204
    listed = actions(demo, sid)
    assert [a["action"] for a in listed] == ["delete", "create"]
    assert show(demo, sid, listed[0]["request_id"])["events"][0]["event"] == "compute_terminate_instance"
    assert show(demo, sid, listed[0]["request_id"])["events"][0]["result"] == "Success"
    old = {"OpenStack-API-Version": "compute 2.20"}
    assert demo.compute("GET", f"/servers/{sid}/os-instance-actions", headers=old).status_code == 404


def test_pages_with_limit_and_marker_and_changes_since(demo: Api, image: str) -> None:
    sid = boot(demo, image)
    for _ in range(2):
        action(demo, sid, {"reboot": {"type": "SOFT"}})
    everything = actions(demo, sid)
    assert len(everything) == 3
    page = demo.ok(demo.compute("GET", f"/servers/{sid}/os-instance-actions", headers=V, params={"limit": 2}))
    assert [a["request_id"] for a in page["instanceActions"]] == [a["request_id"] for a in everything[:2]]
    assert (
        page["links"][0]["rel"] == "next"
        and f"marker={everything[1]['request_id']}" in page["links"][0]["href"]
    )
    rest = actions(demo, sid, limit=2, marker=everything[1]["request_id"])
    assert [a["request_id"] for a in rest] == [everything[2]["request_id"]]
    assert actions(demo, sid, limit=0) == []
    newest = everything[0]["updated_at"]
    assert [a["request_id"] for a in actions(demo, sid, **{"changes-since": newest})] == [
        everything[0]["request_id"]
    ]
    assert actions(demo, sid, **{"changes-before": "2000-01-01T00:00:00Z"}) == []
    assert len(actions(demo, sid, V257, limit=1)) == 3  # before 2.58 the parameters are ignored


@pytest.mark.parametrize(
    "params",
    [
        {"marker": "req-unknown"},
        {"limit": "-1"},
        {"limit": "two"},
        {"limit": "9" * 40},
        {"changes-since": "yesterday"},
        {"changes-before": "2026-13-40T00:00:00"},
        {"changes-since": "2026-01-02T00:00:00Z", "changes-before": "2026-01-01T00:00:00Z"},
    ],
)
def test_bad_list_parameters_are_400(demo: Api, image: str, params: dict[str, str]) -> None:
    sid = boot(demo, image)
    resp = demo.compute("GET", f"/servers/{sid}/os-instance-actions", headers=V, params=params)
    assert resp.status_code == 400, resp.text
    assert "badRequest" in resp.json()


# -- in process: the in-use extend, the detach refusal, the live migration ---------------------
def _detail(app: Ferry, sid: str, name: str) -> tuple[str, list[Any]]:
    found = [a for a in app.instance_actions.list(ADMIN, sid, ActionQuery()) if a.action == name]
    assert len(found) == 1, found
    detail = app.instance_actions.get(ADMIN, sid, found[0].request_id, events_for_readers=True)
    assert detail.events is not None
    return found[0].request_id, detail.events


@pytest.mark.parametrize("running", [True, False])
def test_an_in_use_extend_records_extend_volume_on_the_server(tmp_path: Path, running: bool) -> None:
    """Live under a running guest, or offline by the storage driver under a shut-off server."""

    async def go() -> None:
        app = make_ferry(tmp_path, FakeHypervisorDriver())
        sid, vid = await attached_volume(app, tmp_path)
        if not running:
            await app.compute.stop(ADMIN, sid)
        await app.volumes.extend(ADMIN, vid, 2, allow_in_use=True)
        assert app.volumes.get(ADMIN, vid).size_gib == 2
        rid, events = _detail(app, sid, "extend_volume")
        assert rid.startswith("req-")  # no HTTP request: one is made up
        assert [(e.event, e.result, e.traceback) for e in events] == [
            ("compute_extend_volume", "Success", None)
        ]
        assert events[0].finish_time is not None

    run(go)


class RefusingGuest(FakeHypervisorDriver):
    async def detach_disk(self, server_id: str, volume_id: str) -> None:
        await asyncio.sleep(0)
        raise Conflict("device was not released by the guest")


def test_a_guest_that_never_lets_go_ends_the_detach_event_in_error(tmp_path: Path) -> None:
    async def go() -> None:
        app = make_ferry(tmp_path, RefusingGuest())
        app.compute.detaching.attempts, app.compute.detaching.wait_s = 2, 0.0
        sid, vid = await attached_volume(app, tmp_path)
        await app.compute.detach(ADMIN, sid, vid)
        await until("refused", lambda: _detail(app, sid, "detach_volume")[1][0].finish_time is not None)
        event = _detail(app, sid, "detach_volume")[1][0]
        assert (event.event, event.result) == ("compute_detach_volume", "Error")
        assert event.traceback is not None and "did not release the disk after 2 requests" in event.traceback
        rid = _detail(app, sid, "detach_volume")[0]
        assert app.instance_actions.list(ADMIN, sid, ActionQuery())[0].message == "Error"
        assert not app.instance_actions.get(MEMBER, sid, rid, events_for_readers=True).details  # no reason

    run(go)


class StuckGuest(FakeHypervisorDriver):
    """A guest whose detach never returns: the control plane "dies" with the event open."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()

    async def detach_disk(self, server_id: str, volume_id: str) -> None:
        await self.release.wait()
        raise Conflict("the old control plane is gone")


@pytest.mark.parametrize("guest_kept_the_disk", [True, False])
def test_a_restart_mid_detach_ends_the_detach_event(tmp_path: Path, guest_kept_the_disk: bool) -> None:
    """Recovery settles a `detaching` volume from what QEMU has, and ends the open detach event
    with that outcome: an error saying why when the guest kept the disk, a success otherwise."""

    async def go() -> None:
        hv = StuckGuest()
        app = make_ferry(tmp_path, hv)
        sid, vid = await attached_volume(app, tmp_path)
        await app.compute.detach(ADMIN, sid, vid)
        assert _detail(app, sid, "detach_volume")[1][0].finish_time is None
        # The next control plane: the same QEMU processes, or processes that lost the disk.
        after = make_ferry(tmp_path, hv if guest_kept_the_disk else FakeHypervisorDriver())
        decision = await after.recovery.settle(vid)
        assert decision is not None
        event = _detail(after, sid, "detach_volume")[1][0]
        assert event.finish_time is not None
        if guest_kept_the_disk:
            assert (event.result, event.traceback) == ("Error", "the guest still has the disk: detach again")
            assert after.volumes.get(ADMIN, vid).status == "in-use"
        else:
            assert (event.result, event.traceback) == ("Success", None)
            assert after.volumes.get(ADMIN, vid).status == "available"
        hv.release.set()

    run(go)


def test_a_failed_boot_ends_the_start_event_in_error(tmp_path: Path) -> None:
    class NoSpawn(FakeHypervisorDriver):
        fail = False

        async def spawn(self, spec: Any) -> None:
            if self.fail:
                raise Conflict("the process would not start")
            await super().spawn(spec)

    async def go() -> None:
        hv = NoSpawn()
        app = make_ferry(tmp_path, hv)
        sid, _ = await attached_volume(app, tmp_path)
        await app.compute.stop(ADMIN, sid)
        hv.fail = True
        with pytest.raises(Conflict):
            await app.compute.start(ADMIN, sid)
        event = _detail(app, sid, "start")[1][0]
        assert (event.result, event.traceback) == ("Error", "the process would not start")

    run(go)


@pytest.mark.parametrize("abort", [False, True])
def test_a_live_migration_is_recorded_and_ends_with_its_outcome(tmp_path: Path, abort: bool) -> None:
    async def go() -> None:
        hv = FakeHypervisorDriver()
        hv.live_hold = abort  # held in the RAM copy until the abort
        app = control_plane(tmp_path, hv)
        await app.live.resume_all()
        sid, _ = await server_with_volume(app, tmp_path)
        row = await app.live.migrate(ADMIN, sid, "hv2")
        if abort:
            await until("copying", lambda: app.live.get(ADMIN, sid, row.id).step == "migrate")
            assert _detail(app, sid, "live-migration")[1][0].finish_time is None  # still under way
            await app.live.abort(ADMIN, sid, row.id)
        await app.live.wait(row.id)
        event = _detail(app, sid, "live-migration")[1][0]
        assert (event.event, event.host) == ("compute_live_migration", "ferry")
        assert event.result == ("Error" if abort else "Success") and event.finish_time is not None
        await app.live.stop()

    run(go)


def test_the_openstack_cli_lists_and_shows_server_events(server: FerryServer, admin: Api, image: str) -> None:
    sid, rid = booted(admin, image)
    listed = openstack(server, "server", "event", "list", sid)
    assert [(e["Request ID"], e["Action"]) for e in listed] == [(rid, "create")]
    shown = openstack(server, "--os-compute-api-version", "2.80", "server", "event", "show", sid, rid)
    assert shown["action"] == "create" and shown["events"][0]["event"] == "compute__do_build_and_run_instance"


def test_a_failed_plug_ends_the_attach_event_in_error(tmp_path: Path) -> None:
    class NoPlug(FakeHypervisorDriver):
        async def attach_disk(self, server_id: str, chain: DiskChain) -> None:
            raise Conflict("QEMU refused the disk")

    async def go() -> None:
        app = make_ferry(tmp_path, NoPlug())
        kernel = tmp_path / "vmlinuz"
        kernel.write_bytes(b"k")
        image = register_image(app.db, "img", kernel=str(kernel))
        vid = (await app.volumes.create(ADMIN, VolumeCreate(size=1, name="v"))).id
        sid = (await app.compute.create(ADMIN, "s", image.id, "tiny")).id
        with pytest.raises(Conflict):
            await app.compute.attach(ADMIN, sid, vid)
        event = _detail(app, sid, "attach_volume")[1][0]
        assert (event.result, event.traceback) == ("Error", "the hypervisor could not plug the disk")

    run(go)
