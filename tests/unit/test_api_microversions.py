"""Cinder's volume microversions 3.1 … 3.42 against a real `ferry serve`: each gated behaviour below
and at its version (view fields, filters, sort keys, force delete, metadata Etag, migrate's cluster,
revert to snapshot, the in-use extend gate) and `GET /resource_filters`."""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from testkit.server import Api, FerryServer

pytestmark = pytest.mark.db


@pytest.fixture(scope="module", autouse=True)
def no_server_errors(server: FerryServer) -> Iterator[None]:
    yield
    assert server.log_problems() == []


def at(api: Api, version: str, method: str, path: str, **kw: Any) -> httpx.Response:
    """A block storage request at volume microversion `version`."""
    headers = {"X-Auth-Token": api.token, "OpenStack-API-Version": f"volume {version}"}
    resp = api.client.request(method, f"{api.base}/volume/v3/{api.project_id}{path}", headers=headers, **kw)
    assert resp.headers.get("OpenStack-API-Version") == f"volume {version}" or resp.status_code == 406
    return resp


def ok(resp: httpx.Response, code: int = 200) -> Any:
    assert resp.status_code == code, (
        f"{resp.request.method} {resp.request.url}: {resp.status_code} {resp.text}"
    )
    return resp.json() if resp.content else None


def refused(resp: httpx.Response, code: int = 400) -> str:
    assert resp.status_code == code, (
        f"{resp.request.method} {resp.request.url}: {resp.status_code} {resp.text}"
    )
    (body,) = resp.json().values()
    return str(body["message"])


def volume(api: Api, **fields: Any) -> dict[str, Any]:
    vol: dict[str, Any] = ok(api.volume("POST", "/volumes", json={"volume": {"size": 1, **fields}}), 202)[
        "volume"
    ]
    wait(api, f"/volumes/{vol['id']}", "available")
    return vol


def snapshot(api: Api, vid: str, **fields: Any) -> dict[str, Any]:
    snap: dict[str, Any] = ok(
        api.volume("POST", "/snapshots", json={"snapshot": {"volume_id": vid, **fields}}), 202
    )["snapshot"]
    wait(api, f"/snapshots/{snap['id']}", "available")
    return snap


def wait(api: Api, path: str, status: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        (item,) = ok(api.volume("GET", path)).values()
        if item["status"] == status:
            return dict(item)
        assert time.monotonic() < deadline, f"{path} still {item['status']}, want {status}"
        time.sleep(0.05)


def set_status(server: FerryServer, vid: str, status: str) -> None:
    """Put a volume in a status no API call here reaches (in-use without a guest, a failed extend)."""
    from ferry import config as cfgmod
    from ferry.db.engine import make_engine

    engine = make_engine(cfgmod.load(server.config_path).database_url)
    try:
        with engine.begin() as c:
            c.execute(text("UPDATE volumes SET status = :s WHERE id = :i"), {"s": status, "i": vid})
    finally:
        engine.dispose()


def ids(resp: httpx.Response, key: str) -> list[str]:
    return [item["id"] for item in ok(resp)[key]]


# -- versions ----------------------------------------------------------------------------------
def test_range_and_refusal(demo: Api) -> None:
    assert at(demo, "3.49", "GET", "/volumes").status_code == 200
    assert "maximum is 3.49" in refused(at(demo, "3.50", "GET", "/volumes"), 406)  # 3.50: multiattach
    (doc,) = httpx.get(f"{demo.base}/volume/v3/").json()["versions"]
    assert (doc["min_version"], doc["version"]) == ("3.0", "3.49")


# -- view fields -------------------------------------------------------------------------------
def test_volume_view_fields_per_version(admin: Api, demo: Api) -> None:
    vid = volume(demo)["id"]
    for version, want in [
        ("3.0", set()),
        ("3.12", set()),
        ("3.13", {"group_id"}),
        ("3.20", {"group_id"}),
        ("3.47", {"group_id"}),
        ("3.48", {"group_id", "service_uuid", "shared_targets"}),
        ("3.49", {"group_id", "service_uuid", "shared_targets"}),
    ]:
        view = ok(at(demo, version, "GET", f"/volumes/{vid}"))["volume"]
        later = {
            "group_id",
            "provider_id",
            "service_uuid",
            "shared_targets",
            "cluster_name",
            "volume_type_id",
        }
        assert later & view.keys() == want, version
    # provider_id: admins only, from 3.21
    assert "provider_id" not in ok(at(admin, "3.20", "GET", f"/volumes/{vid}"))["volume"]
    assert "provider_id" in ok(at(admin, "3.21", "GET", f"/volumes/{vid}"))["volume"]
    assert "provider_id" not in ok(at(demo, "3.21", "GET", f"/volumes/{vid}"))["volume"]
    detail = ok(at(admin, "3.21", "GET", "/volumes/detail"))["volumes"]
    assert all("provider_id" in v and "volume_type_id" not in v for v in detail)
    at_48 = ok(at(admin, "3.49", "GET", f"/volumes/{vid}"))["volume"]
    assert (at_48["shared_targets"], at_48["service_uuid"]) == (False, None)
    assert "cluster_name" not in at_48  # 3.61


def test_snapshot_view_fields_per_version(demo: Api) -> None:
    sid = snapshot(demo, volume(demo)["id"])["id"]
    for version, want in [("3.0", set()), ("3.14", {"group_snapshot_id"}), ("3.40", {"group_snapshot_id"})]:
        view = ok(at(demo, version, "GET", f"/snapshots/{sid}"))["snapshot"]
        assert {"group_snapshot_id", "user_id"} & view.keys() == want, version
    shown = ok(at(demo, "3.41", "GET", f"/snapshots/{sid}"))["snapshot"]
    assert shown["user_id"] and shown["group_snapshot_id"] is None
    # the plain list has no extended attributes; detail has them
    (plain,) = [s for s in ok(at(demo, "3.41", "GET", "/snapshots"))["snapshots"] if s["id"] == sid]
    assert "os-extended-snapshot-attributes:progress" not in plain and plain["user_id"]
    (full,) = [s for s in ok(at(demo, "3.0", "GET", "/snapshots/detail"))["snapshots"] if s["id"] == sid]
    assert full["os-extended-snapshot-attributes:progress"] == "100%"
    assert full["os-extended-snapshot-attributes:project_id"] == demo.project_id and "user_id" not in full


# -- filters -----------------------------------------------------------------------------------
def test_bootable_filter(demo: Api) -> None:
    vid = volume(demo)["id"]
    # before 3.2: only "false"/"False" ask for non-bootable volumes; anything else for bootable ones
    assert vid in ids(at(demo, "3.1", "GET", "/volumes", params={"bootable": "False"}), "volumes")
    assert vid not in ids(at(demo, "3.1", "GET", "/volumes", params={"bootable": "0"}), "volumes")
    assert ids(at(demo, "3.1", "GET", "/volumes", params={"bootable": "junk"}), "volumes") == []
    # from 3.2: strict booleans
    assert vid in ids(at(demo, "3.2", "GET", "/volumes", params={"bootable": "0"}), "volumes")
    assert ids(at(demo, "3.2", "GET", "/volumes", params={"bootable": "true"}), "volumes") == []
    assert "bootable=junk" in refused(at(demo, "3.2", "GET", "/volumes", params={"bootable": "junk"}))


def test_image_and_group_filters_arrive_with_their_versions(demo: Api) -> None:
    vid = volume(demo)["id"]
    meta = json.dumps({"image_name": "x"})
    assert vid in ids(at(demo, "3.3", "GET", "/volumes", params={"glance_metadata": meta}), "volumes")
    assert ids(at(demo, "3.4", "GET", "/volumes", params={"glance_metadata": meta}), "volumes") == []
    group = "00000000-0000-4000-8000-000000000000"
    assert vid in ids(at(demo, "3.9", "GET", "/volumes", params={"group_id": group}), "volumes")
    assert ids(at(demo, "3.10", "GET", "/volumes", params={"group_id": group}), "volumes") == []


def test_volume_metadata_size_and_like_filters(demo: Api) -> None:
    a = volume(demo, name="alpha-one", metadata={"tier": "gold", "k": "v"})["id"]
    b = volume(demo, name="beta-two", metadata={"tier": "silver"})["id"]
    gold = ids(demo.volume("GET", "/volumes", params={"metadata": "{'tier': 'gold'}"}), "volumes")
    assert a in gold and b not in gold
    both = ids(
        demo.volume("GET", "/volumes", params={"metadata": json.dumps({"tier": "gold", "k": "v"})}), "volumes"
    )
    assert a in both and b not in both
    assert a not in ids(
        demo.volume("GET", "/volumes", params={"metadata": '{"tier": "gold", "k": "w"}'}), "volumes"
    )
    refused(demo.volume("GET", "/volumes", params={"metadata": "[1, 2]"}))
    assert b not in ids(demo.volume("GET", "/volumes", params={"size": "2"}), "volumes")
    assert b in ids(demo.volume("GET", "/volumes", params={"size": "1"}), "volumes")
    refused(demo.volume("GET", "/volumes", params={"size": "-1"}))
    # like filters from 3.34; before, `name~` is no filter (3.31 to 3.33: an invalid one)
    assert ids(at(demo, "3.34", "GET", "/volumes", params={"name~": "pha-o"}), "volumes") == [a]
    assert b in ids(at(demo, "3.30", "GET", "/volumes", params={"name~": "pha-o"}), "volumes")
    assert "name~" in refused(at(demo, "3.33", "GET", "/volumes", params={"name~": "pha-o"}))
    assert ids(at(demo, "3.34", "GET", "/volumes", params={"name~": "%"}), "volumes") == []


def test_unknown_filters_are_refused_from_3_31_for_members(admin: Api, demo: Api) -> None:
    volume(demo)
    assert ok(at(demo, "3.30", "GET", "/volumes", params={"colour": "red"}))["volumes"]
    msg = refused(at(demo, "3.31", "GET", "/volumes/detail", params={"colour": "red"}))
    assert msg == "Invalid filters colour are found in query options."
    refused(at(demo, "3.31", "GET", "/snapshots", params={"colour": "red"}))
    ok(at(admin, "3.31", "GET", "/volumes", params={"colour": "red", "all_tenants": "1"}))  # admins: any
    ok(at(demo, "3.31", "GET", "/volumes", params={"limit": "1", "sort": "name:asc"}))  # not filters


def test_snapshot_filters_and_name_sort(demo: Api) -> None:
    vid = volume(demo)["id"]
    s1 = snapshot(demo, vid, name="s-b", metadata={"k": "1"})["id"]
    s2 = snapshot(demo, vid, name="s-a", metadata={"k": "2"})["id"]
    meta = json.dumps({"k": "1"})
    # snapshot metadata filter from 3.22; before it the parameter is dropped
    assert set(
        ids(at(demo, "3.21", "GET", "/snapshots", params={"volume_id": vid, "metadata": meta}), "snapshots")
    ) == {s1, s2}
    assert ids(
        at(demo, "3.22", "GET", "/snapshots", params={"volume_id": vid, "metadata": meta}), "snapshots"
    ) == [s1]
    assert ids(demo.volume("GET", "/snapshots", params={"volume_id": vid, "name": "s-a"}), "snapshots") == [
        s2
    ]
    assert (
        ids(demo.volume("GET", "/snapshots", params={"volume_id": vid, "status": "bogus"}), "snapshots") == []
    )
    assert ids(at(demo, "3.34", "GET", "/snapshots/detail", params={"name~": "-b"}), "snapshots") == [s1]
    # sorting by name from 3.30
    assert "3.30" in refused(at(demo, "3.29", "GET", "/snapshots", params={"sort": "name:asc"}))
    by_name = ids(
        at(demo, "3.30", "GET", "/snapshots", params={"volume_id": vid, "sort": "name:asc"}), "snapshots"
    )
    assert by_name == [s2, s1]


def test_resource_filters(demo: Api) -> None:
    refused(at(demo, "3.32", "GET", "/resource_filters"), 404)
    listed = ok(at(demo, "3.33", "GET", "/resource_filters"))["resource_filters"]
    by_resource = {r["resource"]: r["filters"] for r in listed}
    assert "metadata" in by_resource["volume"] and "volume_id" in by_resource["snapshot"]
    assert "backup" not in by_resource  # Ferry has no backups
    one = ok(at(demo, "3.33", "GET", "/resource_filters", params={"resource": "snapshot"}))[
        "resource_filters"
    ]
    assert [r["resource"] for r in one] == ["snapshot"]
    assert ok(at(demo, "3.33", "GET", "/resource_filters", params={"resource": "group"})) == {
        "resource_filters": []
    }


# -- volume changes ----------------------------------------------------------------------------
def test_metadata_etag_from_3_15(demo: Api) -> None:
    vid = volume(demo, metadata={"a": "b"})["id"]
    assert "ETag" not in at(demo, "3.14", "GET", f"/volumes/{vid}/metadata").headers
    resp = at(demo, "3.15", "GET", f"/volumes/{vid}/metadata")
    assert resp.json() == {"metadata": {"a": "b"}}
    assert resp.headers["ETag"] == hashlib.md5(json.dumps({"metadata": {"a": "b"}}).encode()).hexdigest()


def test_migrate_takes_cluster_from_3_16(admin: Api, demo: Api) -> None:
    vid = volume(demo)["id"]
    body = {"os-migrate_volume": {"cluster": "c1"}}
    assert "host" in refused(at(admin, "3.15", "POST", f"/volumes/{vid}/action", json=body))
    assert "cluster 'c1' could not be found" in refused(
        at(admin, "3.16", "POST", f"/volumes/{vid}/action", json=body)
    )
    both = {"os-migrate_volume": {"cluster": "c1", "host": "ferry@fast#fast"}}
    assert "not both" in refused(at(admin, "3.16", "POST", f"/volumes/{vid}/action", json=both))


def test_force_delete_from_3_23(server: FerryServer, admin: Api, demo: Api) -> None:
    vid = volume(demo)["id"]
    set_status(server, vid, "error_extending")
    assert "error_extending" in refused(demo.volume("DELETE", f"/volumes/{vid}"))
    # before 3.23 `force` is ignored; from it, it is for admins
    assert "error_extending" in refused(
        at(admin, "3.22", "DELETE", f"/volumes/{vid}", params={"force": "true"})
    )
    refused(at(demo, "3.23", "DELETE", f"/volumes/{vid}", params={"force": "true"}), 403)
    assert at(admin, "3.23", "DELETE", f"/volumes/{vid}", params={"force": "true"}).status_code == 202
    deadline = time.monotonic() + 30
    while demo.volume("GET", f"/volumes/{vid}").status_code != 404:
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_in_use_extend_needs_3_42(server: FerryServer, demo: Api) -> None:
    vid = volume(demo)["id"]
    set_status(server, vid, "in-use")
    try:
        msg = refused(at(demo, "3.41", "POST", f"/volumes/{vid}/action", json={"os-extend": {"new_size": 2}}))
        assert "status must be available" in msg and "3.42" in msg
    finally:
        set_status(server, vid, "available")


# -- revert to snapshot (3.40) -----------------------------------------------------------------
def _qemu_io(path: str, command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["qemu-io", "-f", "qcow2", "-c", command, path], capture_output=True, text=True, check=False
    )


def _layers(admin: Api, vid: str) -> list[str]:
    return [
        layer["path"] for layer in ok(admin.volume("GET", f"/volumes/{vid}/location"))["location"]["layers"]
    ]


def test_revert_to_latest_snapshot(admin: Api, demo: Api) -> None:
    vid = volume(demo)["id"]
    snap = snapshot(demo, vid)["id"]
    base, active = _layers(admin, vid)
    wrote = _qemu_io(active, "write -P 0xab 0 64k")
    assert wrote.returncode == 0, wrote.stderr
    assert "Pattern verification failed" not in _qemu_io(active, "read -P 0xab 0 64k").stdout
    revert = {"revert": {"snapshot_id": snap}}
    assert "Unknown volume action 'revert'" in refused(
        at(demo, "3.39", "POST", f"/volumes/{vid}/action", json=revert)
    )
    assert at(demo, "3.40", "POST", f"/volumes/{vid}/action", json=revert).status_code == 202
    new_base, new_active = _layers(admin, vid)
    assert new_base == base and new_active != active
    read = _qemu_io(new_active, "read -P 0 0 64k")  # the write after the snapshot is gone
    assert read.returncode == 0 and "Pattern verification failed" not in read.stdout, read.stdout
    assert wait(demo, f"/volumes/{vid}", "available")["size"] == 1
    assert wait(demo, f"/snapshots/{snap}", "available")["volume_id"] == vid


def test_revert_refusals(admin: Api, demo: Api) -> None:
    vid = volume(demo)["id"]
    older = snapshot(demo, vid)["id"]
    latest = snapshot(demo, vid)["id"]
    other = snapshot(demo, volume(demo)["id"])["id"]
    act = f"/volumes/{vid}/action"
    assert "latest snapshot" in refused(
        at(demo, "3.40", "POST", act, json={"revert": {"snapshot_id": older}})
    )
    assert "not a snapshot of" in refused(
        at(demo, "3.40", "POST", act, json={"revert": {"snapshot_id": other}})
    )
    missing = "00000000-0000-4000-8000-000000000000"
    refused(at(demo, "3.40", "POST", act, json={"revert": {"snapshot_id": missing}}), 404)
    refused(at(demo, "3.40", "POST", act, json={"revert": {}}))
    refused(at(demo, "3.40", "POST", act, json={"revert": "x"}))
    # another project's volume is not found
    theirs = volume(admin)["id"]
    refused(
        at(demo, "3.40", "POST", f"/volumes/{theirs}/action", json={"revert": {"snapshot_id": latest}}), 404
    )
    assert at(demo, "3.40", "POST", act, json={"revert": {"snapshot_id": latest}}).status_code == 202


def test_pool_filters(admin: Api) -> None:
    every = [p["name"] for p in ok(at(admin, "3.27", "GET", "/scheduler-stats/get_pools"))["pools"]]
    assert len(every) == 2
    first = every[0]
    assert (
        len(ok(at(admin, "3.27", "GET", "/scheduler-stats/get_pools", params={"name": first}))["pools"]) == 2
    )
    named = ok(at(admin, "3.28", "GET", "/scheduler-stats/get_pools", params={"name": first}))["pools"]
    assert [p["name"] for p in named] == [first]
    # from 3.31 pool filters are checked for admins too
    refused(at(admin, "3.31", "GET", "/scheduler-stats/get_pools", params={"colour": "red"}))
    vt = ok(
        admin.volume(
            "POST",
            "/types",
            json={"volume_type": {"name": "mv-bulk", "extra_specs": {"volume_backend_name": "bulk"}}},
        )
    )["volume_type"]
    by_type = {"volume_type": vt["name"], "detail": "true"}
    assert len(ok(at(admin, "3.34", "GET", "/scheduler-stats/get_pools", params=by_type))["pools"]) == 2
    (bulk,) = ok(at(admin, "3.35", "GET", "/scheduler-stats/get_pools", params=by_type))["pools"]
    assert bulk["capabilities"]["volume_backend_name"] == "bulk"
    refused(at(admin, "3.35", "GET", "/scheduler-stats/get_pools", params={"volume_type": "no-such"}), 404)


@pytest.mark.parametrize(
    ("method", "path", "code"),
    [
        ("GET", "/clusters", 404),  # 3.7
        ("GET", "/manageable_volumes", 404),  # 3.8
        ("GET", "/backups", 404),  # 3.9
        ("GET", "/group_types", 404),  # 3.11
        ("GET", "/groups", 404),  # 3.13
        ("GET", "/group_snapshots", 404),  # 3.14
        ("POST", "/workers/cleanup", 404),  # 3.24
        ("PUT", "/os-services/set-log", 404),  # 3.32
        ("POST", "/attachments", 405),  # 3.27: attaching is Nova's call in Ferry
    ],
)
def test_features_not_offered(demo: Api, method: str, path: str, code: int) -> None:
    refused(at(demo, "3.42", method, path, json={}), code)


def test_a_public_upload_is_for_admins(demo: Api) -> None:
    # 3.1: the upload's image may be made public, by admins only (Cinder's volume:upload_public)
    vid = volume(demo)["id"]
    upload = {"os-volume_upload_image": {"image_name": "i", "visibility": "public"}}
    resp = at(demo, "3.42", "POST", f"/volumes/{vid}/action", json=upload)
    assert resp.status_code == 403 and "upload_public" in resp.text


# -- pages -------------------------------------------------------------------------------------
def test_next_links_offset_and_snapshot_sort_keys(server: FerryServer) -> None:
    api = server.api(server.add_user("pager2", "pager2-password", "pages2", "member"))
    vids = [volume(api, name=f"p{i}")["id"] for i in range(3)]
    first = ok(api.volume("GET", "/volumes/detail", params={"limit": 2, "sort": "name:asc"}))
    assert [v["id"] for v in first["volumes"]] == vids[:2]
    (link,) = first["volumes_links"]
    assert link["rel"] == "next" and f"marker={vids[1]}" in link["href"] and "limit=2" in link["href"]
    rest = ok(api.client.get(link["href"], headers={"X-Auth-Token": api.token}))
    assert [v["id"] for v in rest["volumes"]] == vids[2:] and "volumes_links" not in rest
    assert "volumes_links" not in ok(api.volume("GET", "/volumes", params={"limit": 5}))
    skipped = ok(api.volume("GET", "/volumes", params={"sort": "name:asc", "offset": 1}))["volumes"]
    assert [v["id"] for v in skipped] == vids[1:]
    refused(api.volume("GET", "/volumes", params={"offset": -1}))

    sids = [snapshot(api, vids[0], name=n)["id"] for n in ("b", "a", "c")]
    by_key = ok(api.volume("GET", "/snapshots", params={"sort_key": "created_at", "sort_dir": "asc"}))
    assert [s["id"] for s in by_key["snapshots"]] == sids
    desc = ok(api.volume("GET", "/snapshots/detail", params={"sort_key": "created_at", "sort_dir": "desc"}))
    assert [s["id"] for s in desc["snapshots"]] == sids[::-1]
    refused(api.volume("GET", "/snapshots", params={"sort_key": "bogus"}))
    assert "3.30" in refused(at(api, "3.29", "GET", "/snapshots", params={"sort_key": "name"}))
    page = ok(
        api.volume(
            "GET", "/snapshots", params={"limit": 1, "offset": 1, "sort_key": "created_at", "sort_dir": "asc"}
        )
    )
    assert [s["id"] for s in page["snapshots"]] == [sids[1]] and page["snapshots_links"]
    refused(api.volume("GET", "/snapshots", params={"marker": "00000000-0000-4000-8000-000000000000"}), 404)


def test_count_from_3_45(server: FerryServer) -> None:
    api = server.api(server.add_user("counter", "counter-password", "counting", "member"))
    vid = volume(api)["id"]
    volume(api)
    snapshot(api, vid)
    assert "count" not in ok(at(api, "3.44", "GET", "/volumes", params={"with_count": "true"}))
    assert "count" not in ok(at(api, "3.45", "GET", "/volumes"))
    page = ok(at(api, "3.45", "GET", "/volumes/detail", params={"with_count": "true", "limit": 1}))
    assert (len(page["volumes"]), page["count"]) == (1, 2)
    snaps = ok(at(api, "3.45", "GET", "/snapshots", params={"with_count": "1", "limit": 0}))
    assert (snaps["snapshots"], snaps["count"]) == ([], 1)


def test_create_from_backup_from_3_47(demo: Api) -> None:
    body = {"volume": {"size": 1, "backup_id": "00000000-0000-4000-8000-000000000000"}}
    assert "Backup" in refused(at(demo, "3.47", "POST", "/volumes", json=body), 404)
    created = ok(at(demo, "3.46", "POST", "/volumes", json=body), 202)["volume"]  # ignored before 3.47
    wait(demo, f"/volumes/{created['id']}", "available")


def test_backend_state_from_3_49(admin: Api) -> None:
    def volume_services(version: str) -> list[dict[str, Any]]:
        services = ok(at(admin, version, "GET", "/os-services"))["services"]
        return [s for s in services if s["binary"] == "cinder-volume"]

    assert volume_services("3.48") and all("backend_state" not in s for s in volume_services("3.48"))
    assert all(s["backend_state"] == s["state"] for s in volume_services("3.49"))


def test_admin_project_filter_and_display_name_sort(server: FerryServer, admin: Api) -> None:
    api = server.api(server.add_user("projector", "projector-password", "projected", "member"))
    mine = {volume(api, name="b")["id"], volume(api, name="a")["id"]}
    volume(admin)
    listed = admin.volume("GET", "/volumes/detail", params={"all_tenants": 1, "project_id": api.project_id})
    assert set(ids(listed, "volumes")) == mine
    # a member's project_id is no filter of theirs: dropped before 3.31, refused from it
    assert set(ids(api.volume("GET", "/volumes", params={"project_id": "x"}), "volumes")) == mine
    refused(at(api, "3.31", "GET", "/volumes", params={"project_id": "x"}))
    by_name = ok(api.volume("GET", "/volumes", params={"sort_key": "display_name", "sort_dir": "asc"}))
    assert [v["name"] for v in by_name["volumes"]] == ["a", "b"]
    vid = next(iter(mine))
    snaps = [snapshot(api, vid, name=n)["id"] for n in ("y", "x")]
    # `display_name` (Cinder's column) sorts snapshots at every version; `name` from 3.30
    by_display = ok(api.volume("GET", "/snapshots", params={"sort_key": "display_name", "sort_dir": "asc"}))
    assert ids_of(by_display["snapshots"]) == snaps[::-1]


def ids_of(items: list[dict[str, Any]]) -> list[str]:
    return [item["id"] for item in items]


@pytest.mark.parametrize(
    "params",
    [
        {"size": "²"},
        {"size": "9" * 30},
        {"metadata": "{[]: 1}"},
        {"metadata": "[" * 5000},
        {"created_at": "yesterday"},
        {"bootable": "maybe"},
    ],
)
def test_bad_filter_values_are_400(demo: Api, params: dict[str, str]) -> None:
    refused(at(demo, "3.2", "GET", "/volumes", params=params))
