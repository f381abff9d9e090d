"""The host action queue: its contract (`HostQueue`), the store both implementations keep their
actions in (`ActionStore`), and the one caller- and agent-side logic over it (`ActionQueue`).

A caller's `call` writes a queued action addressed to a host and waits for its outcome; the
host's agent (`serve`) claims it under a lease it renews while it performs, and writes the
outcome in the step that finishes the action. Every wait is bounded: a caller that hears nothing
within its timeout withdraws the action and raises DriverError naming the host; every wake-up is
a notification, backed by a re-check every `recheck` seconds in case one was missed.
The performing itself (leases, cancel, progress) is in `serving`; the storage of actions in
`memory` (in-process) and `postgres`.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

from ferry.coordination.calls import DriverCall, check_host
from ferry.coordination.wire import Json, decode, decode_error, encode_call, encode_error
from ferry.domain.actions import ActionState
from ferry.domain.errors import DriverError, HostDown
from ferry.domain.ids import new_id

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
"""Called with (bytes_done, bytes_total) while a call runs (a copy)."""
Perform = Callable[[DriverCall, Progress], Awaitable[Any]]
"""What an agent does with a call: perform it on its drivers, reporting progress."""
Reachable = Callable[[str], bool]
"""Whether a host is up (its agent beats): a call to a host that is not fails with HostDown."""


class HostQueue(abc.ABC):
    """Driver calls addressed to hosts, performed by each host's agent."""

    @abc.abstractmethod
    async def call(
        self, host: str, call: DriverCall, *, timeout: float | None = None, progress: Progress | None = None
    ) -> Any:
        """Have `host`'s agent perform `call`; its result, or its error raised again here.
        DriverError when no outcome came within `timeout` s (the queue's default when None).
        Cancelling the awaiting task cancels the call on the agent and waits (bounded) until
        the agent has stopped performing it."""

    @abc.abstractmethod
    async def serve(self, host: str, agent_id: str, perform: Perform, stop: asyncio.Event) -> None:
        """Perform the calls addressed to `host` until `stop` is set. One agent serves a host
        at a time (another waits). On `stop`, calls still running after a short grace are
        cancelled and put back for the next agent; when the serving task is cancelled (the
        agent dies) its claims stay, for the host's next agent to take over as it starts
        serving (or for another to claim once their leases lapse)."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Drop connections."""


@dataclass(frozen=True)
class ActionView:
    state: ActionState
    progress: tuple[int, int] | None
    result: Json
    error: Json


_AWAY = ActionView(ActionState.QUEUED, None, None, None)
"""What a caller assumes while the store cannot be read: still waiting."""


@dataclass(frozen=True)
class Claim:
    id: str
    call: Json
    attempts: int


@dataclass(frozen=True)
class Outcome:
    result: Json = None
    error: Json = None
    progress: tuple[int, int] | None = None
    """The last progress the agent saw, written with the outcome (throttling may have held it)."""

    @property
    def state(self) -> ActionState:
        return ActionState.FAILED if self.error is not None else ActionState.DONE


@dataclass(frozen=True)
class Renewal:
    cancel: frozenset[str]
    """Still ours, and the caller asked to cancel."""
    lost: frozenset[str]
    """No longer ours (the lease ran out and another agent claimed it, or it was withdrawn)."""


class ActionStore(abc.ABC):
    """Where actions live and how their parties are woken. Every method is one atomic step."""

    transient: tuple[type[Exception], ...] = ()
    """Errors that mean "the store is away for now" (a database restart): retried, not raised."""

    # -- caller ----------------------------------------------------------------------------
    @abc.abstractmethod
    async def insert(self, host: str, action_id: str, call: Json) -> None:
        """Add a queued action and wake `host`'s agent."""

    @abc.abstractmethod
    async def view(self, action_id: str) -> ActionView | None: ...

    @abc.abstractmethod
    async def withdraw(self, host: str, action_id: str, error: Json) -> None:
        """A queued action fails with `error` (never performed); a claimed one gets
        `cancel_requested` and its agent is woken."""

    async def forget(self, action_id: str) -> None:  # noqa: B027 - optional hook
        """The caller is done with the action (a store that keeps history leaves it)."""

    @abc.abstractmethod
    def watch(self, action_id: str) -> contextlib.AbstractContextManager[asyncio.Event]:
        """An event set whenever the action changes (progress or outcome) while in the block."""

    # -- agent -----------------------------------------------------------------------------
    @abc.abstractmethod
    async def hold(self, host: str, token: str) -> bool:
        """Become (or stay) the one agent serving `host`; False while another one is."""

    @abc.abstractmethod
    async def unhold(self, host: str, token: str) -> None: ...

    @abc.abstractmethod
    def watch_host(self, host: str) -> contextlib.AbstractContextManager[asyncio.Event]:
        """An event set whenever an action for `host` is added or withdrawn while in the block."""

    @abc.abstractmethod
    async def claim(self, host: str, agent_id: str, lease: float, skip: set[str], limit: int) -> list[Claim]:
        """Claim up to `limit` actions for `host` that are queued or whose lease ran out."""

    @abc.abstractmethod
    async def renew(self, agent_id: str, ids: list[str], lease: float) -> Renewal: ...

    @abc.abstractmethod
    async def report(self, action_id: str, agent_id: str, progress: tuple[int, int]) -> None: ...

    @abc.abstractmethod
    async def finish(self, action_id: str, agent_id: str, outcome: Outcome) -> None:
        """Write the outcome, if the action is still claimed by `agent_id`, and wake its caller."""

    @abc.abstractmethod
    async def release(self, agent_id: str, ids: list[str]) -> None:
        """Put actions still claimed by `agent_id` back to queued (a graceful stop)."""


@dataclass
class Timing:
    call_timeout: float = 300.0
    """A call's bound when its caller gives none."""
    recheck: float = 2.0
    """The longest any party waits for a notification before looking again."""
    lease: float = 30.0
    """How long a claim holds without renewal; renewed every lease/3 s while performing."""
    cancel_grace: float = 30.0
    """How long a cancelled caller waits for the agent to stop performing."""
    stop_grace: float = 5.0
    """How long a stopping agent lets running calls finish before it puts them back."""
    progress_interval: float = 0.5
    """Progress is written at most this often per action."""
    max_running: int = 64
    """Calls one agent performs at once."""


class ActionQueue(HostQueue):
    """`HostQueue` over an `ActionStore`: the same semantics whatever keeps the actions."""

    def __init__(
        self, store: ActionStore, timing: Timing | None = None, reachable: Reachable | None = None
    ) -> None:
        self.store = store
        self.timing = timing or Timing()
        self.reachable = reachable
        """Asked before a call is sent and at every re-check while it waits (None: always up)."""

    def _check_up(self, host: str, call: DriverCall) -> None:
        if self.reachable is not None and not self.reachable(host):
            raise HostDown(f"host {host} is down: cannot perform {call} there")

    async def call(
        self, host: str, call: DriverCall, *, timeout: float | None = None, progress: Progress | None = None
    ) -> Any:
        check_host(host)
        self._check_up(host, call)
        limit = self.timing.call_timeout if timeout is None else timeout
        action_id = new_id()
        with self.store.watch(action_id) as changed:
            # Shielded: a cancel while the insert runs must not leave an action nobody withdraws.
            inserted = asyncio.ensure_future(self.store.insert(host, action_id, encode_call(call)))
            try:
                await asyncio.shield(inserted)
                return await self._outcome(
                    action_id, changed, limit, progress, lambda: self._check_up(host, call)
                )
            except HostDown as e:
                await self.store.withdraw(host, action_id, encode_error(e))
                raise
            except self.store.transient as e:
                raise DriverError(f"cannot send {call} to host {host}: the queue is unavailable", e) from e
            except TimeoutError:
                await self.store.withdraw(host, action_id, _gave_up(host, limit))
                raise DriverError(f"host {host} did not answer within {limit:g} s ({call})") from None
            except asyncio.CancelledError:
                withdrawn = asyncio.ensure_future(self._withdraw(host, action_id, changed, inserted))
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.shield(withdrawn)
                raise
            finally:
                await asyncio.shield(self.store.forget(action_id))

    async def _outcome(
        self,
        action_id: str,
        changed: asyncio.Event,
        limit: float,
        progress: Progress | None,
        still_up: Callable[[], None] = lambda: None,
    ) -> Any:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        seen: tuple[int, int] | None = None
        while True:
            changed.clear()
            try:
                view = await self.store.view(action_id)
            except self.store.transient as e:
                log.warning("action %s: the queue is unavailable, looking again: %s", action_id, e)
                view = _AWAY
            if view is None:
                raise DriverError(f"action {action_id} vanished from the queue")
            if progress is not None and view.progress is not None and view.progress != seen:
                seen = view.progress
                progress(*seen)
            if view.state is ActionState.DONE:
                return decode(view.result)
            if view.state is ActionState.FAILED:
                raise decode_error(view.error)
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), min(remaining, self.timing.recheck))
            if not changed.is_set():
                still_up()  # a re-check: the host may have gone down since the call was sent

    async def _withdraw(
        self, host: str, action_id: str, changed: asyncio.Event, inserted: asyncio.Future[None]
    ) -> None:
        """Cancel on the agent and wait until it has stopped (a killed qemu-img is gone)."""
        try:
            await asyncio.wait_for(asyncio.shield(inserted), self.timing.cancel_grace)
        except Exception:
            return  # never sent
        await self.store.withdraw(host, action_id, encode_error(DriverError("cancelled by its caller")))
        with contextlib.suppress(Exception):  # a timeout, or the call's outcome: no news to it
            await self._outcome(action_id, changed, self.timing.cancel_grace, None)

    async def serve(self, host: str, agent_id: str, perform: Perform, stop: asyncio.Event) -> None:
        from ferry.coordination.serving import Agent  # the agent side imports this module

        check_host(host)
        async with self._holding(host, stop) as token:
            if token is not None:
                await Agent(self.store, self.timing, host, agent_id, perform).run(stop, token)

    async def _try_hold(self, host: str, token: str) -> bool:
        try:
            return await self.store.hold(host, token)
        except self.store.transient:
            return False

    @contextlib.asynccontextmanager
    async def _holding(self, host: str, stop: asyncio.Event) -> AsyncIterator[str | None]:
        """Wait (re-trying every `recheck` s) to be the one agent of `host`, or for `stop`."""
        token = new_id()
        try:
            while not await self._try_hold(host, token):
                if await _stopped(stop, self.timing.recheck):
                    yield None
                    return
            yield token
        finally:
            await asyncio.shield(self.store.unhold(host, token))


async def _stopped(stop: asyncio.Event, within: float) -> bool:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), within)
    return stop.is_set()


def _gave_up(host: str, limit: float) -> Json:
    return encode_error(DriverError(f"host {host} did not answer within {limit:g} s"))


@contextlib.contextmanager
def subscribed(waiters: dict[str, set[asyncio.Event]], key: str) -> Iterator[asyncio.Event]:
    """Register an event under `key` for the block (the stores' `watch` and `watch_host`)."""
    event = asyncio.Event()
    waiters.setdefault(key, set()).add(event)
    try:
        yield event
    finally:
        waiters[key].discard(event)
        if not waiters[key]:
            del waiters[key]


def wake(waiters: dict[str, set[asyncio.Event]], key: str) -> None:
    for event in waiters.get(key, ()):
        event.set()
