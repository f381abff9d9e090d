"""Figure 9: many hosts (issue 11), both on PostgreSQL (Debian's, started by `scripts/pg-start.sh`).

9a — the orchestration overhead of a live volume migration through the host queue. The same
attached volume (the guest writing slowly) is migrated back and forth `hosts_migrations` times by
an all-in-one `ferry serve` (the baseline: every driver call is a method call), then by an API tier
(`--role api --workers 2`) whose only hypervisor is one `ferry agent` (every driver call an action
in PostgreSQL, claimed and answered over LISTEN/NOTIFY). Each duration is the server's own
(`finished_at - created_at`); the figure is the difference of the medians (target ≤ +0.1 s).

9b — `GET volumes/detail?limit=1000` over 10,000 volumes from 16 concurrent clients against the API
tier (2 workers), each client its own keep-alive connection; the baseline is the same load on the
all-in-one (one process). Target: p99 ≤ 100 ms, absolute (the issue's). Clients read the bytes and
do not parse them: the machine's 2 cores are shared by clients and servers alike.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from bench.core import Row, Settings, fmt_ms, median, percentile
from bench.env import epoch
from bench.scale import PAGE, insert_volumes
from ferry.config import load
from ferry.db.engine import make_engine
from testkit.hosts import API_TIER, AgentProcess, boot_on
from testkit.scenario import (
    attach,
    create_volume,
    location,
    migrate,
    other_backend,
    register_guest,
    wait_migration,
    wait_writing,
)
from testkit.server import Api, FerryServer, reset_database

ROOT = Path(__file__).resolve().parents[1]
OVERHEAD_TARGET_S = 0.1
P99_TARGET_MS = 100.0
CLIENTS = 16


def database(name: str) -> str:
    out = subprocess.run(
        ["bash", str(ROOT / "scripts" / "pg-start.sh"), name], check=True, capture_output=True, text=True
    )
    url = out.stdout.strip().splitlines()[-1]
    reset_database(url)
    return url


@contextmanager
def deployment(root: Path, guest_dir: Path, url: str, tier: bool) -> Iterator[tuple[FerryServer, str]]:
    """An all-in-one (host `ferry`), or an API tier with one agent (host `hv1`), on `url`."""
    srv = FerryServer(root, guest_dir=guest_dir, database_url=url)
    agent = AgentProcess(srv, "hv1", "127.0.0.2") if tier else None
    try:
        srv.start(args=API_TIER if tier else (), timeout=60)
        if agent is not None:
            agent.start()
        yield srv, ("hv1" if tier else "ferry")
    finally:
        srv.shutdown()
        if agent is not None:
            agent.stop()


# -- 9a ---------------------------------------------------------------------------------------
def migration_seconds(srv: FerryServer, host: str, guest_dir: Path, rounds: int) -> list[float]:
    register_guest(srv, guest_dir, "slow-writer", rate=20, span_mb=16)
    api = srv.api("ferry-admin")
    sid = boot_on(api, "slow-writer", "bench", host)
    vid = create_volume(api, 1, "moved")
    attach(api, sid, vid)
    wait_writing(srv, sid, vid, writes=20)
    out: list[float] = []
    for _ in range(rounds):
        migrate(api, vid, other_backend(location(api, vid)["backend"]))
        m = wait_migration(api, vid)
        if m["status"] != "success":
            raise RuntimeError(f"migration failed: {m}")
        out.append(epoch(m["finished_at"]) - epoch(m["created_at"]))
    return out


# -- 9b ---------------------------------------------------------------------------------------
def fill(srv: FerryServer, count: int) -> None:
    auth = srv.cloud("ferry-admin")
    engine = make_engine(load(srv.config_path).database_url)
    try:
        insert_volumes(engine, auth["project_name"], auth["username"], count)
    finally:
        engine.dispose()


def concurrent_detail(api: Api, requests_each: int) -> tuple[list[float], float]:
    """Latencies (ms) of `CLIENTS` clients, each sending `requests_each` first-page requests,
    and the pages served per second over the whole run."""
    url = f"{api.base}/volume/v3/{api.project_id}/volumes/detail"
    headers = {"X-Auth-Token": api.token}
    latencies: list[float] = []
    lock = threading.Lock()
    start = threading.Barrier(CLIENTS)

    def client() -> None:
        mine: list[float] = []
        with httpx.Client(timeout=60) as c:
            c.get(url, params={"limit": PAGE}, headers=headers).raise_for_status()  # warm
            start.wait()
            for _ in range(requests_each):
                t0 = time.perf_counter()
                resp = c.get(url, params={"limit": PAGE}, headers=headers)
                resp.raise_for_status()
                mine.append((time.perf_counter() - t0) * 1000)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for t in threads:
        t.start()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    return latencies, len(latencies) / (time.perf_counter() - t0)


def run_hosts(work: Path, guest_dir: Path, s: Settings) -> list[Row]:
    rounds, each = (3, 5) if s.quick else (s.hosts_migrations, s.hosts_requests_each)
    samples: dict[str, dict[str, Any]] = {}
    for tier in (False, True):
        name = "tier" if tier else "all-in-one"
        url = database(f"ferry_bench_{'tier' if tier else 'aio'}")
        with deployment(work / f"hosts-{name}", guest_dir, url, tier) as (srv, host):
            seconds = migration_seconds(srv, host, guest_dir, rounds)
            srv.delete_servers()
            fill(srv, s.scale_volumes)
            latencies, rate = concurrent_detail(srv.api("ferry-admin"), each)
        samples[name] = {"migration_s": seconds, "detail_ms": latencies, "pages_per_s": rate}
    return _rows(samples["tier"], samples["all-in-one"], s.scale_volumes)


def _rows(tier: dict[str, Any], aio: dict[str, Any], volumes: int) -> list[Row]:
    mt, ma = median(tier["migration_s"]), median(aio["migration_s"])
    overhead = mt - ma
    p99, base = percentile(tier["detail_ms"], 99), percentile(aio["detail_ms"], 99)
    data_a = {
        "tier_s": [round(x, 3) for x in tier["migration_s"]],
        "all_in_one_s": [round(x, 3) for x in aio["migration_s"]],
    }
    data_b = {
        "tier_ms": [round(x, 1) for x in tier["detail_ms"]],
        "all_in_one_ms": [round(x, 1) for x in aio["detail_ms"]],
        "clients": CLIENTS,
    }
    return [
        Row(
            "9a",
            "Many hosts: live migration through an agent (1 GiB attached, guest writing)",
            f"median {mt:.2f} s",
            f"all-in-one: median {ma:.2f} s",
            f"{overhead:+.2f} s",
            f"≤ +{OVERHEAD_TARGET_S:.1f} s",
            overhead <= OVERHEAD_TARGET_S,
            data_a,
        ),
        Row(
            "9b",
            f"Many hosts: GET volumes/detail?limit={PAGE} over {volumes:,}, {CLIENTS} clients, "
            "API tier (2 workers)",
            f"p50 {fmt_ms(percentile(tier['detail_ms'], 50))}, p99 {fmt_ms(p99)}, "
            f"{tier['pages_per_s']:.0f} pages/s",
            f"all-in-one: p50 {fmt_ms(percentile(aio['detail_ms'], 50))}, p99 {fmt_ms(base)}, "
            f"{aio['pages_per_s']:.0f} pages/s",
            f"{p99 / base:.2f}x (p99)",
            f"p99 ≤ {P99_TARGET_MS:.0f} ms",
            p99 <= P99_TARGET_MS,
            data_b,
        ),
    ]
