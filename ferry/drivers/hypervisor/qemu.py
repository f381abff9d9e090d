"""The QEMU hypervisor driver: one QEMU process per server, driven over QMP.

Owns: a server's run directory (`<root>/<server_id>/`: QMP socket, pidfile, console, QEMU's
stderr, small notes about jobs and unplugs in flight), the QEMU command line, the process life
cycle (own session, so it outlives the control plane), block node naming, and the QMP sequences for
hotplug, live snapshots, merges and mirrors.
Does not own: policy (when to switch to write-blocking, whether a target is good enough to pivot
onto: the migration service decides) nor image files (the storage driver creates and deletes them).

Everything is derived from QEMU or the run directory, never from memory, so a fresh driver can
pick up a server started by an earlier control plane: node names come from the file path
("f"/"p" + 20 hex of sha1(path) for the format/protocol node), devices are `disk-<volume id>` on
`pcie-root-port`s `rp0..rpN-1`, and mirror jobs are QEMU jobs `ferry-<job id>`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from ferry.domain.errors import BadRequest, Conflict, DriverError, NotFound
from ferry.domain.ids import require_uuid
from ferry.domain.model import DiskChain, DiskFormat, LayerFile
from ferry.drivers.hypervisor.base import DiskInfo, HypervisorDriver, JobStatus, MirrorStatus, ServerSpec
from ferry.drivers.hypervisor.qmp import (
    Json,
    QmpCommandError,
    QmpConnection,
    Subscription,
    device_deleted,
    job_events,
)

T = TypeVar("T")

MAX_SOCKET_PATH = 107
PERIPHERAL = "/machine/peripheral"
JOB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
ROOT_PORT = re.compile(r"rp(\d+)")
FINISHED = (JobStatus.CONCLUDED, JobStatus.NULL)


# -- naming ------------------------------------------------------------------------------
def _abs(path: str) -> str:
    return os.path.abspath(path)


def _hash(path: str) -> str:
    return hashlib.sha1(_abs(path).encode()).hexdigest()[:20]


def format_node(path: str) -> str:
    """Node name of the format (qcow2/raw) node of an image file."""
    return "f" + _hash(path)


def file_node(path: str) -> str:
    """Node name of the protocol (file) node of an image file."""
    return "p" + _hash(path)


def device_id(volume_id: str) -> str:
    return f"disk-{volume_id}"


def qemu_job_id(job_id: str) -> str:
    if not JOB_ID.fullmatch(job_id):
        raise BadRequest(f"Invalid job id {job_id!r}.")
    return f"ferry-{job_id}"


def _layer_nodes_top_first(paths: Iterable[str]) -> list[str]:
    """Format then file node of each path, in the order given (pass them top first)."""
    return [name for p in paths for name in (format_node(p), file_node(p))]


def plain_filename(name: str) -> str:
    """The image file behind a QEMU filename: explicit backing overrides make QEMU report a
    `json:{...}` pseudo-filename whose `file.filename` is the real one."""
    if not name.startswith("json:"):
        return name
    node: Any = json.loads(name[len("json:") :])
    while isinstance(node, dict) and "file" in node:
        node = node["file"]
    return node if isinstance(node, str) else str(node.get("filename", name))


def chain_files(image: Json) -> tuple[str, ...]:
    """Files of an ImageInfo chain (`image`, `backing-image`, ...), active first."""
    files: list[str] = []
    level: Json | None = image
    while level is not None:
        files.append(plain_filename(str(level["filename"])))
        level = level.get("backing-image")
    return tuple(files)


def node_options(layer: LayerFile, backing: str | None, *, writable: bool) -> tuple[Json, Json]:
    """blockdev-add arguments of the file node and the format node of one layer."""
    path = _abs(layer.path)
    protocol: Json = {
        "driver": "file",
        "filename": path,
        "node-name": file_node(path),
        # Read-only layers are read-only at the format node; the file node follows its users
        # (auto-read-only), so a later block-stream into this layer can reopen it read-write.
        "read-only": False,
        "auto-read-only": not writable,
        "aio": "threads",
        "discard": "unmap",
    }
    fmt: Json = {
        "driver": layer.format.value,
        "file": file_node(path),
        "node-name": format_node(path),
        "read-only": not writable,
        "discard": "unmap",
        "detect-zeroes": "unmap",
    }
    if layer.format is DiskFormat.QCOW2:
        fmt["backing"] = backing
    elif backing is not None:
        raise BadRequest(f"{path}: a raw layer cannot have a backing layer.")
    return protocol, fmt


def chain_options(layers: Iterable[LayerFile], *, top_writable: bool = True) -> list[Json]:
    """blockdev-add arguments for a whole chain, base first, each file node before its format node."""
    layers = list(layers)
    options: list[Json] = []
    backing: str | None = None
    for i, layer in enumerate(layers):
        writable = top_writable and i == len(layers) - 1
        options.extend(node_options(layer, backing, writable=writable))
        backing = format_node(layer.path)
    return options


# -- run directory and process ------------------------------------------------------------
@dataclass(frozen=True)
class RunDir:
    """Layout of one server's run directory."""

    path: Path

    @property
    def socket(self) -> Path:
        return self.path / "qmp.sock"

    @property
    def pidfile(self) -> Path:
        return self.path / "qemu.pid"

    @property
    def console(self) -> Path:
        return self.path / "console.log"

    @property
    def log(self) -> Path:
        return self.path / "qemu.log"

    def note(self, kind: str, key: str) -> Path:
        return self.path / f"{kind}-{key}.json"

    def read_note(self, kind: str, key: str) -> Json | None:
        try:
            data = json.loads(self.note(kind, key).read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def write_note(self, kind: str, key: str, data: Json) -> None:
        target = self.note(kind, key)
        tmp = target.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, target)

    def drop_note(self, kind: str, key: str) -> None:
        self.note(kind, key).unlink(missing_ok=True)

    def log_tail(self, limit: int = 800) -> str:
        try:
            return self.log.read_text(errors="replace")[-limit:].strip()
        except OSError:
            return ""


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


@dataclass
class _Server:
    run: RunDir
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    conn: QmpConnection | None = None
    process: subprocess.Popen[bytes] | None = None


@dataclass(frozen=True)
class _Device:
    """An attached disk as query-block shows it."""

    volume_id: str
    top_node: str
    files: tuple[str, ...]


class QemuDriver(HypervisorDriver):
    def __init__(
        self,
        run_root: str | os.PathLike[str],
        qemu_binary: str = "qemu-system-x86_64",
        *,
        accel: str = "tcg",
        machine: str = "q35",
        root_ports: int = 8,
        connect_timeout: float = 10.0,
        command_timeout: float = 30.0,
        unplug_timeout: float = 30.0,
        job_timeout: float = 3600.0,
        stop_grace: float = 10.0,
        progress_interval: float = 1.0,
    ) -> None:
        self.run_root = Path(run_root).absolute()
        if len(str(self.run_root)) + len("/00000000-0000-0000-0000-000000000000/qmp.sock") > MAX_SOCKET_PATH:
            raise ValueError(f"run dir root {self.run_root} is too long for a unix socket path")
        self.qemu_binary = qemu_binary
        self.accel = accel
        self.machine = machine
        self.root_ports = root_ports
        self.connect_timeout = connect_timeout
        self.command_timeout = command_timeout
        self.unplug_timeout = unplug_timeout
        self.job_timeout = job_timeout
        self.stop_grace = stop_grace
        self.progress_interval = progress_interval
        """QEMU reports copy progress and `actively-synced` without events: a waiter re-queries
        at least this often (every job event wakes it at once)."""
        self._servers: dict[str, _Server] = {}

    # -- life cycle ----------------------------------------------------------------------
    async def spawn(self, spec: ServerSpec) -> None:
        server = self._server(spec.server_id)
        async with server.lock:
            if qemu_pid(server.run) is not None:
                await self._resume(await self._connect_locked(spec.server_id, server))
                return
            if len(spec.disks) > self.root_ports:
                raise Conflict(
                    f"server {spec.server_id}: {len(spec.disks)} disks but {self.root_ports} root ports"
                )
            server.run.path.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(server.run.path, 0o700)
            server.process = await self._start_process(server.run, spec)
            try:
                await self._resume(await self._connect_locked(spec.server_id, server))
            except DriverError as exc:
                await self._kill_child(server)
                tail = server.run.log_tail()
                raise DriverError(
                    f"server {spec.server_id}: QEMU did not come up ({tail or 'no output'})", exc
                ) from exc

    async def reconnect(self, server_id: str) -> bool:
        server = self._server(server_id)
        async with server.lock:
            if qemu_pid(server.run) is None:
                await self._drop_connection(server)
                return False
            await self._connect_locked(server_id, server)
            return True

    async def is_running(self, server_id: str) -> bool:
        return qemu_pid(self._server(server_id).run) is not None

    async def stop(self, server_id: str) -> None:
        server = self._server(server_id)
        async with server.lock:
            pid = qemu_pid(server.run)
            if pid is not None:
                await self._ask_to_quit(server, pid)
                if not await wait_exit(pid, self.stop_grace):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                    if not await wait_exit(pid, self.stop_grace):
                        raise DriverError(f"server {server_id}: QEMU pid {pid} survived SIGKILL")
            await self._drop_connection(server)
            if server.process is not None:
                server.process.poll()

    async def destroy(self, server_id: str) -> None:
        server = self._server(server_id)
        await self.stop(server_id)
        self._servers.pop(server.run.path.name, None)
        await asyncio.to_thread(shutil.rmtree, server.run.path, True)

    def console_path(self, server_id: str) -> str:
        return str(self._server(server_id).run.console)

    async def close(self) -> None:
        """Leave every QMP session; the QEMU processes keep running."""
        for server in self._servers.values():
            async with server.lock:
                await self._drop_connection(server)

    async def block_nodes(self, server_id: str) -> set[str]:
        """Names of every named block node QEMU has open (diagnostics and tests; not part of the
        contract)."""
        return await self._node_names(await self._conn(server_id))

    # -- disks ---------------------------------------------------------------------------
    async def attach_disk(self, server_id: str, chain: DiskChain) -> None:
        volume_id = require_uuid(chain.volume_id, "volume id")
        conn = await self._conn(server_id)
        peripherals = await self._peripherals(conn)
        if device_id(volume_id) in peripherals:
            current = await self._device(conn, volume_id)
            if current.files[0] == _abs(chain.active.path):
                return
            raise Conflict(f"volume {volume_id} is already attached to server {server_id} with other files")
        port = await self._free_port(conn, server_id, peripherals)
        added = await self._add_nodes(conn, chain_options(chain.layers))
        try:
            await conn.execute(
                "device_add", self._device_args(volume_id, format_node(chain.active.path), port)
            )
        except DriverError:
            await self._del_nodes(conn, reversed(added))
            raise

    async def detach_disk(self, server_id: str, volume_id: str) -> None:
        volume_id = require_uuid(volume_id, "volume id")
        server = self._server(server_id)
        conn = await self._conn(server_id)
        dev = device_id(volume_id)
        if dev in await self._peripherals(conn):
            device = await self._device(conn, volume_id)
            server.run.write_note("unplug", volume_id, {"nodes": _layer_nodes_top_first(device.files)})
            await self._unplug(conn, dev)
        note = server.run.read_note("unplug", volume_id)
        if note is not None:
            await self._del_nodes(conn, note["nodes"])
            server.run.drop_note("unplug", volume_id)

    async def disks(self, server_id: str) -> list[DiskInfo]:
        conn = await self._conn(server_id)
        devices = await self._devices(conn)
        return [DiskInfo(d.volume_id, await self._serial(conn, d.volume_id), d.files) for d in devices]

    async def serial(self, server_id: str, volume_id: str) -> str:
        return await self._serial(await self._conn(server_id), volume_id)

    async def snapshot_disk(self, server_id: str, volume_id: str, new_active: LayerFile) -> None:
        conn = await self._conn(server_id)
        device = await self._device(conn, volume_id)
        if device.files[0] == _abs(new_active.path):
            return
        added = await self._add_nodes(conn, list(node_options(new_active, None, writable=True)))
        try:
            await conn.execute(
                "blockdev-snapshot", {"node": device.top_node, "overlay": format_node(new_active.path)}
            )
        except DriverError:
            await self._del_nodes(conn, reversed(added))
            raise

    async def merge_layer(self, server_id: str, volume_id: str, layer: LayerFile) -> None:
        conn = await self._conn(server_id)
        device = await self._device(conn, volume_id)
        path = _abs(layer.path)
        if path in device.files:
            await self._stream_out(conn, device.files, device.files.index(path))
        await self._del_nodes(conn, _layer_nodes_top_first([path]))

    # -- mirror --------------------------------------------------------------------------
    async def start_mirror(
        self, server_id: str, volume_id: str, job_id: str, target: DiskChain, *, sync_top: bool, speed: int
    ) -> None:
        qid = qemu_job_id(job_id)
        if target.volume_id != volume_id:
            raise BadRequest(f"mirror target belongs to volume {target.volume_id}, not {volume_id}")
        run = self._server(server_id).run
        conn = await self._conn(server_id)
        if await self._job(conn, qid) is not None:
            return
        source = await self._device(conn, volume_id)
        if source.top_node == format_node(target.active.path):
            return  # pivoted already
        note = {
            "volume_id": volume_id,
            "target": [_abs(f.path) for f in target.layers],
            "write_blocking": False,
        }
        run.write_note("mirror", job_id, note)
        added = await self._add_nodes(conn, chain_options(target.layers))
        try:
            await conn.execute(
                "blockdev-mirror", self._mirror_args(qid, source.top_node, target, sync_top, speed)
            )
        except DriverError:
            await self._del_nodes(conn, reversed(added))
            run.drop_note("mirror", job_id)
            raise

    async def mirror_status(self, server_id: str, job_id: str) -> MirrorStatus | None:
        conn = await self._conn(server_id)
        return await self._mirror_status(conn, self._server(server_id).run, job_id)

    async def wait_mirror(
        self, server_id: str, job_id: str, until: Callable[[MirrorStatus], bool], timeout: float
    ) -> MirrorStatus:
        conn = await self._conn(server_id)
        run = self._server(server_id).run

        async def probe() -> MirrorStatus:
            status = await self._mirror_status(conn, run, job_id)
            if status is None:
                raise NotFound(f"server {server_id} has no mirror job {job_id}")
            return status

        with conn.subscribe(job_events(qemu_job_id(job_id))) as sub:
            return await self._wait(
                sub,
                probe,
                lambda s: s.status in FINISHED or until(s),
                timeout,
                f"mirror job {job_id}",
                self.progress_interval,
            )

    async def set_mirror_speed(self, server_id: str, job_id: str, speed: int) -> None:
        conn = await self._conn(server_id)
        await self._job_command(
            conn, job_id, "block-job-set-speed", {"device": qemu_job_id(job_id), "speed": speed}
        )

    async def set_write_blocking(self, server_id: str, job_id: str) -> None:
        run = self._server(server_id).run
        conn = await self._conn(server_id)
        note = run.read_note("mirror", job_id) or {}
        if note.get("write_blocking"):
            return
        args = {"id": qemu_job_id(job_id), "type": "mirror", "copy-mode": "write-blocking"}
        try:
            await self._job_command(conn, job_id, "block-job-change", args)
        except QmpCommandError as exc:
            if "Expected current copy mode" not in exc.desc:
                raise
        if note:
            run.write_note("mirror", job_id, {**note, "write_blocking": True})

    async def target_chain(self, server_id: str, job_id: str) -> tuple[str, ...]:
        conn = await self._conn(server_id)
        note = self._mirror_note(server_id, job_id)
        top = format_node(note["target"][-1])
        for node in await conn.query("query-named-block-nodes", {"flat": False}):
            if node.get("node-name") == top:
                return chain_files(node["image"])
        raise NotFound(f"server {server_id}: the target of mirror job {job_id} is not open")

    async def pivot(self, server_id: str, job_id: str) -> None:
        qid = qemu_job_id(job_id)
        run = self._server(server_id).run
        conn = await self._conn(server_id)
        note = self._mirror_note(server_id, job_id)
        with conn.subscribe(job_events(qid)) as sub:
            job = await self._job(conn, qid)
            if job is not None:
                if _status(job) not in (*FINISHED, JobStatus.WAITING, JobStatus.PENDING):
                    await conn.execute("job-complete", {"id": qid})
                job = await self._wait_job(conn, sub, qid, self.command_timeout)
        if job is not None:
            await conn.execute("job-dismiss", {"id": qid})
            if job.get("error"):
                run.drop_note("mirror", job_id)
                raise DriverError(f"mirror job {job_id} concluded with an error: {job['error']}")
        await self._confirm_on_target(conn, note)
        run.drop_note("mirror", job_id)

    async def cancel_mirror(self, server_id: str, job_id: str, target: DiskChain) -> None:
        qid = qemu_job_id(job_id)
        conn = await self._conn(server_id)
        with conn.subscribe(job_events(qid)) as sub:
            job = await self._job(conn, qid)
            if job is not None and _status(job) not in FINISHED:
                with contextlib.suppress(QmpCommandError):
                    await conn.execute("job-cancel", {"id": qid})
                job = await self._wait_job(conn, sub, qid, self.command_timeout)
        if job is not None:
            await conn.execute("job-dismiss", {"id": qid})
        await self._del_nodes(conn, _layer_nodes_top_first(_abs(f.path) for f in reversed(target.layers)))
        self._server(server_id).run.drop_note("mirror", job_id)

    async def drop_files(self, server_id: str, files: tuple[LayerFile, ...]) -> None:
        conn = await self._conn(server_id)
        await self._del_nodes(conn, _layer_nodes_top_first(_abs(f.path) for f in reversed(files)))

    # -- process -------------------------------------------------------------------------
    def _server(self, server_id: str) -> _Server:
        server_id = require_uuid(server_id, "server id")
        if server_id not in self._servers:
            self._servers[server_id] = _Server(RunDir(self.run_root / server_id))
        return self._servers[server_id]

    async def _start_process(self, run: RunDir, spec: ServerSpec) -> subprocess.Popen[bytes]:
        sock = listening_socket(run.socket)
        try:
            with open(run.log, "ab") as log:
                return await asyncio.to_thread(
                    subprocess.Popen,
                    self._argv(run, spec, sock.fileno()),
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=log,
                    pass_fds=(sock.fileno(),),
                    start_new_session=True,
                    umask=0o077,
                )
        except OSError as exc:
            raise DriverError(f"server {spec.server_id}: cannot start {self.qemu_binary}", exc) from exc
        finally:
            sock.close()

    def _argv(self, run: RunDir, spec: ServerSpec, qmp_fd: int) -> list[str]:
        argv = [
            self.qemu_binary, "-name", spec.server_id,
            "-nodefaults", "-no-user-config", "-display", "none", "-S",
            "-machine", self.machine, "-accel", self.accel,
            "-m", str(spec.ram_mb), "-smp", str(spec.vcpus),
            "-pidfile", str(run.pidfile),
            "-chardev", f"socket,id=qmp,fd={qmp_fd},server=on,wait=off",
            "-mon", "chardev=qmp,mode=control",
            "-chardev", f"file,id=con,path={run.console}", "-serial", "chardev:con",
        ]  # fmt: skip
        argv += self._boot_args(spec)
        for k in range(self.root_ports):
            argv += ["-device", f"pcie-root-port,id=rp{k},bus=pcie.0,chassis={k + 1},port={0x10 + k}"]
        for k, chain in enumerate(spec.disks):
            volume_id = require_uuid(chain.volume_id, "volume id")
            argv += [a for opts in chain_options(chain.layers) for a in ("-blockdev", json.dumps(opts))]
            device = self._device_args(volume_id, format_node(chain.active.path), f"rp{k}")
            argv += ["-device", json.dumps(device)]
        return argv

    @staticmethod
    def _boot_args(spec: ServerSpec) -> list[str]:
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

    async def _kill_child(self, server: _Server) -> None:
        """A spawn that failed half-way leaves no process behind."""
        process = server.process
        if process is not None and process.poll() is None:
            process.kill()
            await wait_exit(process.pid, self.stop_grace)
            process.poll()

    @staticmethod
    async def _resume(conn: QmpConnection) -> None:
        """Start the guest (QEMU starts with -S so that the session exists before the guest runs)."""
        status = await conn.execute("query-status")
        if status.get("status") == "prelaunch":
            await conn.execute("cont")

    async def _ask_to_quit(self, server: _Server, pid: int) -> None:
        if server.conn is not None and server.conn.alive:
            with contextlib.suppress(DriverError):
                await server.conn.execute("quit")
                return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)

    # -- QMP sessions ----------------------------------------------------------------------
    async def _conn(self, server_id: str) -> QmpConnection:
        server = self._server(server_id)
        if server.conn is not None and server.conn.alive:
            return server.conn
        async with server.lock:
            if qemu_pid(server.run) is None:
                await self._drop_connection(server)
                raise NotFound(f"server {server_id} is not running")
            return await self._connect_locked(server_id, server)

    async def _connect_locked(self, server_id: str, server: _Server) -> QmpConnection:
        if server.conn is not None and server.conn.alive:
            return server.conn
        await self._drop_connection(server)
        server.conn = await QmpConnection.open(
            str(server.run.socket),
            name=server_id,
            timeout=self.connect_timeout,
            command_timeout=self.command_timeout,
        )
        return server.conn

    @staticmethod
    async def _drop_connection(server: _Server) -> None:
        if server.conn is not None:
            await server.conn.close()
            server.conn = None

    # -- block nodes -------------------------------------------------------------------------
    @staticmethod
    async def _node_names(conn: QmpConnection) -> set[str]:
        return {str(n["node-name"]) for n in await conn.query("query-named-block-nodes", {"flat": True})}

    async def _add_nodes(self, conn: QmpConnection, options: list[Json]) -> list[str]:
        """blockdev-add each node that is not there yet; on failure delete the ones added here.
        Returns the names added, in order."""
        existing = await self._node_names(conn)
        added: list[str] = []
        try:
            for opts in options:
                if opts["node-name"] not in existing:
                    await conn.execute("blockdev-add", opts)
                    added.append(str(opts["node-name"]))
        except DriverError:
            await self._del_nodes(conn, reversed(added))
            raise
        return added

    async def _del_nodes(self, conn: QmpConnection, names: Iterable[str]) -> None:
        """blockdev-del the nodes that exist, in the order given (parents before children)."""
        existing = await self._node_names(conn)
        for name in names:
            if name in existing:
                await conn.execute("blockdev-del", {"node-name": name})

    async def _stream_out(self, conn: QmpConnection, files: tuple[str, ...], index: int) -> None:
        """block-stream layer `files[index]` into the layer above it; that layer's backing becomes
        the merged layer's backing (QEMU writes `backing-file`, kept relative, into its header)."""
        if index == 0:
            raise BadRequest(f"{files[0]} is the active layer; only a snapshot layer can be merged")
        child = files[index - 1]
        qid = "merge-" + format_node(child)
        args: Json = {"job-id": qid, "device": format_node(child), "auto-dismiss": False}
        if index + 1 < len(files):
            parent = files[index + 1]
            args["base-node"] = format_node(parent)
            args["backing-file"] = os.path.relpath(parent, os.path.dirname(child))
        with conn.subscribe(job_events(qid)) as sub:
            if await self._job(conn, qid) is None:
                await conn.execute("block-stream", args)
            job = await self._wait_job(conn, sub, qid, self.job_timeout)
        await conn.execute("job-dismiss", {"id": qid})
        if job.get("error"):
            raise DriverError(f"merging {files[index]} into {child} failed: {job['error']}")

    # -- devices -----------------------------------------------------------------------------
    @staticmethod
    async def _peripherals(conn: QmpConnection) -> set[str]:
        props = await conn.query("qom-list", {"path": PERIPHERAL})
        return {str(p["name"]) for p in props if str(p.get("type", "")).startswith("child<")}

    async def _free_port(self, conn: QmpConnection, server_id: str, peripherals: set[str]) -> str:
        """A root port with no device behind it, found from QEMU's QOM tree (query-pci only
        sees what the guest firmware has enumerated)."""
        ports = sorted((p for p in peripherals if ROOT_PORT.fullmatch(p)), key=lambda p: int(p[2:]))
        used: set[str] = set()
        for dev in peripherals.difference(ports):
            bus = await conn.execute("qom-get", {"path": f"{PERIPHERAL}/{dev}", "property": "parent_bus"})
            used.add(str(bus).rstrip("/").split("/")[-1])
        for port in ports:
            if port not in used:
                return port
        raise Conflict(f"server {server_id} has no free hotplug slot ({len(ports)} root ports, all in use)")

    @staticmethod
    def _device_args(volume_id: str, drive: str, port: str) -> Json:
        return {
            "driver": "virtio-blk-pci",
            "id": device_id(volume_id),
            "drive": drive,
            "serial": volume_id,
            "bus": port,
        }

    @staticmethod
    async def _devices(conn: QmpConnection) -> list[_Device]:
        devices = []
        for block in await conn.query("query-block"):
            m = re.fullmatch(
                rf"{PERIPHERAL}/disk-([0-9a-f-]{{36}})(/virtio-backend)?", str(block.get("qdev", ""))
            )
            if m is not None and "inserted" in block:
                inserted = block["inserted"]
                devices.append(_Device(m[1], str(inserted["node-name"]), chain_files(inserted["image"])))
        return devices

    async def _device(self, conn: QmpConnection, volume_id: str) -> _Device:
        for device in await self._devices(conn):
            if device.volume_id == volume_id:
                return device
        raise NotFound(f"volume {volume_id} is not attached")

    @staticmethod
    async def _serial(conn: QmpConnection, volume_id: str) -> str:
        path = f"{PERIPHERAL}/{device_id(volume_id)}"
        try:
            return str(await conn.execute("qom-get", {"path": path, "property": "serial"}))
        except QmpCommandError as exc:
            if exc.error_class == "DeviceNotFound":
                raise NotFound(f"volume {volume_id} is not attached") from exc
            raise

    async def _unplug(self, conn: QmpConnection, dev: str) -> None:
        """device_del and wait for DEVICE_DELETED (the guest has to acknowledge)."""
        with conn.subscribe(device_deleted(dev)) as sub:
            try:
                await conn.execute("device_del", {"id": dev})
            except QmpCommandError as exc:
                if exc.error_class == "DeviceNotFound":
                    return
                if "in the process of unplug" not in exc.desc:
                    raise
            if not await sub.wait(self.unplug_timeout) and dev in await self._peripherals(conn):
                # The guest decides: one still booting (or hung) ignores the request for now.
                raise Conflict(
                    f"device {dev} was not released by the guest within {self.unplug_timeout:g} s "
                    "(is it still booting?); the unplug request stays pending: retry the detach"
                )

    async def _confirm_on_target(self, conn: QmpConnection, note: Json) -> None:
        device = await self._device(conn, str(note["volume_id"]))
        want = str(note["target"][-1])
        if device.files[0] != want:
            raise DriverError(
                f"after the pivot disk-{note['volume_id']} runs on {device.files[0]}, not on {want}"
            )

    # -- jobs --------------------------------------------------------------------------------
    @staticmethod
    async def _job(conn: QmpConnection, qid: str) -> Json | None:
        for job in await conn.query("query-jobs"):
            if job.get("id") == qid:
                return job
        return None

    async def _wait_job(self, conn: QmpConnection, sub: Subscription, qid: str, timeout: float) -> Json:
        """Wait (on job events) until job `qid` has concluded; returns its query-jobs entry."""

        async def probe() -> Json:
            job = await self._job(conn, qid)
            if job is None:
                raise DriverError(f"job {qid} vanished (dismissed by someone else?)")
            return job

        return await self._wait(sub, probe, lambda j: _status(j) in FINISHED, timeout, f"job {qid}", None)

    @staticmethod
    async def _wait(
        sub: Subscription,
        probe: Callable[[], Awaitable[T]],
        done: Callable[[T], bool],
        timeout: float,
        what: str,
        tick: float | None,
    ) -> T:
        """Re-run `probe` after every event of `sub` (and every `tick` s if given) until `done`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            value = await probe()
            if done(value):
                return value
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise DriverError(f"timed out after {timeout:g} s waiting for {what}")
            await sub.wait(remaining if tick is None else min(remaining, tick))

    async def _job_command(self, conn: QmpConnection, job_id: str, command: str, args: Json) -> None:
        try:
            await conn.execute(command, args)
        except QmpCommandError as exc:
            if exc.error_class == "DeviceNotFound" or "not found" in exc.desc.lower():
                raise NotFound(f"no mirror job {job_id}") from exc
            raise

    async def _mirror_status(self, conn: QmpConnection, run: RunDir, job_id: str) -> MirrorStatus | None:
        # One query, so status, progress and readiness come from the same instant (query-jobs
        # and query-block-jobs issued back to back can straddle the job becoming ready).
        qid = qemu_job_id(job_id)
        job = next((b for b in await conn.query("query-block-jobs") if b.get("device") == qid), None)
        if job is None:
            return None
        status = _status(job)
        note = run.read_note("mirror", job_id) or {}
        return MirrorStatus(
            job_id=job_id,
            status=status,
            offset=int(job.get("offset", 0)),
            length=int(job.get("len", 0)),
            ready=bool(job.get("ready", status is JobStatus.READY)),
            actively_synced=bool(job.get("actively-synced", False)),
            write_blocking=bool(note.get("write_blocking", False)),
            error=job.get("error"),
        )

    def _mirror_note(self, server_id: str, job_id: str) -> Json:
        qemu_job_id(job_id)  # validates it: the id is part of the note's file name
        note = self._server(server_id).run.read_note("mirror", job_id)
        if note is None:
            raise NotFound(f"server {server_id} has no mirror job {job_id}")
        return note

    @staticmethod
    def _mirror_args(qid: str, source: str, target: DiskChain, sync_top: bool, speed: int) -> Json:
        return {
            "job-id": qid,
            "device": source,
            "target": format_node(target.active.path),
            "sync": "top" if sync_top else "full",
            "speed": speed,
            "auto-finalize": True,
            "auto-dismiss": False,
            "copy-mode": "background",
        }


def _status(job: Json) -> JobStatus:
    try:
        return JobStatus(str(job.get("status")))
    except ValueError as exc:
        name = job.get("id", job.get("device"))
        raise DriverError(f"job {name} has an unknown status {job.get('status')!r}") from exc
