"""Figures 1-3: copy throughput, orchestration overhead and sparse volumes.

Every timed run (Ferry's and the baselines') goes through the same rounds: in each round every
case runs once, in a fixed order, after `evict` of its source files, so the sides alternate and
share the machine's state; a figure compares medians over the rounds.

Cases (each only when a selected figure needs it):
- convert:          `qemu-img convert` of volume A's chain to a new qcow2 on the same filesystem
- ferry-detached:   Ferry migrates volume A (detached) to the other backend
- ferry-live:       Ferry migrates volume B (same size and data, attached to an idle guest)
- bare-mirror:      a hand-started QEMU running the same idle guest mirrors an identical copy of B
- sparse-detached:  Ferry migrates a detached 20 GiB volume with 256 MiB written
- full-detached:    Ferry migrates a detached volume whose only layer is 256 MiB, all of it data
- sparse-live:      Ferry migrates a 20 GiB volume with 256 MiB written, attached to the idle guest
- small-live:       the same with a 1 GiB volume (Ferry's smallest) holding the same 256 MiB
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.bare import BareGuest
from bench.core import (
    GIB,
    Row,
    Settings,
    evict,
    fmt_rate,
    fmt_ratio,
    fmt_s,
    fmt_size,
    log,
    median,
)
from bench.env import (
    Cloud,
    MigrationRun,
    layer_files,
    migrate,
    replace_with_data,
    step_durations,
    write_data,
)
from testkit.guest import GUEST_CMDLINE, guest_paths

FIGURE_CASES = {
    "throughput": ("convert", "ferry-detached", "ferry-live"),
    "overhead": ("ferry-live", "bare-mirror"),
    "sparse": ("sparse-detached", "full-detached", "sparse-live", "small-live"),
}
CASE_ORDER = (
    "convert",
    "ferry-detached",
    "ferry-live",
    "bare-mirror",
    "sparse-detached",
    "full-detached",
    "sparse-live",
    "small-live",
)
IDLE = {"rate": 1, "span_mb": 1, "sync_every": 0}
"""The idle guest: one 4 KiB write per second to the first MiB of each disk, never flushed."""
QCOW2_OPTS = "lazy_refcounts=off,preallocation=off"


@dataclass
class Case:
    name: str
    run: Callable[[], float]
    """One timed run; returns its seconds."""
    sources: Callable[[], list[Path]]
    """Files the next run reads (evicted from the page cache before it)."""
    times: list[float] = field(default_factory=list)
    migrations: list[MigrationRun] = field(default_factory=list)

    @property
    def median(self) -> float:
        return median(self.times)


class CopyBench:
    def __init__(
        self, cloud: Cloud, work: Path, random: Path, settings: Settings, figures: list[str]
    ) -> None:
        self.cloud = cloud
        self.api = cloud.api
        self.work = work
        self.random = random
        self.s = settings
        self.figures = figures
        wanted = {c for f in figures for c in FIGURE_CASES[f]}
        self.wanted = [c for c in CASE_ORDER if c in wanted]
        self.cases: dict[str, Case] = {}
        self.bare: BareGuest | None = None
        self.idle_guest: str | None = None
        self.convert_unflushed: list[float] = []

    # -- set-up ------------------------------------------------------------------------------
    def setup(self) -> None:
        if any(c.endswith("-live") for c in self.wanted) or "bare-mirror" in self.wanted:
            image = self.cloud.image("bench-idle", **IDLE)
            self.idle_guest = self.cloud.boot(image, "bench-idle")
            log("copies: idle guest booted")
        needs_a = {"convert", "ferry-detached"} & set(self.wanted)
        vol_a = self._detached_volume(1, self.s.data, "a") if needs_a else ""
        builders: dict[str, Callable[[], Case]] = {
            "convert": lambda: self._convert_case(vol_a),
            "ferry-detached": lambda: self._ferry_case("ferry-detached", vol_a),
            "ferry-live": lambda: self._ferry_case("ferry-live", self._live_volume(1, self.s.data, "b")),
            "bare-mirror": self._bare_case,
            "sparse-detached": lambda: self._ferry_case(
                "sparse-detached", self._detached_volume(self.s.sparse_gib, self.s.sparse_data, "sparse-d")
            ),
            "full-detached": lambda: self._ferry_case("full-detached", self._full_volume("full-d")),
            "sparse-live": lambda: self._ferry_case(
                "sparse-live", self._live_volume(self.s.sparse_gib, self.s.sparse_data, "sparse-l")
            ),
            "small-live": lambda: self._ferry_case(
                "small-live", self._live_volume(1, self.s.sparse_data, "small-l")
            ),
        }
        for name in self.wanted:
            self.cases[name] = builders[name]()
            log(f"copies: case {name} ready")

    def _detached_volume(self, size_gib: int, data: int, name: str) -> str:
        vid = self.cloud.volume(size_gib, f"bench-{name}")
        write_data(layer_files(self.api, vid)[-1], self.random, data)
        return vid

    def _full_volume(self, name: str) -> str:
        """A volume whose single layer is `sparse_data` bytes long, every one of them data. Ferry sizes
        volumes in GiB, so the layer of a detached 1 GiB volume is replaced by a smaller image; a
        detached migration copies the layer file as it is and never looks at the recorded size."""
        vid = self.cloud.volume(1, f"bench-{name}")
        replace_with_data(layer_files(self.api, vid)[-1], self.random, self.s.sparse_data)
        return vid

    def _live_volume(self, size_gib: int, data: int, name: str) -> str:
        vid = self._detached_volume(size_gib, data, name)
        assert self.idle_guest is not None
        self.cloud.attach(self.idle_guest, vid)
        return vid

    def _ferry_case(self, name: str, vid: str) -> Case:
        case = Case(name, lambda: 0.0, lambda: layer_files(self.api, vid))

        def run() -> float:
            m = migrate(self.api, vid)
            case.migrations.append(m)
            return m.seconds

        case.run = run
        return case

    def _convert_case(self, vid: str) -> Case:
        out = self.work / "baseline" / "convert.qcow2"
        out.parent.mkdir(exist_ok=True)

        def run() -> float:
            # Durable, as a copy must be before its source may go: qemu-img convert writes its
            # output with cache=unsafe and never flushes, so the baseline fsyncs it, as Ferry does
            # (QEMU's mirror flushes its target itself). The unflushed time is kept for reference.
            src = layer_files(self.api, vid)[-1]
            t0 = time.perf_counter()
            subprocess.run(
                [
                    "qemu-img",
                    "convert",
                    "-U",
                    "-f",
                    "qcow2",
                    "-O",
                    "qcow2",
                    "-o",
                    QCOW2_OPTS,
                    str(src),
                    str(out),
                ],
                check=True,
            )
            self.convert_unflushed.append(time.perf_counter() - t0)
            fd = os.open(out, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            elapsed = time.perf_counter() - t0
            out.unlink()
            return elapsed

        return Case("convert", run, lambda: layer_files(self.api, vid))

    def _bare_case(self) -> Case:
        """The same idle guest in a QEMU of our own, its disk an identical copy of volume B's."""
        root = self.work / "bare"
        root.mkdir(exist_ok=True)
        disk = root / "disk0.qcow2"
        subprocess.run(
            ["qemu-img", "create", "-q", "-f", "qcow2", "-o", QCOW2_OPTS, str(disk), str(GIB)], check=True
        )
        write_data(disk, self.random, self.s.data)
        kernel, initrd = guest_paths(self.cloud.guest_dir)
        self.bare = BareGuest(root, kernel, initrd, GUEST_CMDLINE(**IDLE), disk, str(uuid.uuid4()))
        self.bare.start()
        bare = self.bare
        return Case("bare-mirror", bare.mirror, lambda: [bare.disk])

    # -- runs --------------------------------------------------------------------------------
    def run(self) -> None:
        for i in range(self.s.reps):
            for case in self.cases.values():
                evict(case.sources())
                case.times.append(case.run())
                log(f"copies: round {i + 1}/{self.s.reps} {case.name} {case.times[-1]:.2f} s")

    def close(self) -> None:
        if self.bare is not None:
            self.bare.close()

    # -- figures -----------------------------------------------------------------------------
    def rows(self) -> list[Row]:
        rows: list[Row] = []
        if "throughput" in self.figures:
            rows.append(self._throughput("1a", "Throughput, detached", "ferry-detached"))
            rows.append(self._throughput("1b", "Throughput, live (idle guest)", "ferry-live"))
        if "overhead" in self.figures:
            rows.append(self._overhead())
        if "sparse" in self.figures:
            virt = f"{self.s.sparse_gib} GiB virtual, {fmt_size(self.s.sparse_data)} written"
            rows.append(
                self._sparse(
                    "3a",
                    f"Sparse, detached: {virt} vs {fmt_size(self.s.sparse_data)} full",
                    "sparse-detached",
                    "full-detached",
                )
            )
            rows.append(
                self._sparse(
                    "3b", f"Sparse, live: {virt} vs 1 GiB with the same data", "sparse-live", "small-live"
                )
            )
        return rows

    def _throughput(self, key: str, title: str, ferry: str) -> Row:
        f, b = self.cases[ferry].median, self.cases["convert"].median
        ratio = b / f  # throughput ratio: (data / f) / (data / b)
        data = self._data(ferry, "convert")
        data["convert_unflushed_s"] = [round(t, 4) for t in self.convert_unflushed]
        return Row(
            key,
            f"{title}, {fmt_size(self.s.data)} random",
            f"{fmt_rate(self.s.data / f)} ({fmt_s(f)})",
            f"qemu-img convert + fsync {fmt_rate(self.s.data / b)} ({fmt_s(b)})",
            fmt_ratio(ratio),
            "≥ 0.90x",
            ratio >= 0.9,
            data,
        )

    def _overhead(self) -> Row:
        f, b = self.cases["ferry-live"].median, self.cases["bare-mirror"].median
        extra = f - b
        met = f / b <= 1.05 or extra <= 0.3
        data = self._data("ferry-live", "bare-mirror")
        data["extra_s"] = round(extra, 3)
        return Row(
            "2",
            f"Orchestration overhead, live, {fmt_size(self.s.data)}",
            fmt_s(f),
            f"bare QMP mirror {fmt_s(b)}",
            f"{fmt_ratio(f / b)} ({extra:+.2f} s)",
            "≤ 1.05x or ≤ +0.30 s",
            met,
            data,
        )

    def _sparse(self, key: str, title: str, sparse: str, full: str) -> Row:
        f, b = self.cases[sparse].median, self.cases[full].median
        return Row(
            key,
            title,
            fmt_s(f),
            fmt_s(b),
            fmt_ratio(f / b),
            "≤ 1.50x",
            f / b <= 1.5,
            self._data(sparse, full),
        )

    def _data(self, *names: str) -> dict[str, Any]:
        out: dict[str, Any] = {
            "times_s": {n: [round(t, 4) for t in self.cases[n].times] for n in names},
            "medians_s": {n: round(self.cases[n].median, 4) for n in names},
        }
        for n in names:
            runs = self.cases[n].migrations
            if runs:
                mid = sorted(runs, key=lambda r: r.seconds)[len(runs) // 2]
                out.setdefault("steps_s", {})[n] = step_durations(mid)
            if n == "bare-mirror" and self.bare is not None:
                times = self.cases[n].times
                mid_index = times.index(sorted(times)[len(times) // 2])
                out.setdefault("steps_s", {})[n] = self.bare.phases[mid_index]
        return out
