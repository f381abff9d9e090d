"""Issue 4 acceptance: live and offline migration and retype, identity preserved, guest unaware."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from testkit.scenario import (
    attach,
    boot,
    create_volume,
    delete_snapshot,
    latest,
    location,
    migrate,
    migration,
    other_backend,
    server,
    snapshot,
    volume,
    wait_migration,
    wait_until,
    wait_writing,
)
from testkit.server import Api, FerryServer
from testkit.verify import verify_image

pytestmark = pytest.mark.e2e


def disks(api: Api, sid: str) -> dict[str, Any]:
    return {d["volume_id"]: d for d in api.ok(api.compute("GET", f"/servers/{sid}/ferry-disks"))["disks"]}


def backend_files(srv: FerryServer) -> set[str]:
    return {str(p) for p in (srv.data_dir / "backends").rglob("*") if p.is_file()}


def owned_files(api: Api, vids: list[str]) -> set[str]:
    return {lay["path"] for v in vids for lay in location(api, v)["layers"]}


def flat_copy(path: str, out: Path) -> Path:
    subprocess.run(["qemu-img", "convert", "-U", "-O", "qcow2", path, str(out)], check=True)
    return out


def same_view(a: str | Path, b: str | Path) -> bool:
    return subprocess.run(["qemu-img", "compare", "-U", str(a), str(b)], capture_output=True).returncode == 0


def test_attached_without_snapshots(cloud: FerryServer) -> None:
    admin = cloud.api("ferry-admin")
    sid = boot(admin, "ferry-test-guest", "m1")
    vid = create_volume(admin, 1, "plain", volume_type=None)
    att = attach(admin, sid, vid)
    wait_writing(cloud, sid, vid, writes=100)
    before, loc = volume(admin, vid), location(admin, vid)
    dest = other_backend(loc["backend"])
    migrate(admin, vid, dest)
    m = wait_migration(admin, vid)
    assert m["status"] == "success", m
    after = wait_writing(cloud, sid, vid, writes=100)
    assert after.healthy
    vol, loc2 = volume(admin, vid), location(admin, vid)
    assert (
        vol["id"] == vid
        and vol["attachments"][0]["attachment_id"] == before["attachments"][0]["attachment_id"]
    )
    assert vol["attachments"][0]["server_id"] == sid and att["volumeId"] == vid
    assert vol["os-vol-host-attr:host"] == f"ferry@{dest}#{dest}" != before["os-vol-host-attr:host"]
    assert vol["os-vol-mig-status-attr:name_id"] != before["os-vol-mig-status-attr:name_id"]
    assert vol["migration_status"] == "success" and vol["status"] == "in-use"
    assert disks(admin, sid)[vid] == {"volume_id": vid, "serial": vid, "files": [loc2["layers"][0]["path"]]}
    assert not Path(loc["directory"]).exists()
    assert m["pivot_ms"] is not None and any("serial checked" in str(e["detail"]) for e in m["steps"])
    final = latest(cloud, sid, vid)
    admin.ok(admin.compute("POST", f"/servers/{sid}/action", json={"os-stop": None}), 202)
    wait_until("SHUTOFF", lambda: server(admin, sid)["status"] == "SHUTOFF")
    rep = verify_image(loc2["layers"][0]["path"], vid, synced_seq=final.synced_seq, first_seq=final.first_seq)
    assert rep.ok, rep.summary()


def test_attached_with_two_snapshots(cloud: FerryServer, tmp_path: Path) -> None:
    admin = cloud.api("ferry-admin")
    sid = boot(admin, "ferry-test-guest", "m2")
    vid = create_volume(admin, 1, "snappy")
    attach(admin, sid, vid)
    wait_writing(cloud, sid, vid, writes=60)
    s1 = snapshot(admin, vid, "s1")
    wait_writing(cloud, sid, vid, writes=60)
    s2 = snapshot(admin, vid, "s2")
    wait_writing(cloud, sid, vid, writes=60)
    loc = location(admin, vid)
    views = {
        lay["snapshot_id"]: flat_copy(lay["path"], tmp_path / f"{lay['id']}.qcow2")
        for lay in loc["layers"][:2]
    }
    dest = other_backend(loc["backend"])
    migrate(admin, vid, dest)
    m = wait_migration(admin, vid)
    assert m["status"] == "success", m
    assert wait_writing(cloud, sid, vid, writes=60).healthy
    loc2 = location(admin, vid)
    assert loc2["backend"] == dest and [lay["snapshot_id"] for lay in loc2["layers"]] == [s1, s2, None]
    assert all(
        lay["path"].startswith(loc2["directory"]) and Path(lay["path"]).exists() for lay in loc2["layers"]
    )
    assert not Path(loc["directory"]).exists()
    for lay in loc2["layers"][:2]:
        assert same_view(views[lay["snapshot_id"]], lay["path"]), f"snapshot {lay['snapshot_id']} changed"
    assert {
        s["id"] for s in admin.ok(admin.volume("GET", "/snapshots", params={"volume_id": vid}))["snapshots"]
    } == {s1, s2}
    assert disks(admin, sid)[vid]["files"] == [lay["path"] for lay in reversed(loc2["layers"])]
    # The migrated chain is fully usable: live snapshot delete, then a hard reboot.
    delete_snapshot(admin, s1)
    assert wait_writing(cloud, sid, vid, writes=40).healthy
    admin.ok(admin.compute("POST", f"/servers/{sid}/action", json={"reboot": {"type": "HARD"}}), 202)
    wait_until("ACTIVE", lambda: server(admin, sid)["status"] == "ACTIVE")
    assert disks(admin, sid)[vid]["serial"] == vid
    final = wait_writing(cloud, sid, vid, writes=40)
    assert final.healthy
    top = location(admin, vid)["layers"][-1]["path"]
    assert verify_image(top, vid).ok


def test_detached_with_snapshots(cloud: FerryServer, tmp_path: Path) -> None:
    admin = cloud.api("ferry-admin")
    sid = boot(admin, "ferry-test-guest", "m3")
    vid = create_volume(admin, 1, "offline")
    attach(admin, sid, vid)
    wait_writing(cloud, sid, vid, writes=60)
    s1 = snapshot(admin, vid, "s1")
    wait_writing(cloud, sid, vid, writes=60)
    s2 = snapshot(admin, vid, "s2")
    final = wait_writing(cloud, sid, vid, writes=60)
    admin.ok(admin.compute("DELETE", f"/servers/{sid}/os-volume_attachments/{vid}"), 202)
    wait_until("available", lambda: volume(admin, vid)["status"] == "available")
    loc = location(admin, vid)
    views = {lay["id"]: flat_copy(lay["path"], tmp_path / f"{lay['id']}.qcow2") for lay in loc["layers"]}
    dest = other_backend(loc["backend"])
    migrate(admin, vid, dest)
    m = wait_migration(admin, vid)
    assert m["status"] == "success", m
    loc2 = location(admin, vid)
    assert [lay["snapshot_id"] for lay in loc2["layers"]] == [s1, s2, None] and loc2["backend"] == dest
    for lay in loc2["layers"]:
        assert same_view(views[lay["id"]], lay["path"])
    assert not Path(loc["directory"]).exists()
    vol = volume(admin, vid)
    assert vol["status"] == "available" and vol["migration_status"] == "success"
    rep = verify_image(
        loc2["layers"][-1]["path"], vid, synced_seq=final.synced_seq, first_seq=final.first_seq
    )
    assert rep.ok, rep.summary()


def test_cancel_before_ready(cloud: FerryServer) -> None:
    admin = cloud.api("ferry-admin")
    sid = boot(admin, "ferry-test-guest", "m4")
    vid = create_volume(admin, 1, "cancelme")
    attach(admin, sid, vid)
    wait_writing(cloud, sid, vid, writes=200)
    loc, files = location(admin, vid), backend_files(cloud)
    dest = other_backend(loc["backend"])
    migrate(admin, vid, dest, speed=64 * 1024)
    wait_until("mirror running", lambda: migration(admin, vid)["phase"] == "mirror", timeout=60)
    admin.ok(admin.volume("POST", f"/volumes/{vid}/action", json={"ferry-migrate_cancel": {}}), 202)
    m = wait_migration(admin, vid)
    assert m["status"] == "cancelled", m
    vol = volume(admin, vid)
    assert vol["status"] == "in-use" and vol["migration_status"] is None
    assert location(admin, vid) == loc and backend_files(cloud) == files
    assert disks(admin, sid)[vid]["files"] == [loc["layers"][0]["path"]]
    assert wait_writing(cloud, sid, vid, writes=50).healthy


def test_convergence_switches_to_write_blocking(cloud: FerryServer) -> None:
    admin = cloud.api("ferry-admin")
    sid = boot(admin, "guest-flat-out", "m5")
    vid = create_volume(admin, 1, "busy")
    attach(admin, sid, vid)
    st = wait_writing(cloud, sid, vid, writes=500)
    rate = max(st.wps, 100) * 4096
    dest = other_backend(location(admin, vid)["backend"])
    migrate(admin, vid, dest, speed=rate // 4)
    m = wait_migration(admin, vid, timeout=400)
    assert m["status"] == "success", m
    assert m["copy_mode"] == "write-blocking"
    assert any("write-blocking" in str(e["detail"]) for e in m["steps"])
    assert wait_writing(cloud, sid, vid, writes=100).healthy


def test_retype(cloud: FerryServer) -> None:
    admin = cloud.api("ferry-admin")
    for name, backend in (("gold", "fast"), ("silver", "bulk")):
        admin.volume(
            "POST",
            "/types",
            json={"volume_type": {"name": name, "extra_specs": {"volume_backend_name": backend}}},
        )
    sid = boot(admin, "ferry-test-guest", "m6")
    vid = create_volume(admin, 1, "typed", volume_type="gold")
    attach(admin, sid, vid)
    wait_writing(cloud, sid, vid, writes=40)
    resp = admin.volume(
        "POST",
        f"/volumes/{vid}/action",
        json={"os-retype": {"new_type": "silver", "migration_policy": "never"}},
    )
    assert resp.status_code == 400 and "on-demand" in resp.text
    assert volume(admin, vid)["volume_type"] == "gold"
    admin.ok(
        admin.volume(
            "POST",
            f"/volumes/{vid}/action",
            json={"os-retype": {"new_type": "silver", "migration_policy": "on-demand"}},
        ),
        202,
    )
    assert wait_migration(admin, vid)["status"] == "success"
    vol = volume(admin, vid)
    assert vol["volume_type"] == "silver" and vol["os-vol-host-attr:host"] == "ferry@bulk#bulk"
    assert wait_writing(cloud, sid, vid, writes=40).healthy


def test_swap_and_completion_refused(cloud: FerryServer) -> None:
    admin, demo = cloud.api("ferry-admin"), cloud.api("ferry-demo")
    sid = boot(demo, "ferry-test-guest", "m7")
    vid, other = create_volume(demo, 1, "a"), create_volume(demo, 1, "b")
    attach(demo, sid, vid)
    for api in (demo, admin):
        r = api.compute(
            "PUT",
            f"/servers/{sid}/os-volume_attachments/{vid}",
            json={"volumeAttachment": {"volumeId": other}},
        )
        assert r.status_code == 409 and "os-migrate_volume" in r.text
    for api in (demo, admin):
        path = f"/volume/v3/{api.project_id}/volumes/{vid}/action"
        r = api.client.post(
            cloud.base + path,
            headers={"X-Auth-Token": api.token},
            json={"os-migrate_volume_completion": {"new_volume": other}},
        )
        assert r.status_code == 409 and "os-migrate_volume" in r.text
    assert disks(admin, sid)[vid]["serial"] == vid


def test_raw_round_trip(cloud: FerryServer) -> None:
    admin = cloud.api("ferry-admin")
    sid = boot(admin, "ferry-test-guest", "m8")
    vid = create_volume(admin, 1, "flat")
    attach(admin, sid, vid)
    wait_writing(cloud, sid, vid, writes=60)
    src = location(admin, vid)["backend"]
    migrate(admin, vid, "flat")
    assert wait_migration(admin, vid)["status"] == "success"
    loc = location(admin, vid)
    assert loc["format"] == "raw" and loc["layers"][0]["path"].endswith(".raw")
    assert disks(admin, sid)[vid]["files"] == [loc["layers"][0]["path"]]
    assert wait_writing(cloud, sid, vid, writes=60).healthy
    r = admin.volume("POST", "/snapshots", json={"snapshot": {"volume_id": vid, "force": True}})
    assert r.status_code == 400 and "raw" in r.text
    migrate(admin, vid, src)
    assert wait_migration(admin, vid)["status"] == "success"
    assert location(admin, vid)["format"] == "qcow2"
    assert wait_writing(cloud, sid, vid, writes=60).healthy


def test_bad_requests_leave_volume_untouched(cloud: FerryServer) -> None:
    admin, demo = cloud.api("ferry-admin"), cloud.api("ferry-demo")
    vid = create_volume(admin, 1, "stay")
    snap = snapshot(admin, vid, "pin")
    before = volume(admin, vid)
    here = location(admin, vid)["backend"]
    cases = [
        (admin, {"os-migrate_volume": {"host": "nowhere"}}, 400, "Unknown backend"),
        (admin, {"os-migrate_volume": {"host": here}}, 400, "already on backend"),
        (admin, {"os-migrate_volume": {"host": "flat"}}, 400, "snapshot"),
        (admin, {"os-migrate_volume": {}}, 400, "host"),
        (admin, {"os-migrate_volume": {"host": 7}}, 400, "host"),
    ]
    for api, body, code, text in cases:
        r = api.volume("POST", f"/volumes/{vid}/action", json=body)
        assert r.status_code == code and text in r.text, (body, r.status_code, r.text)
    r = demo.volume("POST", f"/volumes/{vid}/action", json={"os-extend": {"new_size": 2}})
    assert r.status_code == 404  # another project's volume is invisible to demo
    own = create_volume(demo, 1, "demo-own")
    r = demo.volume("POST", f"/volumes/{own}/action", json={"os-migrate_volume": {"host": "bulk"}})
    assert r.status_code == 403
    delete_snapshot(admin, snap)
    other = other_backend(here)
    active = location(admin, vid)["layers"][-1]["path"]
    subprocess.run(
        ["qemu-io", "-f", "qcow2", "-c", "write -P 7 0 8M", active], check=True, capture_output=True
    )
    migrate(admin, vid, other, speed=64 * 1024)  # 8 MiB at 64 KiB/s: still running for the next call
    r = admin.volume("POST", f"/volumes/{vid}/action", json={"os-migrate_volume": {"host": other}})
    assert r.status_code == 409 and "already being migrated" in r.text
    admin.ok(admin.volume("POST", f"/volumes/{vid}/action", json={"ferry-migrate_cancel": {}}), 202)
    assert wait_migration(admin, vid)["status"] in ("cancelled", "success")
    after = volume(admin, vid)
    assert after["id"] == before["id"] and after["status"] == "available"


def test_there_and_back_three_times(cloud: FerryServer) -> None:
    admin = cloud.api("ferry-admin")
    sid = boot(admin, "ferry-test-guest", "m9")
    vid = create_volume(admin, 1, "pingpong")
    attach(admin, sid, vid)
    wait_writing(cloud, sid, vid, writes=40)
    snapshot(admin, vid, "keep")
    for _ in range(3):
        for dest in ("bulk", "fast") if location(admin, vid)["backend"] == "fast" else ("fast", "bulk"):
            migrate(admin, vid, dest)
            assert wait_migration(admin, vid)["status"] == "success"
            assert wait_writing(cloud, sid, vid, writes=30).healthy
    assert disks(admin, sid)[vid]["serial"] == vid
    loc = location(admin, vid)
    mine = {p for p in backend_files(cloud) if f"volume-{loc['name_id']}" in p}
    assert mine == {lay["path"] for lay in loc["layers"]}
    assert not any(".part" in p for p in backend_files(cloud))
