"""Figure 7: eight detached volumes migrated at once, under the per-backend limit.

Eight 1 GiB volumes each hold `conc_data` random bytes. A sequential pass migrates them one by one
(each waits for the previous to finish); a concurrent pass requests all eight at once and Ferry
runs them `max_migrations` at a time (the destination backend's limit, 2 by default), the rest
queued. Passes alternate (sources evicted from the page cache before each).

Figures: the concurrent pass's total time (first request → last finish) against the sum of the
sequential migrations' times; and fairness: whether volumes left the queue in the order they were
requested (FIFO: nobody is overtaken, nobody starves), with the spread (max / min) of the per-volume
times from leaving the queue to finishing. That spread is reported, not judged: with two slots
on one disk a volume's time depends on how much of its copy overlapped another one (the last
volume often runs alone), and on what else the machine is doing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.core import Row, Settings, evict, fmt_ratio, fmt_s, fmt_size, median, spread
from bench.env import (
    Cloud,
    MigrationRun,
    finished_migration,
    layer_files,
    migrate,
    request_migration,
    step_durations,
    write_data,
)
from ferry.config import load

TARGET_TOTAL = 1.0


def _sources(cloud: Cloud, vids: list[str]) -> list[Path]:
    return [p for v in vids for p in layer_files(cloud.api, v)]


def sequential(cloud: Cloud, vids: list[str]) -> list[MigrationRun]:
    """One by one (sources evicted before the pass: each is read once)."""
    evict(_sources(cloud, vids))
    return [migrate(cloud.api, v) for v in vids]


def concurrent(cloud: Cloud, vids: list[str]) -> tuple[float, list[MigrationRun]]:
    evict(_sources(cloud, vids))
    requested = [(v, request_migration(cloud.api, v)) for v in vids]
    runs = [MigrationRun(v, t, finished_migration(cloud.api, v, 600)).require() for v, t in requested]
    total = max(r.finished for r in runs) - requested[0][1]
    return total, runs


def run_concurrency(cloud: Cloud, random: Path, s: Settings) -> list[Row]:
    vids = []
    for i in range(s.conc_volumes):
        vid = cloud.volume(1, f"bench-c{i}")
        write_data(layer_files(cloud.api, vid)[-1], random, s.conc_data)
        vids.append(vid)
    sums: list[float] = []
    totals: list[float] = []
    passes: list[list[MigrationRun]] = []
    seq_passes: list[list[MigrationRun]] = []
    for _ in range(s.conc_reps):
        seq = sequential(cloud, vids)
        sums.append(sum(r.seconds for r in seq))
        seq_passes.append(seq)
        total, runs = concurrent(cloud, vids)
        totals.append(total)
        passes.append(runs)
    limit = load(cloud.srv.config_path).backend("fast").max_migrations
    return _rows(sums, totals, passes, seq_passes, limit, s)


def _fifo(runs: list[MigrationRun]) -> bool:
    starts = [r.started for r in runs]  # runs are in request order
    return starts == sorted(starts)


def _rows(
    sums: list[float],
    totals: list[float],
    passes: list[list[MigrationRun]],
    seq_passes: list[list[MigrationRun]],
    limit: int,
    s: Settings,
) -> list[Row]:
    total, seq = median(totals), median(sums)
    active = [[r.active_seconds for r in runs] for runs in passes]
    spreads = [spread(a) for a in active]
    worst = max(spreads)
    fifo = all(_fifo(runs) for runs in passes)
    data: dict[str, Any] = {
        "max_migrations": limit,
        "volumes": s.conc_volumes,
        "data_bytes": s.conc_data,
        "sequential_sums_s": [round(x, 3) for x in sums],
        "concurrent_totals_s": [round(x, 3) for x in totals],
        "active_s": [[round(x, 3) for x in a] for a in active],
        "end_to_end_s": [[round(r.seconds, 3) for r in runs] for runs in passes],
        "steps_s": [[step_durations(r) for r in runs] for runs in passes],
        "sequential_s": [[round(r.seconds, 3) for r in runs] for runs in seq_passes],
        "sequential_steps_s": [[step_durations(r) for r in runs] for runs in seq_passes],
    }
    title = f"Concurrency: {s.conc_volumes} x {fmt_size(s.conc_data)} detached at once (limit {limit})"
    return [
        Row(
            "7a",
            f"{title}: total",
            fmt_s(total),
            f"one by one {fmt_s(seq)}",
            fmt_ratio(total / seq),
            f"≤ {TARGET_TOTAL:.2f}x",
            total / seq <= TARGET_TOTAL,
            data,
        ),
        Row(
            "7b",
            "Concurrency: fairness: queue order, spread of per-volume times (max/min)",
            f"{'FIFO' if fifo else 'not FIFO'}; {fmt_s(min(min(a) for a in active))} … "
            f"{fmt_s(max(max(a) for a in active))}",
            "even: 1.00x",
            f"spread {fmt_ratio(worst)}",
            "FIFO (spread: report)",
            fifo,
            {"spreads": [round(x, 3) for x in spreads], "fifo": fifo},
        ),
    ]
