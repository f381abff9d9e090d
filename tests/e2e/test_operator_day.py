"""Issue 14 acceptance: an operator's day with the unmodified `openstack` CLI against a real
`ferry serve` and a real QEMU guest.

The admin creates a project and a user and grants it `member`; the user logs in, uploads an image,
boots a server, creates volumes (one from the image), attaches one and the guest writes and
verifies it throughout; the user snapshots it; the admin migrates and retypes it under the running
guest; the user hits the volume and instance quotas the admin set; the project cannot be deleted
while it owns things; everything is cleaned up with the CLI. Every command's exit status and
output is checked; nothing but the CLI is used to change anything (the console and the API are
only read, to follow the guest and wait).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from testkit.scenario import volume, wait_until, wait_writing
from testkit.server import Api, FerryServer
from tests.conftest import make_server

pytestmark = pytest.mark.e2e

OPENSTACK = str(Path(sys.executable).with_name("openstack"))
PASSWORD = "day-Passw0rd"


@dataclass(frozen=True)
class Cli:
    """The stock `openstack` CLI as one identity, configured by the usual OS_* variables."""

    env: dict[str, str]

    def run(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([OPENSTACK, *args], env=self.env, capture_output=True, text=True, timeout=300)
        if ok:
            assert done.returncode == 0, f"openstack {' '.join(args)}: {done.returncode}\n{done.stderr}"
            assert "Traceback" not in done.stderr, done.stderr
        return done

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "-f", "json").stdout)

    def refused(self, *args: str) -> str:
        """Run a command that must fail cleanly: non-zero, an error message, no traceback."""
        done = self.run(*args, ok=False)
        assert done.returncode != 0, f"openstack {' '.join(args)} succeeded: {done.stdout}"
        assert "Traceback" not in done.stderr and done.stderr.strip(), done.stderr
        return done.stderr


def password_env(srv: FerryServer, user: str, project: str) -> dict[str, str]:
    """A user's login as an operator hands it out: OS_* variables, no clouds.yaml."""
    env = {k: v for k, v in srv.env.items() if not k.startswith("OS_")}
    return {
        **env,
        "OS_AUTH_URL": f"{srv.base}/identity/v3",
        "OS_IDENTITY_API_VERSION": "3",
        "OS_USERNAME": user,
        "OS_PASSWORD": PASSWORD,
        "OS_PROJECT_NAME": project,
        "OS_USER_DOMAIN_NAME": "Default",
        "OS_PROJECT_DOMAIN_NAME": "Default",
    }


@pytest.fixture(scope="module")
def day(tmp_path_factory: pytest.TempPathFactory, guest_dir: Path) -> Iterator[FerryServer]:
    srv = make_server(tmp_path_factory.mktemp("ferry-day"), guest_dir=guest_dir)
    srv.start()
    yield srv
    srv.shutdown()
    assert srv.log_problems() == []


def disk_image(tmp: Path) -> Path:
    """A small qcow2 with recognisable data in its first cluster."""
    raw = tmp / "disk.raw"
    with raw.open("wb") as f:
        f.write(b"ferry operator day\n" * 1000)
        f.truncate(8 << 20)
    out = tmp / "disk.qcow2"
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(out)], check=True)
    return out


def wait_status(api: Api, vid: str, status: str) -> dict[str, Any]:
    return dict(
        wait_until(f"volume {vid} {status}", lambda: (v := volume(api, vid))["status"] == status and v, 300)
    )


def snapshot_status(api: Api, snap_id: str) -> str | None:
    resp = api.volume("GET", f"/snapshots/{snap_id}")
    return None if resp.status_code == 404 else str(api.ok(resp)["snapshot"]["status"])


def volume_gone(api: Api, vid: str) -> bool:
    return api.volume("GET", f"/volumes/{vid}").status_code == 404


def test_operator_day(day: FerryServer, tmp_path: Path) -> None:
    admin = Cli(day.cli_env("ferry-admin"))
    watcher = day.api("ferry-admin")  # reads only: waits and the guest's console

    # The admin opens a project for a new team and a user for it.
    project = admin.json("project", "create", "--description", "the day team", "day")
    assert project["name"] == "day" and project["domain_id"] == "default"
    user = admin.json("user", "create", "--project", "day", "--password", PASSWORD, "alice")
    assert user["name"] == "alice" and user["default_project_id"] == project["id"]
    assert admin.run("role", "add", "--user", "alice", "--project", "day", "member").stdout == ""
    granted = admin.json("role", "assignment", "list", "--user", "alice", "--project", "day", "--names")
    assert [(a["Role"], a["User"], a["Project"]) for a in granted] == [
        ("member", "alice@Default", "day@Default")
    ]
    admin.run("quota", "set", "--volumes", "2", "--instances", "1", "day")
    quota = {r["Resource"]: r["Limit"] for r in admin.json("quota", "show", "day")}
    assert quota["volumes"] == 2 and quota["instances"] == 1 and quota["cores"] == -1

    # The user logs in with what the operator handed out.
    alice = Cli(password_env(day, "alice", "day"))
    token = alice.json("token", "issue")
    assert token["project_id"] == project["id"] and token["user_id"] == user["id"]
    assert admin.refused("project", "delete", "no-such-project")

    # An image upload: streamed, hashed, its format checked.
    disk = disk_image(tmp_path)
    image = alice.json(
        "image", "create", "--file", str(disk), "--disk-format", "qcow2", "--container-format", "bare",
        "day-disk",
    )  # fmt: skip
    assert image["status"] == "active" and image["size"] == disk.stat().st_size
    assert image["checksum"] == hashlib.md5(disk.read_bytes()).hexdigest()
    assert "qcow2" in alice.refused(
        "image", "create", "--file", str(disk), "--disk-format", "raw", "--container-format", "bare",
        "liar",
    )  # fmt: skip

    # A server and two volumes, one of them from the image; the third volume is over quota.
    srv = alice.json("server", "create", "--image", "ferry-test-guest", "--flavor", "tiny", "--wait", "vm")
    assert srv["status"] == "ACTIVE"
    sid = srv["id"]
    data = alice.json("volume", "create", "--size", "1", "data")
    from_image = alice.json("volume", "create", "--size", "1", "--image", "day-disk", "from-image")
    for v in (data, from_image):
        wait_status(watcher, v["id"], "available")
    assert "quota" in alice.refused("volume", "create", "--size", "1", "third").lower()
    assert (
        "quota"
        in alice.refused("server", "create", "--image", "ferry-test-guest", "--flavor", "tiny", "vm2").lower()
    )
    assert str(alice.json("volume", "show", "from-image")["bootable"]).lower() == "true"

    # Attached, the guest writes and verifies; a live snapshot.
    vid = data["id"]
    alice.run("server", "add", "volume", "vm", "data")
    wait_status(watcher, vid, "in-use")
    assert wait_writing(day, sid, vid, writes=40).healthy
    snap = alice.json("volume", "snapshot", "create", "--volume", "data", "--force", "snap")
    wait_until("snapshot available", lambda: snapshot_status(watcher, snap["id"]) == "available")
    assert wait_writing(day, sid, vid, writes=40).healthy

    # The admin moves it to the other backend, then retypes it back, under the running guest.
    host = admin.json("volume", "show", vid)["os-vol-host-attr:host"]
    target = "ferry@bulk#bulk" if "fast" in host else "ferry@fast#fast"
    admin.run("volume", "migrate", "--host", target, vid)
    wait_until("migration", lambda: volume(watcher, vid)["os-vol-host-attr:host"] == target, 300)
    wait_status(watcher, vid, "in-use")
    assert wait_writing(day, sid, vid, writes=40).healthy
    back = "fast" if "bulk" in target else "bulk"
    admin.run("volume", "type", "create", "--property", f"volume_backend_name={back}", back)
    admin.run("volume", "set", "--type", back, "--retype-policy", "on-demand", vid)
    wait_until(
        "retype", lambda: (v := volume(watcher, vid))["volume_type"] == back and v["status"] == "in-use", 300
    )
    assert f"ferry@{back}#{back}" == admin.json("volume", "show", vid)["os-vol-host-attr:host"]
    after = wait_writing(day, sid, vid, writes=40)
    assert after.healthy and after.verified > 0
    assert alice.json("volume", "show", vid)["id"] == vid  # the same volume, for its owner
    limits = {r["Name"]: r["Value"] for r in alice.json("limits", "show", "--absolute")}  # compute and volume
    assert limits["max_total_volumes"] == 2 and limits["total_volumes_used"] == 2
    assert limits["max_total_instances"] == 1 and limits["total_instances_used"] == 1

    # The project owns things: it cannot be deleted yet.
    assert "volume" in admin.refused("project", "delete", "day").lower()

    # Clean up, all with the CLI.
    alice.run("server", "remove", "volume", "vm", "data")
    wait_status(watcher, vid, "available")
    alice.run("volume", "snapshot", "delete", snap["id"])
    wait_until("snapshot gone", lambda: snapshot_status(watcher, snap["id"]) is None)
    alice.run("server", "delete", "--wait", "vm")
    alice.run("volume", "delete", "data", "from-image")
    wait_until("volumes gone", lambda: all(volume_gone(watcher, v) for v in (vid, from_image["id"])), 120)
    assert alice.json("volume", "list") == []
    alice.run("image", "delete", "day-disk")
    assert [i["Name"] for i in alice.json("image", "list", "--private")] == []  # the refused one is gone too
    admin.run("volume", "type", "delete", back)
    admin.run("user", "delete", "alice")
    assert alice.refused("token", "issue")  # alice is gone
    admin.run("project", "delete", "day")
    assert all(p["Name"] != "day" for p in admin.json("project", "list"))
