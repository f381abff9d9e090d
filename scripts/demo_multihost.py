"""`scripts/many-hosts-demo.sh`: Ferry across two hypervisor hosts on this machine — the seed's
broken case, working.

An API tier of two workers and two agents (`hv1` on 127.0.0.2, `hv2` on 127.0.0.3) over
PostgreSQL; a guest on each host writing and verifying; the volume of the guest on `hv2`, with a
live snapshot, migrated live to the other backend while that host's agent is killed and
restarted; then the server live-migrated to `hv1` (`ferry server migrate --wait`), the volume
moved back under it, and the server live-migrated back with the stock client
(`openstack server migrate --live-migration --host hv2 --wait`). After each step the guest's
disk serial is checked against the volume id on whichever host runs it; at the end the data is
verified block by block. Everything started is stopped at the end (the guests too).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make `testkit` (test support, not installed) importable
    sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402

from testkit.guest import ensure_guest  # noqa: E402
from testkit.hosts import API_TIER, AgentProcess, boot_on  # noqa: E402
from testkit.scenario import (  # noqa: E402
    attach,
    create_volume,
    latest,
    location,
    migrate,
    migration,
    other_backend,
    register_guest,
    server,
    snapshot,
    wait_migration,
    wait_until,
    wait_writing,
)
from testkit.server import FerryServer, reset_database  # noqa: E402
from testkit.verify import verify_image  # noqa: E402

out = Console()
SPAN_MB = 16


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--database-url", required=True, help="PostgreSQL (scripts/pg-start.sh prints one)")
    p.add_argument("--guest-dir", type=Path, default=Path("build/guest"))
    p.add_argument("--data-dir", type=Path, default=Path("build/many-hosts"))
    args = p.parse_args()
    ensure_guest(args.guest_dir)
    shutil.rmtree(args.data_dir, ignore_errors=True)
    reset_database(args.database_url)
    srv = FerryServer(
        args.data_dir.resolve(), guest_dir=args.guest_dir.resolve(), database_url=args.database_url
    )
    agents = [AgentProcess(srv, "hv1", "127.0.0.2"), AgentProcess(srv, "hv2", "127.0.0.3")]
    try:
        return tour(srv, agents, args.guest_dir)
    finally:
        srv.shutdown()  # deletes the servers through the agents, stops the tier, reaps any guest left
        for agent in agents:
            agent.stop()


def tour(srv: FerryServer, agents: list[AgentProcess], guest_dir: Path) -> int:
    register_guest(srv, guest_dir, "guest", rate=200, span_mb=SPAN_MB)
    srv.start(args=API_TIER, timeout=60)
    for agent in agents:
        agent.start()
    out.rule("[bold]Ferry across two hosts: API tier (2 workers) + agents hv1, hv2 over PostgreSQL")
    cli(srv, "ferry", "host", "list")
    admin = srv.api("ferry-admin")
    sids = {a.name: boot_on(admin, "guest", f"vm-{a.name}", a.name) for a in agents}
    for host, sid in sids.items():
        out.print(f"server vm-{host} runs on {server(admin, sid)['OS-EXT-SRV-ATTR:host']}")
    vid = create_volume(admin, 1, "data")
    attach(admin, sids["hv2"], vid)
    wait_writing(srv, sids["hv2"], vid, writes=100)
    snapshot(admin, vid, "before")
    loc = location(admin, vid)
    dest = other_backend(loc["backend"])
    out.print(f"migrating volume {vid} live from {loc['backend']} to {dest} under vm-hv2 …")
    migrate(admin, vid, dest, speed=1 << 20)
    wait_until("the mirror", lambda: migration(admin, vid)["phase"] == "mirror", timeout=120)
    out.print("[yellow]SIGKILL of hv2's agent mid-mirror[/yellow]: its QEMU and the mirror job keep running")
    agents[1].kill()
    agents[1].start()
    out.print("agent hv2 restarted: it re-adopted its guest")
    admin.ok(
        admin.volume(
            "POST", f"/volumes/{vid}/action", json={"ferry-migrate_set_speed": {"bytes_per_sec": 0}}
        ),
        202,
    )
    m = wait_migration(admin, vid)
    out.print(f"migration {m['status']}: pivot {m['pivot_ms']:.1f} ms, error: {m['error']}")
    sid = sids["hv2"]
    serial_checked(srv, sid, vid)
    out.rule("the server moves to hv1, its volume moves back under it, the server moves back")
    cli(srv, "ferry", "server", "migrate", "vm-hv2", "--to", "hv1", "--wait")
    serial_checked(srv, sid, vid)
    migrate(admin, vid, loc["backend"])
    back = wait_migration(admin, vid)
    out.print(f"volume back on {loc['backend']} under vm-hv2 on hv1: {back['status']}")
    serial_checked(srv, sid, vid)
    cli(srv, "openstack", "server", "migrate", "--live-migration", "--host", "hv2", "--wait", sid)
    serial_checked(srv, sid, vid)
    cli(srv, "openstack", "server", "migration", "list", "--server", sid)
    after = wait_writing(srv, sids["hv2"], vid, writes=100)
    out.print(
        f"guest: {after.seq} writes, {after.io_errors} I/O errors, {after.verify_failures} verify failures"
    )
    cli(srv, "openstack", "hypervisor", "list")
    final = latest(srv, sids["hv2"], vid)
    admin.ok(admin.compute("POST", f"/servers/{sids['hv2']}/action", json={"os-stop": None}), 202)
    wait_until("SHUTOFF", lambda: server(admin, sids["hv2"])["status"] == "SHUTOFF", timeout=60)
    path = location(admin, vid)["layers"][-1]["path"]
    report = verify_image(path, vid, synced_seq=final.synced_seq, span_mb=SPAN_MB, first_seq=final.first_seq)
    out.print(("[green]" if report.ok else "[red]") + report.summary())
    ok = m["status"] == back["status"] == "success" and after.io_errors == 0 and report.ok
    out.rule("[bold green]done" if ok else "[bold red]FAILED")
    return 0 if ok else 1


def serial_checked(srv: FerryServer, sid: str, vid: str) -> None:
    """The guest writes on; QEMU, on whichever host runs it, holds the volume id as the serial."""
    admin = srv.api("ferry-admin")
    status = wait_writing(srv, sid, vid, writes=50)
    host = server(admin, sid)["OS-EXT-SRV-ATTR:host"]
    disks = admin.ok(admin.compute("GET", f"/servers/{sid}/ferry-disks"))["disks"]
    serial = next(d["serial"] for d in disks if d["volume_id"] == vid)
    if serial != vid or status.io_errors or status.verify_failures:
        raise RuntimeError(f"on {host}: serial {serial}, {status}")
    out.print(f"  on {host}: serial = volume id, {status.seq} writes, 0 I/O errors, 0 verify failures")


def cli(srv: FerryServer, *argv: str) -> None:
    """Run the `ferry` or `openstack` CLI of this venv as the admin."""
    env = {
        **os.environ,
        "OS_CLIENT_CONFIG_FILE": str(srv.data_dir / "clouds.yaml"),
        "OS_CLOUD": "ferry-admin",
    }
    binary = Path(sys.executable).parent / argv[0]
    out.print(f"[dim]$ {' '.join(argv)}[/dim]")
    subprocess.run([str(binary), *argv[1:]], env=env, check=True)


if __name__ == "__main__":
    sys.exit(main())
