"""Shared pieces of the benchmark suite: result rows, statistics, formatting, the Markdown table,
machine facts and page-cache control.

Every figure is a ratio of something Ferry does to a baseline measured in the same run on the same
machine: absolute times on these machines are noisy, ratios of interleaved runs are not.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

MIB = 1 << 20
GIB = 1 << 30
_T0 = time.monotonic()


def log(msg: str) -> None:
    """Progress on stderr, stamped with the seconds since the suite started."""
    print(f"[{time.monotonic() - _T0:6.1f} s] {msg}", file=sys.stderr, flush=True)


@dataclass
class Row:
    """One line of the results table (and of the JSON file)."""

    key: str
    """Stable id, e.g. "1a"."""
    figure: str
    ferry: str
    baseline: str
    ratio: str
    target: str
    met: bool | None
    """None: informational, no target."""
    data: dict[str, Any] = field(default_factory=dict)
    """The raw numbers behind the cells (seconds, bytes, samples)."""
    note: str = ""


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def percentile(values: Sequence[float], p: float) -> float:
    """Linear-interpolated percentile (p in 0..100), like numpy's default."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("percentile of no values")
    rank = (len(ordered) - 1) * p / 100
    lo, hi = math.floor(rank), math.ceil(rank)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (rank - lo)


def spread(values: Sequence[float]) -> float:
    """max / min: 1.0 means perfectly even."""
    return max(values) / min(values)


def fmt_s(seconds: float) -> str:
    return f"{seconds:.2f} s"


def fmt_ms(ms: float) -> str:
    return f"{ms:.1f} ms"


def fmt_rate(bytes_per_s: float) -> str:
    return f"{bytes_per_s / MIB:.0f} MiB/s"


def fmt_ratio(value: float) -> str:
    return f"{value:.2f}x"


def fmt_size(n: int) -> str:
    return f"{n / GIB:g} GiB" if n >= GIB else f"{n / MIB:g} MiB"


def markdown(rows: Iterable[Row]) -> str:
    lines = ["| # | Figure | Ferry | Baseline | Ratio | Target | Met? |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        met = "—" if r.met is None else ("yes" if r.met else "**NO**")
        cells = (r.key, r.figure, r.ferry, r.baseline, r.ratio, r.target, met)
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


# -- page cache ------------------------------------------------------------------------------
def evict(paths: Iterable[Path]) -> None:
    """Write every dirty page back (sync), then drop these files' pages from the page cache, so the
    next run reads them from the disk. Per file (posix_fadvise DONTNEED), so the rest of the
    system (the server's code, the guests) keeps its cache."""
    os.sync()
    for path in paths:
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


CACHE_POLICY = (
    "before every timed run, Ferry's and the baseline's alike: sync, then drop the source "
    "files' pages (posix_fadvise DONTNEED): every copy reads a cold source and starts with no "
    "dirty pages pending; the two sides alternate and each figure is the median of the runs"
)


# -- machine ---------------------------------------------------------------------------------
def _first_line(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, check=False).stdout
    except OSError:
        return "unknown"
    return out.splitlines()[0].strip() if out else "unknown"


def _meminfo_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / (1 << 20), 1)
    return 0.0


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _disk(path: Path) -> dict[str, str]:
    out = subprocess.run(
        ["findmnt", "-n", "-o", "SOURCE,FSTYPE,OPTIONS", "-T", str(path)],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    info = dict(zip(("device", "fstype", "options"), out, strict=False))
    dev = Path(info.get("device", "")).name
    rotational = Path(f"/sys/block/{dev}/queue/rotational")
    if rotational.exists():
        info["rotational"] = rotational.read_text().strip()
    model = Path(f"/sys/block/{dev}/device/model")
    info["model"] = model.read_text().strip() if model.exists() else "virtual disk"
    return info


def machine_info(workdir: Path) -> dict[str, Any]:
    return {
        "nproc": os.cpu_count(),
        "cpu": _cpu_model(),
        "ram_gib": _meminfo_gib(),
        "kernel": platform.release(),
        "qemu": _first_line(["qemu-system-x86_64", "--version"]),
        "qemu_img": _first_line(["qemu-img", "--version"]),
        "python": platform.python_version(),
        "disk": _disk(workdir),
        "workdir": str(workdir),
        "git": _first_line(
            ["git", "-C", str(Path(__file__).resolve().parent), "describe", "--always", "--dirty"]
        ),
    }


def write_json(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")


def rows_json(rows: Iterable[Row]) -> list[dict[str, Any]]:
    return [asdict(r) for r in rows]


@dataclass(frozen=True)
class Settings:
    """Sizes and repetitions: the full run fits a 2-core machine in under 10 minutes."""

    quick: bool = False
    reps: int = 5
    """Alternating runs of each side; figures are medians."""
    data: int = GIB
    """Random bytes in the throughput/overhead volumes (1 GiB volumes)."""
    sparse_gib: int = 20
    sparse_data: int = 256 * MIB
    pivot_reps: int = 3
    idle_windows: int = 5
    """One-second windows of the guest's workload sampled before each live migration."""
    convergence_timeout: float = 240.0
    scale_volumes: int = 10_000
    scale_detail_samples: int = 40
    scale_paging_passes: int = 3
    scale_show_samples: int = 200
    hosts_migrations: int = 11
    hosts_requests_each: int = 12
    live_migrations: int = 6
    conc_volumes: int = 8
    conc_data: int = 128 * MIB
    conc_reps: int = 2
    login_probes: int = 1000
    """Requests of the probe in each phase of figure 8 (idle, hammered)."""
    login_hammer_max: int = 5000
    """Attempts per hammering client at most (they stop when the probe is done)."""

    @classmethod
    def make(cls, quick: bool) -> Settings:
        if not quick:
            return cls()
        return cls(
            quick=True,
            reps=2,
            data=256 * MIB,
            sparse_data=64 * MIB,
            pivot_reps=2,
            idle_windows=3,
            scale_detail_samples=15,
            scale_paging_passes=1,
            scale_show_samples=60,
            conc_data=32 * MIB,
            conc_reps=1,
            login_probes=400,
            login_hammer_max=2000,
        )
