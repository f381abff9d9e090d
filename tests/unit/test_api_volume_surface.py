"""Cinder's volume and snapshot surface beyond the life cycle, against a real `ferry serve`:
metadata items, admin actions (reset status, force delete/detach), flags, image metadata,
snapshot actions, list filters and pagination links; bad input is a 4xx, another project's
resource is not found, admin actions refuse members."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import pytest

from ferry.drivers.hypervisor.fake import FakeHypervisorDriver
from ferry.services.volume_create import VolumeCreate
from testkit.server import Api, FerryServer
from tests.conftest import fake_hypervisor_server, kernel_image
from tests.unit.test_api_microversions import at
from tests.unit.test_migration_service import ADMIN, make_ferry, run

pytestmark = pytest.mark.db
UNKNOWN = "00000000-0000-4000-8000-000000000000"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FerryServer]:
    yield from fake_hypervisor_server(tmp_path_factory.mktemp("ferry"))


@pytest.fixture(scope="module")
def image(server: FerryServer, tmp_path_factory: pytest.TempPathFactory) -> str:
    return kernel_image(server, tmp_path_factory.mktemp("image"), "surface-img")


@pytest.fixture(scope="module")
def other(server: FerryServer) -> Api:
    """A member of another project."""
    return server.api(server.add_user("stranger", "stranger-password", "elsewhere", "member"))


def error(resp: httpx.Response, code: int) -> str:
    kinds = {400: "badRequest", 403: "forbidden", 404: "itemNotFound", 409: "conflictingRequest"}
    assert resp.status_code == code, (
        f"{resp.request.method} {resp.request.url}: {resp.status_code} {resp.text}"
    )
    body = resp.json()
    assert list(body) == [kinds[code]], body
    return str(body[kinds[code]]["message"])


def create_volume(api: Api, size: int = 1, **fields: Any) -> dict[str, Any]:
    vol: dict[str, Any] = api.ok(api.volume("POST", "/volumes", json={"volume": {"size": size, **fields}}))[
        "volume"
    ]
    return vol


def show(api: Api, vid: str) -> dict[str, Any]:
    vol: dict[str, Any] = api.ok(api.volume("GET", f"/volumes/{vid}"))["volume"]
    return vol


def snapshot(api: Api, vid: str) -> dict[str, Any]:
    snap: dict[str, Any] = api.ok(api.volume("POST", "/snapshots", json={"snapshot": {"volume_id": vid}}))[
        "snapshot"
    ]
    return snap


def action(api: Api, kind: str, ident: str, name: str, args: Any = None) -> httpx.Response:
    return api.volume("POST", f"/{kind}/{ident}/action", json={name: args})


def gone(api: Api, path: str) -> None:
    deadline = time.monotonic() + 30
    while api.volume("GET", path).status_code == 200:
        assert time.monotonic() < deadline, f"{path} still there"
        time.sleep(0.05)
    error(api.volume("GET", path), 404)


# -- metadata ----------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["volumes", "snapshots"])
def test_metadata_items(demo: Api, other: Api, kind: str) -> None:
    vol = create_volume(demo)
    ident = vol["id"] if kind == "volumes" else snapshot(demo, vol["id"])["id"]
    base = f"/{kind}/{ident}/metadata"
    merged = demo.ok(demo.volume("POST", base, json={"metadata": {"a": "1", "b": "2"}}))["metadata"]
    assert merged == {"a": "1", "b": "2"}
    assert demo.ok(demo.volume("PUT", base, json={"metadata": {"c": "3"}}))["metadata"] == {"c": "3"}
    assert demo.ok(demo.volume("GET", base))["metadata"] == {"c": "3"}
    assert demo.ok(demo.volume("PUT", f"{base}/d", json={"meta": {"d": "4"}}))["meta"] == {"d": "4"}
    assert demo.ok(demo.volume("GET", f"{base}/d"))["meta"] == {"d": "4"}
    assert demo.ok(demo.volume("GET", base))["metadata"] == {"c": "3", "d": "4"}
    resp = demo.volume("DELETE", f"{base}/c")
    assert resp.status_code == 200 and not resp.content
    assert demo.ok(demo.volume("GET", base))["metadata"] == {"d": "4"}
    # Cinder's refusals
    assert "mismatch" in error(demo.volume("PUT", f"{base}/d", json={"meta": {"x": "1"}}), 400)
    assert "too many" in error(demo.volume("PUT", f"{base}/d", json={"meta": {"d": "1", "e": "2"}}), 400)
    for bad in (
        {"metadata": None},
        {"metadata": {"k": 1}},
        {"metadata": {"k": "v" * 256}},
        {"metadata": {"bad key!": "v"}},  # Cinder's keys: letters, digits and -_:. /
        {"metadata": {"clé": "v"}},
        {"meta": {}},
        {},
    ):
        error(demo.volume("PUT", base, json=bad), 400)
    error(demo.volume("PUT", f"{base}/d", json={"meta": "d"}), 400)
    error(demo.volume("GET", f"{base}/nope"), 404)
    error(demo.volume("DELETE", f"{base}/nope"), 404)
    # another project's resource is not found
    for method, path, body in (
        ("GET", base, None),
        ("PUT", base, {"metadata": {}}),
        ("GET", f"{base}/d", None),
        ("PUT", f"{base}/d", {"meta": {"d": "x"}}),
        ("DELETE", f"{base}/d", None),
    ):
        error(other.volume(method, path, json=body), 404)
    assert demo.ok(demo.volume("GET", base))["metadata"] == {"d": "4"}


# -- volume actions ----------------------------------------------------------------------------
def test_reset_status_and_force_delete(admin: Api, demo: Api, other: Api) -> None:
    vol = create_volume(demo)
    vid = vol["id"]
    error(action(demo, "volumes", vid, "os-reset_status", {"status": "error"}), 403)
    # admin actions: policy first, so another project's member is refused before any lookup
    error(action(other, "volumes", vid, "os-reset_status", {"status": "error"}), 403)
    for status in ("error", "available", "maintenance", "creating", "attaching"):
        assert action(admin, "volumes", vid, "os-reset_status", {"status": status}).status_code == 202
        assert show(demo, vid)["status"] == status
    assert action(admin, "volumes", vid, "os-reset_status", {"status": "available"}).status_code == 202
    for bad in (
        {},
        {"status": "bogus"},
        {"status": "deleting"},
        {"status": "in-use"},  # no attachment
        {"attach_status": "attached"},
        {"attach_status": "sideways"},
        {"migration_status": "flying"},
        {"status": 3},
        {"status": "error", "extra": 1},
        "error",
    ):
        error(action(admin, "volumes", vid, "os-reset_status", bad), 400)
    assert show(demo, vid)["status"] == "available"
    assert action(admin, "volumes", vid, "os-reset_status", {"migration_status": "none"}).status_code == 202
    # force delete: whatever the status, for admins only
    assert action(admin, "volumes", vid, "os-reset_status", {"status": "maintenance"}).status_code == 202
    error(demo.volume("DELETE", f"/volumes/{vid}"), 400)
    error(action(demo, "volumes", vid, "os-force_delete", {}), 403)
    error(action(other, "volumes", vid, "os-force_delete", {}), 403)
    assert action(admin, "volumes", vid, "os-force_delete", {}).status_code == 202
    gone(demo, f"/volumes/{vid}")
    error(action(admin, "volumes", vid, "os-force_delete", {}), 404)


def test_bootable_and_readonly(demo: Api, other: Api, admin: Api) -> None:
    vid = create_volume(demo)["id"]
    assert show(demo, vid)["bootable"] == "false" and "readonly" not in show(demo, vid)["metadata"]
    for value, shown in ((True, "true"), ("false", "false"), ("Yes", "true")):
        resp = action(demo, "volumes", vid, "os-set_bootable", {"bootable": value})
        assert resp.status_code == 200 and not resp.content
        assert show(demo, vid)["bootable"] == shown
    listed = demo.ok(demo.volume("GET", "/volumes/detail", params={"bootable": "true"}))["volumes"]
    assert vid in [v["id"] for v in listed] and all(v["bootable"] == "true" for v in listed)
    # From 3.2 the filter parses strictly; before it, anything but "false" asks for bootable ones.
    error(at(demo, "3.2", "GET", "/volumes", params={"bootable": "maybe"}), 400)
    for flag in (True, False):
        assert action(demo, "volumes", vid, "os-update_readonly_flag", {"readonly": flag}).status_code == 202
        assert show(demo, vid)["metadata"]["readonly"] == str(flag)
    for name, bad in (
        ("os-set_bootable", {}),
        ("os-set_bootable", {"bootable": "perhaps"}),
        ("os-set_bootable", {"bootable": None}),
        ("os-update_readonly_flag", {"readonly": 2}),
        ("os-update_readonly_flag", None),
    ):
        error(action(demo, "volumes", vid, name, bad), 400)
    error(action(other, "volumes", vid, "os-set_bootable", {"bootable": True}), 404)
    error(action(other, "volumes", vid, "os-update_readonly_flag", {"readonly": True}), 404)
    # as Cinder: the read-only flag changes only on an available volume
    assert action(admin, "volumes", vid, "os-reset_status", {"status": "error"}).status_code == 202
    assert "must be available" in error(
        action(demo, "volumes", vid, "os-update_readonly_flag", {"readonly": "1"}), 400
    )


def test_image_metadata(demo: Api, other: Api) -> None:
    vid = create_volume(demo)["id"]
    assert "volume_image_metadata" not in show(demo, vid)
    set_ = action(demo, "volumes", vid, "os-set_image_metadata", {"metadata": {"image_name": "x", "k": "v"}})
    assert set_.status_code == 200 and set_.json() == {"metadata": {"image_name": "x", "k": "v"}}
    assert show(demo, vid)["volume_image_metadata"] == {"image_name": "x", "k": "v"}
    resp = action(demo, "volumes", vid, "os-unset_image_metadata", {"key": "k"})
    assert resp.status_code == 200
    assert demo.ok(action(demo, "volumes", vid, "os-show_image_metadata", {})) == {
        "metadata": {"image_name": "x"}
    }
    error(action(demo, "volumes", vid, "os-unset_image_metadata", {"key": "k"}), 404)
    for name, bad in (
        ("os-set_image_metadata", {}),
        ("os-set_image_metadata", {"metadata": {"k": 1}}),
        ("os-unset_image_metadata", {"key": ""}),
        ("os-unset_image_metadata", {}),
    ):
        error(action(demo, "volumes", vid, name, bad), 400)
    error(action(other, "volumes", vid, "os-show_image_metadata", {}), 404)


def test_force_detach_of_a_detached_volume(admin: Api, demo: Api) -> None:
    vid = create_volume(demo)["id"]
    error(action(demo, "volumes", vid, "os-force_detach", {}), 403)
    assert "no any attachment" in error(
        action(admin, "volumes", vid, "os-force_detach", {"connector": None}), 400
    )
    error(action(admin, "volumes", vid, "os-force_detach", {"attachment_id": 5}), 400)
    error(action(admin, "volumes", vid, "os-force_detach", {"bogus": 1}), 400)


def active_server(api: Api, image: str) -> str:
    body = {"server": {"name": "s", "imageRef": image, "flavorRef": "1"}}
    sid = str(api.ok(api.compute("POST", "/servers", json=body))["server"]["id"])
    deadline = time.monotonic() + 30
    while (status := api.ok(api.compute("GET", f"/servers/{sid}"))["server"]["status"]) != "ACTIVE":
        assert status == "BUILD" and time.monotonic() < deadline, status
        time.sleep(0.05)
    return sid


def test_attach_detach_and_force_detach(admin: Api, demo: Api, other: Api, image: str) -> None:
    server = active_server(demo, image)
    vid = create_volume(demo)["id"]
    # os-reserve / os-unreserve, os-begin_detaching / os-roll_detaching move the status only
    assert action(demo, "volumes", vid, "os-reserve", {}).status_code == 202
    assert show(demo, vid)["status"] == "attaching"
    error(action(demo, "volumes", vid, "os-reserve", {}), 400)
    assert action(demo, "volumes", vid, "os-unreserve", {}).status_code == 202
    assert show(demo, vid)["status"] == "available"
    error(action(demo, "volumes", vid, "os-unreserve", {}), 400)
    error(action(demo, "volumes", vid, "os-begin_detaching", {}), 400)  # not attached
    for bad in (
        {},
        {"mountpoint": "/dev/vdb"},
        {"instance_uuid": server},
        {"instance_uuid": server, "mountpoint": "/dev/vdb", "mode": "x"},
    ):
        error(action(demo, "volumes", vid, "os-attach", bad), 400)
    error(
        action(other, "volumes", vid, "os-attach", {"instance_uuid": server, "mountpoint": "/dev/vdb"}), 404
    )
    # not attached: a no-op as in Cinder ("detach called, but volume not attached"); an attachment
    # named that the volume does not have is refused
    assert action(demo, "volumes", vid, "os-detach", {}).status_code == 202
    assert show(demo, vid)["status"] == "available"
    error(action(demo, "volumes", vid, "os-detach", {"attachment_id": "f" * 32}), 400)
    # a volume a lost detach left `detaching` with no attachment: os-detach settles it, as Cinder
    assert action(admin, "volumes", vid, "os-reset_status", {"status": "detaching"}).status_code == 202
    assert action(demo, "volumes", vid, "os-detach", {}).status_code == 202
    assert show(demo, vid)["status"] == "available"
    # os-attach plugs the disk in (Ferry is the hypervisor), os-detach unplugs it
    attach = {"instance_uuid": server, "mountpoint": "/dev/vdb"}
    assert action(demo, "volumes", vid, "os-attach", attach).status_code == 202
    vol = show(demo, vid)
    assert vol["status"] == "in-use" and vol["attachments"][0]["server_id"] == server
    assert vol["attachments"][0]["id"] == vid  # Cinder's: `id` names the volume, `attachment_id` itself
    # Below 3.66 an attached volume is snapshotted only with force=true (then live)
    for force in ({}, {"force": False}, {"force": "no"}):
        body = {"snapshot": {"volume_id": vid, **force}}
        assert "must be available" in error(demo.volume("POST", "/snapshots", json=body), 400)
    error(demo.volume("POST", "/snapshots", json={"snapshot": {"volume_id": vid, "force": "maybe"}}), 400)
    live = demo.volume("POST", "/snapshots", json={"snapshot": {"volume_id": vid, "force": "true"}})
    assert live.status_code == 202, live.text
    assert action(demo, "volumes", vid, "os-begin_detaching", {}).status_code == 202
    assert show(demo, vid)["status"] == "detaching"
    assert action(demo, "volumes", vid, "os-roll_detaching", {}).status_code == 202
    assert show(demo, vid)["status"] == "in-use"
    error(action(admin, "volumes", vid, "os-reset_status", {"status": "available"}), 400)  # attached
    error(action(admin, "volumes", vid, "os-reset_status", {"attach_status": "detached"}), 400)
    assert action(demo, "volumes", vid, "os-detach", {}).status_code == 202
    assert show(demo, vid)["status"] == "available" and show(demo, vid)["attachments"] == []
    # force detach (tempest's: attached, reset to error, force-detached by attachment id)
    assert action(demo, "volumes", vid, "os-attach", attach).status_code == 202
    att = show(demo, vid)["attachments"][0]["attachment_id"]
    assert action(admin, "volumes", vid, "os-reset_status", {"status": "error"}).status_code == 202
    error(action(admin, "volumes", vid, "os-force_detach", {"attachment_id": UNKNOWN}), 400)
    forced = action(admin, "volumes", vid, "os-force_detach", {"connector": None, "attachment_id": att})
    assert forced.status_code == 202, forced.text
    vol = show(demo, vid)
    assert vol["status"] == "available" and vol["attachments"] == []
    disks = admin.ok(admin.compute("GET", f"/servers/{server}/os-volume_attachments"))["volumeAttachments"]
    assert disks == []


# -- snapshot actions --------------------------------------------------------------------------
def test_snapshot_actions(admin: Api, demo: Api, other: Api) -> None:
    vid = create_volume(demo)["id"]
    sid = snapshot(demo, vid)["id"]
    error(action(demo, "snapshots", sid, "os-reset_status", {"status": "error"}), 403)
    error(action(other, "snapshots", sid, "os-reset_status", {"status": "error"}), 403)
    error(action(other, "snapshots", sid, "os-update_snapshot_status", {"status": "error"}), 404)
    assert action(admin, "snapshots", sid, "os-reset_status", {"status": "creating"}).status_code == 202
    assert demo.ok(demo.volume("GET", f"/snapshots/{sid}"))["snapshot"]["status"] == "creating"
    upd = action(demo, "snapshots", sid, "os-update_snapshot_status", {"status": "error", "progress": "80%"})
    assert upd.status_code == 202
    shown = admin.ok(admin.volume("GET", f"/snapshots/{sid}"))["snapshot"]
    assert (shown["status"], shown["os-extended-snapshot-attributes:progress"]) == ("error", "80%")
    for name, bad in (
        ("os-reset_status", {}),
        ("os-reset_status", {"status": "bogus"}),
        ("os-update_snapshot_status", {"status": "available"}),  # not from error
    ):
        error(action(admin, "snapshots", sid, name, bad), 400)
    assert action(admin, "snapshots", sid, "os-reset_status", {"status": "creating"}).status_code == 202
    for progress in ("80", "101%", "x%", 5):
        error(
            action(
                demo, "snapshots", sid, "os-update_snapshot_status", {"status": "error", "progress": progress}
            ),
            400,
        )
    error(action(demo, "snapshots", sid, "os-unknown", {}), 400)
    error(action(demo, "snapshots", sid, "os-force_delete", {}), 403)
    for status in ("deleting", "error_deleting"):
        temp = snapshot(demo, vid)["id"]
        assert action(admin, "snapshots", temp, "os-reset_status", {"status": status}).status_code == 202
        assert action(admin, "snapshots", temp, "os-force_delete", {}).status_code == 202
        gone(demo, f"/snapshots/{temp}")
    assert action(admin, "snapshots", sid, "os-force_delete", {}).status_code == 202
    gone(demo, f"/snapshots/{sid}")
    assert demo.ok(demo.volume("GET", f"/volumes/{vid}/metadata")) == {"metadata": {}}
    assert show(demo, vid)["status"] == "available"


# -- lists -------------------------------------------------------------------------------------
def test_list_links_filters_and_markers(admin: Api, demo: Api, other: Api) -> None:
    tagged = [create_volume(demo, metadata={"Type": "work", "n": str(i)})["id"] for i in range(3)]
    create_volume(demo, metadata={"Type": "play"})
    params: Any = {"limit": 2, "metadata": "{'Type': 'work'}", "sort": "id:asc"}
    seen: list[str] = []
    for _ in range(3):
        page = demo.ok(demo.volume("GET", "/volumes/detail", params=params))
        seen += [v["id"] for v in page["volumes"]]
        links = page.get("volumes_links", [])
        if not links:
            break
        url = urlparse(links[0]["href"])
        assert links[0]["rel"] == "next" and url.path.endswith(f"/{demo.project_id}/volumes/detail")
        params = {k: v[0] for k, v in parse_qs(url.query).items()}
    assert seen == sorted(tagged)
    json_filter = demo.ok(demo.volume("GET", "/volumes", params={"metadata": '{"n": "1"}'}))["volumes"]
    assert [v["id"] for v in json_filter] == [tagged[1]] and "volumes_links" not in demo.ok(
        demo.volume("GET", "/volumes", params={"metadata": '{"n": "1"}'})
    )
    for bad in ("[1]", "{'k': 1}", "not a dict"):
        error(demo.volume("GET", "/volumes", params={"metadata": bad}), 400)
    # an admin's all_tenants list narrowed to one project
    mine = admin.ok(admin.volume("GET", "/volumes", params={"all_tenants": 1, "project_id": demo.project_id}))
    theirs = demo.ok(demo.volume("GET", "/volumes", params={"limit": 1000}))
    assert {v["id"] for v in mine["volumes"]} == {v["id"] for v in theirs["volumes"]}
    # a member's project_id filter cannot reach another project
    assert other.ok(other.volume("GET", "/volumes", params={"project_id": demo.project_id}))["volumes"] == []
    # snapshots: markers, sort keys, filters
    sid = snapshot(demo, tagged[0])["id"]
    error(demo.volume("GET", "/snapshots", params={"marker": "00000000-0000-4000-8000-000000000000"}), 404)
    error(demo.volume("GET", "/snapshots", params={"sort_key": "invalid"}), 400)
    error(demo.volume("GET", "/snapshots", params={"sort_dir": "up"}), 400)
    for key in ("id", "created_at", "display_name"):
        listed = demo.ok(demo.volume("GET", "/snapshots", params={"sort_key": key, "sort_dir": "asc"}))
        assert sid in [s["id"] for s in listed["snapshots"]]
    by_name = at(demo, "3.30", "GET", "/snapshots", params={"sort_key": "name", "sort_dir": "asc"})
    assert sid in [s["id"] for s in demo.ok(by_name)["snapshots"]]
    named = demo.ok(demo.volume("GET", "/snapshots/detail", params={"status": "available", "limit": 1}))
    assert len(named["snapshots"]) == 1 and named["snapshots_links"][0]["rel"] == "next"
    assert demo.ok(demo.volume("GET", "/snapshots", params={"status": "bogus"}))["snapshots"] == []


def test_snapshot_create_without_a_volume_is_not_found(demo: Api) -> None:
    error(demo.volume("POST", "/snapshots", json={"snapshot": {"volume_id": None}}), 404)
    error(demo.volume("POST", "/snapshots", json={"snapshot": {"name": "x"}}), 404)
    error(demo.volume("POST", "/snapshots", json={"snapshot": {"volume_id": 5}}), 400)


# -- services, hosts, zones, extensions, summary ---------------------------------------------
def test_volume_services_and_hosts(admin: Api, demo: Api) -> None:
    services = admin.ok(admin.volume("GET", "/os-services"))["services"]
    volume_hosts = sorted(s["host"] for s in services if s["binary"] == "cinder-volume")
    assert volume_hosts == ["ferry@bulk", "ferry@fast"]
    # a host filter names the host and its host@backend services, as Cinder's does
    on_host = admin.ok(admin.volume("GET", "/os-services", params={"host": "ferry"}))["services"]
    assert sorted(s["binary"] for s in on_host) == ["cinder-scheduler", "cinder-volume", "cinder-volume"]
    one = admin.ok(
        admin.volume("GET", "/os-services", params={"host": "ferry@fast", "binary": "cinder-volume"})
    )
    assert [s["host"] for s in one["services"]] == ["ferry@fast"]
    error(demo.volume("GET", "/os-services"), 403)

    ident = {"host": "ferry@fast", "binary": "cinder-volume"}
    answer = admin.ok(
        admin.volume("PUT", "/os-services/disable-log-reason", json={**ident, "disabled_reason": "r"})
    )
    assert answer == {**ident, "service": "", "status": "disabled", "disabled": True, "disabled_reason": "r"}
    fast = admin.ok(admin.volume("GET", "/os-services", params={"host": "ferry@fast"}))["services"][0]
    assert (fast["status"], fast["disabled_reason"]) == ("disabled", "r")
    hosts = admin.ok(admin.volume("GET", "/os-hosts"))["hosts"]
    assert "ferry@fast" not in [h["host_name"] for h in hosts]  # os-hosts lists enabled services
    error(admin.volume("GET", "/os-hosts/ferry@fast"), 404)
    answer = admin.ok(admin.volume("PUT", "/os-services/enable", json=ident))
    assert answer == {**ident, "service": "", "status": "enabled", "disabled": False, "disabled_reason": None}
    assert admin.ok(admin.volume("PUT", "/os-services/disable", json=ident))["status"] == "disabled"
    assert admin.ok(admin.volume("PUT", "/os-services/enable", json=ident))["disabled"] is False
    # freeze and thaw every cinder-volume of a host
    resp = admin.volume("PUT", "/os-services/freeze", json={"host": "ferry"})
    assert resp.status_code == 200 and not resp.content
    frozen = admin.ok(admin.volume("GET", "/os-services", params={"binary": "cinder-volume"}))["services"]
    assert all(s["frozen"] for s in frozen)
    assert admin.volume("PUT", "/os-services/thaw", json={"host": "ferry@fast"}).status_code == 200
    by_host = {s["host"]: s["frozen"] for s in admin.ok(admin.volume("GET", "/os-services"))["services"]}
    assert (by_host["ferry@fast"], by_host["ferry@bulk"]) == (False, True)
    assert admin.volume("PUT", "/os-services/thaw", json={"host": "ferry"}).status_code == 200
    # Cinder's refusals (tempest's negative tests)
    error(
        admin.volume("PUT", "/os-services/enable", json={"host": "invalid_host", "binary": "cinder-volume"}),
        404,
    )
    error(admin.volume("PUT", "/os-services/disable", json={"host": "ferry@fast", "binary": "invalid"}), 404)
    error(
        admin.volume("PUT", "/os-services/disable-log-reason", json={**ident, "disabled_reason": None}), 400
    )
    error(
        admin.volume("PUT", "/os-services/disable-log-reason", json={**ident, "disabled_reason": "x" * 256}),
        400,
    )
    error(admin.volume("PUT", "/os-services/freeze", json={"host": "invalid_host"}), 400)
    error(admin.volume("PUT", "/os-services/thaw", json={"host": "invalid_host"}), 400)
    error(admin.volume("PUT", "/os-services/enable", json={"binary": "cinder-volume"}), 400)
    error(admin.volume("PUT", "/os-services/enable", json={"host": "ferry@fast"}), 400)
    error(demo.volume("PUT", "/os-services/disable", json=ident), 403)
    error(demo.volume("PUT", "/os-services/freeze", json={"host": "ferry"}), 403)


def test_os_hosts_show_volume_usage(admin: Api, demo: Api) -> None:
    hosts = admin.ok(admin.volume("GET", "/os-hosts"))["hosts"]
    assert {"ferry@fast", "ferry@bulk", "ferry"} <= {h["host_name"] for h in hosts}
    assert all(h["service-state"] == "enabled" and h["zone"] == "nova" for h in hosts)
    vol = create_volume(demo, 3, volume_type=None)
    host = admin.ok(admin.volume("GET", f"/volumes/{vol['id']}"))["volume"]["os-vol-host-attr:host"].split(
        "#"
    )[0]
    rows = admin.ok(admin.volume("GET", f"/os-hosts/{host}"))["host"]
    total, *projects = [r["resource"] for r in rows]
    assert total["project"] == "(total)" and int(total["volume_count"]) >= 1
    mine = next(r for r in projects if r["project"] == demo.project_id)
    assert int(mine["total_volume_gb"]) >= 3 and all(isinstance(v, str) for v in mine.values())
    error(admin.volume("GET", "/os-hosts/nowhere@fast"), 404)
    error(demo.volume("GET", "/os-hosts"), 403)
    error(demo.volume("GET", f"/os-hosts/{host}"), 403)


def test_zones_and_extensions(demo: Api) -> None:
    zones = demo.ok(demo.volume("GET", "/os-availability-zone"))["availabilityZoneInfo"]
    assert zones == [{"zoneName": "nova", "zoneState": {"available": True}}]
    assert create_volume(demo, availability_zone="nova")["availability_zone"] == "nova"
    zone = {"volume": {"size": 1, "availability_zone": "elsewhere"}}
    assert "is invalid" in error(demo.volume("POST", "/volumes", json=zone), 400)
    extensions = demo.ok(demo.volume("GET", "/extensions"))["extensions"]
    assert "Hosts" in [e["name"] for e in extensions]
    assert all(set(e) == {"name", "alias", "updated", "description", "links"} for e in extensions)
    shown = demo.ok(demo.volume("GET", "/extensions/os-hosts"))["extension"]
    assert shown["name"] == "Hosts"
    error(demo.volume("GET", "/extensions/os-volume-transfer"), 404)  # not one Ferry offers


def test_volume_summary(demo: Api, other: Api, admin: Api) -> None:
    error(demo.volume("GET", "/volumes/summary"), 404)  # Cinder's from 3.12

    def summary(api: Api, **params: Any) -> httpx.Response:
        return api.client.get(
            f"{api.base}/volume/v3/{api.project_id}/volumes/summary",
            params=params,
            headers={"X-Auth-Token": api.token, "OpenStack-API-Version": "volume 3.12"},
        )

    before = demo.ok(summary(demo))["volume-summary"]
    assert set(before) == {"total_size", "total_count"}
    create_volume(demo, 2, metadata={"tier": "gold"})
    after = demo.ok(summary(demo))["volume-summary"]
    assert (after["total_count"], after["total_size"]) == (
        before["total_count"] + 1,
        before["total_size"] + 2,
    )
    elsewhere = other.ok(summary(other))["volume-summary"]
    assert elsewhere["total_count"] == len(other.ok(other.volume("GET", "/volumes"))["volumes"])
    error(summary(demo, all_tenants=1), 403)
    everyone = admin.ok(summary(admin, all_tenants=1))
    assert everyone["volume-summary"]["total_count"] >= after["total_count"]


# -- a reset snapshot at restart ---------------------------------------------------------------
def test_a_snapshot_reset_to_creating_settles_as_available_at_start(tmp_path: Path) -> None:
    """An admin's os-reset_status to `creating` is not an interrupted create: the volume switched
    away from the snapshot's layer long ago, so the next start completes it instead of undoing it
    (which would drop a layer from the chain)."""

    async def go() -> None:
        hv = FakeHypervisorDriver()
        app = make_ferry(tmp_path, hv)
        await app.start()
        vol = await app.volumes.create(ADMIN, VolumeCreate(size=1))
        snap = await app.snapshots.create(ADMIN, vol.id, "s", None, {})
        app.volume_admin.reset_snapshot_status(ADMIN, snap.id, "creating")
        assert app.snapshots.get(ADMIN, snap.id).status == "creating"
        await app.stop()
        app = make_ferry(tmp_path, hv)
        await app.start()
        try:
            assert app.snapshots.get(ADMIN, snap.id).status == "available"
            assert [s.id for s in app.snapshots.list_snapshots(ADMIN, vol.id)] == [snap.id]
        finally:
            await app.stop()

    run(go)
