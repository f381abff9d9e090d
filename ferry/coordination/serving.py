"""The agent's side of the queue: claim the host's actions, perform each in its own task under a
renewed lease, honour cancels, report progress (throttled), write each outcome.

An action id is never performed twice at once: one agent serves a host at a time (`hold`), it
skips the ids it is running when it claims, and a perform whose claim was lost (its lease ran out
and another agent took it) is cancelled at the next renewal. Redelivery after an agent's death
re-runs a call from the start: `executor.REPLAY` says why each driver method allows that.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from ferry.coordination.queue import ActionStore, Claim, Outcome, Perform, Timing
from ferry.coordination.wire import decode_call, encode, encode_error
from ferry.domain.errors import DriverError, FerryError

log = logging.getLogger(__name__)


class ProgressPump:
    """Takes every progress report (sync, from a copy's output parser) and writes the latest at
    most every `interval` s; `last` goes with the outcome."""

    def __init__(self, write: Callable[[tuple[int, int]], Awaitable[None]], interval: float) -> None:
        self._write = write
        self._interval = interval
        self.last: tuple[int, int] | None = None
        self._sent: tuple[int, int] | None = None
        self._task: asyncio.Task[None] | None = None

    def report(self, done: int, total: int) -> None:
        self.last = (done, total)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while self.last != self._sent:
            value = self.last
            assert value is not None
            try:
                await self._write(value)
            except Exception:  # progress is best effort; the outcome carries the last one
                log.warning("could not write progress", exc_info=True)
            self._sent = value
            await asyncio.sleep(self._interval)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


class Agent:
    def __init__(
        self, store: ActionStore, timing: Timing, host: str, agent_id: str, perform: Perform
    ) -> None:
        self.store, self.timing, self.host, self.agent_id = store, timing, host, agent_id
        self.perform = perform
        self.running: dict[str, asyncio.Task[None]] = {}
        self.cancelled: set[str] = set()
        """Ids whose caller asked to cancel: their cancellation is written as their outcome."""

    async def run(self, stop: asyncio.Event, token: str) -> None:
        tick = min(self.timing.recheck, self.timing.lease / 3)
        with self.store.watch_host(self.host) as woken:
            try:
                while not stop.is_set():
                    woken.clear()
                    try:
                        await self._step(token)
                    except self.store.transient as e:  # PostgreSQL away: keep performing, retry
                        log.warning(
                            "agent %s of host %s: the queue is unavailable: %s", self.agent_id, self.host, e
                        )
                    await _first(woken, stop, tick)
                await self._drain()
            finally:
                # Cancelled here means the agent dies: its claims stay for the leases to expire.
                for task in self.running.values():
                    task.cancel()
                await asyncio.gather(*self.running.values(), return_exceptions=True)

    async def _step(self, token: str) -> None:
        if self.running:
            renewal = await self.store.renew(self.agent_id, list(self.running), self.timing.lease)
            for action_id in renewal.cancel | renewal.lost:
                if action_id in renewal.cancel:
                    self.cancelled.add(action_id)
                task = self.running.get(action_id)  # it may have ended during the renewal
                if task is not None:
                    task.cancel()
        room = self.timing.max_running - len(self.running)
        if room > 0 and await self.store.hold(self.host, token):
            skip = set(self.running)
            for claim in await self.store.claim(self.host, self.agent_id, self.timing.lease, skip, room):
                task = asyncio.get_running_loop().create_task(self._perform(claim))
                self.running[claim.id] = task
                task.add_done_callback(lambda _, i=claim.id: self._done(i))  # type: ignore[misc]

    def _done(self, action_id: str) -> None:
        self.running.pop(action_id, None)
        self.cancelled.discard(action_id)

    async def _drain(self) -> None:
        """Graceful stop: let running calls finish for a while, put the rest back."""
        if not self.running:
            return
        await asyncio.wait(list(self.running.values()), timeout=self.timing.stop_grace)
        left = list(self.running)
        for action_id in left:
            self.running[action_id].cancel()
        await asyncio.gather(*(self.running[i] for i in left if i in self.running), return_exceptions=True)
        await self.store.release(self.agent_id, left)

    async def _perform(self, claim: Claim) -> None:
        interval = self.timing.progress_interval
        pump = ProgressPump(lambda p: self.store.report(claim.id, self.agent_id, p), interval)
        try:
            outcome = await self._outcome(claim, pump)
        finally:
            await pump.close()
        await self._write(claim, outcome)

    async def _write(self, claim: Claim, outcome: Outcome) -> None:
        """Write the outcome, retrying while the queue is away for as long as the lease holds;
        after that the action is redelivered (and performed again: see `executor.REPLAY`)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timing.lease
        while True:
            try:
                await self.store.finish(claim.id, self.agent_id, outcome)
                return
            except self.store.transient as e:
                if loop.time() >= deadline:
                    log.warning("action %s: outcome lost, it will be redelivered: %s", claim.id, e)
                    return
            await asyncio.sleep(self.timing.recheck)

    async def _outcome(self, claim: Claim, pump: ProgressPump) -> Outcome:
        try:
            call = decode_call(claim.call)
            value = await self.perform(call, pump.report)
            return Outcome(result=encode(value), progress=pump.last)
        except asyncio.CancelledError:
            if claim.id not in self.cancelled:
                raise  # the agent stops or dies, or lost the claim: the outcome is not ours to write
            return Outcome(error=encode_error(DriverError("cancelled by its caller")), progress=pump.last)
        except Exception as e:
            if not isinstance(e, FerryError):  # a bug: its traceback stays here, not on the wire
                log.exception("action %s on host %s failed", claim.id, self.host)
            return Outcome(error=encode_error(e), progress=pump.last)


async def _first(a: asyncio.Event, b: asyncio.Event, within: float) -> None:
    """Wait until either event is set, at most `within` s."""
    waits = [asyncio.ensure_future(a.wait()), asyncio.ensure_future(b.wait())]
    try:
        await asyncio.wait(waits, timeout=within, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:  # not awaited: awaiting here could swallow a cancel of the agent itself
            w.cancel()
