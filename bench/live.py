"""Figure 10: a server's live migration between two hosts (issue 12), on PostgreSQL.

Ferry: an API tier (2 workers) and two agents (127.0.0.2, 127.0.0.3); a guest (256 MiB, the
steady workload: 200 writes/s of 4 KiB on its volume) live-migrated back and forth
`live_migrations` times. Total: the server's own times (`created_at` → `updated_at` of the
completed record: prepare, verify, copy, verify again, switchover, commit, quit the source).
Guest-visible downtime: the largest `win_max_write_ms` of the first two one-second windows the
guest reports on its new host (they span the switchover) against the largest of the windows
before it, on the old host.

Baseline: the same QEMU command line (Ferry's driver builds it: same machine, devices, disks,
serial) started by hand on two run directories, and a bare QMP migration between them with the
same capabilities and limits (start the destination, `migrate`, `migrate-continue` at the
pause, quit the source) — no database, queue, agents or verification. Same guest, same
workload, alternating with Ferry's runs. Targets: total ≤ 1.05x or ≤ +0.3 s; downtime within
+50 ms of the bare run's.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path
from typing import Any

from bench.core import Row, Settings, fmt_ms, median
from bench.env import epoch
from bench.hosts import database
from ferry.domain.live import LiveSettings, LiveState
from ferry.domain.model import DiskChain, LayerFile
from ferry.drivers.hypervisor.base import ServerSpec
from ferry.drivers.hypervisor.qemu import QemuDriver
from ferry.services.guest_image import GUEST_CMDLINE, guest_paths
from testkit.guest import DiskStatus, console_offset, parse_status
from testkit.hosts import API_TIER, AgentProcess, boot_on
from testkit.scenario import (
    attach,
    console_path,
    create_volume,
    register_guest,
    server,
    wait_until,
    wait_writing,
)
from testkit.server import Api, FerryServer

STEADY = {"rate": 200, "span_mb": 16, "sync_every": 16}
TOTAL_RATIO, TOTAL_EXTRA_S, DOWNTIME_EXTRA_MS = 1.05, 0.3, 50.0


def windows(path: Path, since: int = 0) -> list[DiskStatus]:
    return parse_status(path.read_bytes()[since:].decode(errors="replace"))


def first_windows(path: Path, n: int, timeout: float = 30) -> list[DiskStatus]:
    """The first `n` status windows a guest prints on its new host's console."""
    def ready() -> list[DiskStatus] | None:
        seen = windows(path) if path.exists() else []
        return seen[:n] if len(seen) >= n else None

    return list(wait_until(f"{n} windows", ready, timeout))


# -- Ferry ---------------------------------------------------------------------------------
def ferry_runs(srv: FerryServer, api: Api, sid: str, vid: str, rounds: int) -> list[dict[str, Any]]:
    out = []
    for k in range(rounds):
        dest = "hv2" if k % 2 == 0 else "hv1"
        before = console_path(srv, sid)
        idle = windows(before, max(console_offset(before) - 4096, 0))[-3:]
        body = {"os-migrateLive": {"host": dest, "block_migration": "auto"}}
        api.ok(api.compute("POST", f"/servers/{sid}/action", json=body), 202)
        wait_until("idle", lambda: server(api, sid)["OS-EXT-STS:task_state"] is None, timeout=120)
        m = api.ok(api.compute("GET", "/os-migrations"))["migrations"][0]
        if m["status"] != "completed":
            raise RuntimeError(f"live migration {m['status']}")
        after = first_windows(console_path(srv, sid), 2)
        detail = api.ok(api.compute("GET", f"/servers/{sid}/migrations/{m['id']}"))["migration"]
        out.append({
            "total_s": round(epoch(m["updated_at"]) - epoch(m["created_at"]), 3),
            "qemu_downtime_ms": detail["ferry:downtime_ms"],
            "idle_max_ms": max(w.win_max_write_ms for w in idle),
            "switchover_max_ms": max(w.win_max_write_ms for w in after),
        })  # fmt: skip
        wait_writing(srv, sid, vid, writes=50)
    return out


# -- bare QMP --------------------------------------------------------------------------------
async def bare_runs(spec: ServerSpec, roots: tuple[Path, Path], rounds: int) -> list[dict[str, Any]]:
    hosts = [QemuDriver(roots[0]), QemuDriver(roots[1])]
    addresses = ("127.0.0.2", "127.0.0.3")
    await hosts[0].spawn(spec)
    out = []
    try:
        path = hosts[0].run_dir(spec.server_id).console
        wait_until("the workload", lambda: len(windows(path)) >= 3, timeout=60)
        for k in range(rounds):
            src, dst = hosts[k % 2], hosts[(k + 1) % 2]
            before = src.run_dir(spec.server_id).console
            idle = windows(before, max(console_offset(before) - 4096, 0))[-3:]
            t0 = time.monotonic()
            slots = await src.disk_slots(spec.server_id)
            uri = await dst.prepare_incoming(spec, slots, addresses[(k + 1) % 2])
            await src.start_live_migration(spec.server_id, uri, LiveSettings())
            await src.wait_live(spec.server_id, (LiveState.PRE_SWITCHOVER,), 300)
            await src.continue_live(spec.server_id)
            done = await src.wait_live(spec.server_id, (LiveState.COMPLETED,), 120)
            await src.destroy(spec.server_id)
            total = time.monotonic() - t0
            after = await asyncio.to_thread(first_windows, dst.run_dir(spec.server_id).console, 2)
            out.append({
                "total_s": round(total, 3), "qemu_downtime_ms": done.downtime_ms,
                "idle_max_ms": max(w.win_max_write_ms for w in idle),
                "switchover_max_ms": max(w.win_max_write_ms for w in after),
            })  # fmt: skip
            await asyncio.to_thread(time.sleep, 3)  # three windows of the workload on its new host
    finally:
        for h in hosts:
            await h.destroy(spec.server_id)
    return out


def bare_spec(guest_dir: Path, disk: Path, volume_id: str) -> ServerSpec:
    kernel, initrd = guest_paths(guest_dir)
    return ServerSpec(
        server_id="00000000-0000-4000-8000-00000000b0b0", vcpus=1, ram_mb=256, kernel=str(kernel),
        initrd=str(initrd), cmdline=GUEST_CMDLINE(STEADY["rate"], STEADY["span_mb"], STEADY["sync_every"]),
        disks=(DiskChain(volume_id, (LayerFile(str(disk)),)),),
    )  # fmt: skip


# -- the figure ------------------------------------------------------------------------------
def run_live(work: Path, guest_dir: Path, s: Settings) -> list[Row]:
    rounds = 2 if s.quick else s.live_migrations
    url = database("ferry_bench_live")
    srv = FerryServer(work / "live", guest_dir=guest_dir, database_url=url)
    agents = [AgentProcess(srv, "hv1", "127.0.0.2"), AgentProcess(srv, "hv2", "127.0.0.3")]
    try:
        register_guest(srv, guest_dir, "steady", **STEADY)
        srv.start(args=API_TIER, timeout=60)
        for agent in agents:
            agent.start()
        api = srv.api("ferry-admin")
        sid = boot_on(api, "steady", "bench-live", "hv1")
        vid = create_volume(api, 1, "bench-live")
        attach(api, sid, vid)
        wait_writing(srv, sid, vid, writes=100)
        ferry = ferry_runs(srv, api, sid, vid, rounds)
        disk = work / "bare.qcow2"
        api_loc = api.ok(api.volume("GET", f"/volumes/{vid}/location"))["location"]
        shutil.copy(api_loc["layers"][-1]["path"], disk)
    finally:
        srv.shutdown()
        for agent in agents:
            agent.stop()
    roots = (work / "bare-a" / "servers", work / "bare-b" / "servers")
    bare = asyncio.run(bare_runs(bare_spec(guest_dir, disk, vid), roots, rounds))
    return _rows(ferry, bare)


def _rows(ferry: list[dict[str, Any]], bare: list[dict[str, Any]]) -> list[Row]:
    ft, bt = median([r["total_s"] for r in ferry]), median([r["total_s"] for r in bare])
    fd = median([r["switchover_max_ms"] - r["idle_max_ms"] for r in ferry])
    bd = median([r["switchover_max_ms"] - r["idle_max_ms"] for r in bare])
    met_total = ft <= bt * TOTAL_RATIO or ft - bt <= TOTAL_EXTRA_S
    data = {"ferry": ferry, "bare": bare}
    return [
        Row("10a", "Live migration of a server between hosts (256 MiB, guest writing): total",
            f"median {ft:.2f} s", f"bare QMP migrate: median {bt:.2f} s",
            f"{ft / bt:.2f}x ({ft - bt:+.2f} s)",
            f"≤ {TOTAL_RATIO:.2f}x or ≤ +{TOTAL_EXTRA_S:.1f} s", met_total, data),
        Row("10b", "Live migration: guest's max write latency in the switchover windows, above idle",
            f"median +{fmt_ms(fd)}", f"bare: median +{fmt_ms(bd)}", f"{fd - bd:+.1f} ms",
            f"≤ +{DOWNTIME_EXTRA_MS:.0f} ms of bare", fd - bd <= DOWNTIME_EXTRA_MS, {}),
    ]  # fmt: skip
