"""Ferry's benchmark suite: every figure is a ratio against a baseline measured in the same run.

    python bench/run.py --guest-dir build/guest [--quick] [--only NAME ...] [--workdir DIR]

Prints a Markdown table and writes `bench/results/<date>.json` with the numbers behind every cell
and the machine they came from. See docs/performance.md for what each figure means.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make `bench` and `ferry` importable
    sys.path.insert(0, str(ROOT))

from bench.concurrency import run_concurrency  # noqa: E402
from bench.convergence import run_convergence  # noqa: E402
from bench.copies import FIGURE_CASES, CopyBench  # noqa: E402
from bench.core import (  # noqa: E402
    CACHE_POLICY,
    GIB,
    Row,
    Settings,
    log,
    machine_info,
    markdown,
    rows_json,
    write_json,
)
from bench.env import Cloud, random_file  # noqa: E402
from bench.hosts import run_hosts  # noqa: E402
from bench.live import run_live  # noqa: E402
from bench.login import run_login  # noqa: E402
from bench.pivot import run_pivot  # noqa: E402
from bench.scale import run_scale  # noqa: E402
from testkit.guest import ensure_guest  # noqa: E402

FIGURES = (
    "throughput",
    "overhead",
    "sparse",
    "pivot",
    "convergence",
    "scale",
    "concurrency",
    "login",
    "hosts",
    "live",
)
NEEDS_CLOUD = {"throughput", "overhead", "sparse", "pivot", "convergence", "concurrency"}
NEEDS_GUEST = set(FIGURES) - {"login"}
"""The login figure boots no guest: `--only login` runs without QEMU guests or a guest build."""
RESULTS = ROOT / "bench" / "results"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--guest-dir", type=Path, default=ROOT / "build" / "guest")
    p.add_argument("--quick", action="store_true", help="smaller sizes and fewer repetitions")
    p.add_argument(
        "--only",
        action="append",
        choices=FIGURES,
        metavar="NAME",
        help=f"run only this figure (repeatable): {', '.join(FIGURES)}",
    )
    p.add_argument(
        "--workdir",
        type=Path,
        default=Path("/var/tmp"),
        help="where the scratch directory goes (short path: QMP sockets)",
    )
    p.add_argument("--results", type=Path, default=RESULTS, help="directory for the JSON file")
    p.add_argument("--keep", action="store_true", help="keep the scratch directory")
    return p.parse_args(argv)


class Suite:
    def __init__(self, figures: list[str], settings: Settings, work: Path, guest_dir: Path) -> None:
        self.figures = figures
        self.s = settings
        self.work = work
        self.guest_dir = guest_dir
        self.rows: list[Row] = []
        self.failed: list[str] = []
        self.load: dict[str, list[float]] = {}
        """1-minute load average before and after each group: other work on the machine shows here."""
        self.cloud: Cloud | None = None

    def random(self) -> Path:
        return random_file(self.work / "random.raw", max(self.s.data, self.s.sparse_data, self.s.conc_data))

    def guard(self, name: str, fn: Callable[[], list[Row]]) -> None:
        """Run one group of figures; a failure becomes a row that says so, and the rest still runs."""
        log(f"{name}: start")
        before = os.getloadavg()[0]
        try:
            self.rows += fn()
        except Exception as e:  # report it and go on with the other figures
            traceback.print_exc()
            self.failed.append(name)
            error = f"{type(e).__name__}: {e}"[:200]
            self.rows.append(Row(name, f"{name}: FAILED", error, "—", "—", "—", False))
        self.load[name] = [round(before, 2), round(os.getloadavg()[0], 2)]
        log(f"{name}: done (load average {self.load[name][0]} → {self.load[name][1]})")

    def run(self) -> None:
        if NEEDS_CLOUD & set(self.figures):
            self.cloud = Cloud(self.work / "s", self.guest_dir)
            self.cloud.start()
        copies = [f for f in self.figures if f in FIGURE_CASES]
        if copies:
            self.guard("+".join(copies), lambda: self._copies(copies))
        if "pivot" in self.figures:
            self.guard("pivot", lambda: run_pivot(self._cloud(), self.random(), self.s))
        if "convergence" in self.figures:
            self.guard("convergence", lambda: run_convergence(self._cloud(), self.random(), self.s))
        if "concurrency" in self.figures:
            self.guard("concurrency", lambda: run_concurrency(self._cloud(), self.random(), self.s))
        self.close_cloud()
        if "scale" in self.figures:
            self.guard("scale", lambda: run_scale(self.work / "scale", self.guest_dir, self.s))
        if "login" in self.figures:
            self.guard("login", lambda: run_login(self.work / "login", self.s))
        if "hosts" in self.figures:
            self.guard("hosts", lambda: run_hosts(self.work, self.guest_dir, self.s))
        if "live" in self.figures:
            self.guard("live", lambda: run_live(self.work, self.guest_dir, self.s))

    def _cloud(self) -> Cloud:
        assert self.cloud is not None
        return self.cloud

    def _copies(self, figures: list[str]) -> list[Row]:
        bench = CopyBench(self._cloud(), self.work, self.random(), self.s, figures)
        try:
            bench.setup()
            log(f"copies: {len(bench.cases)} cases x {self.s.reps} rounds")
            bench.run()
            return bench.rows()
        finally:
            bench.close()

    def close_cloud(self) -> None:
        if self.cloud is not None:
            self.cloud.close()
            self.cloud = None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = Settings.make(args.quick)
    figures = [f for f in FIGURES if not args.only or f in args.only]
    if NEEDS_GUEST & set(figures):
        ensure_guest(args.guest_dir)
    work = Path(tempfile.mkdtemp(prefix="fb-", dir=args.workdir))
    started = datetime.now(UTC)
    suite = Suite(figures, settings, work, args.guest_dir.resolve())
    log(f"figures: {', '.join(figures)}; quick={settings.quick}; scratch {work}")
    try:
        suite.run()
    finally:
        suite.close_cloud()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    elapsed = (datetime.now(UTC) - started).total_seconds()
    table = markdown(suite.rows)
    print(table)
    load = ", ".join(f"{k} {a}→{b}" for k, (a, b) in suite.load.items())
    print(f"\nPage cache: {CACHE_POLICY}.")
    print(f"Load average (1 min) around each group: {load}.\nTotal {elapsed:.0f} s.")
    name = started.strftime("%Y-%m-%d") + ("-quick" if settings.quick else "")
    if args.only:  # a partial run must not overwrite the day's full one
        name += "-" + "-".join(figures)
    out = args.results / f"{name}.json"
    write_json(
        out,
        {
            "started": started.isoformat(),
            "seconds": round(elapsed, 1),
            "figures": figures,
            "settings": {**vars(settings), "data_gib": settings.data / GIB},
            "cache": CACHE_POLICY,
            "machine": machine_info(work.parent),
            "load_average": suite.load,
            "rows": rows_json(suite.rows),
            "table": table,
        },
    )
    print(f"Results: {out}")
    missed = [r.key for r in suite.rows if r.met is False]
    failed = f"; FAILED: {', '.join(suite.failed)}" if suite.failed else ""
    print(f"Targets missed: {', '.join(missed) or 'none'}{failed}")
    return 1 if suite.failed else 0


if __name__ == "__main__":
    sys.exit(main())
