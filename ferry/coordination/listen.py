"""`Listener`: one raw psycopg2 connection in autocommit for LISTEN, read with `loop.add_reader`,
which also holds the session-level advisory locks that make one agent the server of a host.

Owns reconnecting: a lost connection (a PostgreSQL restart) is dropped, its locks with it (the
server released them), and `ensure()` connects again and re-LISTENs. Notifications missed while
down are covered by every waiter's re-check interval. Decides nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import psycopg2
import psycopg2.extensions

log = logging.getLogger(__name__)

Notify = Callable[[str, str], None]
"""Called with (channel, payload) for every notification."""


class Listener:
    def __init__(self, dsn: str, on_notify: Notify, on_lost: Callable[[], None]) -> None:
        self.dsn = dsn
        self.on_notify = on_notify
        self.on_lost = on_lost
        self.wanted: set[str] = set()
        self._listening: set[str] = set()
        self._conn: psycopg2.extensions.connection | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._fd = -1
        self._lock = asyncio.Lock()

    def want(self, channel: str) -> None:
        self.wanted.add(channel)

    async def ensure(self) -> bool:
        """Connected and listening on every wanted channel; False while PostgreSQL is away."""
        async with self._lock:
            try:
                if self._conn is None:
                    await self._connect()
                for channel in self.wanted - self._listening:
                    await self._execute(f'LISTEN "{channel}"')
                    self._listening.add(channel)
                return True
            except psycopg2.Error as e:
                log.warning("LISTEN connection to PostgreSQL unavailable: %s", e)
                self._drop()
                return False

    async def fetch_one(self, sql: str, params: tuple[Any, ...]) -> Any:
        """One value of one row, run on this connection (its session holds the locks)."""
        async with self._lock:
            if self._conn is None:
                raise psycopg2.OperationalError("not connected")
            try:
                return await self._execute(sql, params)
            except psycopg2.Error:
                self._drop()
                raise

    async def _connect(self) -> None:
        conn = await asyncio.to_thread(
            psycopg2.connect, self.dsn, connect_timeout=5, options="-c statement_timeout=5000"
        )
        conn.set_isolation_level(psycopg2.extensions.ISOLATION_LEVEL_AUTOCOMMIT)
        self._conn, self._loop, self._fd = conn, asyncio.get_running_loop(), conn.fileno()
        self._loop.add_reader(self._fd, self._readable)

    async def _execute(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        conn = self._conn
        assert conn is not None

        def run() -> Any:
            with conn.cursor() as cur:
                cur.execute(sql, params)
                row = cur.fetchone() if cur.description else None
            return None if row is None else row[0]

        # The reader must not poll the connection while a thread runs a statement on it.
        assert self._loop is not None
        self._loop.remove_reader(self._fd)
        try:
            value = await asyncio.to_thread(run)
        finally:
            if self._conn is conn:
                self._loop.add_reader(self._fd, self._readable)
        self._dispatch()
        return value

    def _readable(self) -> None:
        if self._conn is None:
            return
        try:
            self._conn.poll()
        except psycopg2.Error as e:
            log.warning("LISTEN connection to PostgreSQL lost: %s", e)
            self._drop()
            return
        self._dispatch()

    def _dispatch(self) -> None:
        conn = self._conn
        while conn is not None and conn.notifies:
            note = conn.notifies.pop(0)
            self.on_notify(note.channel, note.payload)

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        self._listening.clear()
        if conn is None:
            return
        if self._loop is not None:
            with contextlib.suppress(ValueError, OSError):
                self._loop.remove_reader(self._fd)
        with contextlib.suppress(psycopg2.Error):
            conn.close()
        self.on_lost()

    async def close(self) -> None:
        async with self._lock:
            self._drop()
