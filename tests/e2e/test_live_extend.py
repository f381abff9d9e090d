"""Issue 13: an attached volume extended under its running QEMU guest (Cinder 3.42, Nova's
extend_volume). The guest keeps writing and verifying while QMP `block_resize` grows the disk's
active layer; it sees the new capacity (virtio-blk config change), writes and reads back the
last block past the old end, nothing it wrote before is lost, and the recorded size follows.
A control plane killed right after the resize settles the extend from QEMU's size at restart."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from testkit.guest import DiskGrown, console_offset, parse_grown
from testkit.scenario import (
    attach,
    boot,
    console_path,
    create_volume,
    detach,
    latest,
    location,
    server,
    snapshot,
    volume,
    wait_until,
    wait_writing,
)
from testkit.server import Api, FerryServer
from testkit.verify import verify_image
from tests.conftest import make_server

pytestmark = pytest.mark.e2e
GiB = 1 << 30


@pytest.fixture(scope="module")
def grower(tmp_path_factory: pytest.TempPathFactory, guest_dir: Path) -> Iterator[FerryServer]:
    srv = make_server(tmp_path_factory.mktemp("ferry-extend"), guest_dir=guest_dir)
    srv.start()
    yield srv
    srv.shutdown()


def extend(api: Api, vid: str, size: int, version: str | None = "3.42") -> httpx.Response:
    headers = {"X-Auth-Token": api.token}
    if version is not None:
        headers["OpenStack-API-Version"] = f"volume {version}"
    url = f"{api.base}/volume/v3/{api.project_id}/volumes/{vid}/action"
    return api.client.post(url, headers=headers, json={"os-extend": {"new_size": size}})


def require_3_42(api: Api) -> None:
    versions = api.client.get(f"{api.base}/volume/").json()["versions"]
    served = max(tuple(int(p) for p in v["version"].split(".")) for v in versions if v.get("version"))
    if served < (3, 42):
        pytest.skip("Ferry does not advertise volume microversion 3.42 (in-use extend) yet")


def wait_grown(srv: FerryServer, sid: str, vid: str, since: int, timeout: float = 90) -> DiskGrown:
    path = console_path(srv, sid)

    def grown() -> DiskGrown | None:
        with path.open("rb") as f:
            f.seek(since)
            text = f.read().decode(errors="replace")
        return next((g for g in parse_grown(text) if vid.startswith(g.serial)), None)

    found: DiskGrown = wait_until(f"the guest to see {vid} grow", grown, timeout, 0.5)
    return found


def image_size(path: str) -> int:
    out = subprocess.run(
        ["qemu-img", "info", "-U", "--output=json", path], capture_output=True, text=True, check=True
    )
    return int(json.loads(out.stdout)["virtual-size"])


def test_extend_under_a_writing_guest(grower: FerryServer) -> None:
    api = grower.api("ferry-admin")
    require_3_42(api)
    sid = boot(api, "ferry-test-guest", "grow-guest")
    vid = create_volume(api, 1, "grows")
    attach(api, sid, vid)
    before = wait_writing(grower, sid, vid, writes=60)
    assert before.healthy and before.size == 1 * GiB
    snap = snapshot(api, vid, "before-extend")  # the active overlay grows past its backing
    # Below 3.42 Cinder refuses an attached volume, and nothing changes.
    refused = extend(api, vid, 2, version=None)
    assert refused.status_code == 400 and "must be available" in refused.text, refused.text
    assert (volume(api, vid)["status"], volume(api, vid)["size"]) == ("in-use", 1)

    since = console_offset(console_path(grower, sid))
    resp = extend(api, vid, 2)
    assert resp.status_code == 202, resp.text
    vol = wait_until("in-use again", lambda: (v := volume(api, vid))["status"] != "extending" and v)
    assert (vol["status"], vol["size"]) == ("in-use", 2)
    grown = wait_grown(grower, sid, vid, since)
    assert (grown.old, grown.new, grown.tail_ok) == (1 * GiB, 2 * GiB, True), grown
    # The guest keeps writing and verifying what it wrote before; it reports the new size.
    after = wait_writing(grower, sid, vid, writes=60)
    assert after.healthy and after.size == 2 * GiB and after.first_seq == before.first_seq, after
    assert after.verified > before.verified
    loc = location(api, vid)
    assert [lay["snapshot_id"] for lay in loc["layers"]] == [snap, None]
    assert image_size(loc["layers"][-1]["path"]) == 2 * GiB
    assert image_size(loc["layers"][0]["path"]) == 1 * GiB  # the snapshot keeps its size
    # Every flushed write is in the grown image once the guest lets go of it.
    final = latest(grower, sid, vid)
    detach(api, sid, vid)
    wait_until("detached", lambda: volume(api, vid)["status"] == "available", 120)
    rep = verify_image(loc["layers"][-1]["path"], vid, synced_seq=final.synced_seq, first_seq=final.first_seq)
    assert rep.ok and rep.max_seq >= final.synced_seq, rep.summary()
    report = api.ok(api.volume("GET", "/ferry-doctor"))
    assert report["healthy"], report["drift"]
    api.ok(api.compute("DELETE", f"/servers/{sid}"), 204)


def test_a_crash_after_the_resize_is_completed_at_restart(grower: FerryServer) -> None:
    api = grower.api("ferry-admin")
    require_3_42(api)
    sid = boot(api, "ferry-test-guest", "grow-crash-guest")
    vid = create_volume(api, 1, "grows-crashy")
    attach(api, sid, vid)
    wait_writing(grower, sid, vid, writes=40)
    grower.stop()
    grower.start(env={"FERRY_FAILPOINTS": "volume-extend.after_resize:crash"})
    api = grower.api("ferry-admin")
    since = console_offset(console_path(grower, sid))
    with pytest.raises(httpx.TransportError):  # QEMU grew the disk; the process dies before recording it
        extend(api, vid, 3)
    assert grower.wait_exit(120) == 137, grower.log_tail()
    grower.start()
    api = grower.api("ferry-admin")
    vol = volume(api, vid)
    assert (vol["status"], vol["size"]) == ("in-use", 3), vol
    grown = wait_grown(grower, sid, vid, since)
    assert (grown.new, grown.tail_ok) == (3 * GiB, True), grown
    assert wait_writing(grower, sid, vid, writes=20).healthy
    assert server(api, sid)["status"] == "ACTIVE"
    report = api.ok(api.volume("GET", "/ferry-doctor"))
    assert report["healthy"], report["drift"]
    api.ok(api.compute("DELETE", f"/servers/{sid}"), 204)


def test_a_shut_off_servers_volume_grows_offline_and_boots_bigger(grower: FerryServer) -> None:
    api = grower.api("ferry-admin")
    require_3_42(api)
    sid = boot(api, "ferry-test-guest", "grow-offline-guest")
    vid = create_volume(api, 1, "grows-offline")
    attach(api, sid, vid)
    before = wait_writing(grower, sid, vid, writes=40)
    api.ok(api.compute("POST", f"/servers/{sid}/action", json={"os-stop": None}), 202)
    wait_until("SHUTOFF", lambda: server(api, sid)["status"] == "SHUTOFF")
    resp = extend(api, vid, 2)
    assert resp.status_code == 202, resp.text
    assert (volume(api, vid)["status"], volume(api, vid)["size"]) == ("in-use", 2)
    assert image_size(location(api, vid)["layers"][-1]["path"]) == 2 * GiB
    api.ok(api.compute("POST", f"/servers/{sid}/action", json={"os-start": None}), 202)
    wait_until("ACTIVE", lambda: server(api, sid)["status"] == "ACTIVE")
    after = wait_writing(grower, sid, vid, writes=40)
    # The guest finds the disk at its new size; the sequence goes on from what it wrote before.
    assert after.healthy and after.size == 2 * GiB and after.seq > before.seq, after
    api.ok(api.compute("DELETE", f"/servers/{sid}"), 204)
