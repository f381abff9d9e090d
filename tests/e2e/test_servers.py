"""Issue 3 acceptance: servers as real QEMU guests with volumes whose serial is the volume id."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from testkit.guest import console_offset, wait_for_event
from testkit.scenario import (
    attach,
    boot,
    console_path,
    create_volume,
    delete_snapshot,
    detach,
    latest,
    location,
    server,
    server_dir,
    snapshot,
    volume,
    wait_until,
    wait_writing,
)
from testkit.server import FerryServer
from testkit.verify import verify_image

pytestmark = pytest.mark.e2e


def disks(api, sid):  # type: ignore[no-untyped-def]
    return {d["volume_id"]: d for d in api.ok(api.compute("GET", f"/servers/{sid}/ferry-disks"))["disks"]}


def test_boot_attach_serial_and_workload(cloud: FerryServer) -> None:
    admin = cloud.api("ferry-admin")
    sid = boot(admin, "ferry-test-guest", "s1")
    vid = create_volume(admin, 1, "data")
    since = console_offset(console_path(cloud, sid))
    att = attach(admin, sid, vid)
    assert att["volumeId"] == vid and att["device"].startswith("/dev/vd")
    added = wait_for_event(console_path(cloud, sid), "added", vid, timeout=60, since=since)
    assert added.serial == vid[:20]
    assert disks(admin, sid)[vid]["serial"] == vid  # qom-get: the full id
    vol = volume(admin, vid)
    assert vol["status"] == "in-use" and vol["attachments"][0]["server_id"] == sid
    st = wait_writing(cloud, sid, vid, writes=100)
    assert st.healthy and st.wps > 0
    cinder_atts = admin.ok(admin.volume("GET", "/attachments"))["attachments"]
    assert any(a["volume_id"] == vid and a["instance"] == sid for a in cinder_atts)
    check_console(cloud, sid)


def check_console(cloud: FerryServer, sid: str) -> None:
    """The console over the API: Nova's os-getConsoleOutput (raw and as novaclient, i.e.
    `openstack console log show`, calls it) and Ferry's follower."""
    admin = cloud.api("ferry-admin")
    body = {"os-getConsoleOutput": {}}
    whole = admin.ok(admin.compute("POST", f"/servers/{sid}/action", json=body), 200)["output"]
    assert "FERRY-READY" in whole and "\r" not in whole
    tail = nova(cloud).servers.get_console_output(sid, length=10)
    assert 0 < len(tail.splitlines()) <= 10 and "FERRY-" in tail
    head = admin.ok(admin.compute("GET", f"/servers/{sid}/ferry-console", params={"limit": 1 << 20}))
    assert "FERRY-READY" in head["output"] and head["offset"] == len(head["output"].encode())
    more = admin.ok(admin.compute("GET", f"/servers/{sid}/ferry-console", params={"offset": head["offset"]}))
    assert more["offset"] >= head["offset"]
    check_console_clis(cloud, sid)


def check_console_clis(cloud: FerryServer, sid: str) -> None:
    """The unmodified `openstack console log show`, and `ferry server console` with and without
    --follow, print the guest's console."""
    env = cloud.cli_env("ferry-admin")
    openstack = str(Path(sys.executable).with_name("openstack"))
    shown = subprocess.run(
        [openstack, "console", "log", "show", "--lines", "20", sid],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert "FERRY-" in shown and 0 < len(shown.splitlines()) <= 21
    ferry = [sys.executable, "-m", "ferry.cli.main", "server", "console", sid]
    printed = subprocess.run(ferry, env=env, capture_output=True, text=True, timeout=120, check=True).stdout
    assert "FERRY-READY" in printed
    with subprocess.Popen([*ferry, "--follow"], env=env, stdout=subprocess.PIPE, text=True) as follower:
        try:
            assert follower.stdout is not None
            lines = iter(follower.stdout.readline, "")
            assert any("FERRY-READY" in line for line in lines), "the follower ended without the console"
            assert follower.poll() is None, "--follow must keep following"
        finally:
            follower.terminate()


def nova(cloud: FerryServer) -> Any:
    from keystoneauth1 import session
    from keystoneauth1.identity import v3
    from novaclient import client

    auth = cloud.cloud("ferry-admin")
    keys = ("auth_url", "username", "password", "project_name", "user_domain_name", "project_domain_name")
    return client.Client("2.1", session=session.Session(auth=v3.Password(**{k: auth[k] for k in keys})))


def test_live_snapshot_and_delete_while_writing(cloud: FerryServer) -> None:
    admin = cloud.api("ferry-admin")
    sid = boot(admin, "ferry-test-guest", "s2")
    vid = create_volume(admin, 1, "snapme")
    attach(admin, sid, vid)
    wait_writing(cloud, sid, vid, writes=50)
    snap1 = snapshot(admin, vid, "one")
    wait_writing(cloud, sid, vid, writes=50)
    snap2 = snapshot(admin, vid, "two")
    after = wait_writing(cloud, sid, vid, writes=50)
    assert after.healthy
    loc = location(admin, vid)
    assert [lay["snapshot_id"] for lay in loc["layers"]] == [snap1, snap2, None]
    chain = {lay["id"]: lay["path"] for lay in loc["layers"]}
    # Each snapshot's point-in-time view is internally consistent (no torn or foreign block).
    for lay in loc["layers"][:2]:
        rep = verify_image(lay["path"], vid)
        assert rep.ok and rep.valid > 0, rep.summary()
    assert disks(admin, sid)[vid]["files"] == [chain[lay["id"]] for lay in reversed(loc["layers"])]
    # Live delete of the middle snapshot merges it; the guest never notices.
    delete_snapshot(admin, snap1)
    st = wait_writing(cloud, sid, vid, writes=50)
    assert st.healthy
    loc2 = location(admin, vid)
    assert [lay["snapshot_id"] for lay in loc2["layers"]] == [snap2, None]
    assert not os.path.exists(chain[loc["layers"][0]["id"]])
    assert disks(admin, sid)[vid]["files"] == [lay["path"] for lay in reversed(loc2["layers"])]
    # Stop the guest and verify the final image completely against what it reported synced.
    final = latest(cloud, sid, vid)
    admin.ok(admin.compute("POST", f"/servers/{sid}/action", json={"os-stop": None}), 202)
    wait_until("SHUTOFF", lambda: server(admin, sid)["status"] == "SHUTOFF")
    rep = verify_image(
        loc2["layers"][-1]["path"], vid, synced_seq=final.synced_seq, first_seq=final.first_seq
    )
    assert rep.ok and rep.max_seq >= final.synced_seq, rep.summary()
    delete_snapshot(admin, snap2)  # detached merge this time
    assert [lay["snapshot_id"] for lay in location(admin, vid)["layers"]] == [None]


def test_detach_reboot_stop_start_delete(cloud: FerryServer) -> None:
    admin = cloud.api("ferry-admin")
    sid = boot(admin, "ferry-test-guest", "s3")
    keep, drop = create_volume(admin, 1, "keep"), create_volume(admin, 1, "drop")
    attach(admin, sid, keep)
    attach(admin, sid, drop)
    wait_writing(cloud, sid, drop, writes=20)
    since = console_offset(console_path(cloud, sid))
    detach(admin, sid, drop)
    removed = wait_for_event(console_path(cloud, sid), "removed", drop, timeout=60, since=since)
    assert removed.serial == drop[:20]
    assert volume(admin, drop)["status"] == "available" and drop not in disks(admin, sid)
    # Hard reboot: a new QEMU process, the volume re-plugged with the same serial.
    pid_file = server_dir(cloud, sid) / "qemu.pid"
    old_pid = pid_file.read_text().strip()
    admin.ok(admin.compute("POST", f"/servers/{sid}/action", json={"reboot": {"type": "HARD"}}), 202)
    wait_until("ACTIVE after reboot", lambda: server(admin, sid)["status"] == "ACTIVE")
    assert pid_file.read_text().strip() != old_pid
    assert disks(admin, sid)[keep]["serial"] == keep
    assert wait_writing(cloud, sid, keep, writes=20).healthy
    admin.ok(admin.compute("POST", f"/servers/{sid}/action", json={"os-stop": None}), 202)
    wait_until("SHUTOFF", lambda: server(admin, sid)["status"] == "SHUTOFF")
    admin.ok(admin.compute("POST", f"/servers/{sid}/action", json={"os-start": None}), 202)
    wait_until("ACTIVE", lambda: server(admin, sid)["status"] == "ACTIVE")
    assert disks(admin, sid)[keep]["serial"] == keep
    admin.ok(admin.compute("DELETE", f"/servers/{sid}"), 204)
    assert admin.compute("GET", f"/servers/{sid}").status_code == 404
    assert volume(admin, keep)["status"] == "available"
    assert not (server_dir(cloud, sid)).exists()


def test_bad_input(cloud: FerryServer) -> None:
    admin, demo = cloud.api("ferry-admin"), cloud.api("ferry-demo")
    sid = boot(demo, "ferry-test-guest", "s4")
    vid = create_volume(demo, 1, "mine")
    attach(demo, sid, vid)
    again = demo.compute(
        "POST", f"/servers/{sid}/os-volume_attachments", json={"volumeAttachment": {"volumeId": vid}}
    )
    assert again.status_code == 400 and "already attached" in again.text
    foreign = create_volume(admin, 1, "admins")
    resp = demo.compute(
        "POST", f"/servers/{sid}/os-volume_attachments", json={"volumeAttachment": {"volumeId": foreign}}
    )
    assert resp.status_code == 404
    for body in (
        {"name": "x", "imageRef": "no-such-image", "flavorRef": "tiny"},
        {"name": "x", "imageRef": "ferry-test-guest", "flavorRef": "no-such-flavor"},
    ):
        resp = demo.compute("POST", "/servers", json={"server": body})
        assert resp.status_code == 400, resp.text
    resp = demo.volume("DELETE", f"/volumes/{vid}")
    assert resp.status_code == 400 and "attached" in resp.text
    # Fill every hotplug slot (8 root ports by default), then one more is refused clearly.
    extra = [create_volume(demo, 1, f"fill{i}") for i in range(8)]
    codes = []
    for v in extra:
        r = demo.compute(
            "POST", f"/servers/{sid}/os-volume_attachments", json={"volumeAttachment": {"volumeId": v}}
        )
        codes.append(r.status_code)
        if r.status_code == 409:
            assert "slot" in r.text
            assert volume(demo, v)["status"] == "available"
            break
    assert codes[-1] == 409 and all(c == 200 for c in codes[:-1])


def test_serve_killed_guest_survives(cloud: FerryServer) -> None:
    admin = cloud.api("ferry-admin")
    sid = boot(admin, "ferry-test-guest", "s5")
    vid = create_volume(admin, 1, "survivor")
    attach(admin, sid, vid)
    wait_writing(cloud, sid, vid, writes=20)
    pid = int((server_dir(cloud, sid) / "qemu.pid").read_text())
    cloud.kill()
    assert pid_alive(pid)  # QEMU is still alive
    assert wait_writing(cloud, sid, vid, writes=50).healthy  # and its guest still writes
    cloud.start()
    admin = cloud.api("ferry-admin")
    assert server(admin, sid)["status"] == "ACTIVE"
    assert disks(admin, sid)[vid]["serial"] == vid
    detach(admin, sid, vid)
    wait_until("volume available", lambda: volume(admin, vid)["status"] == "available")
    admin.ok(admin.compute("DELETE", f"/servers/{sid}"), 204)
    wait_until("qemu gone", lambda: not pid_alive(pid), timeout=15)


def pid_alive(pid: int) -> bool:
    """True while the process exists and is not a zombie (its parent may be gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
