"""`InProcessQueue`: the host action queue of the all-in-one `ferry serve`, kept in memory.

Same contract and same semantics as the PostgreSQL queue (claims, leases on the event loop's
clock, cancel, progress, redelivery), because both run `ActionQueue`'s logic; only the store
differs. Actions do not outlive the process, and neither does anything that performs them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, replace

from ferry.coordination.queue import (
    ActionQueue,
    ActionStore,
    ActionView,
    Claim,
    Outcome,
    Renewal,
    Timing,
    subscribed,
    wake,
)
from ferry.coordination.wire import Json
from ferry.domain.actions import ActionState


@dataclass
class _Row:
    host: str
    call: Json
    view: ActionView
    claimed_by: str | None = None
    lease_until: float = 0.0
    attempts: int = 0
    cancel_requested: bool = False


class InProcessStore(ActionStore):
    def __init__(self) -> None:
        self.rows: dict[str, _Row] = {}
        self.holders: dict[str, str] = {}
        self._action_waiters: dict[str, set[asyncio.Event]] = {}
        self._host_waiters: dict[str, set[asyncio.Event]] = {}

    @staticmethod
    def _now() -> float:
        return asyncio.get_running_loop().time()

    async def insert(self, host: str, action_id: str, call: Json) -> None:
        self.rows[action_id] = _Row(host, call, ActionView(ActionState.QUEUED, None, None, None))
        wake(self._host_waiters, host)

    async def view(self, action_id: str) -> ActionView | None:
        row = self.rows.get(action_id)
        return None if row is None else row.view

    async def withdraw(self, host: str, action_id: str, error: Json) -> None:
        row = self.rows.get(action_id)
        if row is None or row.view.state.finished:
            return
        if row.view.state is ActionState.QUEUED:
            self._set(action_id, row, replace(row.view, state=ActionState.FAILED, error=error))
        else:
            row.cancel_requested = True
            wake(self._host_waiters, host)

    async def forget(self, action_id: str) -> None:
        self.rows.pop(action_id, None)

    def watch(self, action_id: str) -> contextlib.AbstractContextManager[asyncio.Event]:
        return subscribed(self._action_waiters, action_id)

    async def hold(self, host: str, token: str) -> bool:
        if host not in self.holders:
            self.holders[host] = token
            now = self._now()  # the previous holder is gone: its claims are ours to take now
            for row in self.rows.values():
                if row.host == host and row.view.state is ActionState.CLAIMED:
                    row.lease_until = min(row.lease_until, now)
        return self.holders[host] == token

    async def unhold(self, host: str, token: str) -> None:
        if self.holders.get(host) == token:
            del self.holders[host]

    def watch_host(self, host: str) -> contextlib.AbstractContextManager[asyncio.Event]:
        return subscribed(self._host_waiters, host)

    async def claim(self, host: str, agent_id: str, lease: float, skip: set[str], limit: int) -> list[Claim]:
        now, out = self._now(), list[Claim]()
        for action_id, row in self._claimable(host, now, skip):
            if len(out) >= limit:
                break
            row.claimed_by, row.lease_until, row.attempts = agent_id, now + lease, row.attempts + 1
            row.view = replace(row.view, state=ActionState.CLAIMED)
            out.append(Claim(action_id, row.call, row.attempts))
        return out

    def _claimable(self, host: str, now: float, skip: set[str]) -> Iterator[tuple[str, _Row]]:
        for action_id, row in list(self.rows.items()):
            if row.host != host or action_id in skip:
                continue
            state = row.view.state
            if state is ActionState.QUEUED or (state is ActionState.CLAIMED and row.lease_until < now):
                yield action_id, row

    async def renew(self, agent_id: str, ids: list[str], lease: float) -> Renewal:
        cancel, lost = set(), set()
        for action_id in ids:
            row = self.rows.get(action_id)
            if row is None or row.claimed_by != agent_id or row.view.state is not ActionState.CLAIMED:
                lost.add(action_id)
                continue
            row.lease_until = self._now() + lease
            if row.cancel_requested:
                cancel.add(action_id)
        return Renewal(frozenset(cancel), frozenset(lost))

    async def report(self, action_id: str, agent_id: str, progress: tuple[int, int]) -> None:
        row = self._mine(action_id, agent_id)
        if row is not None:
            self._set(action_id, row, replace(row.view, progress=progress))

    async def finish(self, action_id: str, agent_id: str, outcome: Outcome) -> None:
        row = self._mine(action_id, agent_id)
        if row is not None:
            progress = outcome.progress or row.view.progress
            self._set(action_id, row, ActionView(outcome.state, progress, outcome.result, outcome.error))

    async def release(self, agent_id: str, ids: list[str]) -> None:
        for action_id in ids:
            row = self._mine(action_id, agent_id)
            if row is not None:
                row.claimed_by, row.view = None, replace(row.view, state=ActionState.QUEUED)
                wake(self._host_waiters, row.host)

    def _mine(self, action_id: str, agent_id: str) -> _Row | None:
        row = self.rows.get(action_id)
        if row is None or row.claimed_by != agent_id or row.view.state is not ActionState.CLAIMED:
            return None
        return row

    def _set(self, action_id: str, row: _Row, view: ActionView) -> None:
        row.view = view
        wake(self._action_waiters, action_id)


class InProcessQueue(ActionQueue):
    """The queue of one process: `ferry serve` runs `serve(<its host>, ...)` as a task."""

    def __init__(self, timing: Timing | None = None) -> None:
        self.memory = InProcessStore()
        super().__init__(self.memory, timing)
