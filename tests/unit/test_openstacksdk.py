"""An unmodified OpenStack client (openstacksdk, password auth through the Keystone catalog)
against a real `ferry serve`: volumes, snapshots, volumes from snapshots, clones, pools, and the
admin-only fields that a member must not see."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openstack
import pytest
from openstack import exceptions as os_exc
from openstack.connection import Connection

from testkit.server import FerryServer

pytestmark = pytest.mark.db

WAIT = {"wait": 30, "interval": 0.1}
ADMIN_ONLY = {
    "os-vol-host-attr:host",
    "os-vol-mig-status-attr:name_id",
    "os-vol-mig-status-attr:migstat",
    "migration_status",
}


@pytest.fixture(scope="module", autouse=True)
def no_server_errors(server: FerryServer) -> Iterator[None]:
    yield
    assert server.log_problems() == []


def connect(server: FerryServer, cloud: str) -> Connection:
    auth = server.cloud(cloud)
    keys = ("auth_url", "username", "password", "project_name", "user_domain_name", "project_domain_name")
    return openstack.connect(
        load_yaml_config=False,
        load_envvars=False,
        region_name="RegionOne",
        identity_api_version="3",
        auth={k: auth[k] for k in keys},
    )


@pytest.fixture(scope="module")
def admin(server: FerryServer) -> Iterator[Connection]:
    conn = connect(server, "ferry-admin")
    yield conn
    conn.close()


@pytest.fixture(scope="module")
def demo(server: FerryServer) -> Iterator[Connection]:
    conn = connect(server, "ferry-demo")
    yield conn
    conn.close()


def raw_volume(conn: Connection, vid: str) -> dict[str, Any]:
    resp = conn.block_storage.get(f"/volumes/{vid}")
    assert resp.status_code == 200, resp.text
    vol: dict[str, Any] = resp.json()["volume"]
    return vol


def test_connect_through_the_catalog(server: FerryServer, admin: Connection) -> None:
    assert admin.block_storage.get_endpoint() == f"{server.base}/volume/v3/{admin.current_project_id}"
    assert admin.block_storage.get_api_major_version()[0] == 3
    assert admin.compute.get_endpoint() == f"{server.base}/compute/v2.1"
    assert {f.name for f in admin.compute.flavors()} == {"tiny", "small", "medium"}


def test_volume_and_snapshot_life_cycle(demo: Connection) -> None:
    bs = demo.block_storage
    vol = bs.create_volume(size=1, name="sdk-vol", description="made by openstacksdk", metadata={"k": "v"})
    vol = bs.wait_for_status(vol, "available", **WAIT)
    assert (vol.size, vol.name, vol.metadata) == (1, "sdk-vol", {"k": "v"})
    assert vol.id in [v.id for v in bs.volumes()]
    assert [v.id for v in bs.volumes(details=True, name="sdk-vol")] == [vol.id]
    got = bs.get_volume(vol.id)
    assert (got.name, got.description, got.status) == ("sdk-vol", "made by openstacksdk", "available")

    bs.update_volume(vol, name="sdk-renamed", description="updated")
    got = bs.get_volume(vol.id)
    assert (got.name, got.description) == ("sdk-renamed", "updated")

    bs.extend_volume(vol, 2)
    assert bs.wait_for_status(bs.get_volume(vol.id), "available", **WAIT).size == 2

    snap = bs.create_snapshot(volume_id=vol.id, name="sdk-snap", description="first")
    snap = bs.wait_for_status(snap, "available", **WAIT)
    assert (snap.volume_id, snap.size) == (vol.id, 2)
    assert snap.id in [s.id for s in bs.snapshots()]
    assert [s.id for s in bs.snapshots(details=True, volume_id=vol.id)] == [snap.id]
    assert bs.get_snapshot(snap.id).name == "sdk-snap"
    bs.update_snapshot(snap, name="sdk-snap-renamed")
    assert bs.get_snapshot(snap.id).name == "sdk-snap-renamed"

    from_snap = bs.wait_for_status(
        bs.create_volume(snapshot_id=snap.id, name="sdk-from-snap"), "available", **WAIT
    )
    assert (from_snap.size, from_snap.snapshot_id) == (2, snap.id)
    clone = bs.wait_for_status(
        bs.create_volume(source_volume_id=vol.id, size=3, name="sdk-clone"), "available", **WAIT
    )
    assert (clone.size, clone.source_volume_id) == (3, vol.id)

    with pytest.raises(os_exc.BadRequestException):
        bs.delete_volume(vol)  # it has a snapshot
    bs.delete_snapshot(snap)
    bs.wait_for_delete(snap, **WAIT)
    with pytest.raises(os_exc.NotFoundException):
        bs.get_snapshot(snap.id)
    for v in (vol, from_snap, clone):
        bs.delete_volume(v)
        bs.wait_for_delete(v, **WAIT)
    with pytest.raises(os_exc.NotFoundException):
        bs.get_volume(vol.id)
    with pytest.raises(os_exc.NotFoundException):
        bs.find_volume("sdk-renamed", ignore_missing=False)


def test_backend_pools_as_admin(admin: Connection, demo: Connection) -> None:
    pools = {p.name: p for p in admin.block_storage.backend_pools()}
    assert set(pools) == {"ferry@fast#fast", "ferry@bulk#bulk"}
    assert pools["ferry@fast#fast"].capabilities["total_capacity_gb"] == 100
    assert pools["ferry@bulk#bulk"].capabilities["volume_backend_name"] == "bulk"
    with pytest.raises(os_exc.ForbiddenException):
        list(demo.block_storage.backend_pools())


def test_admin_only_fields(admin: Connection, demo: Connection) -> None:
    vol = demo.block_storage.wait_for_status(
        demo.block_storage.create_volume(size=1, name="sdk-fields"), "available", **WAIT
    )
    seen = admin.block_storage.get_volume(vol.id)
    assert seen.host == "ferry@bulk#bulk"
    backend = seen.host.split("#")[1]
    assert seen.host == f"ferry@{backend}#{backend}"
    assert seen.migration_id and seen.migration_id != vol.id  # the SDK's name for name_id
    assert seen.migration_status is None
    raw = raw_volume(admin, vol.id)
    assert set(raw) >= ADMIN_ONLY
    assert raw["os-vol-mig-status-attr:name_id"] == seen.migration_id

    mine = demo.block_storage.get_volume(vol.id)
    assert (mine.host, mine.migration_id, mine.migration_status) == (None, None, None)
    assert not ADMIN_ONLY & set(raw_volume(demo, vol.id))
    listed = [v for v in demo.block_storage.volumes(details=True) if v.id == vol.id]
    assert [v.host for v in listed] == [None]
    everyone = {v.id: v for v in admin.block_storage.volumes(details=True, all_projects=True)}
    assert everyone[vol.id].host == seen.host
    assert everyone[vol.id].project_id == demo.current_project_id


def test_member_cannot_see_admin_volumes_or_manage_types(admin: Connection, demo: Connection) -> None:
    theirs = admin.block_storage.create_volume(size=1, name="sdk-admins")
    with pytest.raises(os_exc.NotFoundException):
        demo.block_storage.get_volume(theirs.id)
    with pytest.raises(os_exc.ForbiddenException):
        demo.block_storage.create_type(name="sdk-type")
    vt = admin.block_storage.create_type(name="sdk-type", extra_specs={"volume_backend_name": "fast"})
    assert admin.block_storage.get_type(vt.id).extra_specs == {"volume_backend_name": "fast"}
    assert "sdk-type" in [t.name for t in demo.block_storage.types()]
    pinned = demo.block_storage.wait_for_status(
        demo.block_storage.create_volume(size=1, volume_type="sdk-type"), "available", **WAIT
    )
    assert admin.block_storage.get_volume(pinned.id).host == "ferry@fast#fast"
