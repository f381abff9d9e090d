"""`PostgresQueue`: the host action queue in PostgreSQL, table `host_actions` (ferry.db.models).

The caller inserts a queued action and `pg_notify('ferry_host_<host>', id)` in one transaction.
The host's agent LISTENs on that channel, claims with `SELECT … FOR UPDATE SKIP LOCKED` (state
`claimed`, a lease it renews while performing), and writes the outcome and `done`/`failed` in
one transaction with `pg_notify('ferry_done', id)`, which wakes the caller (progress:
`ferry_progress`). Times are the database's (`now()` in UTC), one clock for every host.
One agent serves a host at a time: it holds a session-level advisory lock on its LISTEN
connection, released by the server when that connection dies with the agent.
Finished actions are kept for `KEEP` and then deleted by the host's agent.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta
from typing import Any

import orjson
import psycopg2
from sqlalchemy import Engine, bindparam, delete, func, insert, select, text, update
from sqlalchemy.exc import DBAPIError

from ferry.coordination.listen import Listener
from ferry.coordination.queue import (
    ActionQueue,
    ActionStore,
    ActionView,
    Claim,
    Outcome,
    Reachable,
    Renewal,
    Timing,
    subscribed,
    wake,
)
from ferry.coordination.wire import Json
from ferry.db.engine import make_engine
from ferry.db.models import HostAction
from ferry.domain.actions import ActionState

DONE, PROGRESS = "ferry_done", "ferry_progress"
NOTIFY_MAX = 7900
"""PostgreSQL's limit on a notification's payload is 8000 bytes."""
KEEP = timedelta(hours=1)
_NOW = func.timezone("UTC", func.now())


def host_channel(host: str) -> str:
    return f"ferry_host_{host}"


_CLAIM = text(
    """
    WITH picked AS (
        SELECT id FROM host_actions
        WHERE host = :host AND id NOT IN :skip
          AND (state = 'queued' OR (state = 'claimed' AND lease_until < timezone('UTC', now())))
        ORDER BY created_at LIMIT :limit
        FOR UPDATE SKIP LOCKED
    )
    UPDATE host_actions a
    SET state = 'claimed', claimed_by = :agent, attempts = a.attempts + 1,
        lease_until = timezone('UTC', now()) + make_interval(secs => :lease)
    FROM picked WHERE a.id = picked.id
    RETURNING a.id, a.call, a.attempts
    """
).bindparams(bindparam("skip", expanding=True))


class PostgresStore(ActionStore):
    transient = (DBAPIError, psycopg2.Error)

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        dsn = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        self.listener = Listener(dsn, self._notified, self._lost)
        self.listener.want(DONE)
        self.listener.want(PROGRESS)
        self.holders: dict[str, str] = {}
        self._action_waiters: dict[str, set[asyncio.Event]] = {}
        self._host_waiters: dict[str, set[asyncio.Event]] = {}
        self._pruned = 0.0
        self._finished: dict[str, ActionView] = {}
        """Outcomes that came in their notification, until their caller reads them."""

    async def _run(self, fn: Any) -> Any:
        def tx() -> Any:
            with self.engine.begin() as c:
                return fn(c)

        return await asyncio.to_thread(tx)

    def _notified(self, channel: str, payload: str) -> None:
        if channel == DONE and payload.startswith("{"):
            self._outcome_notified(payload)
        elif channel in (DONE, PROGRESS):
            wake(self._action_waiters, payload)
        elif channel.startswith("ferry_host_"):
            wake(self._host_waiters, channel.removeprefix("ferry_host_"))

    def _outcome_notified(self, payload: str) -> None:
        """An outcome small enough to travel in its notification: kept for the caller waiting
        here (every process hears every outcome; only a waited-for one is kept), which then
        needs no read of its row."""
        note = orjson.loads(payload)
        action_id = note["id"]
        if action_id in self._action_waiters:
            progress = tuple(note["progress"]) if note["progress"] else None
            self._finished[action_id] = ActionView(
                ActionState(note["state"]), progress, note["result"], note["error"]
            )
            wake(self._action_waiters, action_id)

    def _lost(self) -> None:
        self.holders.clear()  # the session's advisory locks went with it
        for waiters in (self._action_waiters, self._host_waiters):
            for key in list(waiters):
                wake(waiters, key)  # everyone looks again now

    # -- caller ------------------------------------------------------------------------------
    async def insert(self, host: str, action_id: str, call: Json) -> None:
        await self.listener.ensure()

        def tx(c: Any) -> None:
            c.execute(
                insert(HostAction).values(
                    id=action_id, host=host, call=call, state=ActionState.QUEUED, attempts=0,
                    cancel_requested=False, created_at=_NOW,
                )
            )  # fmt: skip
            c.execute(select(func.pg_notify(host_channel(host), action_id)))

        await self._run(tx)

    async def view(self, action_id: str) -> ActionView | None:
        finished = self._finished.pop(action_id, None)
        if finished is not None:
            return finished
        await self.listener.ensure()
        q = select(HostAction.state, HostAction.progress, HostAction.result, HostAction.error)
        row = await self._run(lambda c: c.execute(q.where(HostAction.id == action_id)).first())
        if row is None:
            return None
        progress = tuple(row.progress) if row.progress else None
        return ActionView(row.state, progress, row.result, row.error)

    async def withdraw(self, host: str, action_id: str, error: Json) -> None:
        def tx(c: Any) -> None:
            failed = c.execute(
                update(HostAction)
                .where(HostAction.id == action_id, HostAction.state == ActionState.QUEUED)
                .values(state=ActionState.FAILED, error=error, finished_at=_NOW)
            )
            if failed.rowcount:
                c.execute(select(func.pg_notify(DONE, action_id)))
                return
            c.execute(
                update(HostAction)
                .where(HostAction.id == action_id, HostAction.state == ActionState.CLAIMED)
                .values(cancel_requested=True)
            )
            c.execute(select(func.pg_notify(host_channel(host), action_id)))

        await self._run(tx)

    def watch(self, action_id: str) -> contextlib.AbstractContextManager[asyncio.Event]:
        return subscribed(self._action_waiters, action_id)

    # -- agent -------------------------------------------------------------------------------
    async def hold(self, host: str, token: str) -> bool:
        if self.holders.get(host, token) != token:
            return False  # another agent of this process serves it
        if not await self.listener.ensure():
            return False
        if host not in self.holders:
            key = f"ferry_host:{host}"
            sql = "SELECT pg_try_advisory_lock(hashtext(%s))"
            if not await self.listener.fetch_one(sql, (key,)):
                return False
            self.holders[host] = token
            await self._take_over(host)
        return True

    async def _take_over(self, host: str) -> None:
        """The host's previous agent let go of its lock, so it is dead (its connection went with
        it) or stopped: what it had claimed is redelivered now rather than when its leases lapse."""
        stmt = (
            update(HostAction)
            .where(HostAction.host == host, HostAction.state == ActionState.CLAIMED)
            .values(lease_until=_NOW)
        )
        await self._run(lambda c: c.execute(stmt))

    async def unhold(self, host: str, token: str) -> None:
        if self.holders.get(host) != token:
            return
        del self.holders[host]
        with contextlib.suppress(Exception):  # gone with the connection anyway
            await self.listener.fetch_one("SELECT pg_advisory_unlock(hashtext(%s))", (f"ferry_host:{host}",))

    def watch_host(self, host: str) -> contextlib.AbstractContextManager[asyncio.Event]:
        self.listener.want(host_channel(host))
        return subscribed(self._host_waiters, host)

    async def claim(self, host: str, agent_id: str, lease: float, skip: set[str], limit: int) -> list[Claim]:
        prune = asyncio.get_running_loop().time() - self._pruned > 60

        def tx(c: Any) -> list[Claim]:
            if prune:
                c.execute(
                    delete(HostAction).where(
                        HostAction.host == host,
                        HostAction.state.in_([ActionState.DONE, ActionState.FAILED]),
                        HostAction.finished_at < _NOW - KEEP,
                    )
                )
            params = {"host": host, "skip": sorted(skip) or [""], "limit": limit, "agent": agent_id}
            rows = c.execute(_CLAIM, {**params, "lease": lease}).all()
            return [Claim(r.id, r.call, r.attempts) for r in rows]

        claims: list[Claim] = await self._run(tx)
        if prune:
            self._pruned = asyncio.get_running_loop().time()
        return claims

    async def renew(self, agent_id: str, ids: list[str], lease: float) -> Renewal:
        stmt = (
            update(HostAction)
            .where(HostAction.id.in_(ids), *self._mine(agent_id))
            .values(lease_until=_NOW + timedelta(seconds=lease))
            .returning(HostAction.id, HostAction.cancel_requested)
        )
        rows = await self._run(lambda c: c.execute(stmt).all())
        kept = {r.id for r in rows}
        cancel = frozenset(r.id for r in rows if r.cancel_requested)
        return Renewal(cancel, frozenset(set(ids) - kept))

    @staticmethod
    def _mine(agent_id: str) -> tuple[Any, ...]:
        return (HostAction.claimed_by == agent_id, HostAction.state == ActionState.CLAIMED)

    async def report(self, action_id: str, agent_id: str, progress: tuple[int, int]) -> None:
        await self._update_mine(action_id, agent_id, PROGRESS, progress=list(progress))

    async def finish(self, action_id: str, agent_id: str, outcome: Outcome) -> None:
        values: dict[str, Any] = {"state": outcome.state, "finished_at": _NOW}
        values.update(result=outcome.result, error=outcome.error)
        if outcome.progress is not None:
            values["progress"] = list(outcome.progress)
        note = orjson.dumps(
            {"id": action_id, "state": outcome.state, "result": outcome.result, "error": outcome.error,
             "progress": list(outcome.progress) if outcome.progress else None}
        ).decode()  # fmt: skip
        payload = note if len(note) < NOTIFY_MAX else action_id  # else the caller reads the row
        await self._update_mine(action_id, agent_id, DONE, payload, **values)

    async def _update_mine(
        self, action_id: str, agent_id: str, channel: str, payload: str | None = None, **values: Any
    ) -> None:
        def tx(c: Any) -> None:
            stmt = update(HostAction).where(HostAction.id == action_id, *self._mine(agent_id))
            if c.execute(stmt.values(**values)).rowcount:
                c.execute(select(func.pg_notify(channel, payload or action_id)))

        await self._run(tx)

    async def release(self, agent_id: str, ids: list[str]) -> None:
        def tx(c: Any) -> None:
            stmt = update(HostAction).where(HostAction.id.in_(ids), *self._mine(agent_id))
            hosts = c.execute(
                stmt.values(state=ActionState.QUEUED, claimed_by=None, lease_until=None).returning(
                    HostAction.host
                )
            ).scalars()
            for host in set(hosts):
                c.execute(select(func.pg_notify(host_channel(host), "released")))

        if ids:
            await self._run(tx)

    async def close(self) -> None:
        await self.listener.close()


class PostgresQueue(ActionQueue):
    """The queue of every process of a many-host deployment. Expects the schema at 0006 or later."""

    def __init__(
        self, database: str | Engine, timing: Timing | None = None, reachable: Reachable | None = None
    ) -> None:
        self.engine = make_engine(database) if isinstance(database, str) else database
        self.pg = PostgresStore(self.engine)
        super().__init__(self.pg, timing, reachable)

    async def close(self) -> None:
        await self.pg.close()
