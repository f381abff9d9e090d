"""`make demo`: the headline tour on the embedded default.

Boots the test guest, attaches a volume, shows the guest's live I/O, takes two live snapshots
while it writes, migrates the volume live from `fast` to `bulk` (a retype) with the CLI's
progress bar, then verifies the data, every snapshot and the disk serial, and prints the summary.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make `testkit` (test support, not installed) importable
    sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402

from testkit.guest import console_offset, ensure_guest, wait_for_status  # noqa: E402
from testkit.scenario import (  # noqa: E402
    attach,
    boot,
    console_path,
    create_volume,
    location,
    snapshot,
    volume,
    wait_writing,
)
from testkit.server import FerryServer  # noqa: E402
from testkit.verify import verify_image  # noqa: E402

out = Console()


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--guest-dir", type=Path, default=Path("build/guest"))
    p.add_argument("--data-dir", type=Path, default=Path("build/demo"))
    args = p.parse_args()
    ensure_guest(args.guest_dir)
    shutil.rmtree(args.data_dir, ignore_errors=True)
    srv = FerryServer(args.data_dir.resolve(), guest_dir=args.guest_dir.resolve())
    srv.start()
    out.rule("[bold]Ferry demo: live migration of a volume with snapshots")
    out.print(
        f"control plane at {srv.base}, data in {args.data_dir} (OS_CLIENT_CONFIG_FILE="
        f"{srv.data_dir / 'clouds.yaml'} OS_CLOUD=ferry)"
    )
    try:
        return tour(srv)
    finally:
        srv.shutdown()


def cli(srv: FerryServer, *argv: str) -> None:
    subprocess.run([sys.executable, "-m", "ferry.cli.main", *argv], env=srv.cli_env("ferry"), check=True)


def tour(srv: FerryServer) -> int:
    api = srv.api("ferry-admin")
    cli(srv, "backend", "list")
    for name in ("fast", "bulk"):  # each type keeps its volumes on its backend
        api.volume(
            "POST",
            "/types",
            json={"volume_type": {"name": name, "extra_specs": {"volume_backend_name": name}}},
        )
    out.print("\n[bold]1. boot the test guest and attach a 1 GiB volume on backend 'fast'")
    sid = boot(api, "ferry-test-guest", "demo-guest")
    vid = create_volume(api, 1, "demo-data", volume_type="fast")
    attach(api, sid, vid)
    out.print(f"server {sid}\nvolume {vid}")
    out.print("\n[bold]2. the guest's workload, live (writes checksummed blocks, re-reads and checks them)")
    path = console_path(srv, sid)
    wait_writing(srv, sid, vid, writes=20)
    since = console_offset(path)
    for _ in range(4):
        st = wait_for_status(path, lambda s: vid.startswith(s.serial), 30, since=since)
        since = console_offset(path)
        out.print(
            f"  guest {st.dev} serial={st.serial} seq={st.seq} writes/s={st.wps} "
            f"max write={st.max_write_ms:.1f} ms errors={st.io_errors} verify failures={st.verify_failures}"
        )
    out.print("\n[bold]3. two live snapshots while the guest writes")
    snaps = []
    for name in ("before-upgrade", "after-upgrade"):
        wait_writing(srv, sid, vid, writes=40)
        snaps.append(snapshot(api, vid, name))
        out.print(f"  snapshot {name}: {snaps[-1]}")
    cli(srv, "snapshot", "list", "--volume", vid)
    before = location(api, vid)
    # Type 'fast' keeps its volumes on fast (a migrate to bulk is refused, as Cinder's scheduler
    # refuses it): the way there is a retype, which migrates the volume live.
    out.print("\n[bold]4. migrate the volume live: fast → bulk (retype to type 'bulk', on demand)")
    cli(srv, "volume", "retype", vid, "bulk", "--migration-policy", "on-demand", "--wait")
    out.print("\n[bold]5. verify")
    after = location(api, vid)
    st = wait_writing(srv, sid, vid, writes=60)
    disks = {d["volume_id"]: d for d in api.ok(api.compute("GET", f"/servers/{sid}/ferry-disks"))["disks"]}
    checks = {
        "volume id unchanged": volume(api, vid)["id"] == vid,
        "now on backend bulk": after["backend"] == "bulk",
        "snapshot ids unchanged": [lay["snapshot_id"] for lay in after["layers"][:-1]] == snaps,
        "old files removed": not Path(before["directory"]).exists(),
        "disk serial (qom-get) == volume id": disks[vid]["serial"] == vid,
        "guest runs on the new files": disks[vid]["files"]
        == [lay["path"] for lay in reversed(after["layers"])],
        "guest: 0 I/O errors, 0 verify failures": st.healthy,
    }
    for lay in after["layers"]:
        rep = verify_image(lay["path"], vid)
        label = (
            f"snapshot {lay['snapshot_id'][:8]} view verifies"
            if lay["snapshot_id"]
            else "active view verifies"
        )
        checks[f"{label} ({rep.valid} blocks)"] = rep.ok and rep.valid > 0
    for name, ok in checks.items():
        out.print(f"  {'[green]ok[/green]  ' if ok else '[red]FAIL[/red]'} {name}")
    ok = all(checks.values())
    out.rule("[bold green]demo passed" if ok else "[bold red]demo failed")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
