"""Issue 11 acceptance, on PostgreSQL: an API tier of two workers (each also a conductor) and two
hypervisor agents on their own loopback addresses, real guests writing and verifying throughout.
The agent running the guest, the conductor driving the migration and PostgreSQL itself are each
killed in the middle of a mirror; every migration still completes with the guest unaware. An
agent that stays down is `down` within `service_down_time`, nothing is scheduled there, and the
migration waiting on it waits (its rollback needs that host) until it returns."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from testkit.hosts import API_TIER, AgentProcess, api_workers, boot_on, conductor_of_table
from testkit.scenario import (
    attach,
    create_volume,
    delete_snapshot,
    latest,
    location,
    migrate,
    migration,
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
SLOW = 512 * 1024
"""A mirror speed (bytes/s) that keeps a migration in its mirror for a while."""
DOWN_AFTER = 60.0  # Nova's service_down_time, unchanged
SPAN_MB = 16


@pytest.fixture(scope="module")
def tier(tmp_path_factory: pytest.TempPathFactory, guest_dir: Path) -> Iterator[FerryServer]:
    if not os.environ.get("FERRY_TEST_DATABASE_URL", "").startswith("postgresql"):
        pytest.skip("many hosts coordinate through PostgreSQL (scripts/pg-test.sh runs this)")
    srv = make_server(tmp_path_factory.mktemp("ferry-hosts"), guest_dir=guest_dir)
    cfg = srv.config_path.read_text()
    cfg = re.sub(r"lease_s = .*", "lease_s = 6.0", cfg)  # a dead conductor's lease lapses soon
    cfg = re.sub(r"heartbeat_interval = .*", "heartbeat_interval = 2.0", cfg)
    srv.config_path.write_text(cfg)
    register_guest(srv, guest_dir, "guest-flat-out", rate=0, span_mb=SPAN_MB)
    srv.start(args=API_TIER, timeout=60)
    yield srv
    srv.shutdown()


@pytest.fixture(scope="module")
def agents(tier: FerryServer) -> Iterator[dict[str, AgentProcess]]:
    hosts = {name: AgentProcess(tier, name, f"127.0.0.{i + 2}") for i, name in enumerate(("hv1", "hv2"))}
    for agent in hosts.values():
        agent.start()
    yield hosts
    tier.delete_servers()
    for agent in hosts.values():
        agent.stop()
    tier.kill_guests()


@pytest.fixture(scope="module")
def guests(tier: FerryServer, agents: dict[str, AgentProcess]) -> dict[str, str]:
    """A server on each host."""
    admin = tier.api("ferry-admin")
    return {host: boot_on(admin, "guest-flat-out", f"on-{host}", host) for host in agents}


def start_slow_migration(api: Api, vid: str) -> dict[str, Any]:
    migrate(api, vid, other_backend(location(api, vid)["backend"]), speed=SLOW)
    return dict(wait_until("the mirror to run", lambda: _mirroring(api, vid), timeout=120))


def _mirroring(api: Api, vid: str) -> dict[str, Any] | None:
    m = migration(api, vid)
    assert m["status"] in ("queued", "running"), m
    return m if m["phase"] == "mirror" and m["bytes_done"] > 0 else None


def full_speed(api: Api, vid: str) -> None:
    body = {"ferry-migrate_set_speed": {"bytes_per_sec": 0}}
    api.ok(api.volume("POST", f"/volumes/{vid}/action", json=body), 202)


def attached_volume(tier: FerryServer, sid: str, name: str) -> str:
    admin = tier.api("ferry-admin")
    vid = create_volume(admin, 1, name)
    attach(admin, sid, vid)
    wait_writing(tier, sid, vid, writes=50)
    return vid


def conductor_of(tier: FerryServer, migration_id: str) -> str:
    return conductor_of_table(tier, "migrations", migration_id)


def assert_guest_sound(tier: FerryServer, sid: str, vid: str) -> None:
    status = wait_writing(tier, sid, vid, writes=50)
    assert status.healthy and status.io_errors == 0 and status.verify_failures == 0, status


# -- acceptance 1: a live migration on the second host, with snapshots -----------------------------
def test_a_volume_attached_on_the_second_host_migrates_live(
    tier: FerryServer, guests: dict[str, str], tmp_path: Path
) -> None:
    admin = tier.api("ferry-admin")
    assert server(admin, guests["hv1"])["OS-EXT-SRV-ATTR:host"] == "hv1"
    assert server(admin, guests["hv2"])["OS-EXT-SRV-ATTR:host"] == "hv2"
    first = attached_volume(tier, guests["hv1"], "on-hv1")
    vid = attached_volume(tier, guests["hv2"], "on-hv2")
    s1 = snapshot(admin, vid, "s1")
    wait_writing(tier, guests["hv2"], vid, writes=50)
    s2 = snapshot(admin, vid, "s2")
    wait_writing(tier, guests["hv2"], vid, writes=50)
    before, loc = volume(admin, vid), location(admin, vid)
    views = {
        lay["snapshot_id"]: flat_copy(lay["path"], tmp_path / f"{lay['id']}.qcow2")
        for lay in loc["layers"][:2]
    }
    dest = other_backend(loc["backend"])
    migrate(admin, vid, dest)
    m = wait_migration(admin, vid)
    assert m["status"] == "success", m
    assert_guest_sound(tier, guests["hv2"], vid)
    assert_guest_sound(tier, guests["hv1"], first)  # the other host's guest never noticed either
    vol, loc2 = volume(admin, vid), location(admin, vid)
    assert vol["id"] == vid and vol["status"] == "in-use" and vol["migration_status"] == "success"
    assert vol["attachments"][0]["attachment_id"] == before["attachments"][0]["attachment_id"]
    assert vol["os-vol-mig-status-attr:name_id"] != before["os-vol-mig-status-attr:name_id"]
    assert loc2["backend"] == dest and [lay["snapshot_id"] for lay in loc2["layers"]] == [s1, s2, None]
    for lay in loc2["layers"][:2]:
        assert same_view(views[lay["snapshot_id"]], lay["path"]), f"snapshot {lay['snapshot_id']} changed"
    on_guest = disks(admin, guests["hv2"])[vid]
    assert on_guest["serial"] == vid and on_guest["files"] == [
        lay["path"] for lay in reversed(loc2["layers"])
    ]
    assert not Path(loc["directory"]).exists()
    assert m["pivot_ms"] is not None and any("serial checked" in str(e["detail"]) for e in m["steps"])
    delete_snapshot(admin, s1)  # the migrated chain is live-usable through the agent
    assert_guest_sound(tier, guests["hv2"], vid)


# -- acceptance 2: SIGKILL of the agent, of the conductor, a PostgreSQL restart ---------------------
def test_the_agent_killed_mid_mirror_readopts_its_guest_and_the_migration_completes(
    tier: FerryServer, agents: dict[str, AgentProcess], guests: dict[str, str]
) -> None:
    admin, sid = tier.api("ferry-admin"), guests["hv2"]
    vid = attached_volume(tier, sid, "agent-kill")
    start_slow_migration(admin, vid)
    qemu = agents["hv2"].qemu_pids()[sid]
    agents["hv2"].kill()
    since = latest(tier, sid, vid)
    assert agents["hv2"].qemu_pids().get(sid) == qemu, "the guest's QEMU died with its agent"
    assert wait_writing(tier, sid, vid, writes=50).seq > since.seq  # the guest writes on, unmanaged
    running = migration(admin, vid)
    assert running["status"] == "running" and running["phase"] == "mirror", running
    agents["hv2"].start()
    full_speed(admin, vid)
    m = wait_migration(admin, vid)
    assert m["status"] == "success", m
    assert agents["hv2"].qemu_pids()[sid] == qemu  # the same QEMU: re-adopted, never restarted
    assert_guest_sound(tier, sid, vid)
    assert disks(admin, sid)[vid]["serial"] == vid


def test_the_conductor_killed_mid_mirror_is_replaced_and_the_api_keeps_answering(
    tier: FerryServer, guests: dict[str, str]
) -> None:
    admin, sid = tier.api("ferry-admin"), guests["hv1"]
    vid = attached_volume(tier, sid, "conductor-kill")
    m = start_slow_migration(admin, vid)
    first = conductor_of(tier, m["id"])
    pid = int(first.split(":")[1])
    assert pid in api_workers(tier), f"{first} is not one of this tier's workers"
    os.kill(pid, signal.SIGKILL)
    admin = tier.api("ferry-admin")  # a new connection: the one to the dead worker died with it
    for _ in range(20):  # the other worker answers at once: no request may fail
        assert admin.volume("GET", f"/volumes/{vid}").status_code == 200
    full_speed(admin, vid)  # through whichever worker: the agent sets it on the running job
    done = wait_migration(admin, vid, timeout=180)
    assert done["status"] == "success", done
    assert conductor_of(tier, m["id"]) != first
    assert any(e["event"] == "restarted" for e in done["steps"]), done["steps"]
    assert_guest_sound(tier, sid, vid)


def test_a_postgresql_restart_mid_mirror_is_carried_through(
    tier: FerryServer, guests: dict[str, str]
) -> None:
    cluster = _local_cluster()
    admin, sid = tier.api("ferry-admin"), guests["hv2"]
    vid = attached_volume(tier, sid, "pg-restart")
    start_slow_migration(admin, vid)
    subprocess.run(["pg_ctlcluster", *cluster, "restart", "-m", "fast"], check=True)
    wait_until("the API tier to answer again", lambda: _answers(admin, vid), timeout=60)
    full_speed(admin, vid)
    m = wait_migration(admin, vid, timeout=180)
    assert m["status"] == "success", m
    assert_guest_sound(tier, sid, vid)


def _local_cluster() -> list[str]:
    url = os.environ["FERRY_TEST_DATABASE_URL"]
    if shutil.which("pg_ctlcluster") is None or "@127.0.0.1" not in url:
        pytest.skip("restarts only the local Debian PostgreSQL cluster")
    ver = sorted(os.listdir("/usr/lib/postgresql"), key=int)[-1]
    return [ver, "main"]


def _answers(api: Api, vid: str) -> bool:
    try:
        return api.volume("GET", f"/volumes/{vid}").status_code == 200
    except httpx.TransportError:
        return False


# -- acceptance 3: an agent that stays down -------------------------------------------------------
def test_an_agent_that_stays_down_is_down_in_time_and_its_migration_waits_for_it(
    tier: FerryServer, agents: dict[str, AgentProcess], guests: dict[str, str]
) -> None:
    admin, sid = tier.api("ferry-admin"), guests["hv1"]
    vid = attached_volume(tier, sid, "host-down")
    start_slow_migration(admin, vid)
    agents["hv1"].kill()
    died = time.monotonic()
    wait_until("hv1 down", lambda: _state(admin, "hv1") == "down", timeout=DOWN_AFTER + 15)
    assert time.monotonic() - died <= DOWN_AFTER + 5  # one heartbeat interval, and the poll
    body = {"server": {"name": "nope", "imageRef": "guest-flat-out", "flavorRef": "tiny", "host": "hv1"}}
    refused = admin.compute("POST", "/servers", json=body)
    assert refused.status_code == 400 and "hv1" in refused.text, refused.text
    # The migration cannot be rolled back without the guest's QEMU: it waits, it does not fail.
    wait_until(
        "a keeper tick",
        lambda: any("waits: host hv1 is down" in line for line in _tier_log(tier)),
        timeout=30,
    )
    assert migration(admin, vid)["status"] == "running"
    agents["hv1"].start()
    wait_until("hv1 up", lambda: _state(admin, "hv1") == "up", timeout=30)
    full_speed(admin, vid)
    m = wait_migration(admin, vid, timeout=180)
    assert m["status"] == "success", m
    assert_guest_sound(tier, sid, vid)


def _state(api: Api, host: str) -> str:
    hyps = api.ok(api.compute("GET", "/os-hypervisors/detail"))["hypervisors"]
    return str(next(h["state"] for h in hyps if h["hypervisor_hostname"] == host))


def _tier_log(tier: FerryServer) -> list[str]:
    return tier.log_tail(200_000).splitlines()


def test_no_request_failed_inside_the_tier_or_an_agent(
    tier: FerryServer, agents: dict[str, AgentProcess]
) -> None:
    assert tier.log_problems() == []
    for agent in agents.values():
        assert "Traceback" not in agent.log_path.read_text(errors="replace"), agent.log_tail()


def test_the_final_images_verify(tier: FerryServer, guests: dict[str, str]) -> None:
    """Stop each guest and verify every block it wrote on each volume it had."""
    admin = tier.api("ferry-admin")
    for sid in guests.values():
        vids = list(disks(admin, sid))
        finals = {vid: latest(tier, sid, vid) for vid in vids}
        admin.ok(admin.compute("POST", f"/servers/{sid}/action", json={"os-stop": None}), 202)
        wait_until("SHUTOFF", lambda s=sid: server(admin, s)["status"] == "SHUTOFF", timeout=60)
        for vid, final in finals.items():
            path = location(admin, vid)["layers"][-1]["path"]
            rep = verify_image(
                path, vid, synced_seq=final.synced_seq, span_mb=SPAN_MB, first_seq=final.first_seq
            )
            assert rep.ok, rep.summary()
