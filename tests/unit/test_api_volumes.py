"""Cinder v3 volumes, snapshots, types and pools against a real `ferry serve`: the happy paths,
state rules, isolation between projects, roles, pagination and filters, microversions, and
conditional state changes under concurrency."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from ferry.api.versions import VOLUME_MAX
from testkit.server import Api, FerryServer

pytestmark = pytest.mark.db


# -- fixtures and helpers --------------------------------------------------------------------
@pytest.fixture(scope="module", autouse=True)
def no_server_errors(server: FerryServer) -> Iterator[None]:
    yield
    assert server.log_problems() == []


@pytest.fixture(scope="module")
def reader(server: FerryServer) -> Api:
    return server.api(server.add_user("viewer", "viewer-password", "demo", "reader"))


def error(resp: httpx.Response, code: int, kind: str) -> str:
    """Assert an OpenStack-shaped error body and return its message."""
    assert resp.status_code == code, (
        f"{resp.request.method} {resp.request.url}: {resp.status_code} {resp.text}"
    )
    body = resp.json()
    assert list(body) == [kind], body
    assert body[kind]["code"] == code and isinstance(body[kind]["message"], str)
    return str(body[kind]["message"])


def create_volume(api: Api, size: int = 1, **fields: Any) -> dict[str, Any]:
    vol: dict[str, Any] = api.ok(
        api.volume("POST", "/volumes", json={"volume": {"size": size, **fields}}), 202
    )["volume"]
    return vol


def show(api: Api, vid: str) -> dict[str, Any]:
    vol: dict[str, Any] = api.ok(api.volume("GET", f"/volumes/{vid}"), 200)["volume"]
    return vol


def wait_volume(api: Api, vid: str, status: str = "available", timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while (vol := show(api, vid))["status"] != status:
        assert not vol["status"].startswith("error"), vol
        assert time.monotonic() < deadline, f"volume {vid} still {vol['status']}, want {status}"
        time.sleep(0.05)
    return vol


def wait_gone(api: Api, path: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while (resp := api.volume("GET", path)).status_code == 200:
        assert "error" not in next(iter(resp.json().values()))["status"], resp.text
        assert time.monotonic() < deadline, f"{path} still there: {resp.text}"
        time.sleep(0.05)
    error(resp, 404, "itemNotFound")


def create_snapshot(api: Api, vid: str, **fields: Any) -> dict[str, Any]:
    snap: dict[str, Any] = api.ok(
        api.volume("POST", "/snapshots", json={"snapshot": {"volume_id": vid, **fields}}), 202
    )["snapshot"]
    return snap


# -- volumes ---------------------------------------------------------------------------------
def test_volume_life_cycle(demo: Api) -> None:
    vol = create_volume(demo, 1, name="life", description="first", metadata={"a": "1"})
    assert vol["status"] == "available"  # an empty volume is ready when the create returns
    assert (vol["name"], vol["description"], vol["size"], vol["metadata"]) == ("life", "first", 1, {"a": "1"})
    assert not [key for key in vol if key.startswith("os-vol-")]  # Cinder's create view is the plain one
    assert vol["links"][0]["href"].endswith(f"/volume/v3/{demo.project_id}/volumes/{vol['id']}")
    shown = show(demo, vol["id"])
    assert shown["os-vol-tenant-attr:tenant_id"] == demo.project_id
    assert {k: v for k, v in shown.items() if not k.startswith("os-vol-")} == vol
    vol = shown

    listed = demo.ok(demo.volume("GET", "/volumes"))["volumes"]
    assert {"id": vol["id"], "name": "life", "links": vol["links"]} in listed
    detail = demo.ok(demo.volume("GET", "/volumes/detail"))["volumes"]
    assert [v for v in detail if v["id"] == vol["id"]] == [vol]

    upd = demo.ok(
        demo.volume(
            "PUT",
            f"/volumes/{vol['id']}",
            json={"volume": {"name": "renamed", "description": None, "metadata": {"b": "2"}}},
        )
    )
    assert (upd["volume"]["name"], upd["volume"]["description"], upd["volume"]["metadata"]) == (
        "renamed",
        None,
        {"b": "2"},
    )
    upd = demo.ok(demo.volume("PUT", f"/volumes/{vol['id']}", json={"volume": {"description": "kept name"}}))
    assert upd["volume"]["name"] == "renamed" and upd["volume"]["description"] == "kept name"
    assert show(demo, vol["id"])["updated_at"] >= vol["updated_at"]

    assert demo.volume("DELETE", f"/volumes/{vol['id']}").status_code == 202
    error(demo.volume("GET", f"/volumes/{vol['id']}"), 404, "itemNotFound")
    error(demo.volume("DELETE", f"/volumes/{vol['id']}"), 404, "itemNotFound")
    assert vol["id"] not in {v["id"] for v in demo.ok(demo.volume("GET", "/volumes"))["volumes"]}


def test_size_as_digit_string_is_accepted(demo: Api) -> None:
    vol = create_volume(demo, "2")  # type: ignore[arg-type]  # Cinder accepts "2"
    assert vol["size"] == 2
    assert demo.volume("DELETE", f"/volumes/{vol['id']}").status_code == 202


def test_admin_only_fields(admin: Api, demo: Api) -> None:
    vol = create_volume(demo, 1, name="fields")
    as_admin = admin.ok(admin.volume("GET", f"/volumes/{vol['id']}"))["volume"]
    host = as_admin["os-vol-host-attr:host"]
    assert host in ("ferry@fast#fast", "ferry@bulk#bulk")
    backend = host.split("@")[1].split("#")[0]
    assert host == f"ferry@{backend}#{backend}"
    name_id = as_admin["os-vol-mig-status-attr:name_id"]
    assert len(name_id) == 36 and name_id != vol["id"]
    assert as_admin["migration_status"] is None and as_admin["os-vol-mig-status-attr:migstat"] is None
    admin_only = {
        "os-vol-host-attr:host",
        "os-vol-mig-status-attr:name_id",
        "os-vol-mig-status-attr:migstat",
        "migration_status",
    }
    assert "migration_progress" not in as_admin  # not Cinder's: GET …/volumes/{id}/migration has it
    assert admin_only <= set(as_admin)
    # a migration's progress is Ferry's `…/migration` report, not a field of Cinder's view
    assert "migration_progress" not in as_admin
    for view in (
        vol,
        show(demo, vol["id"]),
        *[v for v in demo.ok(demo.volume("GET", "/volumes/detail"))["volumes"] if v["id"] == vol["id"]],
    ):
        assert not admin_only & set(view), view
    in_admin_list = [
        v
        for v in admin.ok(admin.volume("GET", "/volumes/detail", params={"all_tenants": 1}))["volumes"]
        if v["id"] == vol["id"]
    ]
    assert [v["os-vol-host-attr:host"] for v in in_admin_list] == [host]


def test_backend_choice_and_pinning_type(admin: Api, demo: Api) -> None:
    # bulk (500 GiB) has the most free capacity; a type can pin a volume to fast
    plain = create_volume(demo, 1)
    assert (
        admin.ok(admin.volume("GET", f"/volumes/{plain['id']}"))["volume"]["os-vol-host-attr:host"]
        == "ferry@bulk#bulk"
    )
    vt = admin.ok(
        admin.volume(
            "POST",
            "/types",
            json={"volume_type": {"name": "pinned-fast", "extra_specs": {"volume_backend_name": "fast"}}},
        )
    )["volume_type"]
    pinned = create_volume(demo, 1, volume_type="pinned-fast")
    # `volume_type_id` is Cinder's from 3.63 (Ferry serves up to 3.42): the type is named.
    assert pinned["volume_type"] == "pinned-fast" and "volume_type_id" not in pinned and vt["id"]
    assert (
        admin.ok(admin.volume("GET", f"/volumes/{pinned['id']}"))["volume"]["os-vol-host-attr:host"]
        == "ferry@fast#fast"
    )
    by_id = create_volume(demo, 1, volume_type=vt["id"])
    assert by_id["volume_type"] == "pinned-fast"
    # more than fast holds. Cinder's behaviour (was a 400 "No capacity"): accepted, the volume is in
    # error on no host, and the project has a message saying no backend could take it.
    big = demo.ok(
        demo.volume("POST", "/volumes", json={"volume": {"size": 101, "volume_type": "pinned-fast"}}), 202
    )["volume"]
    assert big["status"] == "error"
    assert admin.ok(admin.volume("GET", f"/volumes/{big['id']}"))["volume"]["os-vol-host-attr:host"] is None
    msgs = demo.ok(
        demo.client.get(
            f"{demo.base}/volume/v3/{demo.project_id}/messages",
            headers={"X-Auth-Token": demo.token, "OpenStack-API-Version": "volume 3.3"},
        )
    )["messages"]
    assert [m["event_id"] for m in msgs if m.get("resource_uuid") == big["id"]] == ["VOLUME_VOLUME_001_003"]
    assert demo.volume("DELETE", f"/volumes/{big['id']}").status_code == 202
    error(
        demo.volume("POST", "/volumes", json={"volume": {"size": 1, "volume_type": "no-such-type"}}),
        404,
        "itemNotFound",
    )


def test_volume_from_snapshot_and_clone(admin: Api, demo: Api) -> None:
    src = create_volume(demo, 2, name="source")
    snap = create_snapshot(demo, src["id"], name="s1")
    assert (snap["status"], snap["size"], snap["volume_id"]) == ("available", 2, src["id"])

    from_snap = create_volume(demo, None, snapshot_id=snap["id"], name="from-snap")  # type: ignore[arg-type]
    assert from_snap["snapshot_id"] == snap["id"]
    from_snap = wait_volume(demo, from_snap["id"])
    assert from_snap["size"] == 2

    bigger = wait_volume(demo, create_volume(demo, 3, snapshot_id=snap["id"])["id"])
    assert bigger["size"] == 3 and bigger["snapshot_id"] == snap["id"]
    assert "smaller than the source" in error(
        demo.volume("POST", "/volumes", json={"volume": {"size": 1, "snapshot_id": snap["id"]}}),
        400,
        "badRequest",
    )

    clone = create_volume(demo, None, source_volid=src["id"], name="clone")  # type: ignore[arg-type]
    assert clone["source_volid"] == src["id"]
    clone = wait_volume(demo, clone["id"])
    assert clone["size"] == 2
    error(
        demo.volume("POST", "/volumes", json={"volume": {"size": 1, "source_volid": src["id"]}}),
        400,
        "badRequest",
    )
    error(
        demo.volume(
            "POST", "/volumes", json={"volume": {"snapshot_id": snap["id"], "source_volid": src["id"]}}
        ),
        400,
        "badRequest",
    )
    error(demo.volume("POST", "/volumes", json={"volume": {"name": "no size"}}), 400, "badRequest")
    # the new volumes are independent of their sources
    for vid in (from_snap["id"], bigger["id"], clone["id"]):
        assert demo.volume("DELETE", f"/volumes/{vid}").status_code == 202
    assert show(demo, src["id"])["status"] == "available"
    assert demo.ok(demo.volume("GET", f"/snapshots/{snap['id']}"))["snapshot"]["status"] == "available"


def test_volume_from_another_projects_snapshot_or_volume_is_not_found(admin: Api, demo: Api) -> None:
    theirs = create_volume(admin, 1)
    snap = create_snapshot(admin, theirs["id"])
    error(demo.volume("POST", "/volumes", json={"volume": {"snapshot_id": snap["id"]}}), 404, "itemNotFound")
    error(
        demo.volume("POST", "/volumes", json={"volume": {"source_volid": theirs["id"]}}), 404, "itemNotFound"
    )
    error(
        demo.volume("POST", "/snapshots", json={"snapshot": {"volume_id": theirs["id"]}}), 404, "itemNotFound"
    )


# -- snapshots -------------------------------------------------------------------------------
def test_snapshot_life_cycle(demo: Api) -> None:
    vol = create_volume(demo, 1, name="snapped")
    snap = create_snapshot(demo, vol["id"], name="before", description="d", metadata={"k": "v"})
    assert (snap["name"], snap["description"], snap["metadata"]) == ("before", "d", {"k": "v"})
    # Cinder's create answer is the plain view; show and the detailed list add the extension's
    # attributes; `user_id` is Cinder's from 3.41 (Ferry serves below it by default).
    extended = {"os-extended-snapshot-attributes:project_id", "os-extended-snapshot-attributes:progress"}
    assert not extended & set(snap) and "user_id" not in snap and "progress" not in snap
    other = create_snapshot(demo, create_volume(demo, 1)["id"])
    shown = demo.ok(demo.volume("GET", f"/snapshots/{snap['id']}"))["snapshot"]
    assert {k: v for k, v in shown.items() if k not in extended} == snap
    assert shown["os-extended-snapshot-attributes:project_id"] == demo.project_id
    assert shown["os-extended-snapshot-attributes:progress"] == "100%"
    for path, attrs in (("/snapshots", False), ("/snapshots/detail", True)):
        listed = demo.ok(demo.volume("GET", path))["snapshots"]
        assert snap["id"] in [s["id"] for s in listed] and other["id"] in [s["id"] for s in listed]
        assert all((extended <= set(s)) is attrs for s in listed)
    only = demo.ok(demo.volume("GET", "/snapshots", params={"volume_id": vol["id"]}))["snapshots"]
    assert [s["id"] for s in only] == [snap["id"]]

    upd = demo.ok(
        demo.volume(
            "PUT", f"/snapshots/{snap['id']}", json={"snapshot": {"name": "after", "metadata": {"x": "y"}}}
        )
    )["snapshot"]
    assert (upd["name"], upd["description"], upd["metadata"]) == ("after", "d", {"x": "y"})
    cleared = demo.ok(demo.volume("PUT", f"/snapshots/{snap['id']}", json={"snapshot": {"metadata": None}}))
    assert (cleared["snapshot"]["name"], cleared["snapshot"]["metadata"]) == ("after", {})

    assert demo.volume("DELETE", f"/snapshots/{snap['id']}").status_code == 202
    again = demo.volume("DELETE", f"/snapshots/{snap['id']}")  # while merging or already gone
    assert again.status_code in (404, 409), again.text
    error(again, again.status_code, "itemNotFound" if again.status_code == 404 else "conflictingRequest")
    wait_gone(demo, f"/snapshots/{snap['id']}")
    error(demo.volume("DELETE", f"/snapshots/{snap['id']}"), 404, "itemNotFound")
    assert demo.ok(demo.volume("GET", "/snapshots", params={"volume_id": vol["id"]}))["snapshots"] == []
    assert show(demo, vol["id"])["status"] == "available"


def test_deleting_snapshots_back_to_back(demo: Api) -> None:
    """Each delete merges a layer of the same chain in the background: the merges must not overlap."""
    vol = create_volume(demo, 1)
    snaps = [create_snapshot(demo, vol["id"])["id"] for _ in range(4)]
    for sid in (snaps[1], snaps[2], snaps[0]):
        assert demo.volume("DELETE", f"/snapshots/{sid}").status_code == 202
    for sid in snaps[:3]:
        wait_gone(demo, f"/snapshots/{sid}")
    left = demo.ok(demo.volume("GET", "/snapshots", params={"volume_id": vol["id"]}))["snapshots"]
    assert [s["id"] for s in left] == [snaps[3]]
    clone = wait_volume(demo, create_volume(demo, None, snapshot_id=snaps[3])["id"])  # type: ignore[arg-type]
    assert clone["size"] == 1
    assert demo.volume("DELETE", f"/volumes/{vol['id']}", params={"cascade": "true"}).status_code == 202


def test_delete_volume_with_snapshots_needs_cascade(demo: Api) -> None:
    vol = create_volume(demo, 1)
    snaps = [create_snapshot(demo, vol["id"])["id"] for _ in range(2)]
    assert "cascade" in error(demo.volume("DELETE", f"/volumes/{vol['id']}"), 400, "badRequest")
    assert show(demo, vol["id"])["status"] == "available"
    assert demo.volume("DELETE", f"/volumes/{vol['id']}", params={"cascade": "false"}).status_code == 400
    assert demo.volume("DELETE", f"/volumes/{vol['id']}", params={"cascade": "true"}).status_code == 202
    error(demo.volume("GET", f"/volumes/{vol['id']}"), 404, "itemNotFound")
    for sid in snaps:
        error(demo.volume("GET", f"/snapshots/{sid}"), 404, "itemNotFound")


def test_snapshot_of_a_busy_volume_is_refused(demo: Api) -> None:
    src = create_volume(demo, 1)
    clone = create_volume(demo, None, source_volid=src["id"])  # type: ignore[arg-type]
    resp = demo.volume("POST", "/snapshots", json={"snapshot": {"volume_id": clone["id"]}})
    if resp.status_code != 202:  # the clone may already be available
        assert "creating" in error(resp, 400, "badRequest")
    wait_volume(demo, clone["id"])


# -- extend ----------------------------------------------------------------------------------
def test_extend(admin: Api, demo: Api) -> None:
    vol = create_volume(demo, 1)
    assert (
        demo.volume("POST", f"/volumes/{vol['id']}/action", json={"os-extend": {"new_size": 2}}).status_code
        == 202
    )
    assert wait_volume(demo, vol["id"])["size"] == 2
    for size in (1, 2, 0, -1):
        error(
            demo.volume("POST", f"/volumes/{vol['id']}/action", json={"os-extend": {"new_size": size}}),
            400,
            "badRequest",
        )
    for bad in ("abc", "3", True, 2.5, None, [3], 10**30, 16 * 1024 + 1):
        error(
            demo.volume("POST", f"/volumes/{vol['id']}/action", json={"os-extend": {"new_size": bad}}),
            400,
            "badRequest",
        )
    error(demo.volume("POST", f"/volumes/{vol['id']}/action", json={"os-extend": {}}), 400, "badRequest")
    error(demo.volume("POST", f"/volumes/{vol['id']}/action", json={"os-extend": 3}), 400, "badRequest")
    assert "No capacity" in error(
        demo.volume("POST", f"/volumes/{vol['id']}/action", json={"os-extend": {"new_size": 16 * 1024}}),
        400,
        "badRequest",
    )
    assert show(demo, vol["id"])["size"] == 2
    theirs = create_volume(admin, 1)
    error(
        demo.volume("POST", f"/volumes/{theirs['id']}/action", json={"os-extend": {"new_size": 2}}),
        404,
        "itemNotFound",
    )


def race(server: FerryServer, api: Api, *requests: tuple[str, dict[str, Any]]) -> list[tuple[int, str]]:
    """POST each (path, body) from its own thread, all released together; (status, body) in order."""
    barrier = threading.Barrier(len(requests))
    results: list[tuple[int, str]] = [(0, "")] * len(requests)

    def send(i: int, path: str, body: dict[str, Any]) -> None:
        with httpx.Client(timeout=60) as c:
            barrier.wait()
            r = c.post(
                f"{server.base}/volume/v3/{api.project_id}{path}",
                json=body,
                headers={"X-Auth-Token": api.token},
            )
        results[i] = (r.status_code, r.text)

    threads = [threading.Thread(target=send, args=(i, *req)) for i, req in enumerate(requests)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


def active_layer_size(server: FerryServer, admin: Api, api: Api, vid: str) -> int:
    """The virtual size of the volume's active layer file, as qemu-img reads it."""
    as_admin = Api(server.base, admin.token, api.project_id)
    loc = as_admin.ok(as_admin.volume("GET", f"/volumes/{vid}/location"))["location"]
    info = subprocess.run(
        ["qemu-img", "info", "-U", "--output=json", loc["layers"][-1]["path"]],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(json.loads(info.stdout)["virtual-size"])


def test_concurrent_extends_change_the_volume_once(demo: Api, server: FerryServer) -> None:
    vol = create_volume(demo, 1)
    for new_size in (2, 3, 4):
        extend = (f"/volumes/{vol['id']}/action", {"os-extend": {"new_size": new_size}})
        results = sorted(race(server, demo, extend, extend))
        assert [code for code, _ in results] in ([202, 400], [202, 409]), results
        code, loser = results[1]
        # 409: the other extend held the volume; 400: it had already finished and the size is reached
        assert ("extending" in loser) if code == 409 else ("must be larger" in loser), loser
        after = wait_volume(demo, vol["id"])
        assert after["size"] == new_size


def test_concurrent_snapshots_keep_one_chain(demo: Api, admin: Api, server: FerryServer) -> None:
    """Snapshots taken at once must each freeze their own layer: the chain stays one line."""
    vol = create_volume(demo, 1)
    results = race(server, demo, *[("/snapshots", {"snapshot": {"volume_id": vol["id"]}})] * 3)
    assert all(code in (202, 409) for code, _ in results), results
    made = [json.loads(body)["snapshot"]["id"] for code, body in results if code == 202]
    assert made
    in_demo = Api(server.base, admin.token, demo.project_id)
    loc = in_demo.ok(in_demo.volume("GET", f"/volumes/{vol['id']}/location"))["location"]
    layers = [layer["id"] for layer in loc["layers"]]
    assert len(layers) == len(set(layers)) == len(made) + 1
    assert sorted(layer["snapshot_id"] for layer in loc["layers"][:-1]) == sorted(made)
    assert loc["layers"][-1]["snapshot_id"] is None
    for sid in made:
        assert demo.volume("DELETE", f"/snapshots/{sid}").status_code == 202
    for sid in made:
        wait_gone(demo, f"/snapshots/{sid}")
    assert demo.volume("DELETE", f"/volumes/{vol['id']}").status_code == 202


def test_concurrent_snapshot_and_extend_keep_sizes_consistent(
    demo: Api, admin: Api, server: FerryServer
) -> None:
    """A snapshot replaces the active layer while an extend resizes it: the resize must land on the
    layer that stays active, whichever runs first."""
    for _ in range(3):
        vol = create_volume(demo, 1)
        snap_code, extend_code = (
            code
            for code, _ in race(
                server,
                demo,
                ("/snapshots", {"snapshot": {"volume_id": vol["id"]}}),
                (f"/volumes/{vol['id']}/action", {"os-extend": {"new_size": 2}}),
            )
        )
        assert snap_code in (202, 400) and extend_code == 202
        after = wait_volume(demo, vol["id"])
        assert after["size"] == 2
        assert active_layer_size(server, admin, demo, vol["id"]) == 2 * 1024**3


def test_sources_outlive_their_copies(demo: Api) -> None:
    """Deleting the volume or snapshot a new volume is still being copied from is refused (409);
    the copy always completes."""
    for _ in range(3):
        src = create_volume(demo, 1)
        snap = create_snapshot(demo, src["id"])
        from_snap = create_volume(demo, None, snapshot_id=snap["id"])  # type: ignore[arg-type]
        deleted = demo.volume("DELETE", f"/snapshots/{snap['id']}")
        if deleted.status_code != 202:
            assert "being copied" in error(deleted, 409, "conflictingRequest")
        clone = create_volume(demo, None, source_volid=src["id"])  # type: ignore[arg-type]
        deleted = demo.volume("DELETE", f"/volumes/{src['id']}", params={"cascade": "true"})
        if deleted.status_code != 202:
            assert "being copied" in error(deleted, 409, "conflictingRequest")
        for vid in (from_snap["id"], clone["id"]):
            assert wait_volume(demo, vid)["size"] == 1


def test_concurrent_deletes_delete_once(demo: Api, server: FerryServer) -> None:
    vol = create_volume(demo, 1)
    barrier = threading.Barrier(2)
    codes: list[int] = []

    def send() -> None:
        with httpx.Client(timeout=60) as c:
            barrier.wait()
            codes.append(
                c.delete(
                    f"{server.base}/volume/v3/{demo.project_id}/volumes/{vol['id']}",
                    headers={"X-Auth-Token": demo.token},
                ).status_code
            )

    threads = [threading.Thread(target=send) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(codes) in ([202, 400], [202, 404], [202, 409]), codes
    error(demo.volume("GET", f"/volumes/{vol['id']}"), 404, "itemNotFound")


# -- metadata --------------------------------------------------------------------------------
def test_metadata(demo: Api) -> None:
    vol = create_volume(demo, 1, metadata={"a": "1"})
    path = f"/volumes/{vol['id']}/metadata"
    assert demo.ok(demo.volume("GET", path)) == {"metadata": {"a": "1"}}
    assert demo.ok(demo.volume("POST", path, json={"metadata": {"b": "2", "a": "3"}})) == {
        "metadata": {"a": "3", "b": "2"}
    }
    assert show(demo, vol["id"])["metadata"] == {"a": "3", "b": "2"}
    for bad in (
        {"metadata": {"a": 1}},
        {"metadata": "x"},
        {"metadata": [["a", "b"]]},
        {"metadata": {"": "x"}},
        {"metadata": {"k": "v" * 256}},
        {"other": {}},
        {"metadata": None},
    ):
        error(demo.volume("POST", path, json=bad), 400, "badRequest")
    too_many = {f"k{i}": "v" for i in range(64)}
    error(demo.volume("POST", path, json={"metadata": too_many}), 400, "badRequest")  # 64 new + 2 old
    assert show(demo, vol["id"])["metadata"] == {"a": "3", "b": "2"}


# -- isolation and roles ---------------------------------------------------------------------
def test_other_projects_volume_is_not_found(admin: Api, demo: Api) -> None:
    theirs = create_volume(admin, 1, name="admin-only")
    vid = theirs["id"]
    for method, path, body in [
        ("GET", f"/volumes/{vid}", None),
        ("PUT", f"/volumes/{vid}", {"volume": {"name": "x"}}),
        ("DELETE", f"/volumes/{vid}", None),
        ("GET", f"/volumes/{vid}/metadata", None),
        ("POST", f"/volumes/{vid}/metadata", {"metadata": {"a": "b"}}),
        ("POST", f"/volumes/{vid}/action", {"os-extend": {"new_size": 2}}),
        ("GET", f"/volumes/{vid}/migration", None),
    ]:
        error(demo.volume(method, path, json=body), 404, "itemNotFound")
    assert vid not in {v["id"] for v in demo.ok(demo.volume("GET", "/volumes/detail"))["volumes"]}
    assert show(admin, vid)["name"] == "admin-only"


def test_path_must_name_the_tokens_project(server: FerryServer, admin: Api, demo: Api) -> None:
    as_other = Api(server.base, demo.token, admin.project_id)
    for method, path in [("GET", "/volumes"), ("POST", "/volumes"), ("GET", "/types"), ("GET", "/snapshots")]:
        assert "scoped to project" in error(
            as_other.volume(method, path, json={"volume": {"size": 1}}), 403, "forbidden"
        )
    nowhere = Api(server.base, admin.token, "0" * 32)
    error(nowhere.volume("GET", "/volumes"), 403, "forbidden")


def test_admin_may_act_in_another_project(server: FerryServer, admin: Api, demo: Api) -> None:
    in_demo = Api(server.base, admin.token, demo.project_id)
    vol = create_volume(in_demo, 1, name="made-by-admin")
    assert show(in_demo, vol["id"])["os-vol-tenant-attr:tenant_id"] == demo.project_id
    assert show(demo, vol["id"])["name"] == "made-by-admin"


def test_reader_reads_but_cannot_write(reader: Api, demo: Api) -> None:
    vol = create_volume(demo, 1, name="readable")
    snap = create_snapshot(demo, vol["id"])
    assert show(reader, vol["id"])["name"] == "readable"
    assert vol["id"] in {v["id"] for v in reader.ok(reader.volume("GET", "/volumes"))["volumes"]}
    assert reader.ok(reader.volume("GET", f"/snapshots/{snap['id']}"))["snapshot"]["id"] == snap["id"]
    assert reader.ok(reader.volume("GET", f"/volumes/{vol['id']}/metadata")) == {"metadata": {}}
    reader.ok(reader.volume("GET", "/types"))
    for method, path, body in [
        ("POST", "/volumes", {"volume": {"size": 1}}),
        ("PUT", f"/volumes/{vol['id']}", {"volume": {"name": "x"}}),
        ("DELETE", f"/volumes/{vol['id']}", None),
        ("POST", f"/volumes/{vol['id']}/metadata", {"metadata": {"a": "b"}}),
        ("POST", f"/volumes/{vol['id']}/action", {"os-extend": {"new_size": 2}}),
        ("POST", f"/volumes/{vol['id']}/action", {"os-retype": {"new_type": "x"}}),
        ("POST", "/snapshots", {"snapshot": {"volume_id": vol["id"]}}),
        ("PUT", f"/snapshots/{snap['id']}", {"snapshot": {"name": "x"}}),
        ("DELETE", f"/snapshots/{snap['id']}", None),
    ]:
        error(reader.volume(method, path, json=body), 403, "forbidden")
    after = show(demo, vol["id"])
    assert (after["name"], after["status"], after["metadata"]) == ("readable", "available", {})
    assert demo.ok(demo.volume("GET", f"/snapshots/{snap['id']}"))["snapshot"]["status"] == "available"


# -- pagination, sorting, filters ------------------------------------------------------------
@pytest.fixture(scope="module")
def pager(server: FerryServer) -> tuple[Api, list[dict[str, Any]]]:
    """A project of its own holding exactly twelve volumes, created one after the other."""
    api = server.api(server.add_user("pager", "pager-password", "pager", "member"))
    vols = [create_volume(api, i % 3 + 1, name=f"page-{i:02d}") for i in range(12)]
    return api, vols


def pages(api: Api, path: str, **params: Any) -> list[list[dict[str, Any]]]:
    out: list[list[dict[str, Any]]] = []
    marker = None
    while True:
        q = {**params, "limit": 5, **({"marker": marker} if marker else {})}
        page = api.ok(api.volume("GET", path, params=q))["volumes"]
        out.append(page)
        if not page:
            return out
        assert len(out) < 10, "pagination does not end"
        marker = page[-1]["id"]


def test_pagination_default_order(pager: tuple[Api, list[dict[str, Any]]]) -> None:
    api, vols = pager
    for path in ("/volumes", "/volumes/detail"):
        got = pages(api, path)
        assert [len(p) for p in got] == [5, 5, 2, 0]
        flat = [v["id"] for p in got for v in p]
        assert len(set(flat)) == 12
        assert flat == [v["id"] for v in reversed(vols)]  # newest first


def test_pagination_with_sort(pager: tuple[Api, list[dict[str, Any]]]) -> None:
    api, vols = pager
    by_name = [v["name"] for p in pages(api, "/volumes/detail", sort="name:asc") for v in p]
    assert by_name == sorted(v["name"] for v in vols)
    by_size = [
        (v["size"], v["id"])
        for p in pages(api, "/volumes/detail", sort_key="size", sort_dir="asc")
        for v in p
    ]
    assert by_size == sorted((v["size"], v["id"]) for v in vols)
    desc = [(v["size"], v["id"]) for p in pages(api, "/volumes/detail", sort="size:desc") for v in p]
    assert desc == sorted(((v["size"], v["id"]) for v in vols), reverse=True)
    created = [v["id"] for p in pages(api, "/volumes/detail", sort="created_at:asc") for v in p]
    assert created == [v["id"] for v in vols]


def test_pagination_by_name_with_unnamed_volumes(server: FerryServer) -> None:
    """Unnamed volumes sort together (as an empty name) and are neither lost nor repeated."""
    api = server.api(server.add_user("unnamed", "unnamed-password", "unnamed", "member"))
    vols = [create_volume(api, 1, **({"name": f"n-{i}"} if i % 2 else {})) for i in range(7)]
    for sort in ("name:asc", "name:desc"):
        got = [v["id"] for p in pages(api, "/volumes/detail", sort=sort) for v in p]
        assert sorted(got) == sorted(v["id"] for v in vols), sort
        names = [v["name"] or "" for p in pages(api, "/volumes/detail", sort=sort) for v in p]
        assert names == sorted(names, reverse=sort.endswith("desc")), sort


def test_limit_and_marker_edges(pager: tuple[Api, list[dict[str, Any]]]) -> None:
    api, vols = pager
    assert api.ok(api.volume("GET", "/volumes", params={"limit": 0}))["volumes"] == []
    assert len(api.ok(api.volume("GET", "/volumes", params={"limit": 10**12}))["volumes"]) == 12
    last = api.ok(api.volume("GET", "/volumes", params={"marker": vols[0]["id"]}))["volumes"]
    assert last == []  # the oldest volume is the last one newest-first
    for params in (
        {"limit": -1},
        {"limit": "abc"},
        {"limit": "1.5"},
        {"sort": "bogus:asc"},
        {"sort": "name:sideways"},
        {"sort_key": "metadata"},
        {"sort_key": "name", "sort_dir": "up"},
    ):
        error(api.volume("GET", "/volumes/detail", params=params), 400, "badRequest")
    # an unknown marker is Cinder's MarkerNotFound: 404
    for marker in ("not-a-uuid", "00000000-0000-4000-8000-000000000000"):
        error(api.volume("GET", "/volumes/detail", params={"marker": marker}), 404, "itemNotFound")


def test_filters(pager: tuple[Api, list[dict[str, Any]]]) -> None:
    api, vols = pager
    hit = api.ok(api.volume("GET", "/volumes/detail", params={"name": "page-03"}))["volumes"]
    assert [v["id"] for v in hit] == [vols[3]["id"]]
    assert api.ok(api.volume("GET", "/volumes", params={"name": "page-99"}))["volumes"] == []
    available = api.ok(api.volume("GET", "/volumes/detail", params={"status": "available"}))["volumes"]
    assert len(available) == 12
    assert api.ok(api.volume("GET", "/volumes/detail", params={"status": "error"}))["volumes"] == []
    # A status no volume can have (the column holds only VolumeStatus members) matches nothing.
    assert api.ok(api.volume("GET", "/volumes/detail", params={"status": "bogus"}))["volumes"] == []
    two = api.ok(
        api.volume("GET", "/volumes/detail", params={"status": "available", "limit": 2, "sort": "name:desc"})
    )["volumes"]
    assert [v["name"] for v in two] == ["page-11", "page-10"]


def test_all_tenants_is_for_admins(pager: tuple[Api, list[dict[str, Any]]], admin: Api, demo: Api) -> None:
    api, vols = pager
    ids = {v["id"] for v in vols}
    mine = {v["id"] for v in admin.ok(admin.volume("GET", "/volumes/detail"))["volumes"]}
    assert not ids & mine
    everyone = admin.ok(admin.volume("GET", "/volumes/detail", params={"all_tenants": "1"}))["volumes"]
    assert ids <= {v["id"] for v in everyone}
    assert {v["os-vol-tenant-attr:tenant_id"] for v in everyone if v["id"] in ids} == {api.project_id}
    named = admin.ok(admin.volume("GET", "/volumes", params={"all_tenants": "true", "name": "page-05"}))[
        "volumes"
    ]
    assert [v["id"] for v in named] == [vols[5]["id"]]
    for who in (demo, api):
        error(who.volume("GET", "/volumes/detail", params={"all_tenants": "1"}), 403, "forbidden")
        error(who.volume("GET", "/snapshots", params={"all_tenants": "1"}), 403, "forbidden")


# -- microversions ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("asked", "served"),
    [
        (None, "volume 3.0"),
        ("volume 3.27", "volume 3.27"),
        ("volume 3.0", "volume 3.0"),
        ("volume 3.5", "volume 3.5"),
        ("volume latest", f"volume {VOLUME_MAX}"),
        ("volume 3.42", "volume 3.42"),
        ("compute 2.1", "volume 3.0"),
        ("compute 2.1, volume 3.27", "volume 3.27"),
    ],
)
def test_volume_microversion_is_echoed(demo: Api, asked: str | None, served: str) -> None:
    headers = {"X-Auth-Token": demo.token, **({"OpenStack-API-Version": asked} if asked else {})}
    resp = demo.client.get(f"{demo.base}/volume/v3/{demo.project_id}/volumes", headers=headers)
    assert resp.status_code == 200
    assert resp.headers["OpenStack-API-Version"] == served
    assert "OpenStack-API-Version" in resp.headers["Vary"]


@pytest.mark.parametrize("asked", ["volume 9.9", "volume 2.0", "volume 3.50", "volume three", "volume 3"])
def test_unsupported_volume_microversion_is_406(demo: Api, asked: str) -> None:
    resp = demo.client.get(
        f"{demo.base}/volume/v3/{demo.project_id}/volumes",
        headers={"X-Auth-Token": demo.token, "OpenStack-API-Version": asked},
    )
    assert f"maximum is {VOLUME_MAX}" in error(resp, 406, "notAcceptable")


def test_compute_microversion(demo: Api) -> None:
    resp = demo.client.get(
        f"{demo.base}/compute/v2.1/flavors",
        headers={"X-Auth-Token": demo.token, "OpenStack-API-Version": "compute 2.1"},
    )
    assert resp.status_code == 200
    assert resp.headers["OpenStack-API-Version"] == "compute 2.1"
    assert resp.headers["X-OpenStack-Nova-API-Version"] == "2.1"
    legacy = demo.client.get(
        f"{demo.base}/compute/v2.1/flavors",
        headers={"X-Auth-Token": demo.token, "X-OpenStack-Nova-API-Version": "2.90"},
    )
    error(legacy, 406, "notAcceptable")


# -- types -----------------------------------------------------------------------------------
def test_types(admin: Api, demo: Api) -> None:
    vt = admin.ok(
        admin.volume(
            "POST",
            "/types",
            json={
                "volume_type": {
                    "name": "gold",
                    "description": "fast disks",
                    "extra_specs": {"volume_backend_name": "fast", "tier": "1"},
                }
            },
        )
    )["volume_type"]
    assert (vt["name"], vt["description"], vt["is_public"]) == ("gold", "fast disks", True)
    assert vt["extra_specs"] == {"volume_backend_name": "fast", "tier": "1"}
    for ref in (vt["id"], "gold"):
        # Cinder's show adds qos_specs_id for admins (its create does not)
        assert admin.ok(admin.volume("GET", f"/types/{ref}"))["volume_type"] == {**vt, "qos_specs_id": None}
    listed = demo.ok(demo.volume("GET", "/types"))["volume_types"]
    assert [t["extra_specs"] for t in listed if t["id"] == vt["id"]] == [{}]  # specs are for admins
    assert "gold" in [t["name"] for t in admin.ok(admin.volume("GET", "/types"))["volume_types"]]

    upd = admin.ok(admin.volume("PUT", f"/types/{vt['id']}", json={"volume_type": {"description": "new"}}))
    assert upd["volume_type"]["description"] == "new" and upd["volume_type"]["name"] == "gold"
    specs = admin.ok(
        admin.volume("POST", f"/types/{vt['id']}/extra_specs", json={"extra_specs": {"tier": "2"}})
    )
    assert specs == {"extra_specs": {"tier": "2"}}  # Cinder answers the keys it was given
    assert admin.volume("DELETE", f"/types/{vt['id']}/extra_specs/tier").status_code == 202
    assert admin.ok(admin.volume("GET", f"/types/{vt['id']}/extra_specs")) == {
        "extra_specs": {"volume_backend_name": "fast"}
    }
    error(admin.volume("DELETE", f"/types/{vt['id']}/extra_specs/tier"), 404, "itemNotFound")

    vol = create_volume(demo, 1, volume_type="gold")
    assert vol["volume_type"] == "gold"
    assert "in use" in error(admin.volume("DELETE", f"/types/{vt['id']}"), 400, "badRequest")
    assert demo.volume("DELETE", f"/volumes/{vol['id']}").status_code == 202
    assert admin.volume("DELETE", f"/types/{vt['id']}").status_code == 202
    error(admin.volume("GET", f"/types/{vt['id']}"), 404, "itemNotFound")
    error(admin.volume("GET", "/types/gold"), 404, "itemNotFound")


def test_type_name_rules(admin: Api) -> None:
    admin.ok(admin.volume("POST", "/types", json={"volume_type": {"name": "silver"}}))
    bronze = admin.ok(admin.volume("POST", "/types", json={"volume_type": {"name": "bronze"}}))["volume_type"]
    error(admin.volume("POST", "/types", json={"volume_type": {"name": "silver"}}), 409, "conflictingRequest")
    error(
        admin.volume("PUT", f"/types/{bronze['id']}", json={"volume_type": {"name": "silver"}}),
        409,
        "conflictingRequest",
    )
    for bad in ({"name": None}, {"is_public": None}, {"name": ""}, {"name": 5}, {"is_public": "yes"}):
        error(admin.volume("PUT", f"/types/{bronze['id']}", json={"volume_type": bad}), 400, "badRequest")
    for bad in (
        {"name": "  "},
        {"name": ""},
        {},
        {"name": "x", "extra_specs": {"volume_backend_name": "nope"}},
        {"name": "x", "extra_specs": {"a": 1}},
        {"name": "x", "is_public": "true"},
        {"name": "x" * 256},
    ):
        error(admin.volume("POST", "/types", json={"volume_type": bad}), 400, "badRequest")
    assert admin.ok(admin.volume("GET", f"/types/{bronze['id']}"))["volume_type"]["name"] == "bronze"


def test_private_types_are_hidden_from_members(admin: Api, demo: Api) -> None:
    private = admin.ok(
        admin.volume(
            "POST",
            "/types",
            json={"volume_type": {"name": "secret", "os-volume-type-access:is_public": False}},
        )
    )["volume_type"]
    assert private["is_public"] is False
    # Cinder: an admin's plain list is the public types and those shared with the admin's
    # project; `is_public=None` lists every type.
    assert "secret" in [
        t["name"] for t in admin.ok(admin.volume("GET", "/types?is_public=None"))["volume_types"]
    ]
    assert "secret" not in [t["name"] for t in demo.ok(demo.volume("GET", "/types"))["volume_types"]]
    for ref in (private["id"], "secret"):
        error(demo.volume("GET", f"/types/{ref}"), 404, "itemNotFound")
    error(
        demo.volume("POST", "/volumes", json={"volume": {"size": 1, "volume_type": "secret"}}),
        404,
        "itemNotFound",
    )


def test_types_are_managed_by_admins_only(admin: Api, demo: Api) -> None:
    vt = admin.ok(admin.volume("POST", "/types", json={"volume_type": {"name": "managed"}}))["volume_type"]
    for method, path, body in [
        ("POST", "/types", {"volume_type": {"name": "mine"}}),
        ("PUT", f"/types/{vt['id']}", {"volume_type": {"name": "mine"}}),
        ("DELETE", f"/types/{vt['id']}", None),
        # reading extra specs is allowed (Cinder shows members the user-visible ones only)
        ("POST", f"/types/{vt['id']}/extra_specs", {"extra_specs": {"a": "b"}}),
        ("DELETE", f"/types/{vt['id']}/extra_specs/a", None),
    ]:
        error(demo.volume(method, path, json=body), 403, "forbidden")
    assert admin.ok(admin.volume("GET", f"/types/{vt['id']}"))["volume_type"]["name"] == "managed"
    assert "mine" not in [t["name"] for t in admin.ok(admin.volume("GET", "/types"))["volume_types"]]


def test_retype_without_migration(admin: Api, demo: Api) -> None:
    admin.ok(admin.volume("POST", "/types", json={"volume_type": {"name": "plain"}}))
    vol = create_volume(demo, 1)
    act = f"/volumes/{vol['id']}/action"
    assert demo.volume("POST", act, json={"os-retype": {"new_type": "plain"}}).status_code == 202
    assert show(demo, vol["id"])["volume_type"] == "plain"
    error(demo.volume("POST", act, json={"os-retype": {"new_type": "plain"}}), 400, "badRequest")
    error(demo.volume("POST", act, json={"os-retype": {"new_type": "nope"}}), 404, "itemNotFound")
    error(
        demo.volume("POST", act, json={"os-retype": {"new_type": "plain", "migration_policy": "always"}}),
        400,
        "badRequest",
    )
    error(demo.volume("POST", act, json={"os-retype": {}}), 400, "badRequest")


# -- pools and attachments -------------------------------------------------------------------
def test_pools_are_for_admins(admin: Api, demo: Api) -> None:
    pools = admin.ok(admin.volume("GET", "/scheduler-stats/get_pools"))["pools"]
    assert sorted(p["name"] for p in pools) == ["ferry@bulk#bulk", "ferry@fast#fast"]
    assert all(set(p) == {"name"} for p in pools)
    detail = admin.ok(admin.volume("GET", "/scheduler-stats/get_pools", params={"detail": "true"}))["pools"]
    caps = {p["capabilities"]["volume_backend_name"]: p["capabilities"] for p in detail}
    assert caps["fast"]["total_capacity_gb"] == 100 and caps["bulk"]["total_capacity_gb"] == 500
    assert caps["fast"]["disk_format"] == "qcow2"
    vols = admin.ok(admin.volume("GET", "/volumes/detail", params={"all_tenants": 1}))["volumes"]
    for name, c in caps.items():
        on_it = sum(v["size"] for v in vols if v["os-vol-host-attr:host"] == f"ferry@{name}#{name}")
        assert c["provisioned_capacity_gb"] == on_it, name
        assert c["pool_name"] == name
    error(demo.volume("GET", "/scheduler-stats/get_pools"), 403, "forbidden")


def test_attachments(admin: Api, demo: Api) -> None:
    assert demo.ok(demo.volume("GET", "/attachments")) == {"attachments": []}
    assert admin.ok(admin.volume("GET", "/attachments/detail")) == {"attachments": []}
    error(demo.volume("GET", "/attachments/00000000-0000-4000-8000-000000000000"), 404, "itemNotFound")
    error(demo.volume("GET", "/attachments/not-a-uuid"), 404, "itemNotFound")


# -- migration requests that must be refused ---------------------------------------------------
def test_migration_requests_refused(admin: Api, demo: Api) -> None:
    vol = create_volume(demo, 1)
    vid = vol["id"]
    backend = admin.ok(admin.volume("GET", f"/volumes/{vid}"))["volume"]["os-vol-host-attr:host"].split("#")[
        1
    ]
    act = f"/volumes/{vid}/action"
    in_demo = Api(admin.base, admin.token, demo.project_id)
    assert "never been migrated" in error(
        demo.volume("GET", f"/volumes/{vid}/migration"), 404, "itemNotFound"
    )
    error(demo.volume("POST", act, json={"os-migrate_volume": {"host": "fast"}}), 403, "forbidden")
    error(in_demo.volume("POST", act, json={"os-migrate_volume": {"host": "nowhere"}}), 400, "badRequest")
    assert "already on backend" in error(
        in_demo.volume("POST", act, json={"os-migrate_volume": {"host": f"ferry@{backend}#{backend}"}}),
        400,
        "badRequest",
    )
    error(in_demo.volume("POST", act, json={"os-migrate_volume": {}}), 400, "badRequest")
    error(in_demo.volume("POST", act, json={"os-migrate_volume": {"host": ""}}), 400, "badRequest")
    error(
        in_demo.volume("POST", act, json={"os-migrate_volume": {"host": "fast", "force_host_copy": "yes"}}),
        400,
        "badRequest",
    )
    error(in_demo.volume("POST", act, json={"ferry-migrate_cancel": {}}), 409, "conflictingRequest")
    error(
        in_demo.volume("POST", act, json={"ferry-migrate_set_speed": {"bytes_per_sec": 1000}}),
        409,
        "conflictingRequest",
    )
    error(
        in_demo.volume("POST", act, json={"ferry-migrate_set_speed": {"bytes_per_sec": -1}}),
        400,
        "badRequest",
    )
    error(demo.volume("POST", act, json={"ferry-migrate_cancel": {}}), 403, "forbidden")
    for who in (demo, in_demo):
        error(
            who.volume("POST", act, json={"os-migrate_volume_completion": {"new_volume": vid}}),
            409,
            "conflictingRequest",
        )
    after = admin.ok(in_demo.volume("GET", f"/volumes/{vid}"))["volume"]
    assert after["migration_status"] is None and after["status"] == "available"
