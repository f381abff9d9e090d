"""Figure 5: convergence of a live migration under a guest writing flat out.

The guest writes 4 KiB blocks as fast as it can (O_DIRECT, fdatasync every 16) over the first
8 MiB of a 1 GiB volume, written with random data beforehand so that its clusters are allocated
and the rate measured before the migration is the steady one. That rate (median `wps` of
`idle_windows` one-second windows) sets the speed cap: a quarter of it, in bytes/s. A background
mirror capped below the guest's rate cannot catch up; Ferry must notice and switch to
write-blocking copy.

Figures: the time to complete against the least time the cap allows (allocated bytes / cap), and
the guest's write rate and max write latency in the background phase (mirror start → switch) and
the write-blocking phase (switch → pivot), against the same before the migration.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.core import MIB, Row, Settings, fmt_ms, fmt_ratio, fmt_s, median
from bench.env import Cloud, ConsoleRecorder, MigrationRun, finished_migration, layer_files, request_migration
from testkit.guest import DiskStatus

FLAT_OUT = {"rate": 0, "span_mb": 8, "sync_every": 16}
BLOCK = 4096


def allocated_bytes(path: Path) -> int:
    out = subprocess.run(
        ["qemu-img", "map", "-U", "--output=json", "-f", "qcow2", str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return sum(int(e["length"]) for e in json.loads(out) if e.get("data"))


def _phase(windows: list[DiskStatus]) -> dict[str, Any]:
    if not windows:
        return {"windows": 0, "wps": None, "max_write_ms": None}
    return {
        "windows": len(windows),
        "wps": median([w.wps for w in windows]),
        "max_write_ms": max(w.win_max_write_ms for w in windows),
    }


def _cancel(cloud: Cloud, vid: str) -> None:
    cloud.api.volume("POST", f"/volumes/{vid}/action", json={"ferry-migrate_cancel": {}})
    finished_migration(cloud.api, vid, 120)


def _migrate(cloud: Cloud, vid: str, speed: int, timeout: float) -> MigrationRun | None:
    """The finished migration, or None if it did not finish in time (then it is cancelled)."""
    t0 = request_migration(cloud.api, vid, speed)
    try:
        return MigrationRun(vid, t0, finished_migration(cloud.api, vid, timeout))
    except AssertionError:
        _cancel(cloud, vid)
        return None


def run_convergence(cloud: Cloud, random: Path, settings: Settings) -> list[Row]:
    with cloud.writing_guest("bench-busy", FLAT_OUT, random) as (vid, rec):
        before = [s.status for s in rec.wait_samples(settings.idle_windows, 30)]
        speed = int(median([s.wps for s in before]) * BLOCK / 4)
        allocated = allocated_bytes(layer_files(cloud.api, vid)[-1])
        run = _migrate(cloud, vid, speed, settings.convergence_timeout)
        if run is None or not run.ok:
            status = "did not finish in time" if run is None else run.record["status"]
            data = {"speed": speed, "before": [asdict(s) for s in before]}
            title = "Convergence, flat-out guest, cap = 1/4 of its write rate"
            return [Row("5a", title, status, "—", "—", "completes", False, data)]
        rec.wait_samples(1, 30)
        phases = _phases(rec, run)
    return _rows(run, before, phases, speed, allocated)


def _phases(rec: ConsoleRecorder, run: MigrationRun) -> dict[str, dict[str, Any]]:
    start = run.event("mirror", "start")
    switch = run.event("mirror", "copy-mode-switched")
    pivot = run.event("pivot", "start")
    assert start is not None and pivot is not None
    background = rec.inside(start, switch or pivot)
    blocking = rec.inside(switch, pivot) if switch else []
    return {
        "background": {**_phase(background), "seconds": round((switch or pivot) - start, 3)},
        "write-blocking": {**_phase(blocking), "seconds": round(pivot - switch, 3) if switch else 0.0},
    }


def _rows(
    run: MigrationRun, before: list[DiskStatus], phases: dict[str, dict[str, Any]], speed: int, allocated: int
) -> list[Row]:
    wps = median([s.wps for s in before])
    lat = max(s.win_max_write_ms for s in before)
    floor = allocated / speed
    bg, wb = phases["background"], phases["write-blocking"]
    data = {
        "speed_bytes_per_s": speed,
        "allocated_bytes": allocated,
        "wps_before": wps,
        "max_write_ms_before": lat,
        "copy_mode": run.record["copy_mode"],
        "phases": phases,
        "seconds": round(run.seconds, 3),
        "bytes_total": run.record["bytes_total"],
    }
    title = f"Convergence, flat-out guest, cap = 1/4 of its write rate ({speed / MIB:.1f} MiB/s)"
    rows = [
        Row(
            "5a",
            f"{title}: completes",
            f"{fmt_s(run.seconds)}, {run.record['copy_mode']}",
            f"{allocated / MIB:.0f} MiB at the cap {fmt_s(floor)}",
            fmt_ratio(run.seconds / floor),
            "completes",
            run.ok,
            data,
        )
    ]
    rows.append(
        Row(
            "5b",
            "Convergence: guest writes/s, background / write-blocking",
            f"{_num(bg['wps'])} / {_num(wb['wps'])}",
            f"before {wps:.0f}",
            f"{_ratio(bg['wps'], wps)} / {_ratio(wb['wps'], wps)}",
            "report",
            None,
        )
    )
    rows.append(
        Row(
            "5c",
            "Convergence: guest max write latency, background / write-blocking",
            f"{_ms(bg['max_write_ms'])} / {_ms(wb['max_write_ms'])}",
            f"before {fmt_ms(lat)}",
            f"{_ratio(bg['max_write_ms'], lat)} / {_ratio(wb['max_write_ms'], lat)}",
            "report",
            None,
        )
    )
    return rows


def _num(v: float | None) -> str:
    return "—" if v is None else f"{v:.0f}"


def _ms(v: float | None) -> str:
    return "—" if v is None else fmt_ms(v)


def _ratio(v: float | None, base: float) -> str:
    return "—" if v is None or not base else fmt_ratio(v / base)
