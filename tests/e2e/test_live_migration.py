"""Issue 12 acceptance, the seed's scenario end to end on PostgreSQL with two agents: a server on
hv1 writing and verifying, its volume with two live snapshots on backend A; the volume migrated
live to B; the server live-migrated to hv2; the volume migrated back to A while the server
runs on hv2; the server live-migrated back to hv1. After every step: 0 guest I/O errors or verify
failures, the serial QEMU holds on whichever host runs it is the volume id, every id unchanged,
each snapshot's point-in-time view identical, `ferry doctor` clean. Then the refusals."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from testkit.hosts import API_TIER, AgentProcess, boot_on
from testkit.scenario import (
    attach,
    create_volume,
    latest,
    location,
    migrate,
    other_backend,
    register_guest,
    server,
    snapshot,
    volume,
    wait_migration,
    wait_until,
    wait_writing,
)
from testkit.server import Api, FerryServer
from testkit.verify import verify_image
from tests.conftest import make_server
from tests.e2e.test_migration import disks, flat_copy, same_view

pytestmark = [pytest.mark.e2e, pytest.mark.db]
SPAN_MB = 16
LOCAL = """
[[backends]]
name = "local1"
path = "{data}/backends/local1"
format = "qcow2"
capacity_gib = 20
hosts = ["hv1"]
"""


@pytest.fixture(scope="module")
def tier(tmp_path_factory: pytest.TempPathFactory, guest_dir: Path) -> Iterator[FerryServer]:
    if not os.environ.get("FERRY_TEST_DATABASE_URL", "").startswith("postgresql"):
        pytest.skip("many hosts coordinate through PostgreSQL (scripts/pg-test.sh runs this)")
    data = tmp_path_factory.mktemp("ferry-live")
    srv = make_server(data, guest_dir=guest_dir, extra_config=LOCAL.format(data=data))
    cfg = srv.config_path.read_text().replace("lease_s = 30.0", "lease_s = 6.0")  # adoption soon
    srv.config_path.write_text(cfg)
    register_guest(srv, guest_dir, "writer", rate=200, span_mb=SPAN_MB)
    srv.start(args=API_TIER, timeout=60)
    yield srv
    srv.shutdown()


@pytest.fixture(scope="module", autouse=True)
def agents(tier: FerryServer) -> Iterator[dict[str, AgentProcess]]:
    hosts = {name: AgentProcess(tier, name, f"127.0.0.{i + 2}") for i, name in enumerate(("hv1", "hv2"))}
    for agent in hosts.values():
        agent.start()
    yield hosts
    tier.delete_servers()
    for agent in hosts.values():
        agent.stop()
    tier.kill_guests()


def live_migrate(api: Api, sid: str, host: str | None) -> dict[str, Any]:
    api.ok(
        api.compute(
            "POST",
            f"/servers/{sid}/action",
            json={"os-migrateLive": {"host": host, "block_migration": "auto"}},
        ),
        202,
    )
    assert server(api, sid)["status"] in ("MIGRATING", "ACTIVE")
    wait_until(f"server {sid} idle", lambda: server(api, sid)["OS-EXT-STS:task_state"] is None, timeout=180)
    done = api.ok(api.compute("GET", "/os-migrations"))["migrations"][0]
    assert done["instance_uuid"] == sid and done["migration_type"] == "live-migration"
    return dict(done)


class Scenario:
    """The server, its volume and snapshots, and what every step must leave unchanged."""

    def __init__(self, tier: FerryServer, tmp: Path) -> None:
        self.tier, self.api = tier, tier.api("ferry-admin")
        self.sid = boot_on(self.api, "writer", "seed", "hv1")
        self.vid = create_volume(self.api, 1, "seed-data")
        attach(self.api, self.sid, self.vid)
        self.attachment = volume(self.api, self.vid)["attachments"][0]["attachment_id"]
        wait_writing(tier, self.sid, self.vid, writes=100)
        self.snaps = [snapshot(self.api, self.vid, "s1")]
        wait_writing(tier, self.sid, self.vid, writes=100)
        self.snaps.append(snapshot(self.api, self.vid, "s2"))
        wait_writing(tier, self.sid, self.vid, writes=100)
        loc = location(self.api, self.vid)
        self.views = {
            lay["snapshot_id"]: flat_copy(lay["path"], tmp / f"{lay['snapshot_id']}.qcow2")
            for lay in loc["layers"][:2]
        }

    def check(self, host: str, backend: str) -> None:
        api, sid, vid = self.api, self.sid, self.vid
        status = wait_writing(self.tier, sid, vid, writes=100)
        assert status.healthy and status.io_errors == 0 and status.verify_failures == 0, status
        srv = server(api, sid)
        assert srv["status"] == "ACTIVE" and srv["OS-EXT-SRV-ATTR:host"] == host
        on_guest = disks(api, sid)[vid]
        assert on_guest["serial"] == vid  # qom-get on whichever host runs it
        vol, loc = volume(api, vid), location(api, vid)
        assert vol["id"] == vid and vol["attachments"][0]["attachment_id"] == self.attachment
        assert loc["backend"] == backend and [lay["snapshot_id"] for lay in loc["layers"]] == [
            *self.snaps,
            None,
        ]
        for lay in loc["layers"][:2]:
            assert same_view(self.views[lay["snapshot_id"]], lay["path"]), (
                f"snapshot {lay['snapshot_id']} changed"
            )
        doctor = api.ok(api.volume("GET", "/ferry-doctor"))
        assert doctor["healthy"], doctor["drift"]

    def move_volume(self, backend: str) -> None:
        migrate(self.api, self.vid, backend)
        m = wait_migration(self.api, self.vid)
        assert m["status"] == "success", m


def test_the_seeds_scenario_volume_then_server_then_both_again(tier: FerryServer, tmp_path: Path) -> None:
    sc = Scenario(tier, tmp_path)
    a = location(sc.api, sc.vid)["backend"]
    b = other_backend(a)
    sc.check("hv1", a)
    sc.move_volume(b)
    sc.check("hv1", b)
    m = live_migrate(sc.api, sc.sid, "hv2")
    assert m["status"] == "completed" and (m["source_compute"], m["dest_compute"]) == ("hv1", "hv2"), m
    sc.check("hv2", b)
    sc.move_volume(a)
    sc.check("hv2", a)
    back = live_migrate(sc.api, sc.sid, None)  # scheduled: the only other host
    assert back["status"] == "completed" and back["dest_compute"] == "hv1", back
    sc.check("hv1", a)
    detail = sc.api.ok(sc.api.compute("GET", f"/servers/{sc.sid}/migrations/{back['id']}"))["migration"]
    assert detail["ferry:serials_checked"] == 1 and detail["memory_total_bytes"] > 0
    assert detail["ferry:downtime_ms"] is not None
    final = latest(tier, sc.sid, sc.vid)
    sc.api.ok(sc.api.compute("POST", f"/servers/{sc.sid}/action", json={"os-stop": None}), 202)
    wait_until("SHUTOFF", lambda: server(sc.api, sc.sid)["status"] == "SHUTOFF", timeout=60)
    path = location(sc.api, sc.vid)["layers"][-1]["path"]
    rep = verify_image(path, sc.vid, synced_seq=final.synced_seq, span_mb=SPAN_MB, first_seq=final.first_seq)
    assert rep.ok, rep.summary()


def test_refusals_are_clear_and_change_nothing(tier: FerryServer) -> None:
    api = tier.api("ferry-admin")
    sid = boot_on(api, "writer", "refused", "hv1")
    vt = api.ok(api.volume("POST", "/types", json={"volume_type": {"name": "hv1-only"}}))["volume_type"]
    specs = {"extra_specs": {"volume_backend_name": "local1"}}
    api.ok(api.volume("POST", f"/types/{vt['id']}/extra_specs", json=specs))
    attach(api, sid, create_volume(api, 1, "on-local1", volume_type="hv1-only"))
    cases = [
        ({"host": "hv2"}, 400, "local1"),  # its volume's backend is out of hv2's reach
        ({"host": "hv1"}, 400, "already runs on host hv1"),
        ({"host": "nowhere"}, 400, "nowhere"),
        ({"host": "hv2", "block_migration": True}, 400, "Block migration is not offered"),
        ({"host": 7}, 400, "host"),
        ({"host": "hv2", "ferry_bandwidth": -1}, 400, "ferry_bandwidth"),
    ]
    for args, code, says in cases:
        resp = api.compute("POST", f"/servers/{sid}/action", json={"os-migrateLive": args})
        assert resp.status_code == code and says in resp.text, (args, resp.status_code, resp.text)
    at_268 = {"OpenStack-API-Version": "compute 2.68"}
    body = {"os-migrateLive": {"host": "hv2", "block_migration": "auto", "force": True}}
    resp = api.compute("POST", f"/servers/{sid}/action", json=body, headers=at_268)
    assert resp.status_code == 400 and "force" in resp.text, resp.text
    demo = tier.api("ferry-demo")
    resp = demo.compute("POST", f"/servers/{sid}/action", json={"os-migrateLive": {"host": "hv2"}})
    assert resp.status_code in (403, 404), resp.text
    assert api.ok(api.compute("GET", f"/servers/{sid}/migrations"))["migrations"] == []
    assert server(api, sid)["OS-EXT-SRV-ATTR:host"] == "hv1" and server(api, sid)["status"] == "ACTIVE"


def _qemu_pid(tier: FerryServer, host: str, sid: str) -> int | None:
    from ferry.config import load

    pidfile = load(tier.config_path).run_dir / "hosts" / host / "servers" / sid / "qemu.pid"
    try:
        pid = int(pidfile.read_text().strip())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def _slow_migration(api: Api, sid: str, host: str) -> dict[str, Any]:
    """Start a live migration copying at 2 MiB/s (256 MiB of RAM: it stays in its copy)."""
    args = {"host": host, "block_migration": "auto", "ferry_bandwidth": 2 << 20}
    api.ok(api.compute("POST", f"/servers/{sid}/action", json={"os-migrateLive": args}), 202)

    def copying() -> dict[str, Any] | None:
        ms = api.ok(api.compute("GET", f"/servers/{sid}/migrations"))["migrations"]
        return (
            ms[0] if ms and ms[0]["ferry:step"] == "migrate" and ms[0]["memory_processed_bytes"] > 0 else None
        )

    return dict(wait_until("the memory copy", copying, timeout=60))


def test_a_destination_that_dies_or_an_abort_leaves_the_guest_running_where_it_was(tier: FerryServer) -> None:
    api = tier.api("ferry-admin")
    sid = boot_on(api, "writer", "faulty", "hv1")
    vid = create_volume(api, 1, "faulty-data")
    attach(api, sid, vid)
    wait_writing(tier, sid, vid, writes=100)
    source = _qemu_pid(tier, "hv1", sid)
    # The destination QEMU dies in the middle of the copy.
    m = _slow_migration(api, sid, "hv2")
    dest = _qemu_pid(tier, "hv2", sid)
    assert dest is not None
    os.kill(dest, 9)
    wait_until("the migration to fail", lambda: server(api, sid)["OS-EXT-STS:task_state"] is None, timeout=60)
    failed = api.ok(api.compute("GET", f"/servers/{sid}/migrations/{m['id']}"))["migration"]
    assert failed["status"] == "failed" and failed["ferry:error"], failed
    # An admin aborts another one.
    m = _slow_migration(api, sid, "hv2")
    api.ok(api.compute("DELETE", f"/servers/{sid}/migrations/{m['id']}"), 202)
    wait_until("the abort", lambda: server(api, sid)["OS-EXT-STS:task_state"] is None, timeout=60)
    aborted = api.ok(api.compute("GET", f"/servers/{sid}/migrations/{m['id']}"))["migration"]
    assert aborted["status"] == "cancelled", aborted
    # Either way: the same QEMU runs the guest on hv1, unaware; nothing is left on hv2.
    status = wait_writing(tier, sid, vid, writes=100)
    assert status.healthy and status.io_errors == 0 and status.verify_failures == 0, status
    assert _qemu_pid(tier, "hv1", sid) == source and _qemu_pid(tier, "hv2", sid) is None
    from ferry.config import load

    assert not (load(tier.config_path).run_dir / "hosts" / "hv2" / "servers" / sid).exists()
    srv = server(api, sid)
    assert srv["status"] == "ACTIVE" and srv["OS-EXT-SRV-ATTR:host"] == "hv1"
    assert api.ok(api.volume("GET", "/ferry-doctor"))["healthy"]


def test_the_stock_openstack_client_moves_a_server_and_lists_its_migrations(tier: FerryServer) -> None:
    api = tier.api("ferry-admin")
    sid = boot_on(api, "writer", "by-osc", "hv1")
    openstack = Path(sys.executable).parent / "openstack"
    env = tier.cli_env("ferry-admin")

    def osc(*args: str) -> str:
        done = subprocess.run([str(openstack), *args], env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"openstack {' '.join(args)}: {done.stdout}{done.stderr}"
        return done.stdout

    osc("server", "migrate", "--live-migration", "--host", "hv2", "--wait", sid)
    assert server(api, sid)["OS-EXT-SRV-ATTR:host"] == "hv2" and server(api, sid)["status"] == "ACTIVE"
    listed = json.loads(osc("server", "migration", "list", "--server", sid, "-f", "json"))
    assert [m["Status"] for m in listed] == ["completed"] and listed[0]["Dest Compute"] == "hv2", listed
    shown = osc("server", "show", sid, "-f", "json")
    assert json.loads(shown)["OS-EXT-SRV-ATTR:host"] == "hv2"
    # abort and force complete, each on a migration kept in its copy; `show` (of an in-progress
    # one, as Nova's API has it) by uuid: with an integer id OSC 10.5 swaps its SDK call's arguments
    slow = _slow_migration(api, sid, "hv1")
    running = json.loads(osc("server", "migration", "show", sid, slow["uuid"], "-f", "json"))
    assert running["Status"] == "running" and running["Dest Compute"] == "hv1", running
    osc("server", "migration", "abort", sid, str(slow["id"]))
    wait_until("the abort", lambda: server(api, sid)["OS-EXT-STS:task_state"] is None, timeout=60)
    assert _migration(api, sid, slow["id"])["status"] == "cancelled"
    slow = _slow_migration(api, sid, "hv1")
    osc("server", "migration", "force", "complete", sid, str(slow["id"]))
    wait_until(
        "the forced switchover", lambda: server(api, sid)["OS-EXT-STS:task_state"] is None, timeout=120
    )
    assert _migration(api, sid, slow["id"])["status"] == "completed"
    assert server(api, sid)["OS-EXT-SRV-ATTR:host"] == "hv1"


def _migration(api: Api, sid: str, mid: int) -> dict[str, Any]:
    return dict(api.ok(api.compute("GET", f"/servers/{sid}/migrations/{mid}"))["migration"])


def test_a_conductor_killed_mid_copy_is_replaced_and_one_guest_runs(tier: FerryServer) -> None:
    from testkit.hosts import api_workers, conductor_of_table

    api = tier.api("ferry-admin")
    sid = boot_on(api, "writer", "orphaned", "hv1")
    vid = create_volume(api, 1, "orphaned-data")
    attach(api, sid, vid)
    wait_writing(tier, sid, vid, writes=50)
    source = _qemu_pid(tier, "hv1", sid)
    m = _slow_migration(api, sid, "hv2")
    conductor = conductor_of_table(tier, "server_live_migrations", m["uuid"])
    pid = int(conductor.split(":")[1])
    assert pid in api_workers(tier)
    os.kill(pid, 9)
    api = tier.api("ferry-admin")  # a new connection: the old one may have been the dead worker's
    wait_until(
        "another conductor to settle it", lambda: server(api, sid)["OS-EXT-STS:task_state"] is None, 90
    )
    settled = api.ok(api.compute("GET", f"/servers/{sid}/migrations/{m['id']}"))["migration"]
    # Before its switchover the table rolls it back: the source still runs the guest.
    assert settled["status"] == "failed" and "conductor restarted" in settled["ferry:error"], settled
    assert conductor_of_table(tier, "server_live_migrations", m["uuid"]) != conductor
    assert _qemu_pid(tier, "hv1", sid) == source and _qemu_pid(tier, "hv2", sid) is None
    status = wait_writing(tier, sid, vid, writes=100)
    assert status.healthy and status.io_errors == 0 and status.verify_failures == 0, status


def test_the_source_agent_killed_mid_copy_comes_back_and_the_migration_completes(
    tier: FerryServer, agents: dict[str, AgentProcess]
) -> None:
    api = tier.api("ferry-admin")
    sid = boot_on(api, "writer", "carried", "hv1")
    vid = create_volume(api, 1, "carried-data")
    attach(api, sid, vid)
    wait_writing(tier, sid, vid, writes=50)
    m = _slow_migration(api, sid, "hv2")
    agents["hv1"].kill()
    agents["hv1"].start()  # re-adopts the guest's QEMU, whose migration kept copying
    body = {"force_complete": None}
    api.ok(api.compute("POST", f"/servers/{sid}/migrations/{m['id']}/action", json=body), 202)
    wait_until("the migration", lambda: server(api, sid)["OS-EXT-STS:task_state"] is None, timeout=120)
    done = api.ok(api.compute("GET", f"/servers/{sid}/migrations/{m['id']}"))["migration"]
    assert done["status"] == "completed", done
    assert server(api, sid)["OS-EXT-SRV-ATTR:host"] == "hv2" and _qemu_pid(tier, "hv1", sid) is None
    status = wait_writing(tier, sid, vid, writes=100)
    assert status.healthy and status.io_errors == 0 and status.verify_failures == 0, status
    assert disks(api, sid)[vid]["serial"] == vid
