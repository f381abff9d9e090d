"""Issue 10 acceptance on real QEMU: the control plane dies just before or after it plugs or
unplugs a disk of a running guest; the restarted one settles the attachment to what QEMU really
shows (in-use and plugged, or available and gone), `ferry doctor` is clean, and the guest goes on."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from testkit.scenario import attach, boot, create_volume, volume, wait_writing
from testkit.server import Api, FerryServer
from tests.conftest import make_server

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def crashy(tmp_path_factory: pytest.TempPathFactory, guest_dir: Path) -> Iterator[FerryServer]:
    srv = make_server(tmp_path_factory.mktemp("ferry-attach-crash"), guest_dir=guest_dir)
    srv.start()
    yield srv
    srv.shutdown()


def crash_during(srv: FerryServer, failpoint: str, method: str, path: str, **kw: object) -> Api:
    """Restart with `failpoint` armed, send the request it cuts, restart clean."""
    srv.stop()
    srv.start(env={"FERRY_FAILPOINTS": f"{failpoint}:crash"})
    api = srv.api("ferry-admin")
    with pytest.raises(httpx.TransportError):  # the process dies inside the request
        api.compute(method, path, **kw)
    assert srv.wait_exit(120) == 137, srv.log_tail()
    srv.start()
    return srv.api("ferry-admin")


def plugged(api: Api, sid: str) -> dict[str, str]:
    disks = api.ok(api.compute("GET", f"/servers/{sid}/ferry-disks"))["disks"]
    return {d["volume_id"]: d["serial"] for d in disks}


def attachments(api: Api, sid: str) -> list[str]:
    body = api.ok(api.compute("GET", f"/servers/{sid}/os-volume_attachments"))
    return [a["volumeId"] for a in body["volumeAttachments"]]


def assert_healthy(api: Api) -> None:
    report = api.ok(api.volume("GET", "/ferry-doctor"))
    assert report["healthy"], report["drift"]


@pytest.mark.parametrize(
    ("failpoint", "want"),
    [("attach.before_plug", "available"), ("attach.after_plug", "in-use")],
)
def test_attach_cut_by_a_crash_matches_qemu(crashy: FerryServer, failpoint: str, want: str) -> None:
    api = crashy.api("ferry-admin")
    sid = boot(api, "ferry-test-guest", f"attach-crash-{want}")
    vid = create_volume(api, 1, f"attach-crash-{want}")
    body = {"volumeAttachment": {"volumeId": vid}}
    api = crash_during(crashy, failpoint, "POST", f"/servers/{sid}/os-volume_attachments", json=body)
    assert volume(api, vid)["status"] == want
    if want == "in-use":
        assert plugged(api, sid) == {vid: vid} and attachments(api, sid) == [vid]
        assert wait_writing(crashy, sid, vid, writes=20).healthy
    else:
        assert plugged(api, sid) == {} and attachments(api, sid) == []
    assert_healthy(api)
    api.ok(api.compute("DELETE", f"/servers/{sid}"), 204)


@pytest.mark.parametrize(
    ("failpoint", "want"),
    [("detach.before_unplug", "in-use"), ("detach.after_unplug", "available")],
)
def test_detach_cut_by_a_crash_matches_qemu(crashy: FerryServer, failpoint: str, want: str) -> None:
    api = crashy.api("ferry-admin")
    sid = boot(api, "ferry-test-guest", f"detach-crash-{want}")
    vid = create_volume(api, 1, f"detach-crash-{want}")
    attach(api, sid, vid)
    wait_writing(crashy, sid, vid, writes=20)
    api = crash_during(crashy, failpoint, "DELETE", f"/servers/{sid}/os-volume_attachments/{vid}")
    assert volume(api, vid)["status"] == want
    if want == "in-use":
        assert plugged(api, sid) == {vid: vid} and attachments(api, sid) == [vid]
        assert wait_writing(crashy, sid, vid, writes=20).healthy
    else:
        assert plugged(api, sid) == {} and attachments(api, sid) == []
        attach(api, sid, vid)  # and it attaches again
        assert wait_writing(crashy, sid, vid, writes=20).healthy
    assert_healthy(api)
    api.ok(api.compute("DELETE", f"/servers/{sid}"), 204)
