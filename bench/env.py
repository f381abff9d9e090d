"""The benchmark's Ferry: a real `ferry serve` in a scratch directory, its guests and volumes, timed
migrations, and a recorder of the guest's console that stamps each status line with host time."""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ferry.config import load
from testkit import scenario
from testkit.guest import DiskStatus, guest_serial, parse_status
from testkit.server import Api, FerryServer

POLL = 0.02
"""Interval of the console recorder and of the bounded condition waits on local state."""
API_POLL = 0.25
"""Interval of polls of Ferry's API while a migration runs: rare enough to cost the server nothing
measurable (durations come from the server's own timestamps, not from when a poll saw the end)."""


def epoch(iso: str | None) -> float:
    """A Ferry timestamp (naive UTC, ISO 8601) as seconds since the epoch."""
    if iso is None:
        raise ValueError("missing timestamp")
    return datetime.fromisoformat(iso).replace(tzinfo=UTC).timestamp()


def wait_for(what: str, probe: Callable[[], Any], timeout: float) -> Any:
    return scenario.wait_until(what, probe, timeout, POLL)


# -- data ------------------------------------------------------------------------------------
def random_file(path: Path, size: int) -> Path:
    """`size` bytes of random data (incompressible, no zero blocks), made once per run."""
    if path.exists() and path.stat().st_size == size:
        return path
    part = path.with_suffix(".part")
    try:
        subprocess.run(["openssl", "rand", "-out", str(part), str(size)], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError):
        with part.open("wb") as f:
            for _ in range(size // (1 << 20)):
                f.write(os.urandom(1 << 20))
    os.replace(part, path)
    return path


def raw_slice(source: Path, length: int) -> str:
    """qemu `--image-opts` for the first `length` bytes of a raw file."""
    return f"driver=raw,size={length},file.driver=file,file.filename={source}"


def write_data(layer: Path, source: Path, length: int) -> None:
    """Write the first `length` bytes of `source` at the start of an existing qcow2 layer."""
    subprocess.run(
        ["qemu-img", "convert", "-n", "--image-opts", raw_slice(source, length), "-O", "qcow2", str(layer)],
        check=True,
        capture_output=True,
    )


def replace_with_data(layer: Path, source: Path, length: int) -> None:
    """Replace a layer file by a qcow2 image of exactly `length` bytes, all of them data."""
    subprocess.run(
        ["qemu-img", "convert", "--image-opts", raw_slice(source, length), "-O", "qcow2", str(layer)],
        check=True,
        capture_output=True,
    )


# -- migrations ------------------------------------------------------------------------------
@dataclass(frozen=True)
class MigrationRun:
    """One migration as Ferry recorded it, with the client's request time."""

    volume_id: str
    requested: float
    """Client wall clock just before the POST (same clock as the server's timestamps)."""
    record: dict[str, Any]

    @property
    def ok(self) -> bool:
        return bool(self.record["status"] == "success")

    @property
    def finished(self) -> float:
        return epoch(self.record["finished_at"])

    @property
    def started(self) -> float:
        return epoch(self.record["started_at"])

    @property
    def seconds(self) -> float:
        """End to end: request sent → migration recorded as finished."""
        return self.finished - self.requested

    @property
    def active_seconds(self) -> float:
        """From leaving the queue (per-backend limit) to finished."""
        return self.finished - self.started

    def event(self, step: str, event: str, contains: str = "") -> float | None:
        for e in self.record["steps"]:
            if e["step"] == step and e["event"] == event and contains in str(e["detail"]):
                return epoch(e["at"])
        return None

    def require(self) -> MigrationRun:
        if not self.ok:
            raise RuntimeError(
                f"migration of {self.volume_id} ended {self.record['status']}: {self.record.get('error')}"
            )
        return self


def step_durations(run: MigrationRun) -> dict[str, float]:
    """Seconds spent in each step of a migration (request → first step counted as "request")."""
    starts = [(e["step"], e["at"]) for e in run.record["steps"] if e["event"] == "start"]
    marks = [("request", run.requested)] + [(step, epoch(at)) for step, at in starts] + [("", run.finished)]
    return {name: round(marks[i + 1][1] - t, 4) for i, (name, t) in enumerate(marks[:-1])}


def other_backend(api: Api, vid: str) -> str:
    return scenario.other_backend(scenario.location(api, vid)["backend"])


def request_migration(api: Api, vid: str, speed: int | None = None) -> float:
    """Ask Ferry to move the volume to the other backend; returns the request time."""
    dest = other_backend(api, vid)
    t0 = time.time()
    scenario.migrate(api, vid, dest, speed)
    return t0


def finished_migration(api: Api, vid: str, timeout: float) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        m = scenario.migration(api, vid)
        return m if m["status"] not in ("queued", "running") else None

    return dict(scenario.wait_until(f"migration of {vid}", done, timeout, API_POLL))


def migrate(api: Api, vid: str, *, speed: int | None = None, timeout: float = 600) -> MigrationRun:
    t0 = request_migration(api, vid, speed)
    return MigrationRun(vid, t0, finished_migration(api, vid, timeout)).require()


def layer_files(api: Api, vid: str) -> list[Path]:
    return [Path(layer["path"]) for layer in scenario.location(api, vid)["layers"]]


# -- the server ------------------------------------------------------------------------------
NO_QUOTAS = "[quotas]\nvolumes = -1\nsnapshots = -1\ngigabytes = -1\ninstances = -1\ncores = -1\nram = -1\n"
"""The benchmarks measure copies and requests, not quotas (Cinder's 10 volumes, Nova's 10 servers)."""


@dataclass
class Cloud:
    """A `ferry serve` of the benchmark's own, with its guests."""

    root: Path
    guest_dir: Path
    extra_config: str = ""
    srv: FerryServer = field(init=False)
    api: Api = field(init=False)
    servers: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        config = NO_QUOTAS + self.extra_config
        self.srv = FerryServer(self.root, guest_dir=self.guest_dir, extra_config=config)

    def start(self) -> None:
        self.srv.start()
        self.api = self.srv.api("ferry-admin")

    def image(self, name: str, *, rate: int, span_mb: int, sync_every: int = 16) -> str:
        scenario.register_guest(
            self.srv, self.guest_dir, name, rate=rate, span_mb=span_mb, sync_every=sync_every
        )
        return name

    def boot(self, image: str, name: str) -> str:
        sid = scenario.boot(self.api, image, name)
        self.servers.append(sid)
        return sid

    def volume(self, size_gib: int, name: str) -> str:
        return scenario.create_volume(self.api, size_gib, name)

    def data_volume(self, size_gib: int, name: str, source: Path, length: int) -> str:
        """A detached volume whose first `length` bytes are those of `source`."""
        vid = self.volume(size_gib, name)
        write_data(layer_files(self.api, vid)[-1], source, length)
        return vid

    def attach(self, sid: str, vid: str, timeout: float = 90) -> None:
        """Attach and wait until the guest's workload reports on the disk."""
        since = scenario.console_path(self.srv, sid).stat().st_size
        scenario.attach(self.api, sid, vid)
        scenario.wait_writing(self.srv, sid, vid, writes=1, timeout=timeout, since=since)

    @contextlib.contextmanager
    def writing_guest(
        self, name: str, workload: dict[str, int], random: Path
    ) -> Iterator[tuple[str, ConsoleRecorder]]:
        """A guest running `workload` on a new 1 GiB volume whose workload span holds random data,
        with its console recorded from the first full window on; deleted afterwards."""
        sid = self.boot(self.image(name, **workload), name)
        try:
            vid = self.data_volume(1, name, random, workload["span_mb"] * 1024 * 1024)
            self.attach(sid, vid)
            with ConsoleRecorder(scenario.console_path(self.srv, sid), vid) as rec:
                rec.wait_samples(2, 30)  # past the window in which the disk appeared
                yield vid, rec
        finally:
            self.delete_server(sid)

    def delete_server(self, sid: str) -> None:
        self.api.ok(self.api.compute("DELETE", f"/servers/{sid}"), 204, 202)
        gone = lambda: self.api.compute("GET", f"/servers/{sid}").status_code == 404  # noqa: E731
        wait_for(f"server {sid} deleted", gone, 60)
        self.servers.remove(sid)

    def close(self) -> None:
        """Delete our guests, stop the server; a QEMU left behind (server crash) is killed by its pid."""
        with contextlib.suppress(Exception):
            for sid in list(self.servers):
                self.delete_server(sid)
        self.srv.stop()
        for pidfile in load(self.srv.config_path).run_dir.rglob("qemu.pid"):
            _kill_qemu(pidfile)


def _kill_qemu(pidfile: Path) -> None:
    try:
        pid = int(pidfile.read_text().strip())
        argv = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return
    if os.fsencode(pidfile) in argv:  # the QEMU of this run dir, not a recycled pid
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


# -- the guest's console ---------------------------------------------------------------------
@dataclass(frozen=True)
class Sample:
    host: float
    """Host wall clock when the line was read (at most POLL after QEMU wrote it)."""
    status: DiskStatus


class ConsoleRecorder:
    """Follows a console log in a thread and keeps every status line of one disk with the host
    time it was read. `offset()` maps guest time to host time: a line is read after it is
    printed, so the smallest (host - guest) difference seen is the best estimate."""

    def __init__(self, path: Path, volume_id: str) -> None:
        self.path = path
        self.serial = guest_serial(volume_id)
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, daemon=True)
        self._lock = threading.Lock()

    def __enter__(self) -> ConsoleRecorder:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _follow(self) -> None:
        pos, pending = self.path.stat().st_size, b""
        while not self._stop.wait(POLL):
            with self.path.open("rb") as f:
                f.seek(pos)
                chunk = f.read()
            now = time.time()
            pos += len(chunk)
            complete, _, pending = (pending + chunk).rpartition(b"\n")
            found = [s for s in parse_status(complete.decode(errors="replace")) if s.serial == self.serial]
            with self._lock:
                self.samples.extend(Sample(now, s) for s in found)

    def snapshot(self) -> list[Sample]:
        with self._lock:
            return list(self.samples)

    def wait_samples(self, count: int, timeout: float) -> list[Sample]:
        """Wait until `count` more status lines of the disk have been read."""
        start = len(self.snapshot())
        wait_for(f"{count} status lines", lambda: len(self.snapshot()) >= start + count, timeout)
        return self.snapshot()[start:]

    def offset(self) -> float:
        """host time - guest time."""
        return min(s.host - s.status.t for s in self.snapshot())

    def windows(self, host_from: float, host_to: float) -> list[DiskStatus]:
        """Status lines whose one-second window overlaps [host_from, host_to] (host clock)."""
        off = self.offset()
        samples = self.snapshot()
        out = []
        for prev, cur in itertools.pairwise(samples):
            start, end = prev.status.t + off, cur.status.t + off
            if end >= host_from and start <= host_to:
                out.append(cur.status)
        return out

    def inside(self, host_from: float, host_to: float) -> list[DiskStatus]:
        """Status lines whose whole window lies inside [host_from, host_to]."""
        off = self.offset()
        samples = self.snapshot()
        return [
            cur.status
            for prev, cur in itertools.pairwise(samples)
            if prev.status.t + off >= host_from and cur.status.t + off <= host_to
        ]
