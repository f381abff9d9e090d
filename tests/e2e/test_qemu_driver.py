"""End-to-end tests of QemuDriver against real QEMU (TCG).

Most tests run QEMU without a kernel: it idles in firmware, and blockdev-add, blockdev-mirror,
blockdev-snapshot and block-stream all work without a guest OS. Unplugging a disk needs a guest
that acknowledges it, so that test boots the test guest.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

from ferry.domain.errors import Conflict, DriverError, NotFound
from ferry.domain.migration import MirrorCondition
from ferry.domain.model import DiskChain, LayerFile
from ferry.drivers.hypervisor.base import JobStatus, ServerSpec
from ferry.drivers.hypervisor.qemu import QemuDriver, file_node, format_node
from testkit.guest import (
    GUEST_CMDLINE,
    DiskStatus,
    console_offset,
    guest_paths,
    guest_serial,
    latest_by_serial,
    wait_for_event,
    wait_for_line,
    wait_for_status,
)
from testkit.verify import verify_image

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(180),
    pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None, reason="needs qemu-system-x86_64"),
]

MiB = 1024**2
DISK = "64M"
T = TypeVar("T")


def run(coro: Awaitable[T]) -> T:
    return asyncio.run(coro)  # type: ignore[arg-type]


def sh(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


def qemu_io(path: Path, command: str) -> None:
    sh("qemu-io", "-f", "qcow2", "-c", command, str(path))


def make_chain(volume_dir: Path, volume_id: str, *, writes: tuple[str, ...] = ("0 8M", "4M 8M")) -> DiskChain:
    """A two-layer qcow2 chain (relative backing name, as the storage driver writes them) with
    pattern 1 written into the base and pattern 2 into the top (`writes=()`: empty)."""
    volume_dir.mkdir(parents=True, exist_ok=True)
    base, top = volume_dir / "base.qcow2", volume_dir / "top.qcow2"
    sh("qemu-img", "create", "-q", "-f", "qcow2", str(base), DISK)
    sh("qemu-img", "create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", str(top))
    for pattern, (layer, extent) in enumerate(zip((base, top), writes, strict=False), start=1):
        qemu_io(layer, f"write -P {pattern} {extent}")
    return DiskChain(volume_id, (LayerFile(str(base)), LayerFile(str(top))))


def copy_for_mirror(source: DiskChain, target_dir: Path) -> DiskChain:
    """Migration steps 2-3: copy the read-only base, then an empty active layer backed by it."""
    target_dir.mkdir(parents=True, exist_ok=True)
    base, top = target_dir / "base.qcow2", target_dir / "top.qcow2"
    sh("qemu-img", "convert", "-U", "-O", "qcow2", source.layers[0].path, str(base))
    sh("qemu-img", "create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", str(top), DISK)
    return DiskChain(source.volume_id, (LayerFile(str(base)), LayerFile(str(top))))


def paths(chain: DiskChain) -> tuple[str, ...]:
    """Files of a chain, active first (as DiskInfo.files lists them)."""
    return tuple(layer.path for layer in reversed(chain.layers))


def nodes(chain: DiskChain) -> set[str]:
    return {n for layer in chain.layers for n in (format_node(layer.path), file_node(layer.path))}


@dataclass
class Env:
    run_root: Path
    images: Path
    spawned: list[str] = field(default_factory=list)

    def driver(self, **kw: Any) -> QemuDriver:
        return QemuDriver(self.run_root, **kw)

    def spec(self, *disks: DiskChain, **kw: Any) -> ServerSpec:
        server_id = str(uuid.uuid4())
        self.spawned.append(server_id)
        return ServerSpec(server_id, vcpus=1, ram_mb=128, disks=disks, **kw)


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    # A short root: unix socket paths are limited to 107 bytes, pytest's tmp_path can be longer.
    run_root = Path(tempfile.mkdtemp(prefix="ferry-qd-", dir="/var/tmp"))
    e = Env(run_root, tmp_path)
    yield e

    async def cleanup() -> None:
        driver = e.driver()
        for server_id in e.spawned:
            await driver.destroy(server_id)

    run(cleanup())
    shutil.rmtree(run_root, ignore_errors=True)


ready = MirrorCondition.READY


async def timed(what: str, aw: Awaitable[T]) -> T:
    start = time.monotonic()
    result = await aw
    print(f"{what}: {(time.monotonic() - start) * 1000:.1f} ms")
    return result


# -- life cycle -------------------------------------------------------------------------------
def test_spawn_with_a_disk_serial_socket_and_session(env: Env) -> None:
    vol = str(uuid.uuid4())
    chain = make_chain(env.images / vol, vol)
    boot = env.images / "boot.qcow2"
    sh("qemu-img", "create", "-q", "-f", "qcow2", str(boot), "16M")
    spec = env.spec(chain, boot_disk=LayerFile(str(boot)))

    async def main() -> None:
        drv = env.driver()
        await drv.spawn(spec)
        [disk] = await drv.disks(spec.server_id)  # the boot disk is not a volume
        assert (disk.volume_id, disk.serial, disk.files) == (vol, vol, paths(chain))
        assert await drv.serial(spec.server_id, vol) == vol
        assert await drv.is_running(spec.server_id)
        await drv.spawn(spec)  # idempotent: already running
        await drv.close()

    run(main())
    run_dir = env.run_root / spec.server_id
    assert stat.S_IMODE(os.stat(run_dir).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(run_dir / "qmp.sock").st_mode) == 0o600
    assert stat.S_ISSOCK(os.stat(run_dir / "qmp.sock").st_mode)
    pid = int((run_dir / "qemu.pid").read_text())
    assert os.getsid(pid) == pid and os.getpgid(pid) == pid, "QEMU must lead its own session"
    assert os.getsid(pid) != os.getsid(0)
    assert env.driver().run_dir(spec.server_id).console.exists()


def test_console_of_a_server_without_a_run_dir_is_not_found(env: Env) -> None:
    async def main() -> None:
        with pytest.raises(NotFound, match="no console log"):
            await env.driver().console_output(str(uuid.uuid4()))
        with pytest.raises(NotFound, match="no console log"):
            await env.driver().console_read(str(uuid.uuid4()), 0)

    run(main())


def test_spawn_failure_reports_qemus_error(env: Env) -> None:
    spec = env.spec()

    async def main() -> None:
        with pytest.raises(DriverError, match="nosuchaccel"):
            await env.driver(accel="nosuchaccel").spawn(spec)

    run(main())


def test_only_one_qmp_client_per_socket(env: Env) -> None:
    spec = env.spec()

    async def main() -> None:
        first = env.driver()
        await first.spawn(spec)
        with pytest.raises(DriverError, match="another one connected"):
            await env.driver(connect_timeout=1).reconnect(spec.server_id)
        assert await first.disks(spec.server_id) == []  # the first session is unharmed
        await first.close()
        assert await env.driver().reconnect(spec.server_id)

    run(main())


def test_stop_and_destroy_are_idempotent(env: Env) -> None:
    spec = env.spec()

    async def main() -> None:
        drv = env.driver()
        await drv.spawn(spec)
        pid = int((env.run_root / spec.server_id / "qemu.pid").read_text())
        await drv.stop(spec.server_id)
        assert not await drv.is_running(spec.server_id)
        assert not Path(f"/proc/{pid}/cmdline").exists() or not Path(f"/proc/{pid}/cmdline").read_bytes()
        await drv.stop(spec.server_id)
        assert not await drv.reconnect(spec.server_id)
        await drv.destroy(spec.server_id)
        await drv.destroy(spec.server_id)

    run(main())
    assert not (env.run_root / spec.server_id).exists()


# -- disks ------------------------------------------------------------------------------------
def test_attach_a_two_layer_chain(env: Env) -> None:
    vol = str(uuid.uuid4())
    chain = make_chain(env.images / vol, vol)
    spec = env.spec()

    async def main() -> None:
        drv = env.driver()
        await drv.spawn(spec)
        await drv.attach_disk(spec.server_id, chain)
        [disk] = await drv.disks(spec.server_id)
        assert (disk.volume_id, disk.serial, disk.files) == (vol, vol, paths(chain))
        await drv.attach_disk(spec.server_id, chain)  # idempotent
        assert len(await drv.disks(spec.server_id)) == 1
        assert nodes(chain) <= await drv.block_nodes(spec.server_id)

    run(main())


def test_no_free_slot_is_a_conflict_and_leaks_no_node(env: Env) -> None:
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    spec = env.spec(make_chain(env.images / first, first))
    other = make_chain(env.images / second, second)

    async def main() -> None:
        drv = env.driver(root_ports=1)
        await drv.spawn(spec)
        before = await drv.block_nodes(spec.server_id)
        with pytest.raises(Conflict, match="no free hotplug slot"):
            await drv.attach_disk(spec.server_id, other)
        assert await drv.block_nodes(spec.server_id) == before

    run(main())


def test_live_snapshot_then_merge_the_middle_layer(env: Env) -> None:
    vol = str(uuid.uuid4())
    chain = make_chain(env.images / vol, vol)
    base, top = (Path(layer.path) for layer in chain.layers)
    snap = base.parent / "snap.qcow2"
    spec = env.spec(chain)

    async def main() -> None:
        drv = env.driver()
        await drv.spawn(spec)
        sh("qemu-img", "create", "-q", "-f", "qcow2", "-b", "top.qcow2", "-F", "qcow2", str(snap))
        await drv.snapshot_disk(spec.server_id, vol, LayerFile(str(snap)))
        await drv.snapshot_disk(spec.server_id, vol, LayerFile(str(snap)))  # idempotent
        [disk] = await drv.disks(spec.server_id)
        assert disk.files == (str(snap), str(top), str(base))

        await timed(
            "merge_layer (block-stream 64 MiB)", drv.merge_layer(spec.server_id, vol, LayerFile(str(top)))
        )
        [disk] = await drv.disks(spec.server_id)
        assert disk.files == (str(snap), str(base))
        assert format_node(str(top)) not in await drv.block_nodes(spec.server_id)
        header = json.loads(sh("qemu-img", "info", "-U", "--output=json", str(snap)))
        assert header["backing-filename"] == "base.qcow2", "the backing name must stay relative"
        await drv.merge_layer(spec.server_id, vol, LayerFile(str(top)))  # idempotent
        await drv.merge_layer(spec.server_id, vol, LayerFile(str(base)))  # the base layer: no backing left
        [disk] = await drv.disks(spec.server_id)
        assert disk.files == (str(snap),)
        await drv.stop(spec.server_id)  # QEMU caches qcow2 metadata: read the files after it quits

    run(main())
    info = json.loads(sh("qemu-img", "info", "--output=json", str(snap)))
    assert "backing-filename" not in info
    # Everything the chain held is in the one remaining layer.
    sh("qemu-io", "-r", "-c", "read -P 1 0 4M", "-c", "read -P 2 4M 8M", str(snap))


# -- mirror -----------------------------------------------------------------------------------
def test_mirror_sync_top_then_pivot(env: Env) -> None:
    vol, job = str(uuid.uuid4()), str(uuid.uuid4())
    source = make_chain(env.images / "src", vol, writes=("0 16M", "8M 32M"))
    target = copy_for_mirror(source, env.images / "dst")
    spec = env.spec(source)

    async def main() -> None:
        drv = env.driver()
        await drv.spawn(spec)
        await drv.start_mirror(spec.server_id, vol, job, target, sync_top=True, speed=0)
        await drv.start_mirror(spec.server_id, vol, job, target, sync_top=True, speed=0)  # idempotent
        status = await timed("READY (sync top, 32 MiB in the top of a 64 MiB disk)",
                             drv.wait_mirror(spec.server_id, job, ready, timeout=60))  # fmt: skip
        assert status.status is JobStatus.READY and status.offset == status.length > 0
        assert await drv.target_chain(spec.server_id, job) == paths(target)

        await timed("pivot", drv.pivot(spec.server_id, job))
        [disk] = await drv.disks(spec.server_id)
        assert disk.files == paths(target) and disk.serial == vol
        assert await drv.mirror_status(spec.server_id, job) is None

        await drv.drop_files(spec.server_id, source.layers)
        await drv.drop_files(spec.server_id, source.layers)  # idempotent
        open_nodes = await drv.block_nodes(spec.server_id)
        assert not nodes(source) & open_nodes and nodes(target) <= open_nodes

    run(main())
    assert "identical" in sh("qemu-img", "compare", "-U", source.layers[-1].path, target.layers[-1].path)


def test_cancel_before_ready_leaves_the_disk_on_the_source(env: Env) -> None:
    vol, job = str(uuid.uuid4()), str(uuid.uuid4())
    source = make_chain(env.images / "src", vol, writes=("0 8M", "0 32M"))
    target = copy_for_mirror(source, env.images / "dst")
    spec = env.spec(source)

    async def main() -> None:
        drv = env.driver()
        await drv.spawn(spec)
        await drv.start_mirror(spec.server_id, vol, job, target, sync_top=True, speed=1 * MiB)
        status = await drv.mirror_status(spec.server_id, job)
        assert status is not None and not status.ready
        await timed("cancel before READY", drv.cancel_mirror(spec.server_id, job, target))
        await drv.cancel_mirror(spec.server_id, job, target)  # idempotent
        await assert_on_source(drv, spec.server_id, source, target, job)

    run(main())


def test_cancel_after_ready_in_write_blocking_mode(env: Env) -> None:
    vol, job = str(uuid.uuid4()), str(uuid.uuid4())
    source = make_chain(env.images / "src", vol)
    target = copy_for_mirror(source, env.images / "dst")
    spec = env.spec(source)

    async def main() -> None:
        drv = env.driver()
        await drv.spawn(spec)
        await drv.start_mirror(spec.server_id, vol, job, target, sync_top=True, speed=0)
        await drv.wait_mirror(spec.server_id, job, ready, timeout=60)
        await drv.set_write_blocking(spec.server_id, job)
        await drv.set_write_blocking(spec.server_id, job)  # idempotent
        status = await drv.wait_mirror(spec.server_id, job, MirrorCondition.CONVERGED, timeout=30)
        assert status.write_blocking and status.ready
        await timed("cancel after READY", drv.cancel_mirror(spec.server_id, job, target))
        await assert_on_source(drv, spec.server_id, source, target, job)

    run(main())


def test_target_chain_shows_a_target_opened_without_its_backing(env: Env) -> None:
    vol, job = str(uuid.uuid4()), str(uuid.uuid4())
    source = make_chain(env.images / "src", vol)
    target = copy_for_mirror(source, env.images / "dst")
    top_only = DiskChain(vol, target.layers[-1:])
    spec = env.spec(source)

    async def main() -> None:
        drv = env.driver()
        await drv.spawn(spec)
        await drv.start_mirror(spec.server_id, vol, job, top_only, sync_top=True, speed=MiB)
        # Invariant 4: what the service compares against the plan before it pivots.
        assert await drv.target_chain(spec.server_id, job) == (target.layers[-1].path,)
        await drv.cancel_mirror(spec.server_id, job, top_only)
        await assert_on_source(drv, spec.server_id, source, target, job)

    run(main())


async def assert_on_source(
    drv: QemuDriver, server_id: str, source: DiskChain, target: DiskChain, job: str
) -> None:
    [disk] = await drv.disks(server_id)
    assert disk.files == paths(source)
    assert await drv.mirror_status(server_id, job) is None
    open_nodes = await drv.block_nodes(server_id)
    assert nodes(source) <= open_nodes and not nodes(target) & open_nodes


CONTROL_PLANE = textwrap.dedent(
    """
    import asyncio, json, signal, sys
    from ferry.domain.model import DiskChain, LayerFile
    from ferry.drivers.hypervisor.base import ServerSpec
    from ferry.drivers.hypervisor.qemu import QemuDriver

    async def main():
        a = json.loads(sys.argv[1])
        source = DiskChain(a["vol"], tuple(LayerFile(p) for p in a["source"]))
        target = DiskChain(a["vol"], tuple(LayerFile(p) for p in a["target"]))
        drv = QemuDriver(a["root"])
        await drv.spawn(ServerSpec(a["server"], vcpus=1, ram_mb=128, disks=(source,)))
        await drv.start_mirror(a["server"], a["vol"], a["job"], target, sync_top=True, speed=a["speed"])
        print("started", flush=True)
        signal.pause()

    asyncio.run(main())
    """
)


def test_reconnect_after_the_control_plane_is_killed(env: Env) -> None:
    vol, job = str(uuid.uuid4()), str(uuid.uuid4())
    source = make_chain(env.images / "src", vol, writes=("0 8M", "0 32M"))
    target = copy_for_mirror(source, env.images / "dst")
    spec = env.spec(source)
    args = {
        "root": str(env.run_root), "server": spec.server_id, "vol": vol, "job": job, "speed": MiB,
        "source": [layer.path for layer in source.layers], "target": [layer.path for layer in target.layers],
    }  # fmt: skip
    plane = subprocess.Popen(
        [sys.executable, "-c", CONTROL_PLANE, json.dumps(args)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert plane.stdout is not None and plane.stdout.readline().strip() == "started"
    finally:
        plane.send_signal(signal.SIGKILL)
        plane.wait()

    async def main() -> None:
        drv = env.driver()
        assert await drv.reconnect(spec.server_id)
        assert await drv.reconnect(spec.server_id)  # already connected
        status = await drv.mirror_status(spec.server_id, job)
        assert status is not None and status.status is JobStatus.RUNNING and not status.ready
        [disk] = await drv.disks(spec.server_id)
        assert disk.files == paths(source) and disk.serial == vol
        await drv.set_mirror_speed(spec.server_id, job, 0)
        await drv.wait_mirror(spec.server_id, job, ready, timeout=60)
        await drv.pivot(spec.server_id, job)
        [disk] = await drv.disks(spec.server_id)
        assert disk.files == paths(target)

    run(main())


def test_commands_on_a_dead_server_fail_cleanly(env: Env) -> None:
    vol, job = str(uuid.uuid4()), str(uuid.uuid4())
    source = make_chain(env.images / "src", vol, writes=("0 8M", "0 32M"))
    target = copy_for_mirror(source, env.images / "dst")
    spec = env.spec(source)

    async def main() -> None:
        drv = env.driver()
        await drv.spawn(spec)
        await drv.start_mirror(spec.server_id, vol, job, target, sync_top=True, speed=MiB)
        pid = int((env.run_root / spec.server_id / "qemu.pid").read_text())
        waiting = asyncio.ensure_future(drv.wait_mirror(spec.server_id, job, ready, timeout=60))
        os.kill(pid, signal.SIGKILL)
        with pytest.raises((DriverError, NotFound), match=r"lost|not running"):
            await waiting
        assert not await drv.is_running(spec.server_id)

    run(main())


# -- with the test guest: hotplug and unplug ----------------------------------------------------
SPAN_MB = 16


def test_hotplug_mirror_under_writes_and_unplug(env: Env, guest_dir: Path) -> None:
    kernel, initrd = guest_paths(guest_dir)
    vol, job = str(uuid.uuid4()), str(uuid.uuid4())
    source = make_chain(env.images / "src", vol, writes=())
    target = copy_for_mirror(source, env.images / "dst")
    spec = env.spec(kernel=str(kernel), initrd=str(initrd), cmdline=GUEST_CMDLINE(rate=0, span_mb=SPAN_MB))
    serial = guest_serial(vol)

    def writing_since(console: Path, since: int) -> DiskStatus:
        return wait_for_status(console, lambda s: s.serial == serial and s.wps > 0, 60, since=since)

    async def main() -> DiskStatus:
        drv = env.driver()
        await drv.spawn(spec)
        console = drv.run_dir(spec.server_id).console
        await asyncio.to_thread(wait_for_line, console, "FERRY-READY", 120)
        assert "FERRY-READY" in await drv.console_output(spec.server_id)
        assert len((await drv.console_output(spec.server_id, length=1)).splitlines()) == 1
        head, after = await drv.console_read(spec.server_id, 0, 1 << 20)
        assert b"FERRY-READY" in head and after == len(head)
        since = console_offset(console)
        await drv.attach_disk(spec.server_id, source)
        await asyncio.to_thread(wait_for_event, console, "added", vol, 60, since=since)
        await asyncio.to_thread(writing_since, console, since)

        await drv.start_mirror(spec.server_id, vol, job, target, sync_top=True, speed=0)
        await timed("READY under guest writes", drv.wait_mirror(spec.server_id, job, ready, timeout=120))
        await drv.set_write_blocking(spec.server_id, job)
        await drv.wait_mirror(spec.server_id, job, MirrorCondition.CONVERGED, timeout=60)
        await timed("pivot under guest writes", drv.pivot(spec.server_id, job))
        [disk] = await drv.disks(spec.server_id)
        assert disk.files == paths(target) and disk.serial == vol
        await drv.drop_files(spec.server_id, source.layers)
        after = await asyncio.to_thread(writing_since, console, console_offset(console))
        assert after.healthy

        since = console_offset(console)
        await timed("detach (device_del until DEVICE_DELETED)", drv.detach_disk(spec.server_id, vol))
        await asyncio.to_thread(wait_for_event, console, "removed", vol, 60, since=since)
        assert await drv.disks(spec.server_id) == []
        assert not nodes(target) & await drv.block_nodes(spec.server_id)
        await drv.detach_disk(spec.server_id, vol)  # idempotent
        await drv.stop(spec.server_id)
        return latest_by_serial(console.read_text(errors="replace"))[serial]

    final = run(main())
    assert final.healthy and final.synced_seq > 0
    report = verify_image(target.layers[-1].path, vol, final.synced_seq, SPAN_MB, final.first_seq)
    assert report.ok, report.summary()


def test_front_end_qos_throttles_a_disk_the_guest_writes(env: Env, guest_dir: Path) -> None:
    """set_disk_limits (a type's front-end QoS at attach) is block_set_io_throttle on the device:
    QEMU reports the limits, and the guest's writes slow to them without an I/O error."""
    kernel, initrd = guest_paths(guest_dir)
    vol = str(uuid.uuid4())
    source = make_chain(env.images / "src", vol, writes=())
    spec = env.spec(kernel=str(kernel), initrd=str(initrd), cmdline=GUEST_CMDLINE(rate=0, span_mb=SPAN_MB))
    serial = guest_serial(vol)
    limit = 8

    async def main() -> DiskStatus:
        drv = env.driver()
        await drv.spawn(spec)
        console = drv.run_dir(spec.server_id).console
        await asyncio.to_thread(wait_for_line, console, "FERRY-READY", 120)
        since = console_offset(console)
        await drv.attach_disk(spec.server_id, source)
        await asyncio.to_thread(
            wait_for_status, console, lambda s: s.serial == serial and s.wps > 0, 60, since=since
        )
        await drv.set_disk_limits(spec.server_id, vol, {"write_iops_sec": limit, "total_bytes_sec": 4 * MiB})
        assert await drv.disk_throttle(spec.server_id, vol) == {
            "write_iops_sec": limit,
            "total_bytes_sec": 4 * MiB,
        }
        # two full one-second windows after the throttle: the guest still writes, at the limit
        marker = console_offset(console)
        first = await asyncio.to_thread(
            wait_for_status, console, lambda s: s.serial == serial, 60, since=marker
        )
        throttled = await asyncio.to_thread(
            wait_for_status, console, lambda s: s.serial == serial and s.t >= first.t + 2, 60, since=marker
        )
        with pytest.raises(NotFound):
            await drv.set_disk_limits(spec.server_id, str(uuid.uuid4()), {"write_iops_sec": 1})
        await drv.set_disk_limits(spec.server_id, vol, {})  # lifted
        assert await drv.disk_throttle(spec.server_id, vol) == {}
        await drv.stop(spec.server_id)
        return throttled

    status = run(main())
    assert 0 < status.wps <= limit * 2, status
    assert status.healthy, status
