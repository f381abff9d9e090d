"""The bare-mirror baseline: a QEMU started by hand the way Ferry starts its guests (same machine
type, accelerator, kernel, workload and block node options), driven over QMP with qemu.qmp and no
Ferry code: create the target, `blockdev-add` it, `blockdev-mirror sync=full`, wait for READY,
`job-complete`, wait for the job to conclude, dismiss it, drop the old nodes and delete the old
file. That is what an operator would type; Ferry's extra time over it is its orchestration."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import subprocess
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from qemu.qmp import EventListener, QMPClient

from testkit.guest import guest_serial, wait_for_status

T = TypeVar("T")
QMP_TIMEOUT = 30.0
JOB_TIMEOUT = 600.0
QCOW2_OPTS = "lazy_refcounts=off,preallocation=off"


def node_options(path: Path, index: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """File and qcow2 node of one image, as Ferry opens a writable layer."""
    protocol = {
        "driver": "file",
        "filename": str(path),
        "node-name": f"p{index}",
        "aio": "threads",
        "discard": "unmap",
    }
    fmt = {
        "driver": "qcow2",
        "file": f"p{index}",
        "node-name": f"f{index}",
        "discard": "unmap",
        "detect-zeroes": "unmap",
        "backing": None,
    }
    return protocol, fmt


class BareGuest:
    """One hand-started QEMU with one virtio-blk disk (image `disk`, serial `serial`)."""

    def __init__(
        self, run_dir: Path, kernel: Path, initrd: Path, cmdline: str, disk: Path, serial: str
    ) -> None:
        self.run_dir = run_dir
        self.socket = run_dir / "qmp.sock"
        self.console = run_dir / "console.log"
        self.kernel, self.initrd, self.cmdline = kernel, initrd, cmdline
        self.disk = disk
        self.serial = serial
        self.index = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.phases: list[dict[str, float]] = []
        """Per mirror: seconds in each phase (create, start, ready, complete, drop; unlink, not counted)."""
        self.loop = asyncio.new_event_loop()
        self.qmp = QMPClient("bench-bare")

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float = QMP_TIMEOUT) -> T:
        return self.loop.run_until_complete(asyncio.wait_for(coro, timeout))

    def argv(self) -> list[str]:
        protocol, fmt = node_options(self.disk, 0)
        return [
            "qemu-system-x86_64", "-name", "bench-bare", "-nodefaults", "-no-user-config", "-display", "none",
            "-machine", "q35", "-accel", "tcg", "-m", "256", "-smp", "1",
            "-qmp", f"unix:{self.socket},server=on,wait=off",
            "-chardev", f"file,id=con,path={self.console}", "-serial", "chardev:con",
            "-kernel", str(self.kernel), "-initrd", str(self.initrd), "-append", self.cmdline,
            "-device", "pcie-root-port,id=rp0,bus=pcie.0,chassis=1,port=16",
            "-blockdev", json.dumps(protocol), "-blockdev", json.dumps(fmt),
            "-device", json.dumps({"driver": "virtio-blk-pci", "id": "disk0", "drive": "f0", "bus": "rp0",
                                   "serial": self.serial}),
        ]  # fmt: skip

    def start(self, boot_timeout: float = 120) -> None:
        """Start QEMU and wait until the guest's workload reports on the disk."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        log = (self.run_dir / "qemu.log").open("ab")
        self.proc = subprocess.Popen(
            self.argv(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._run(self._connect())
        want = guest_serial(self.serial)
        wait_for_status(self.console, lambda s: s.serial == want, boot_timeout)

    async def _connect(self) -> None:
        while True:  # QEMU creates the socket a moment after it starts
            try:
                await self.qmp.connect(str(self.socket))
                return
            except Exception:  # qemu.qmp raises ConnectError or OSError until QEMU listens
                if self.proc is not None and self.proc.poll() is not None:
                    raise RuntimeError(f"bare QEMU exited with {self.proc.returncode}") from None
                await asyncio.sleep(0.05)

    def mirror(self) -> float:
        """Move the disk to a new file next to it; returns the seconds it took, end to end."""
        old, old_index = self.disk, self.index
        self.index += 1
        new = old.with_name(f"disk{self.index}.qcow2")
        size = _virtual_size(old)
        marks = [("", time.perf_counter())]
        subprocess.run(
            ["qemu-img", "create", "-q", "-f", "qcow2", "-o", QCOW2_OPTS, str(new), str(size)], check=True
        )
        marks.append(("create", time.perf_counter()))
        self._run(self._mirror(new, old_index, marks), JOB_TIMEOUT)
        # Ferry retires the source by a rename and deletes it in the background, so the time to
        # unlink the old file is measured here but left out of the total on both sides.
        t0 = time.perf_counter()
        old.unlink()
        phases = {name: round(t - prev, 4) for (_, prev), (name, t) in itertools.pairwise(marks)}
        self.phases.append({**phases, "unlink (not counted)": round(time.perf_counter() - t0, 4)})
        self.disk = new
        return marks[-1][1] - marks[0][1]

    async def _mirror(self, target: Path, old_index: int, marks: list[tuple[str, float]]) -> None:
        protocol, fmt = node_options(target, self.index)
        await self.qmp.execute("blockdev-add", protocol)
        await self.qmp.execute("blockdev-add", fmt)
        job = f"bare-{self.index}"
        with self.qmp.listener(("BLOCK_JOB_READY", "JOB_STATUS_CHANGE")) as events:
            await self.qmp.execute(
                "blockdev-mirror",
                {
                    "job-id": job,
                    "device": f"f{old_index}",
                    "target": f"f{self.index}",
                    "sync": "full",
                    "auto-dismiss": False,
                },
            )
            marks.append(("start", time.perf_counter()))
            await _until(events, "BLOCK_JOB_READY", "device", job)
            marks.append(("ready", time.perf_counter()))
            await self.qmp.execute("job-complete", {"id": job})
            await _until(events, "JOB_STATUS_CHANGE", "status", "concluded", job)
            marks.append(("complete", time.perf_counter()))
        await self.qmp.execute("job-dismiss", {"id": job})
        await self.qmp.execute("blockdev-del", {"node-name": f"f{old_index}"})
        await self.qmp.execute("blockdev-del", {"node-name": f"p{old_index}"})
        marks.append(("drop", time.perf_counter()))

    def close(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(Exception):
            self._run(self.qmp.execute("quit"))
        with contextlib.suppress(Exception):
            self._run(self.qmp.disconnect())
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(15)
        self.loop.close()
        self.proc = None


async def _until(events: EventListener, name: str, key: str, value: str, job: str | None = None) -> None:
    """Wait for event `name` whose data[key] == value (and, if given, data['id'] == job)."""
    while True:
        msg = await events.get()
        data: dict[str, Any] = dict(msg["data"]) if isinstance(msg["data"], dict) else {}
        if msg["event"] == name and data.get(key) == value and (job is None or data.get("id") == job):
            return


def _virtual_size(path: Path) -> int:
    out = subprocess.run(
        ["qemu-img", "info", "-U", "--output=json", "-f", "qcow2", str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return int(json.loads(out)["virtual-size"])
