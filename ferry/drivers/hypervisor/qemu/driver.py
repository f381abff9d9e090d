"""The QEMU hypervisor driver: one QEMU process per server, driven over QMP.

Owns: the HypervisorDriver contract for QEMU, composed from the run dir (rundir.py), the process
(process.py), the QMP session (session.py), block nodes (nodes.py), devices (devices.py) and jobs
(jobs.py): the QMP sequences for hotplug, live snapshots, merges, mirrors and the console.
Does not own policy (when to switch to write-blocking, whether a target is good enough to pivot
onto: the migration service decides) nor image files (the storage driver creates and deletes them).

Everything is derived from QEMU or the run directory, never from memory, so a fresh driver can
pick up a server started by an earlier control plane: node names come from the file path,
devices are `disk-<volume id>` on `pcie-root-port`s `rp0..rpN-1`, and mirror jobs are QEMU jobs
`ferry-<job id>`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from pathlib import Path

from ferry.domain.errors import BadRequest, Conflict, DriverError, NotFound
from ferry.domain.ids import require_uuid
from ferry.domain.live import DiskSlot, LiveProgress, LiveSettings, LiveState
from ferry.domain.migration.convergence import MirrorCondition
from ferry.domain.model import DiskChain, LayerFile
from ferry.drivers.hypervisor.base import DiskInfo, HypervisorDriver, JobStatus, MirrorStatus, ServerSpec
from ferry.drivers.hypervisor.qemu import devices, jobs, live, nodes
from ferry.drivers.hypervisor.qemu.jobs import FINISHED, job_status, qemu_job_id
from ferry.drivers.hypervisor.qemu.nodes import absolute, format_node
from ferry.drivers.hypervisor.qemu.process import QemuCommand, end_process, kill_child, qemu_pid, resume
from ferry.drivers.hypervisor.qemu.rundir import RunDir
from ferry.drivers.hypervisor.qemu.session import QmpTimeouts, ServerSession
from ferry.drivers.hypervisor.qmp import Json, QmpCommandError, QmpConnection, job_events

MAX_SOCKET_PATH = 107


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
        self.command = QemuCommand(qemu_binary, accel, machine, root_ports)
        self.timeouts = QmpTimeouts(connect_timeout, command_timeout)
        self.unplug_timeout = unplug_timeout
        self.job_timeout = job_timeout
        self.stop_grace = stop_grace
        self.progress_interval = progress_interval
        """QEMU reports copy progress and `actively-synced` without events: a waiter re-queries
        at least this often (every job event wakes it at once)."""
        self._sessions: dict[str, ServerSession] = {}

    def run_dir(self, server_id: str) -> RunDir:
        """The server's run directory (QEMU-specific: tests and diagnostics follow its files)."""
        return self._session(server_id).run

    # -- life cycle ----------------------------------------------------------------------
    async def spawn(self, spec: ServerSpec) -> None:
        session = self._session(spec.server_id)
        async with session.lock:
            if qemu_pid(session.run) is not None:
                await resume(await session.connect_locked())
                return
            ports = self.command.root_ports
            if len(spec.disks) > ports:
                raise Conflict(f"server {spec.server_id}: {len(spec.disks)} disks but {ports} root ports")
            session.run.path.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(session.run.path, 0o700)
            session.process = await self.command.start(session.run, spec)
            try:
                await resume(await session.connect_locked())
            except DriverError as exc:
                await kill_child(session.process, self.stop_grace)
                tail = session.run.log_tail()
                raise DriverError(
                    f"server {spec.server_id}: QEMU did not come up ({tail or 'no output'})", exc
                ) from exc

    async def reconnect(self, server_id: str) -> bool:
        session = self._session(server_id)
        async with session.lock:
            if qemu_pid(session.run) is None:
                await session.disconnect()
                return False
            await session.connect_locked()
            return True

    async def is_running(self, server_id: str) -> bool:
        return qemu_pid(self._session(server_id).run) is not None

    async def stop(self, server_id: str) -> None:
        session = self._session(server_id)
        async with session.lock:
            pid = qemu_pid(session.run)
            if pid is not None:
                await end_process(session.conn, pid, self.stop_grace, server_id)
            await session.disconnect()
            if session.process is not None:
                session.process.poll()

    async def destroy(self, server_id: str) -> None:
        session = self._session(server_id)
        await self.stop(server_id)
        self._sessions.pop(session.server_id, None)
        await asyncio.to_thread(shutil.rmtree, session.run.path, True)

    async def console_output(self, server_id: str, length: int | None = None) -> str:
        return await asyncio.to_thread(self._session(server_id).run.console_output, length)

    async def console_read(self, server_id: str, offset: int, limit: int = 65536) -> tuple[bytes, int]:
        return await asyncio.to_thread(self._session(server_id).run.console_read, offset, limit)

    async def close(self) -> None:
        """Leave every QMP session; the QEMU processes keep running."""
        for session in self._sessions.values():
            async with session.lock:
                await session.disconnect()

    async def block_nodes(self, server_id: str) -> set[str]:
        """Names of every named block node QEMU has open (diagnostics and tests; not part of the
        contract)."""
        return await nodes.node_names(await self._conn(server_id))

    async def disk_throttle(self, server_id: str, volume_id: str) -> dict[str, int]:
        """A disk's throttle as QEMU reports it (diagnostics and tests; not part of the contract)."""
        return await devices.throttle(await self._conn(server_id), volume_id)

    # -- disks ---------------------------------------------------------------------------
    async def attach_disk(self, server_id: str, chain: DiskChain) -> None:
        volume_id = require_uuid(chain.volume_id, "volume id")
        conn = await self._conn(server_id)
        present = await devices.peripherals(conn)
        if devices.device_id(volume_id) in present:
            current = await devices.plugged_disk(conn, volume_id)
            if current.files[0] == absolute(chain.active.path):
                return
            raise Conflict(f"volume {volume_id} is already attached to server {server_id} with other files")
        port = await devices.free_port(conn, server_id, present)
        added = await nodes.add_nodes(conn, nodes.chain_options(chain.layers))
        try:
            await conn.execute(
                "device_add", devices.device_args(volume_id, format_node(chain.active.path), port)
            )
        except DriverError:
            await nodes.del_nodes(conn, reversed(added))
            raise

    async def set_disk_limits(self, server_id: str, volume_id: str, limits: dict[str, int]) -> None:
        volume_id = require_uuid(volume_id, "volume id")
        conn = await self._conn(server_id)
        await devices.plugged_disk(conn, volume_id)  # NotFound for a disk not attached
        await conn.execute("block_set_io_throttle", devices.throttle_args(volume_id, limits))

    async def detach_disk(self, server_id: str, volume_id: str) -> None:
        volume_id = require_uuid(volume_id, "volume id")
        run = self._session(server_id).run
        conn = await self._conn(server_id)
        dev = devices.device_id(volume_id)
        if dev in await devices.peripherals(conn):
            disk = await devices.plugged_disk(conn, volume_id)
            run.write_note("unplug", volume_id, {"nodes": nodes.layer_nodes_top_first(disk.files)})
            await devices.unplug(conn, dev, self.unplug_timeout)
        note = run.read_note("unplug", volume_id)
        if note is not None:
            await nodes.del_nodes(conn, note["nodes"])
            run.drop_note("unplug", volume_id)

    async def disks(self, server_id: str) -> list[DiskInfo]:
        conn = await self._conn(server_id)
        plugged = await devices.plugged_disks(conn)
        return [
            DiskInfo(d.volume_id, await devices.serial(conn, d.volume_id), d.files, d.size) for d in plugged
        ]

    async def serial(self, server_id: str, volume_id: str) -> str:
        return await devices.serial(await self._conn(server_id), volume_id)

    async def snapshot_disk(self, server_id: str, volume_id: str, new_active: LayerFile) -> None:
        conn = await self._conn(server_id)
        disk = await devices.plugged_disk(conn, volume_id)
        if disk.files[0] == absolute(new_active.path):
            return
        added = await nodes.add_nodes(conn, list(nodes.node_options(new_active, None, writable=True)))
        try:
            await conn.execute(
                "blockdev-snapshot", {"node": disk.top_node, "overlay": format_node(new_active.path)}
            )
        except DriverError:
            await nodes.del_nodes(conn, reversed(added))
            raise

    async def merge_layer(self, server_id: str, volume_id: str, layer: LayerFile) -> None:
        conn = await self._conn(server_id)
        disk = await devices.plugged_disk(conn, volume_id)
        path = absolute(layer.path)
        if path in disk.files:
            await jobs.stream_out(conn, disk.files, disk.files.index(path), self.job_timeout)
        await nodes.del_nodes(conn, nodes.layer_nodes_top_first([path]))

    async def extend_volume(self, server_id: str, volume_id: str, new_size: int) -> None:
        conn = await self._conn(server_id)
        disk = await devices.plugged_disk(conn, volume_id)
        if new_size < disk.size:
            raise BadRequest(
                f"volume {volume_id}: cannot shrink its disk from {disk.size} to {new_size} bytes"
            )
        await nodes.grow(conn, disk.top_node, disk.files[0], disk.size, new_size)

    # -- mirror --------------------------------------------------------------------------
    async def start_mirror(
        self, server_id: str, volume_id: str, job_id: str, target: DiskChain, *, sync_top: bool, speed: int
    ) -> None:
        qid = qemu_job_id(job_id)
        if target.volume_id != volume_id:
            raise BadRequest(f"mirror target belongs to volume {target.volume_id}, not {volume_id}")
        run = self._session(server_id).run
        conn = await self._conn(server_id)
        if await jobs.find_job(conn, qid) is not None:
            return
        source = await devices.plugged_disk(conn, volume_id)
        if source.top_node == format_node(target.active.path):
            return  # pivoted already
        note = {
            "volume_id": volume_id,
            "target": [absolute(f.path) for f in target.layers],
            "write_blocking": False,
        }
        run.write_note("mirror", job_id, note)
        added = await nodes.add_nodes(conn, nodes.chain_options(target.layers))
        try:
            await conn.execute(
                "blockdev-mirror", jobs.mirror_args(qid, source.top_node, target, sync_top, speed)
            )
        except DriverError:
            await nodes.del_nodes(conn, reversed(added))
            run.drop_note("mirror", job_id)
            raise

    async def mirror_status(self, server_id: str, job_id: str) -> MirrorStatus | None:
        conn = await self._conn(server_id)
        return await jobs.mirror_status(conn, self._session(server_id).run, job_id)

    async def wait_mirror(
        self, server_id: str, job_id: str, until: MirrorCondition, timeout: float
    ) -> MirrorStatus:
        conn = await self._conn(server_id)
        run = self._session(server_id).run

        async def probe() -> MirrorStatus:
            status = await jobs.mirror_status(conn, run, job_id)
            if status is None:
                raise NotFound(f"server {server_id} has no mirror job {job_id}")
            return status

        with conn.subscribe(job_events(qemu_job_id(job_id))) as sub:
            return await jobs.wait_until(
                sub,
                probe,
                lambda s: s.status in FINISHED or s.satisfies(until),
                timeout,
                f"mirror job {job_id}",
                self.progress_interval,
            )

    async def set_mirror_speed(self, server_id: str, job_id: str, speed: int) -> None:
        conn = await self._conn(server_id)
        await jobs.job_command(
            conn, job_id, "block-job-set-speed", {"device": qemu_job_id(job_id), "speed": speed}
        )

    async def set_write_blocking(self, server_id: str, job_id: str) -> None:
        run = self._session(server_id).run
        conn = await self._conn(server_id)
        note = run.read_note("mirror", job_id) or {}
        if note.get("write_blocking"):
            return
        args = {"id": qemu_job_id(job_id), "type": "mirror", "copy-mode": "write-blocking"}
        try:
            await jobs.job_command(conn, job_id, "block-job-change", args)
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
                return nodes.chain_files(node["image"])
        raise NotFound(f"server {server_id}: the target of mirror job {job_id} is not open")

    async def pivot(self, server_id: str, job_id: str) -> None:
        qid = qemu_job_id(job_id)
        run = self._session(server_id).run
        conn = await self._conn(server_id)
        note = self._mirror_note(server_id, job_id)
        with conn.subscribe(job_events(qid)) as sub:
            job = await jobs.find_job(conn, qid)
            if job is not None:
                if job_status(job) not in (*FINISHED, JobStatus.WAITING, JobStatus.PENDING):
                    await conn.execute("job-complete", {"id": qid})
                job = await jobs.wait_job(conn, sub, qid, self.timeouts.command)
        if job is not None:
            await conn.execute("job-dismiss", {"id": qid})
            if job.get("error"):
                run.drop_note("mirror", job_id)
                raise DriverError(f"mirror job {job_id} concluded with an error: {job['error']}")
        await jobs.confirm_on_target(conn, note)
        run.drop_note("mirror", job_id)

    async def cancel_mirror(self, server_id: str, job_id: str, target: DiskChain) -> None:
        qid = qemu_job_id(job_id)
        conn = await self._conn(server_id)
        with conn.subscribe(job_events(qid)) as sub:
            job = await jobs.find_job(conn, qid)
            if job is not None and job_status(job) not in FINISHED:
                with contextlib.suppress(QmpCommandError):
                    await conn.execute("job-cancel", {"id": qid})
                job = await jobs.wait_job(conn, sub, qid, self.timeouts.command)
        if job is not None:
            await conn.execute("job-dismiss", {"id": qid})
        await nodes.drop_layers(conn, target.layers)
        self._session(server_id).run.drop_note("mirror", job_id)

    async def drop_files(self, server_id: str, files: tuple[LayerFile, ...]) -> None:
        await nodes.drop_layers(await self._conn(server_id), files)

    # -- live migration (DESIGN §10; the steps: qemu/live.py) ----------------------------
    async def disk_slots(self, server_id: str) -> tuple[DiskSlot, ...]:
        ports = await live.disk_ports(await self._conn(server_id))
        return tuple(DiskSlot(vid, port) for vid, port in sorted(ports.items()))

    async def prepare_incoming(self, spec: ServerSpec, slots: tuple[DiskSlot, ...], address: str) -> str:
        """Start the destination QEMU waiting for the guest, each disk in its slot; its URI.
        Idempotent: a destination already listening answers its URI again."""
        session = self._session(spec.server_id)
        async with session.lock:
            if qemu_pid(session.run) is None:
                ports = {s.volume_id: s.port for s in slots}
                if {c.volume_id for c in spec.disks} != set(ports):
                    raise BadRequest(f"server {spec.server_id}: every disk needs its slot on the destination")
                session.run.path.mkdir(mode=0o700, parents=True, exist_ok=True)
                session.process = await self.command.start(session.run, spec, ports)
            conn = await session.connect_locked()
        if await live.run_state(conn) != "inmigrate":
            raise Conflict(f"server {spec.server_id} already runs on this host")
        return await live.listen(conn, address)

    async def start_live_migration(self, server_id: str, uri: str, settings: LiveSettings) -> None:
        conn = await self._conn(server_id)
        state = (await live.progress(conn)).state
        # `completed` on a running guest is the incoming migration that brought it here.
        sent = state in live.UNDER_WAY or (
            state is LiveState.COMPLETED and await live.run_state(conn) != "running"
        )
        if not sent:
            await live.send(conn, uri, settings)  # else it is under way (a redelivered call)

    async def live_progress(self, server_id: str) -> LiveProgress:
        return await live.progress(await self._conn(server_id))

    async def wait_live(self, server_id: str, until: tuple[LiveState, ...], timeout: float) -> LiveProgress:
        conn = await self._conn(server_id)
        with conn.subscribe(live.migration_events) as sub:
            return await live.wait_state(conn, sub, until, timeout, self.progress_interval)

    async def set_live_limits(self, server_id: str, settings: LiveSettings) -> None:
        await live.set_limits(await self._conn(server_id), settings)

    async def continue_live(self, server_id: str) -> None:
        conn = await self._conn(server_id)
        if (await live.progress(conn)).state is LiveState.PRE_SWITCHOVER:
            await live.switch_over(conn)

    async def force_live(self, server_id: str) -> None:
        await live.force(await self._conn(server_id))

    async def cancel_live(self, server_id: str) -> None:
        conn = await self._conn(server_id)
        if not (await live.progress(conn)).state.ended:
            await live.cancel(conn)

    async def resume_guest(self, server_id: str) -> None:
        conn = await self._conn(server_id)
        if await live.run_state(conn) in ("paused", "postmigrate", "prelaunch"):
            await conn.execute("cont")

    async def run_state(self, server_id: str) -> str | None:
        if qemu_pid(self._session(server_id).run) is None:
            return None
        return await live.run_state(await self._conn(server_id))

    # -- internals -----------------------------------------------------------------------
    def _session(self, server_id: str) -> ServerSession:
        run = RunDir.of(self.run_root, server_id)
        if run.server_id not in self._sessions:
            self._sessions[run.server_id] = ServerSession(run, self.timeouts)
        return self._sessions[run.server_id]

    async def _conn(self, server_id: str) -> QmpConnection:
        return await self._session(server_id).connection()

    def _mirror_note(self, server_id: str, job_id: str) -> Json:
        qemu_job_id(job_id)  # validates it: the id is part of the note's file name
        note = self._session(server_id).run.read_note("mirror", job_id)
        if note is None:
            raise NotFound(f"server {server_id} has no mirror job {job_id}")
        return note
