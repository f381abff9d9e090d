"""The QEMU process: its command line, starting it in its own session, finding and ending it.

Owns: the argv (machine, root ports, QMP on a socket we create, serial console to the run dir's
log, boot kernel or disk, disks present at boot), the pid as /proc confirms it, waiting for exit
on a pidfd, and quit → SIGKILL.
Does not own the QMP session (session.py) nor the run dir's layout (rundir.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ferry.domain.errors import DriverError
from ferry.domain.ids import require_uuid
from ferry.drivers.hypervisor.base import ServerSpec
from ferry.drivers.hypervisor.qemu.devices import device_args
from ferry.drivers.hypervisor.qemu.nodes import chain_options, format_node, node_options
from ferry.drivers.hypervisor.qemu.rundir import RunDir
from ferry.drivers.hypervisor.qmp import QmpConnection


@dataclass(frozen=True)
class QemuCommand:
    """How this driver runs QEMU: the same for every server."""

    binary: str
    accel: str
    machine: str
    root_ports: int

    def argv(
        self, run: RunDir, spec: ServerSpec, qmp_fd: int, ports: dict[str, str] | None = None
    ) -> list[str]:
        """`ports`: an incoming migration's destination: each disk on the root port it has on the
        source (by volume id), and the guest waits for its state (`-incoming defer`), running as
        soon as it has it (no `-S`)."""
        argv = [
            self.binary, "-name", spec.server_id,
            "-nodefaults", "-no-user-config", "-display", "none",
            "-machine", self.machine, "-accel", self.accel,
            "-m", str(spec.ram_mb), "-smp", str(spec.vcpus),
            "-pidfile", str(run.pidfile),
            "-chardev", f"socket,id=qmp,fd={qmp_fd},server=on,wait=off",
            "-mon", "chardev=qmp,mode=control",
            "-chardev", f"file,id=con,path={run.console}", "-serial", "chardev:con",
        ]  # fmt: skip
        argv += ["-incoming", "defer"] if ports is not None else ["-S"]
        argv += boot_args(spec)
        for k in range(self.root_ports):
            argv += ["-device", f"pcie-root-port,id=rp{k},bus=pcie.0,chassis={k + 1},port={0x10 + k}"]
        for k, chain in enumerate(spec.disks):
            volume_id = require_uuid(chain.volume_id, "volume id")
            argv += [a for opts in chain_options(chain.layers) for a in ("-blockdev", json.dumps(opts))]
            port = ports[volume_id] if ports is not None else f"rp{k}"
            device = device_args(volume_id, format_node(chain.active.path), port)
            argv += ["-device", json.dumps(device)]
        return argv

    async def start(
        self, run: RunDir, spec: ServerSpec, ports: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """Start QEMU (paused: -S, or waiting for an incoming migration) in a session of its own,
        so it outlives the control plane."""
        sock = listening_socket(run.socket)
        try:
            with open(run.log, "ab") as log:
                return await asyncio.to_thread(
                    subprocess.Popen,
                    self.argv(run, spec, sock.fileno(), ports),
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=log,
                    pass_fds=(sock.fileno(),),
                    start_new_session=True,
                    umask=0o077,
                )
        except OSError as exc:
            raise DriverError(f"server {spec.server_id}: cannot start {self.binary}", exc) from exc
        finally:
            sock.close()


def boot_args(spec: ServerSpec) -> list[str]:
    args: list[str] = []
    if spec.kernel:
        args += ["-kernel", spec.kernel, "-append", spec.cmdline]
        if spec.initrd:
            args += ["-initrd", spec.initrd]
    if spec.boot_disk is not None:
        protocol, fmt = node_options(spec.boot_disk, None, writable=True)
        fmt.pop("backing", None)  # a boot image opens the backing file its header names, if any
        args += ["-blockdev", json.dumps(protocol), "-blockdev", json.dumps(fmt)]
        args += ["-device", f"virtio-blk-pci,id=boot,drive={fmt['node-name']},bootindex=0"]
    return args


def listening_socket(path: Path) -> socket.socket:
    """The QMP socket, created by us (mode 0600 before anyone can connect) and handed to QEMU."""
    path.unlink(missing_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(path))
        os.chmod(path, 0o600)
        sock.listen(1)
    except OSError:
        sock.close()
        raise
    return sock


def qemu_pid(run: RunDir) -> int | None:
    """The pid of the live QEMU of this run dir, checked against /proc so a recycled pid or a
    zombie never counts."""
    try:
        pid = int(run.pidfile.read_text().strip())
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return None
    return pid if os.fsencode(run.pidfile) in argv else None


async def wait_exit(pid: int, timeout: float) -> bool:
    """Wait (on a pidfd, no polling) until process `pid` has exited. False on timeout."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    loop = asyncio.get_running_loop()
    exited: asyncio.Future[None] = loop.create_future()

    def on_exit() -> None:
        if not exited.done():
            exited.set_result(None)

    loop.add_reader(fd, on_exit)
    try:
        await asyncio.wait_for(exited, timeout)
        return True
    except TimeoutError:
        return False
    finally:
        loop.remove_reader(fd)
        os.close(fd)


async def resume(conn: QmpConnection) -> None:
    """Start the guest (QEMU starts with -S so that the session exists before the guest runs)."""
    status = await conn.execute("query-status")
    if status.get("status") == "prelaunch":
        await conn.execute("cont")


async def end_process(conn: QmpConnection | None, pid: int, grace: float, name: str) -> None:
    """Ask QEMU to quit (QMP `quit`, else SIGTERM); SIGKILL it after `grace` seconds."""
    await _ask_to_quit(conn, pid)
    if await wait_exit(pid, grace):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    if not await wait_exit(pid, grace):
        raise DriverError(f"server {name}: QEMU pid {pid} survived SIGKILL")


async def _ask_to_quit(conn: QmpConnection | None, pid: int) -> None:
    if conn is not None and conn.alive:
        with contextlib.suppress(DriverError):
            await conn.execute("quit")
            return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)


async def kill_child(process: subprocess.Popen[bytes] | None, grace: float) -> None:
    """A spawn that failed half-way leaves no process behind."""
    if process is not None and process.poll() is None:
        process.kill()
        await wait_exit(process.pid, grace)
        process.poll()
