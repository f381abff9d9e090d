"""The per-server QMP session: at most one connection to each server's QEMU, opened on demand.

Owns: a server's lock (spawn, stop and (re)connect never interleave), its QMP connection, and
the child process when this control plane started it. A session is rebuilt from the run dir
alone, so a fresh control plane picks up a QEMU started by an earlier one.
Does not own what is said over the connection (the driver, devices.py, jobs.py, nodes.py).
"""

from __future__ import annotations

import asyncio
import subprocess
from dataclasses import dataclass, field

from ferry.domain.errors import NotFound
from ferry.drivers.hypervisor.qemu.process import qemu_pid
from ferry.drivers.hypervisor.qemu.rundir import RunDir
from ferry.drivers.hypervisor.qmp import QmpConnection


@dataclass(frozen=True)
class QmpTimeouts:
    connect: float
    command: float


@dataclass
class ServerSession:
    run: RunDir
    timeouts: QmpTimeouts
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    conn: QmpConnection | None = None
    process: subprocess.Popen[bytes] | None = None
    """The QEMU child, when this control plane spawned it (else None: it is someone's orphan)."""

    @property
    def server_id(self) -> str:
        return self.run.server_id

    async def connection(self) -> QmpConnection:
        """The live connection, opened if needed; NotFound when the server is not running."""
        if self.conn is not None and self.conn.alive:
            return self.conn
        async with self.lock:
            if qemu_pid(self.run) is None:
                await self.disconnect()
                raise NotFound(f"server {self.server_id} is not running")
            return await self.connect_locked()

    async def connect_locked(self) -> QmpConnection:
        """Connect (or return the live connection); the caller holds `lock`."""
        if self.conn is not None and self.conn.alive:
            return self.conn
        await self.disconnect()
        self.conn = await QmpConnection.open(
            str(self.run.socket),
            name=self.server_id,
            timeout=self.timeouts.connect,
            command_timeout=self.timeouts.command,
        )
        return self.conn

    async def disconnect(self) -> None:
        if self.conn is not None:
            await self.conn.close()
            self.conn = None
