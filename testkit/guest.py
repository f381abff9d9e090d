"""The Ferry test guest: build it, configure it, and read what it reports on its console.

The guest (sources in ``guest/``) prints, on its serial console, lines such as::

    FERRY-READY {"rate":200,"span_mb":64,"sync_every":16}
    FERRY-DISK-ADDED vdb 0c7a3e8e-1b2d-4c5f-8
    FERRY-STATUS {"t":12.345,"dev":"vdb","serial":"0c7a3e8e-1b2d-4c5f-8","seq":2400,...}
    FERRY-DISK-REMOVED vdb 0c7a3e8e-1b2d-4c5f-8

``serial`` is what the guest sees: the first 20 bytes of the serial QEMU was given.
A disk's final FERRY-STATUS is printed just before its FERRY-DISK-REMOVED line.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

# The guest's boot contract lives with Ferry (`ferry init` registers the guest); re-exported here.
from ferry.services.guest_image import GUEST_CMDLINE as GUEST_CMDLINE
from ferry.services.guest_image import guest_paths

REPO_ROOT = Path(__file__).resolve().parents[1]
GUEST_SRC = REPO_ROOT / "guest"
SERIAL_LEN = 20  # virtio-blk exposes at most 20 bytes of serial to the guest

_STATUS_RE = re.compile(r"FERRY-STATUS (\{[^{}]*\})")
_DISK_EVENT_RE = re.compile(r"FERRY-DISK-(ADDED|REMOVED) (\S+) ?(\S*)")


@dataclass(frozen=True)
class DiskStatus:
    """One FERRY-STATUS line: the state of one disk at guest monotonic time ``t``."""

    t: float  # guest CLOCK_MONOTONIC seconds
    dev: str  # "vdb"
    serial: str  # first 20 bytes of the disk serial
    seq: int  # last seq whose write completed
    synced_seq: int  # last seq covered by a completed fdatasync
    first_seq: int  # first seq written since the guest found the disk (0 while scanning)
    nblocks: int  # blocks the workload cycles over (index = seq % nblocks)
    wps: int  # writes completed in the last one-second window
    verified: int  # re-reads that matched, since the disk appeared
    max_write_ms: float  # since the disk appeared
    max_flush_ms: float  # since the disk appeared
    win_max_write_ms: float  # within the last one-second window
    io_errors: int
    verify_failures: int
    size: int = 0  # the disk's capacity in bytes as the guest last read it (grows on a live extend)

    @property
    def healthy(self) -> bool:
        return self.io_errors == 0 and self.verify_failures == 0


@dataclass(frozen=True)
class DiskEvent:
    """A FERRY-DISK-ADDED or FERRY-DISK-REMOVED line."""

    kind: str  # "added" | "removed"
    dev: str
    serial: str


def _parse_status_line(line: str) -> DiskStatus | None:
    m = _STATUS_RE.search(line)
    if not m:
        return None
    try:
        d = json.loads(m.group(1))
        return DiskStatus(
            t=float(d["t"]),
            dev=str(d["dev"]),
            serial=str(d["serial"]),
            seq=int(d["seq"]),
            synced_seq=int(d["synced_seq"]),
            first_seq=int(d["first_seq"]),
            nblocks=int(d["nblocks"]),
            wps=int(d["wps"]),
            verified=int(d["verified"]),
            max_write_ms=float(d["max_write_ms"]),
            max_flush_ms=float(d["max_flush_ms"]),
            win_max_write_ms=float(d["win_max_write_ms"]),
            io_errors=int(d["io_errors"]),
            verify_failures=int(d["verify_failures"]),
            size=int(d.get("size", 0)),
        )
    except (ValueError, KeyError, TypeError):
        # A kernel message can interleave with a line on the serial console: skip it.
        return None


def _parse_event_line(line: str) -> DiskEvent | None:
    m = _DISK_EVENT_RE.search(line)
    return DiskEvent(m.group(1).lower(), m.group(2), m.group(3)) if m else None


@dataclass(frozen=True)
class DiskGrown:
    """A FERRY-GROWN line: the disk's capacity grew under the guest (a live extend), and the guest
    wrote, flushed and read back its last block past the old end (`tail_ok`)."""

    dev: str
    serial: str
    old: int
    new: int
    tail_ok: bool


_GROWN_RE = re.compile(r"FERRY-GROWN (\{[^{}]*\})")


def parse_grown(text: str) -> list[DiskGrown]:
    """All well-formed FERRY-GROWN lines in ``text``, in order."""
    out = []
    for m in _GROWN_RE.finditer(text):
        try:
            d = json.loads(m.group(1))
            out.append(
                DiskGrown(str(d["dev"]), str(d["serial"]), int(d["old"]), int(d["new"]), bool(d["tail_ok"]))
            )
        except (ValueError, KeyError, TypeError):
            continue  # a kernel message interleaved with the line
    return out


def parse_status(text: str) -> list[DiskStatus]:
    """All well-formed FERRY-STATUS lines in ``text``, in order."""
    return [s for line in text.splitlines() if (s := _parse_status_line(line))]


def parse_events(text: str) -> list[DiskEvent]:
    """All FERRY-DISK-ADDED / FERRY-DISK-REMOVED lines in ``text``, in order."""
    return [e for line in text.splitlines() if (e := _parse_event_line(line))]


def latest_by_serial(text: str) -> dict[str, DiskStatus]:
    """The last status of each disk, keyed by (20-byte) serial."""
    return {s.serial: s for s in parse_status(text)}


def guest_serial(serial: str) -> str:
    """The serial as the guest sees it (and as status lines report it)."""
    return serial.encode()[:SERIAL_LEN].decode(errors="replace")


def _follow(
    console_path: Path, timeout: float, since: int, poll: float, check: Callable[[], None] | None
) -> Iterator[str]:
    """Yield complete lines of a growing file from byte offset ``since`` until ``timeout``.

    Raises TimeoutError when the deadline passes; ``check`` (e.g. "is QEMU still running?")
    is called between reads and may raise to stop early.
    """
    deadline = time.monotonic() + timeout
    offset, pending, last = since, b"", ""
    while True:
        try:
            with open(console_path, "rb") as f:
                f.seek(offset)
                chunk = f.read()
        except FileNotFoundError:
            chunk = b""  # QEMU has not created it yet
        offset += len(chunk)
        *lines, pending = (pending + chunk).split(b"\n")
        for raw in lines:
            last = raw.rstrip(b"\r").decode(errors="replace")  # the tty sends CRLF
            yield last
        if check is not None:
            check()
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(
                f"no matching console line in {timeout:.1f}s ({console_path}); last line: {last!r}"
            )
        time.sleep(min(poll, remaining))


def console_offset(console_path: Path) -> int:
    """Current size of the console log: pass as ``since`` to only look at newer lines."""
    try:
        return Path(console_path).stat().st_size
    except FileNotFoundError:
        return 0


def wait_for_status(
    console_path: Path,
    predicate: Callable[[DiskStatus], bool],
    timeout: float = 30.0,
    *,
    since: int = 0,
    poll: float = 0.05,
    check: Callable[[], None] | None = None,
) -> DiskStatus:
    """Follow the console log and return the first status (after byte ``since``) matching."""
    for line in _follow(Path(console_path), timeout, since, poll, check):
        status = _parse_status_line(line)
        if status is not None and predicate(status):
            return status
    raise AssertionError("unreachable")  # _follow only ends by raising


def wait_for_event(
    console_path: Path,
    kind: str,
    serial: str,
    timeout: float = 30.0,
    *,
    since: int = 0,
    poll: float = 0.05,
    check: Callable[[], None] | None = None,
) -> DiskEvent:
    """Wait for FERRY-DISK-ADDED (kind "added") or -REMOVED ("removed") of a disk.

    ``serial`` may be the full serial given to QEMU; it is compared on its first 20 bytes.
    """
    want = guest_serial(serial)
    for line in _follow(Path(console_path), timeout, since, poll, check):
        event = _parse_event_line(line)
        if event is not None and event.kind == kind and event.serial == want:
            return event
    raise AssertionError("unreachable")


def wait_for_line(
    console_path: Path,
    pattern: str,
    timeout: float = 30.0,
    *,
    since: int = 0,
    poll: float = 0.05,
    check: Callable[[], None] | None = None,
) -> re.Match[str]:
    """Wait for a console line matching the regular expression ``pattern`` (re.search)."""
    rx = re.compile(pattern)
    for line in _follow(Path(console_path), timeout, since, poll, check):
        if m := rx.search(line):
            return m
    raise AssertionError("unreachable")


def ensure_guest(build_dir: Path, src: Path = GUEST_SRC, pvh: bool = True) -> tuple[Path, Path]:
    """Build the guest into ``build_dir`` unless it is already built from the same sources.

    Runs ``guest/build.sh`` (cached by a hash of the guest sources: ~0.03 s when up to date,
    ~20 s for a fresh build, which downloads Debian's kernel package with apt).
    """
    build_dir = Path(build_dir)
    proc = subprocess.run(
        ["bash", str(src / "build.sh"), str(build_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"guest build failed ({proc.returncode}):\n{proc.stdout[-4000:]}")
    return guest_paths(build_dir, pvh)
