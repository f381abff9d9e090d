"""Nova's volume and snapshot proxies (`/compute/v2.1/os-volumes`, `os-snapshots`): the block
storage API's volumes in Nova's views, up to compute microversion 2.35."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from testkit.server import Api, FerryServer

pytestmark = pytest.mark.db
OLD = {"OpenStack-API-Version": "compute 2.35"}
NEW = {"OpenStack-API-Version": "compute 2.36"}


@pytest.fixture(scope="module", autouse=True)
def no_server_errors(server: FerryServer) -> Iterator[None]:
    yield
    assert server.log_problems() == []


@pytest.fixture(scope="module")
def other(server: FerryServer) -> Api:
    return server.api(server.add_user("nova-other", "nova-other-password", "nova-other", "member"))


def nova_volume(api: Api, **fields: Any) -> dict[str, Any]:
    resp = api.compute("POST", "/os-volumes", headers=OLD, json={"volume": {"size": 1, **fields}})
    assert resp.status_code == 200, resp.text
    vol: dict[str, Any] = resp.json()["volume"]
    return vol


def test_volume_create_show_list_delete_in_novas_view(demo: Api) -> None:
    vol = nova_volume(demo, display_name="nova-made", display_description="d", metadata={"k": "v"})
    assert (vol["displayName"], vol["displayDescription"], vol["size"], vol["metadata"]) == (
        "nova-made",
        "d",
        1,
        {"k": "v"},
    )
    assert vol["attachments"] == [{}] and vol["status"] == "available" and vol["snapshotId"] is None
    assert set(vol) == {
        "id", "status", "size", "availabilityZone", "createdAt", "attachments", "displayName",
        "displayDescription", "volumeType", "snapshotId", "metadata",
    }  # fmt: skip
    # The same volume, through Cinder's API.
    assert demo.ok(demo.volume("GET", f"/volumes/{vol['id']}"))["volume"]["name"] == "nova-made"
    assert demo.ok(demo.compute("GET", f"/os-volumes/{vol['id']}", headers=OLD))["volume"] == vol
    for path in ("/os-volumes", "/os-volumes/detail"):
        listed = demo.ok(demo.compute("GET", path, headers=OLD))["volumes"]
        assert vol in listed
    assert demo.compute("DELETE", f"/os-volumes/{vol['id']}", headers=OLD).status_code == 202
    assert demo.compute("GET", f"/os-volumes/{vol['id']}", headers=OLD).status_code == 404


def test_list_limit_and_offset(demo: Api) -> None:
    made = [nova_volume(demo, display_name=f"page-{i}")["id"] for i in range(3)]
    everything = [v["id"] for v in demo.ok(demo.compute("GET", "/os-volumes", headers=OLD))["volumes"]]
    assert set(made) <= set(everything)
    two = demo.ok(demo.compute("GET", "/os-volumes", headers=OLD, params={"limit": 2}))["volumes"]
    assert [v["id"] for v in two] == everything[:2]
    one = demo.ok(demo.compute("GET", "/os-volumes/detail", headers=OLD, params={"offset": 1, "limit": 1}))
    assert [v["id"] for v in one["volumes"]] == everything[1:2]
    for vid in made:
        assert demo.compute("DELETE", f"/os-volumes/{vid}", headers=OLD).status_code == 202


@pytest.mark.parametrize(
    "body",
    [
        {"size": 0},
        {"size": "#$%"},
        {"display_name": "no-size"},
        {"size": 1, "metadata": {"k": 1}},
        {"size": True},
    ],
)
def test_bad_create_bodies_are_400(demo: Api, body: dict[str, Any]) -> None:
    resp = demo.compute("POST", "/os-volumes", headers=OLD, json={"volume": body})
    assert resp.status_code == 400, resp.text
    assert "badRequest" in resp.json()


def test_unknown_ids_and_other_projects_are_404(demo: Api, other: Api) -> None:
    vol = nova_volume(demo)
    for path in (f"/os-volumes/{vol['id']}", "/os-volumes/" + "f" * 32, "/os-snapshots/nope"):
        assert other.compute("GET", path, headers=OLD).status_code == 404
    assert other.compute("DELETE", f"/os-volumes/{vol['id']}", headers=OLD).status_code == 404
    assert vol["id"] not in [
        v["id"] for v in other.ok(other.compute("GET", "/os-volumes", headers=OLD))["volumes"]
    ]
    assert demo.compute("DELETE", f"/os-volumes/{vol['id']}", headers=OLD).status_code == 202


def test_snapshot_create_show_list_delete(demo: Api) -> None:
    vol = nova_volume(demo)
    resp = demo.compute(
        "POST",
        "/os-snapshots",
        headers=OLD,
        json={"snapshot": {"volume_id": vol["id"], "display_name": "s1"}},
    )
    assert resp.status_code == 200, resp.text
    snap = resp.json()["snapshot"]
    assert (snap["volumeId"], snap["displayName"], snap["size"]) == (vol["id"], "s1", 1)
    assert set(snap) == {"id", "volumeId", "status", "size", "createdAt", "displayName", "displayDescription"}
    assert (
        demo.ok(demo.compute("GET", f"/os-snapshots/{snap['id']}", headers=OLD))["snapshot"]["id"]
        == snap["id"]
    )
    assert snap["id"] in [
        s["id"] for s in demo.ok(demo.compute("GET", "/os-snapshots/detail", headers=OLD))["snapshots"]
    ]
    bad = demo.compute("POST", "/os-snapshots", headers=OLD, json={"snapshot": {"display_name": "no volume"}})
    assert bad.status_code == 400
    assert demo.compute("DELETE", f"/os-snapshots/{snap['id']}", headers=OLD).status_code == 202
    assert demo.compute("DELETE", f"/os-volumes/{vol['id']}", headers=OLD).status_code == 202


def test_the_proxies_are_gone_from_2_36(demo: Api) -> None:
    for path in ("/os-volumes", "/os-snapshots"):
        assert demo.compute("GET", path, headers=NEW).status_code == 404
    assert demo.compute("POST", "/os-volumes", headers=NEW, json={"volume": {"size": 1}}).status_code == 404


def test_an_empty_id_names_nothing(demo: Api) -> None:
    # Nova: `GET/DELETE /os-volumes/` is a 404, not the list (tempest's negative tests).
    for method in ("GET", "DELETE"):
        assert demo.compute(method, "/os-volumes/", headers=OLD).status_code == 404
