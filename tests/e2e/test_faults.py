"""Issue 5: faults from outside the control plane. Each ends in a clean rollback with the error
on the migration, the source untouched and the guest unaware."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from testkit.scenario import (
    attach,
    boot,
    create_volume,
    location,
    migrate,
    migration,
    other_backend,
    server,
    server_dir,
    volume,
    wait_migration,
    wait_until,
    wait_writing,
)
from testkit.server import FerryServer
from testkit.verify import verify_image
from tests.conftest import make_server

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def faulty(tmp_path_factory: pytest.TempPathFactory, guest_dir: Path) -> Iterator[FerryServer]:
    if os.geteuid() != 0:
        pytest.fail("fault tests mount a tmpfs backend: run them as root (CI does)")
    data = tmp_path_factory.mktemp("ferry-faults")
    tiny = data / "backends" / "tiny"
    tiny.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m,mode=0700", "tmpfs", str(tiny)], check=True)
    # A qemu-img that fails every convert, for the "qemu-img fails" case (first on PATH of serve).
    fakebin = data / "fakebin"
    fakebin.mkdir()
    real = shutil.which("qemu-img")
    (fakebin / "qemu-img").write_text(
        f'#!/bin/sh\nif [ "$1" = convert ] && [ -e "{data}/fail-convert" ]; then\n'
        f'  echo "injected failure" >&2; exit 1\nfi\nexec {real} "$@"\n'
    )
    (fakebin / "qemu-img").chmod(0o755)
    extra = f'\n[[backends]]\nname = "tiny"\npath = "{tiny}"\nformat = "qcow2"\ncapacity_gib = 100\n'
    srv = make_server(
        data, guest_dir=guest_dir, extra_config=extra, env={"PATH": f"{fakebin}:{os.environ['PATH']}"}
    )
    srv.start()
    yield srv
    srv.shutdown()
    subprocess.run(["umount", str(tiny)], check=False)


def fill(path: str, mib: int) -> None:
    """Write incompressible-looking data into a detached layer."""
    subprocess.run(
        ["qemu-io", "-f", "qcow2", "-c", f"write -P 0x5a 0 {mib}M", path], check=True, capture_output=True
    )


def test_qemu_dies_mid_mirror(faulty: FerryServer) -> None:
    api = faulty.api("ferry-admin")
    sid = boot(api, "ferry-test-guest", "f1")
    vid = create_volume(api, 1, "orphaned")
    attach(api, sid, vid)
    final = wait_writing(faulty, sid, vid, writes=200)
    src = location(api, vid)
    migrate(api, vid, other_backend(src["backend"]), speed=32 * 1024)
    wait_until("mirroring", lambda: migration(api, vid)["phase"] == "mirror", timeout=60)
    pid = int((server_dir(faulty, sid) / "qemu.pid").read_text())
    os.kill(pid, signal.SIGKILL)
    m = wait_migration(api, vid)
    assert m["status"] == "error", m
    assert location(api, vid) == src
    assert server(api, sid)["status"] in ("SHUTOFF", "ERROR")
    assert not list((faulty.data_dir / "backends").glob(f"*/volume-{m['id']}"))
    rep = verify_image(src["layers"][-1]["path"], vid, synced_seq=final.synced_seq, first_seq=final.first_seq)
    assert rep.ok, rep.summary()
    assert api.ok(api.volume("GET", "/ferry-doctor"))["healthy"]


def test_destination_full(faulty: FerryServer) -> None:
    api = faulty.api("ferry-admin")
    vid = create_volume(api, 1, "too-big")
    fill(location(api, vid)["layers"][0]["path"], 64)
    sid = boot(api, "ferry-test-guest", "f2")
    attach(api, sid, vid)
    wait_writing(faulty, sid, vid, writes=50)
    src = location(api, vid)
    migrate(api, vid, "tiny")
    m = wait_migration(api, vid)
    assert m["status"] == "error" and "space" in (m["error"] or "").lower(), m
    assert location(api, vid) == src and not any((faulty.data_dir / "backends" / "tiny").iterdir())
    assert wait_writing(faulty, sid, vid, writes=50).healthy
    assert api.ok(api.volume("GET", "/ferry-doctor"))["healthy"]


def test_destination_directory_disappears(faulty: FerryServer) -> None:
    api = faulty.api("ferry-admin")
    vid = create_volume(api, 1, "vanishing")
    fill(location(api, vid)["layers"][0]["path"], 16)
    src = location(api, vid)
    migrate(api, vid, other_backend(src["backend"]), speed=256 * 1024)
    wait_until("copying", lambda: migration(api, vid)["phase"] == "copy-layers")
    m = migration(api, vid)
    target_dir = Path(next(e["detail"]["directory"] for e in m["steps"] if e["step"] == "copy-layers"))
    wait_until("target dir", target_dir.exists)
    shutil.rmtree(target_dir)
    m = wait_migration(api, vid)
    assert m["status"] == "error", m
    assert location(api, vid) == src and not target_dir.exists()
    assert volume(api, vid)["status"] == "available"
    assert api.ok(api.volume("GET", "/ferry-doctor"))["healthy"]


def test_qemu_img_fails(faulty: FerryServer) -> None:
    api = faulty.api("ferry-admin")
    vid = create_volume(api, 1, "unlucky")
    api.ok(api.volume("POST", "/snapshots", json={"snapshot": {"volume_id": vid, "name": "s"}}))
    src = location(api, vid)
    (faulty.data_dir / "fail-convert").touch()
    try:
        migrate(api, vid, other_backend(src["backend"]))
        m = wait_migration(api, vid)
    finally:
        (faulty.data_dir / "fail-convert").unlink()
    assert m["status"] == "error" and "injected failure" in (m["error"] or ""), m
    assert location(api, vid) == src
    assert api.ok(api.volume("GET", "/ferry-doctor"))["healthy"]
