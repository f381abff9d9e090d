"""End-to-end tests of the test guest itself: boot it under QEMU (TCG), let it write, verify.

QEMU is driven directly here (subprocess + qemu.qmp) so that these tests only depend on
testkit, not on Ferry's hypervisor driver.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from qemu.qmp import QMPClient

from testkit.guest import (
    GUEST_CMDLINE,
    REPO_ROOT,
    DiskStatus,
    console_offset,
    ensure_guest,
    guest_serial,
    latest_by_serial,
    wait_for_event,
    wait_for_line,
    wait_for_status,
)
from testkit.verify import BLOCK, read_span, verify_bytes, verify_image

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

QEMU = "qemu-system-x86_64"
SPAN_MB = 2  # 512 blocks: the workload wraps around the span within seconds


@pytest.fixture(scope="module")
def guest_build() -> tuple[Path, Path]:
    if shutil.which(QEMU) is None or shutil.which("qemu-img") is None:
        pytest.skip("QEMU is not installed")
    return ensure_guest(REPO_ROOT / "build" / "guest")


class Vm:
    """One QEMU process running the test guest: root ports rp0..rp2, cold-plugged disk n on rp{n}."""

    def __init__(self, workdir: Path, build: tuple[Path, Path], cmdline: str, disks: list[tuple[Path, str]]):
        self.console = workdir / "console.log"
        self.qmp_path = workdir / "qmp.sock"
        workdir.mkdir(parents=True, exist_ok=True)
        kernel, initrd = build
        args = [
            QEMU, "-machine", "q35", "-accel", "tcg", "-nodefaults", "-display", "none",
            "-m", "256", "-no-reboot",  # a guest panic ends QEMU instead of rebooting silently
            "-kernel", str(kernel), "-initrd", str(initrd), "-append", cmdline,
            "-chardev", f"file,id=con,path={self.console}", "-serial", "chardev:con",
            "-qmp", f"unix:{self.qmp_path},server=on,wait=off",
            "-device", "pcie-root-port,id=rp0,chassis=1,slot=0",
            "-device", "pcie-root-port,id=rp1,chassis=2,slot=1",
            "-device", "pcie-root-port,id=rp2,chassis=3,slot=2",
        ]  # fmt: skip
        for n, (image, serial) in enumerate(disks):  # cold-plugged disks go on rp0
            args += [
                "-blockdev", f"driver=file,filename={image},node-name=file{n}",
                "-blockdev", f"driver=qcow2,file=file{n},node-name=fmt{n}",
                "-device", f"virtio-blk-pci,id=disk{n},drive=fmt{n},serial={serial},bus=rp{n}",
            ]  # fmt: skip
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
        )

    def check(self) -> None:
        """Raise if QEMU has exited (passed to the console waits so they fail fast)."""
        if self.proc.poll() is not None:
            err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
            tail = self.console.read_text(errors="replace")[-2000:] if self.console.exists() else ""
            raise RuntimeError(f"QEMU exited with {self.proc.returncode}: {err}\nconsole:\n{tail}")

    def wait_ready(self, timeout: float = 30.0) -> float:
        """Wait for FERRY-READY; returns the boot time in seconds."""
        wait_for_line(self.console, r"^FERRY-READY ", timeout, check=self.check)
        return time.monotonic() - self.started

    def wait_status(self, serial: str, min_seq: int, timeout: float = 30.0, since: int = 0) -> DiskStatus:
        want = guest_serial(serial)
        st = wait_for_status(
            self.console, lambda s: s.serial == want and (s.seq >= min_seq or not s.healthy), timeout,
            since=since, check=self.check,
        )  # fmt: skip
        assert st.healthy, st
        return st

    def stop(self) -> None:
        """Graceful stop: on SIGTERM QEMU flushes its images before exiting."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stderr:
            self.proc.stderr.close()


@pytest.fixture
def vms() -> Iterator[list[Vm]]:
    started: list[Vm] = []
    yield started
    for vm in started:
        vm.stop()


def qcow2(path: Path, size: str = "64M", backing: Path | None = None) -> Path:
    cmd = ["qemu-img", "create", "-q", "-f", "qcow2"]
    if backing is not None:
        cmd += ["-b", str(backing), "-F", "qcow2"]
    subprocess.run(cmd + [str(path)] + ([] if backing else [size]), check=True)
    return path


def test_boot_write_verify_and_continue_after_reboot(
    guest_build: tuple[Path, Path], tmp_path: Path, vms: list[Vm]
) -> None:
    serial = str(uuid.uuid4())  # 36 chars: the guest sees the first 20
    base = qcow2(tmp_path / "base.qcow2")
    cmdline = GUEST_CMDLINE(rate=400, span_mb=SPAN_MB, sync_every=16)

    vm = Vm(tmp_path / "boot1", guest_build, cmdline, [(base, serial)])
    vms.append(vm)
    boot_s = vm.wait_ready()
    print(f"boot to FERRY-READY: {boot_s:.2f}s")
    st = vm.wait_status(serial, min_seq=1200)  # > 2 laps over the 512-block span
    assert st.first_seq == 1 and st.nblocks == SPAN_MB * 256 and st.verified > 0
    vm.stop()
    final = latest_by_serial(vm.console.read_text(errors="replace"))[guest_serial(serial)]
    assert final.healthy

    rep = verify_image(base, serial, synced_seq=final.synced_seq, span_mb=SPAN_MB, first_seq=final.first_seq)
    assert rep.ok, "\n".join([rep.summary(), *rep.failures[:20]])
    assert rep.bad == 0 and rep.zero == 0 and rep.valid == st.nblocks
    assert rep.max_seq >= final.synced_seq

    # The verifier must notice damage: a flipped payload byte, a block in the wrong place.
    data = bytearray(read_span(base, SPAN_MB << 20))
    data[5 * BLOCK + 100] ^= 0xFF
    data[7 * BLOCK : 8 * BLOCK] = data[8 * BLOCK : 9 * BLOCK]
    bad = verify_bytes(bytes(data), serial, synced_seq=final.synced_seq)
    assert bad.bad == 2 and not bad.ok
    assert bad.failures[0].startswith("block 5: CRC mismatch") and bad.failures[-1].startswith("block 7:")

    # Reboot on a snapshot overlay: the guest reads the span through the chain and continues the
    # sequence after the highest seq on disk; the verifier reads the chain too.
    top = qcow2(tmp_path / "top.qcow2", backing=base)
    vm2 = Vm(tmp_path / "boot2", guest_build, cmdline, [(top, serial)])
    vms.append(vm2)
    vm2.wait_ready()
    st2 = vm2.wait_status(serial, min_seq=rep.max_seq + 600)
    assert st2.first_seq == rep.max_seq + 1
    vm2.stop()
    final2 = latest_by_serial(vm2.console.read_text(errors="replace"))[guest_serial(serial)]
    rep2 = verify_image(
        top, serial, synced_seq=final2.synced_seq, span_mb=SPAN_MB, first_seq=final2.first_seq
    )
    assert rep2.ok, "\n".join([rep2.summary(), *rep2.failures[:20]])
    assert rep2.max_seq >= final2.synced_seq > rep.max_seq


async def _hotplug_scenario(vm: Vm, cold_serial: str, image: Path, serial: str) -> None:
    qmp = QMPClient("test-guest")
    await asyncio.wait_for(qmp.connect(str(vm.qmp_path)), timeout=10)
    try:
        since = console_offset(vm.console)
        await qmp.execute("blockdev-add", {"driver": "file", "filename": str(image), "node-name": "hp-file"})
        await qmp.execute("blockdev-add", {"driver": "qcow2", "file": "hp-file", "node-name": "hp-fmt"})
        await qmp.execute(
            "device_add",
            {"driver": "virtio-blk-pci", "id": "hp-disk", "bus": "rp1", "drive": "hp-fmt", "serial": serial},
        )
        added = await asyncio.to_thread(
            wait_for_event, vm.console, "added", serial, 15, since=since, check=vm.check
        )
        assert added.dev.startswith("vd")
        st = await asyncio.to_thread(vm.wait_status, serial, 300, 20, since)
        assert st.dev == added.dev

        since = console_offset(vm.console)
        with qmp.listener("DEVICE_DELETED") as deleted:
            await qmp.execute("device_del", {"id": "hp-disk"})
            removed = await asyncio.to_thread(
                wait_for_event, vm.console, "removed", serial, 30, since=since, check=vm.check
            )
            assert removed.dev == added.dev
            # The guest let go of the disk; QEMU confirms once the device is really gone.
            while True:
                data = (await asyncio.wait_for(deleted.get(), 30))["data"]
                if isinstance(data, dict) and data.get("device") == "hp-disk":
                    break
        await qmp.execute("blockdev-del", {"node-name": "hp-fmt"})
        await qmp.execute("blockdev-del", {"node-name": "hp-file"})
    finally:
        await qmp.disconnect()

    text = vm.console.read_text(errors="replace")
    final = latest_by_serial(text)[guest_serial(serial)]  # printed just before REMOVED
    assert final.healthy, final
    rep = verify_image(image, serial, synced_seq=final.synced_seq, span_mb=SPAN_MB, first_seq=final.first_seq)
    assert rep.ok, "\n".join([rep.summary(), *rep.failures[:20]])

    # The cold-plugged disk was not disturbed and keeps going.
    before = latest_by_serial(text)[guest_serial(cold_serial)]
    vm.wait_status(cold_serial, before.seq + 100, 10, since=console_offset(vm.console))


def test_hotplug_and_unplug(guest_build: tuple[Path, Path], tmp_path: Path, vms: list[Vm]) -> None:
    cold_serial, hot_serial = str(uuid.uuid4()), str(uuid.uuid4())
    cold = qcow2(tmp_path / "cold.qcow2")
    hot = qcow2(tmp_path / "hot.qcow2")
    vm = Vm(tmp_path, guest_build, GUEST_CMDLINE(rate=200, span_mb=SPAN_MB), [(cold, cold_serial)])
    vms.append(vm)
    vm.wait_ready()
    vm.wait_status(cold_serial, 50)
    asyncio.run(_hotplug_scenario(vm, cold_serial, hot, hot_serial))
