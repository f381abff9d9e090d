"""A thin typed layer over `qemu.qmp.QMPClient`: one QMP session to one QEMU process.

Owns: connecting with a timeout, running commands with a timeout and turning every failure into a
`DriverError` that carries the root cause, and the event pump — one background task per session
that drains QEMU's events and hands them to subscribers, so waits wake on events instead of
polling. Does not own: which commands to run or what the events mean (the QEMU driver does).

QEMU serves one QMP client per socket at a time: a second client connects but gets no greeting
until the first one leaves, which is why `open` times out with a hint instead of hanging.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from qemu.qmp import ConnectError, ExecInterruptedError, ExecuteError, QMPClient, QMPError, Runstate

from ferry.domain.errors import DriverError

Json = dict[str, Any]
"""A QMP object (arguments, return values, event data)."""


class QmpCommandError(DriverError):
    """QEMU answered a command with an error (`error_class` is QMP's `class`, e.g. DeviceNotFound)."""

    def __init__(self, command: str, error_class: str, desc: str, cause: BaseException) -> None:
        super().__init__(f"QMP {command} failed", cause)
        self.command = command
        self.error_class = error_class
        self.desc = desc


@dataclass(frozen=True)
class QmpEvent:
    name: str
    data: Json = field(default_factory=dict)
    timestamp: float = 0.0


EventMatch = Callable[[QmpEvent], bool]


class Subscription:
    """The events one waiter is interested in, queued from the moment it subscribed."""

    def __init__(self, match: EventMatch) -> None:
        self._match = match
        self._pending: list[QmpEvent] = []
        self._wake = asyncio.Event()
        self._lost: str | None = None

    def offer(self, event: QmpEvent) -> None:
        if self._match(event):
            self._pending.append(event)
            self._wake.set()

    def lose(self, reason: str) -> None:
        self._lost = reason
        self._wake.set()

    async def wait(self, timeout: float) -> list[QmpEvent]:
        """Events received since the last call; waits up to `timeout` s for the first one and
        returns [] when none came. Raises DriverError once the session is lost."""
        if not self._pending and self._lost is None:
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(timeout, 0.0))
        events, self._pending = self._pending, []
        if not events and self._lost is not None:
            raise DriverError(self._lost)
        return events


def job_events(job_id: str) -> EventMatch:
    """Events about one job: JOB_STATUS_CHANGE (`id`) and the BLOCK_JOB_* family (`device`)."""

    def match(event: QmpEvent) -> bool:
        return event.data.get("id") == job_id or (
            event.name.startswith("BLOCK_JOB_") and event.data.get("device") == job_id
        )

    return match


def device_deleted(device_id: str) -> EventMatch:
    def match(event: QmpEvent) -> bool:
        return event.name == "DEVICE_DELETED" and event.data.get("device") == device_id

    return match


class QmpConnection:
    """One live QMP session. Create with `open`; `alive` turns False for good when it drops."""

    def __init__(self, name: str, command_timeout: float) -> None:
        self._client = QMPClient(name)
        self._command_timeout = command_timeout
        self._subscriptions: set[Subscription] = set()
        self._lost: str | None = None
        self._pump: asyncio.Task[None] | None = None
        self._disconnect: asyncio.Task[None] | None = None

    @classmethod
    async def open(
        cls, socket_path: str, *, name: str, timeout: float, command_timeout: float = 30.0
    ) -> QmpConnection:
        """Connect, negotiate and start the event pump. Raises DriverError."""
        conn = cls(name, command_timeout)
        try:
            await asyncio.wait_for(conn._client.connect(socket_path), timeout)
        except TimeoutError as exc:
            raise DriverError(
                f"no QMP greeting on {socket_path} within {timeout:g} s "
                "(QEMU serves one QMP client at a time: is another one connected?)",
                exc,
            ) from exc
        except (ConnectError, OSError) as exc:
            raise DriverError(f"cannot connect to QMP socket {socket_path}", exc) from exc
        conn._pump = asyncio.create_task(conn._run_pump(), name=f"qmp-events-{name}")
        return conn

    @property
    def alive(self) -> bool:
        return self._lost is None and self._client.runstate is Runstate.RUNNING

    async def execute(
        self, command: str, arguments: Json | None = None, *, timeout: float | None = None
    ) -> Any:
        """Run one command and return its `return` value. Raises QmpCommandError when QEMU
        refuses it, DriverError when the session fails or QEMU does not answer in time."""
        limit = self._command_timeout if timeout is None else timeout
        if self._lost is not None:
            raise DriverError(f"QMP {command}: {self._lost}")
        try:
            return await asyncio.wait_for(self._client.execute(command, arguments), limit)
        except ExecuteError as exc:
            raise QmpCommandError(command, exc.error_class, str(exc), exc) from exc
        except TimeoutError as exc:
            raise DriverError(f"QMP {command}: no answer within {limit:g} s", exc) from exc
        except (ExecInterruptedError, QMPError, OSError, EOFError) as exc:
            raise DriverError(f"QMP {command}: session to QEMU lost", exc) from exc

    async def query(self, command: str, arguments: Json | None = None) -> list[Json]:
        """`execute` for the query-* commands that return a list of objects."""
        result = await self.execute(command, arguments)
        if not isinstance(result, list):
            raise DriverError(f"QMP {command}: expected a list, got {type(result).__name__}")
        return [item for item in result if isinstance(item, dict)]

    @contextlib.contextmanager
    def subscribe(self, match: EventMatch) -> Iterator[Subscription]:
        """Queue matching events for the duration of the block. Subscribe *before* issuing the
        command whose events you wait for."""
        sub = Subscription(match)
        if self._lost is not None:
            sub.lose(self._lost)
        self._subscriptions.add(sub)
        try:
            yield sub
        finally:
            self._subscriptions.discard(sub)

    async def close(self) -> None:
        """Leave the session (QEMU keeps running). Idempotent."""
        self._lose("QMP session closed")
        await self._reap()
        if self._pump is not None:
            await asyncio.wait({self._pump})

    # -- event pump ----------------------------------------------------------------------
    async def _run_pump(self) -> None:
        events = self._client.events
        gone = asyncio.ensure_future(self._until_not_running())
        try:
            while not gone.done():
                nxt = asyncio.ensure_future(events.get())
                await asyncio.wait({nxt, gone}, return_when=asyncio.FIRST_COMPLETED)
                if nxt.done():
                    self._dispatch(nxt.result())
                else:
                    nxt.cancel()
            for msg in events.clear():
                self._dispatch(msg)
        finally:
            gone.cancel()
            self._lose("QMP session to QEMU lost (QEMU exited or closed the socket)")
            await self._reap()

    async def _until_not_running(self) -> None:
        while self._client.runstate is Runstate.RUNNING:
            await self._client.runstate_changed()

    def _dispatch(self, msg: Any) -> None:
        ts = msg.get("timestamp") or {}
        event = QmpEvent(
            name=str(msg.get("event", "")),
            data=dict(msg.get("data") or {}),
            timestamp=float(ts.get("seconds", 0)) + float(ts.get("microseconds", 0)) / 1e6,
        )
        for sub in list(self._subscriptions):
            sub.offer(event)
        if event.name == "SHUTDOWN":
            self._lose(f"QEMU shut down ({event.data.get('reason', 'unknown reason')})")

    def _lose(self, reason: str) -> None:
        if self._lost is None:
            self._lost = reason
        for sub in self._subscriptions:
            sub.lose(self._lost)

    async def _reap(self) -> None:
        """Disconnect the client once (collects the reader's EOF so nothing is left unretrieved)."""
        if self._disconnect is None:
            self._disconnect = asyncio.ensure_future(self._quiet_disconnect())
        await asyncio.shield(self._disconnect)

    async def _quiet_disconnect(self) -> None:
        with contextlib.suppress(Exception):
            await self._client.disconnect()
