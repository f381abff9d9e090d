"""Placement by extra specs, user messages and backend capabilities over HTTP, on a server with
two backends that share one volume_backend_name (`gold-a`, `gold-b` report `gold`): where volumes
go, what no backend can take, migrate and retype against a type's filters, the messages API
(3.3, 3.5 pagination), and capabilities/{host} agreeing with get_pools."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from testkit.server import Api, FerryServer
from tests.conftest import make_server

EXTRA = """
[[backends]]
name = "gold-a"
path = "backends/gold-a"
capacity_gib = 10
volume_backend_name = "gold"

[[backends]]
name = "gold-b"
path = "backends/gold-b"
capacity_gib = 20
volume_backend_name = "gold"
"""
UNKNOWN = "00000000-0000-4000-8000-000000000000"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FerryServer]:
    srv = make_server(tmp_path_factory.mktemp("ferry"), extra_config=EXTRA)
    srv.start()
    yield srv
    srv.shutdown()


@pytest.fixture(scope="module", autouse=True)
def no_server_errors(server: FerryServer) -> Iterator[None]:
    yield
    assert server.log_problems() == []


def at(api: Api, method: str, path: str, version: str = "3.5", **kw: Any) -> httpx.Response:
    return api.client.request(
        method,
        f"{api.base}/volume/v3/{api.project_id}{path}",
        headers={"X-Auth-Token": api.token, "OpenStack-API-Version": f"volume {version}"},
        **kw,
    )


def error(resp: httpx.Response, code: int) -> str:
    assert resp.status_code == code, (
        f"{resp.request.method} {resp.request.url}: {resp.status_code} {resp.text}"
    )
    body = resp.json()
    (kind,) = body
    assert body[kind]["code"] == code
    return str(body[kind]["message"])


def make_type(admin: Api, name: str, specs: dict[str, str]) -> dict[str, Any]:
    body = {"volume_type": {"name": name, "extra_specs": specs}}
    vt: dict[str, Any] = admin.ok(admin.volume("POST", "/types", json=body))["volume_type"]
    return vt


def create(api: Api, **fields: Any) -> dict[str, Any]:
    vol: dict[str, Any] = api.ok(api.volume("POST", "/volumes", json={"volume": {"size": 1, **fields}}), 202)[
        "volume"
    ]
    return vol


def host_of(admin: Api, vid: str) -> str | None:
    host: str | None = admin.ok(admin.volume("GET", f"/volumes/{vid}"))["volume"]["os-vol-host-attr:host"]
    return host


def messages(api: Api, **params: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = api.ok(at(api, "GET", "/messages", params=params))["messages"]
    return found


# -- placement -----------------------------------------------------------------------------
def test_a_shared_volume_backend_name_pools_backends(admin: Api, demo: Api) -> None:
    make_type(admin, "gold", {"volume_backend_name": "gold"})
    make_type(admin, "fast-only", {"capabilities:volume_backend_name": "fast"})
    first = create(demo, volume_type="gold")
    assert host_of(admin, first["id"]) == "ferry@gold-b#gold"  # the freer of the two
    assert host_of(admin, create(demo, volume_type="fast-only")["id"]) == "ferry@fast#fast"
    # gold-b fills up (20 GiB): the next gold volumes go to gold-a, with no change of type
    big = create(demo, volume_type="gold", size=19)
    assert host_of(admin, big["id"]) == "ferry@gold-b#gold"
    small = create(demo, volume_type="gold", size=5)
    assert host_of(admin, small["id"]) == "ferry@gold-a#gold"
    for vol in (first, big, small):  # room for the tests after this one
        assert demo.volume("DELETE", f"/volumes/{vol['id']}").status_code == 202
    # the name a type asks for is the reported one, not a backend's own name
    assert "gold-a" in error(admin.volume("POST", "/types", json={"volume_type": {
        "name": "x", "extra_specs": {"volume_backend_name": "gold-a"}}}), 400)  # fmt: skip
    pools = admin.ok(admin.volume("GET", "/scheduler-stats/get_pools", params={"detail": "true"}))["pools"]
    names = {p["name"]: p["capabilities"]["volume_backend_name"] for p in pools}
    assert names == {
        "ferry@fast#fast": "fast",
        "ferry@bulk#bulk": "bulk",
        "ferry@gold-a#gold": "gold",
        "ferry@gold-b#gold": "gold",
    }


def test_specs_no_backend_satisfies_leave_the_volume_in_error_with_a_message(admin: Api, demo: Api) -> None:
    # tempest's admin/test_user_messages: a bogus storage_protocol and vendor_name
    make_type(admin, "bogus", {"storage_protocol": "bogus-proto", "vendor_name": "bogus-vendor"})
    vol = create(demo, volume_type="bogus")
    assert vol["status"] == "error"
    assert host_of(admin, vol["id"]) is None
    [msg] = [m for m in messages(demo) if m.get("resource_uuid") == vol["id"]]
    assert msg["event_id"] == "VOLUME_VOLUME_001_003" and msg["message_level"] == "ERROR"
    assert msg["user_message"] == "schedule allocate volume:Could not find any available weighted backend."
    assert set(msg) == {
        "id", "event_id", "user_message", "message_level", "resource_type", "resource_uuid",
        "request_id", "guaranteed_until", "created_at", "links",
    }  # fmt: skip
    assert msg["resource_type"] == "VOLUME" and msg["request_id"].startswith("req-")
    assert msg["guaranteed_until"] > msg["created_at"]
    assert demo.ok(at(demo, "GET", f"/messages/{msg['id']}", "3.3"))["message"] == msg
    # what an unplaced volume refuses, cleanly
    act = f"/volumes/{vol['id']}/action"
    for api, path, body in (
        (demo, act, {"os-extend": {"new_size": 2}}),
        (admin, act, {"os-migrate_volume": {"host": "ferry@fast"}}),
        (demo, "/snapshots", {"snapshot": {"volume_id": vol["id"]}}),
        (demo, "/volumes", {"volume": {"source_volid": vol["id"]}}),
    ):
        error(api.volume("POST", path, json=body), 400)
    assert demo.volume("DELETE", f"/volumes/{vol['id']}").status_code == 202
    # a type confined to zones Ferry does not have is refused at once (Cinder's API does)
    make_type(admin, "elsewhere", {"RESKEY:availability_zones": "mars"})
    assert "zones" in error(
        demo.volume("POST", "/volumes", json={"volume": {"size": 1, "volume_type": "elsewhere"}}), 400
    )
    assert "'mars' is invalid" in error(
        demo.volume("POST", "/volumes", json={"volume": {"size": 1, "availability_zone": "mars"}}), 400
    )


# -- migrate and retype against the type's filters ------------------------------------------
def wait_migrated(admin: Api, vid: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while (vol := admin.ok(admin.volume("GET", f"/volumes/{vid}"))["volume"])["migration_status"] not in (
        "success",
        "error",
    ):
        assert time.monotonic() < deadline, vol
        time.sleep(0.05)
    return vol  # type: ignore[no-any-return]


def test_migrate_refuses_a_destination_failing_the_type_and_points_to_retype(admin: Api, demo: Api) -> None:
    make_type(admin, "goldish", {"volume_backend_name": "gold"})
    vol = create(demo, volume_type="goldish")
    act = f"/volumes/{vol['id']}/action"
    why = error(admin.volume("POST", act, json={"os-migrate_volume": {"host": "ferry@fast#fast"}}), 400)
    assert "does not pass the filters of volume type 'goldish'" in why and "retype" in why
    here = host_of(admin, vol["id"])
    assert here in ("ferry@gold-a#gold", "ferry@gold-b#gold")
    # to the other backend of the same name: allowed (how one is drained)
    there = "gold-a" if here == "ferry@gold-b#gold" else "gold-b"
    assert (
        admin.volume("POST", act, json={"os-migrate_volume": {"host": f"ferry@{there}"}}).status_code == 202
    )
    assert wait_migrated(admin, vol["id"])["migration_status"] == "success"
    assert host_of(admin, vol["id"]) == f"ferry@{there}#gold"
    # retype to a type the backend fails: refused with "never", migrated with "on-demand"
    make_type(admin, "bulky", {"volume_backend_name": "bulk"})
    retype = {"os-retype": {"new_type": "bulky", "migration_policy": "never"}}
    assert "on-demand" in error(demo.volume("POST", act, json=retype), 400)
    retype["os-retype"]["migration_policy"] = "on-demand"
    assert demo.volume("POST", act, json=retype).status_code == 202
    after = wait_migrated(admin, vol["id"])
    assert (after["migration_status"], after["volume_type"]) == ("success", "bulky")
    assert after["os-vol-host-attr:host"] == "ferry@bulk#bulk"
    # a retype the backend passes changes the type in place
    make_type(admin, "thin", {"thin_provisioning_support": "<is> True"})
    assert demo.volume("POST", act, json={"os-retype": {"new_type": "thin"}}).status_code == 202
    assert host_of(admin, vol["id"]) == "ferry@bulk#bulk"
    # a retype no backend passes
    make_type(admin, "nowhere", {"vendor_name": "Acme"})
    retype = {"os-retype": {"new_type": "nowhere", "migration_policy": "on-demand"}}
    assert "No valid backend" in error(demo.volume("POST", act, json=retype), 400)


# -- messages API --------------------------------------------------------------------------
def test_messages_need_3_3(demo: Api) -> None:
    error(at(demo, "GET", "/messages", "3.0"), 404)
    error(at(demo, "GET", f"/messages/{UNKNOWN}", "3.2"), 404)
    assert "messages" in demo.ok(at(demo, "GET", "/messages", "3.3"))


def test_messages_are_project_scoped_and_deletable(admin: Api, demo: Api, reader: Api) -> None:
    make_type(admin, "bogus2", {"vendor_name": "nope"})
    mine = create(demo, volume_type="bogus2")
    theirs = create(admin, volume_type="bogus2")
    [m_mine] = messages(demo, resource_uuid=mine["id"])
    [m_theirs] = messages(admin, resource_uuid=theirs["id"])
    assert theirs["id"] not in {m.get("resource_uuid") for m in messages(demo)}
    error(at(demo, "GET", f"/messages/{m_theirs['id']}"), 404)
    error(at(demo, "DELETE", f"/messages/{m_theirs['id']}"), 404)
    assert (
        admin.ok(at(admin, "GET", f"/messages/{m_mine['id']}"))["message"]["id"] == m_mine["id"]
    )  # admin: all
    assert reader.ok(at(reader, "GET", f"/messages/{m_mine['id']}"))["message"]["id"] == m_mine["id"]
    error(at(reader, "DELETE", f"/messages/{m_mine['id']}"), 403)
    assert at(demo, "DELETE", f"/messages/{m_mine['id']}").status_code == 204
    error(at(demo, "GET", f"/messages/{m_mine['id']}"), 404)
    error(at(demo, "DELETE", f"/messages/{m_mine['id']}"), 404)
    for bad in ("not-a-uuid", UNKNOWN):
        error(at(demo, "GET", f"/messages/{bad}"), 404)
    for vol in (mine, theirs):
        assert admin.volume("DELETE", f"/volumes/{vol['id']}").status_code == 202


@pytest.fixture(scope="module")
def reader(server: FerryServer) -> Api:
    return server.api(server.add_user("viewer", "viewer-password", "demo", "reader"))


def test_messages_pagination_sorting_and_filters(admin: Api, demo: Api) -> None:
    make_type(admin, "bogus3", {"storage_protocol": "iSCSI"})
    for _ in range(3):
        create(demo, volume_type="bogus3")
    every = messages(demo)
    assert len(every) >= 3
    assert [m["created_at"] for m in every] == sorted((m["created_at"] for m in every), reverse=True)
    page = demo.ok(at(demo, "GET", "/messages", params={"limit": 2}))
    assert [m["id"] for m in page["messages"]] == [m["id"] for m in every[:2]]
    [link] = page["messages_links"]
    assert link["rel"] == "next" and f"marker={every[1]['id']}" in link["href"]
    rest = messages(demo, marker=every[1]["id"])
    assert [m["id"] for m in rest] == [m["id"] for m in every[2:]]
    asc = messages(demo, sort="created_at:asc")
    assert [m["id"] for m in asc] == [m["id"] for m in reversed(every)]
    assert [m["id"] for m in messages(demo, sort_key="created_at", sort_dir="asc")] == [m["id"] for m in asc]
    assert [m["id"] for m in messages(demo, offset=1, limit=1)] == [every[1]["id"]]
    assert {m["event_id"] for m in messages(demo, event_id="VOLUME_VOLUME_001_003")} == {
        "VOLUME_VOLUME_001_003"
    }
    assert messages(demo, message_level="INFO") == []
    assert messages(demo, resource_type="NOT_A_TYPE") == []
    assert messages(demo, request_id="req-none") == []
    # before 3.5 the list takes no parameters
    assert len(demo.ok(at(demo, "GET", "/messages", "3.3", params={"limit": 1}))["messages"]) == len(every)
    for params in (
        {"limit": "abc"},
        {"limit": "-1"},
        {"offset": "x"},
        {"sort": "color:asc"},
        {"sort": "created_at:sideways"},
        {"sort_key": "nope"},
        {"bogus_filter": "1"},
    ):
        error(at(demo, "GET", "/messages", params=params), 400)
    error(at(demo, "GET", "/messages", params={"marker": UNKNOWN}), 404)
    error(at(demo, "GET", "/messages", params={"marker": "not-a-uuid"}), 404)


# -- capabilities ----------------------------------------------------------------------------
def test_capabilities_agree_with_get_pools(admin: Api, demo: Api) -> None:
    pools = admin.ok(admin.volume("GET", "/scheduler-stats/get_pools", params={"detail": "true"}))["pools"]
    for pool in pools:
        service = pool["name"].split("#")[0]
        caps = admin.ok(admin.volume("GET", f"/capabilities/{service}"))
        assert caps["namespace"] == f"OS::Storage::Capabilities::{service}"
        for key in ("vendor_name", "volume_backend_name", "storage_protocol", "pool_name", "driver_version"):
            assert caps[key] == pool["capabilities"][key], key
        with_pool = admin.ok(admin.volume("GET", f"/capabilities/{pool['name'].replace('#', '%23')}"))
        assert with_pool == caps
    caps = admin.ok(admin.volume("GET", "/capabilities/ferry@gold-a"))
    assert (caps["volume_backend_name"], caps["pool_name"]) == ("gold", "gold")
    assert set(caps) == {
        "pool_name", "description", "volume_backend_name", "namespace", "visibility", "driver_version",
        "vendor_name", "properties", "storage_protocol", "replication_targets", "display_name",
    }  # fmt: skip
    for bad in ("ferry@nope", "elsewhere@fast", "ferry", "x" * 300):
        error(admin.volume("GET", f"/capabilities/{bad}"), 404)
    error(demo.volume("GET", "/capabilities/ferry@fast"), 403)
