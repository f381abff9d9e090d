"""The host action queue's contract, run against both implementations: in-process (the
all-in-one `ferry serve`) and PostgreSQL (marked `db`; it needs FERRY_TEST_DATABASE_URL).

Each test builds "processes" on one shared store (`Cluster.process`): callers and agents that
share only the queue, as on many hosts; an agent dies by having its serving task cancelled and
its connections closed, and stops gracefully through its stop event.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from ferry.coordination.calls import DriverCall, Target
from ferry.coordination.memory import InProcessStore
from ferry.coordination.queue import ActionQueue, HostQueue, Perform, Progress, Timing
from ferry.domain.errors import Conflict, DriverError, HostDown, NotFound
from ferry.domain.model import DiskChain, LayerFile

pytestmark = pytest.mark.anyio

FAST = Timing(call_timeout=10, recheck=0.2, lease=1.0, cancel_grace=5, stop_grace=0.3, progress_interval=0.05)
PING = DriverCall(Target.HYPERVISOR, None, "is_running", ("s1",))


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def pg_url() -> str | None:
    url = os.environ.get("FERRY_TEST_DATABASE_URL", "")
    return url if url.startswith("postgresql") else None


class Cluster:
    """Processes sharing one store: a list of queues to close, and agents to stop."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.memory = InProcessStore()
        self.queues: list[HostQueue] = []
        self.agents: list[tuple[asyncio.Task[None], asyncio.Event]] = []

    def process(self, reachable: Callable[[str], bool] | None = None) -> HostQueue:
        queue: HostQueue
        if self.kind == "memory":
            queue = ActionQueue(self.memory, FAST, reachable)
        else:
            from ferry.coordination.postgres import PostgresQueue

            url = pg_url()
            assert url is not None
            queue = PostgresQueue(url, FAST, reachable)
        self.queues.append(queue)
        return queue

    def agent(
        self, perform: Perform, host: str = "h1", name: str = "agent"
    ) -> tuple[HostQueue, asyncio.Task[None], asyncio.Event]:
        queue = self.process()
        stop = asyncio.Event()
        task = asyncio.create_task(queue.serve(host, name, perform, stop))
        self.agents.append((task, stop))
        return queue, task, stop

    async def close(self) -> None:
        for _, stop in self.agents:
            stop.set()
        await asyncio.gather(*(t for t, _ in self.agents), return_exceptions=True)
        for queue in self.queues:
            await queue.close()


@pytest.fixture(params=["memory", pytest.param("postgres", marks=pytest.mark.db)])
async def cluster(request: pytest.FixtureRequest) -> AsyncIterator[Cluster]:
    if request.param == "postgres":
        url = pg_url()
        if url is None:
            pytest.skip("FERRY_TEST_DATABASE_URL does not point at PostgreSQL")
        from sqlalchemy import create_engine, text

        from ferry.db.engine import upgrade

        upgrade(url)
        engine = create_engine(url)
        with engine.begin() as c:
            c.execute(text("DELETE FROM host_actions"))
        engine.dispose()
    c = Cluster(request.param)
    yield c
    await c.close()


def answering(value: Callable[[DriverCall], Any]) -> Perform:
    async def perform(call: DriverCall, progress: Progress) -> Any:
        return value(call)

    return perform


async def kill(queue: HostQueue, task: asyncio.Task[None]) -> None:
    """The agent dies: its task is gone without a word, its connections close."""
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await queue.close()


async def test_a_call_returns_its_result(cluster: Cluster) -> None:
    chain = DiskChain("v", (LayerFile("/a/b.qcow2"),))
    cluster.agent(answering(lambda call: (call.method, call.args, chain)))
    caller = cluster.process()
    assert await caller.call("h1", PING) == ("is_running", ("s1",), chain)


async def test_errors_are_raised_again_as_their_class(cluster: Cluster) -> None:
    async def perform(call: DriverCall, progress: Progress) -> Any:
        raise {"s1": NotFound("server s1 does not exist"), "s2": Conflict("no slot"), "s3": KeyError("x")}[
            call.args[0]
        ]

    cluster.agent(perform)
    caller = cluster.process()
    with pytest.raises(NotFound, match=r"^server s1 does not exist$"):
        await caller.call("h1", PING)
    with pytest.raises(Conflict, match=r"^no slot$"):
        await caller.call("h1", DriverCall(Target.HYPERVISOR, None, "is_running", ("s2",)))
    with pytest.raises(DriverError, match=r"^agent: KeyError$"):
        await caller.call("h1", DriverCall(Target.HYPERVISOR, None, "is_running", ("s3",)))


async def test_parallel_calls_to_one_host_all_complete(cluster: Cluster) -> None:
    running, most = 0, 0

    async def perform(call: DriverCall, progress: Progress) -> Any:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.2)
        running -= 1
        return call.args[0]

    cluster.agent(perform)
    caller = cluster.process()
    calls = [DriverCall(Target.HYPERVISOR, None, "is_running", (f"s{i}",)) for i in range(20)]
    results = await asyncio.wait_for(asyncio.gather(*(caller.call("h1", c) for c in calls)), 8)
    assert results == [f"s{i}" for i in range(20)]
    assert most > 1, "calls to one host are performed concurrently"


async def test_a_host_without_agent_times_out_and_the_call_is_never_performed(cluster: Cluster) -> None:
    caller = cluster.process()
    with pytest.raises(DriverError, match=r"^host h9 did not answer within 0.5 s"):
        await caller.call("h9", PING, timeout=0.5)
    performed: list[DriverCall] = []
    cluster.agent(answering(performed.append), host="h9")
    await asyncio.sleep(0.6)
    assert performed == []


async def test_the_next_agent_of_a_host_takes_over_a_dead_agents_calls_at_once(cluster: Cluster) -> None:
    seen: list[str] = []
    first_started = asyncio.Event()

    async def stuck(call: DriverCall, progress: Progress) -> Any:
        seen.append("a")
        first_started.set()
        await asyncio.Event().wait()

    queue_a, task_a, _ = cluster.agent(stuck, name="agent-a")
    caller = cluster.process()
    pending = asyncio.create_task(caller.call("h1", PING))
    await asyncio.wait_for(first_started.wait(), 5)
    await kill(queue_a, task_a)
    died = asyncio.get_running_loop().time()
    cluster.agent(answering(lambda call: seen.append("b") or "from b"), name="agent-b")
    assert await asyncio.wait_for(pending, 8) == "from b"
    assert seen == ["a", "b"]
    # Holding the host proves the first agent gone: its claims need not wait for their leases.
    assert asyncio.get_running_loop().time() - died < FAST.lease * 0.5, "waited for the lease"


async def test_a_second_agent_of_a_host_waits_for_the_first(cluster: Cluster) -> None:
    cluster.agent(answering(lambda call: "a"), name="agent-a")
    await asyncio.sleep(0.3)
    cluster.agent(answering(lambda call: "b"), name="agent-b")
    caller = cluster.process()
    results = {await caller.call("h1", PING) for _ in range(5)}
    assert results == {"a"}


async def test_cancelling_the_caller_cancels_the_performer(cluster: Cluster) -> None:
    started, stopped = asyncio.Event(), asyncio.Event()

    async def perform(call: DriverCall, progress: Progress) -> Any:
        started.set()
        try:
            await asyncio.Event().wait()
        finally:
            stopped.set()

    cluster.agent(perform)
    caller = cluster.process()
    pending = asyncio.create_task(caller.call("h1", PING))
    await asyncio.wait_for(started.wait(), 5)
    pending.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(pending, 5)
    assert stopped.is_set(), "the caller's cancel returns once the performer has stopped"


async def test_progress_reaches_the_callers_callback(cluster: Cluster) -> None:
    async def perform(call: DriverCall, progress: Progress) -> Any:
        for done in range(0, 101, 10):
            progress(done, 100)
            await asyncio.sleep(0.02)
        return "copied"

    cluster.agent(perform)
    caller = cluster.process()
    seen: list[tuple[int, int]] = []
    assert await caller.call("h1", PING, progress=lambda d, t: seen.append((d, t))) == "copied"
    assert seen[-1] == (100, 100)
    assert seen == sorted(seen) and len(seen) >= 2


async def test_an_agent_restarted_mid_call_performs_it_again(cluster: Cluster) -> None:
    started = asyncio.Event()

    async def slow(call: DriverCall, progress: Progress) -> Any:
        started.set()
        await asyncio.sleep(60)

    _, task_a, stop_a = cluster.agent(slow, name="agent-a")
    caller = cluster.process()
    pending = asyncio.create_task(caller.call("h1", PING))
    await asyncio.wait_for(started.wait(), 5)
    stop_a.set()  # a graceful stop: the running call goes back to the queue at once
    await asyncio.wait_for(task_a, 5)
    cluster.agent(answering(lambda call: "after restart"), name="agent-a")
    assert await asyncio.wait_for(pending, 5) == "after restart"


async def test_many_hosts_are_kept_apart(cluster: Cluster) -> None:
    for host in ("h1", "h2", "h3"):
        cluster.agent(answering(lambda call, h=host: h), host=host)  # type: ignore[misc]
    caller = cluster.process()
    assert [await caller.call(h, PING) for h in ("h3", "h1", "h2")] == ["h3", "h1", "h2"]


async def test_every_connection_cut_mid_call_and_both_sides_carry_on(cluster: Cluster) -> None:
    """What a PostgreSQL restart does to the clients (PostgreSQL only: memory has no server)."""
    if cluster.kind != "postgres":
        pytest.skip("only the PostgreSQL queue has connections to lose")
    from sqlalchemy import create_engine, text

    release = asyncio.Event()

    async def perform(call: DriverCall, progress: Progress) -> Any:
        await release.wait()
        return "carried on"

    cluster.agent(perform)
    caller = cluster.process()
    pending = asyncio.create_task(caller.call("h1", PING))
    await asyncio.sleep(0.5)
    engine = create_engine(pg_url() or "")
    with engine.begin() as c:
        cut = c.execute(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        ).scalar()
    engine.dispose()
    assert cut and cut >= 2
    release.set()
    assert await asyncio.wait_for(pending, 8) == "carried on"
    assert await asyncio.wait_for(caller.call("h1", PING), 8) == "carried on"


async def test_a_call_to_a_host_that_is_down_fails_at_once_and_is_never_performed(cluster: Cluster) -> None:
    performed: list[DriverCall] = []
    cluster.agent(answering(lambda call: performed.append(call)))
    caller = cluster.process(reachable=lambda host: host != "h1")
    started = asyncio.get_running_loop().time()
    with pytest.raises(HostDown, match="host h1 is down"):
        await caller.call("h1", PING)
    assert asyncio.get_running_loop().time() - started < FAST.recheck
    assert performed == []


async def test_a_call_waiting_on_a_host_that_goes_down_fails_with_host_down(cluster: Cluster) -> None:
    up = {"h1": True}
    started = asyncio.Event()

    async def stuck(call: DriverCall, progress: Progress) -> Any:
        started.set()
        await asyncio.Event().wait()

    cluster.agent(stuck)
    caller = cluster.process(reachable=lambda host: up[host])
    pending = asyncio.create_task(caller.call("h1", PING))
    await asyncio.wait_for(started.wait(), 5)
    up["h1"] = False  # its heartbeats stop: the caller's next re-check sees it
    with pytest.raises(HostDown):
        await asyncio.wait_for(pending, FAST.recheck * 5)


async def test_an_outcome_too_big_for_a_notification_is_read_from_its_row(cluster: Cluster) -> None:
    big = "x" * 20_000  # PostgreSQL carries at most 8000 bytes in a notification's payload
    cluster.agent(answering(lambda call: big))
    caller = cluster.process()
    assert await caller.call("h1", PING) == big
    assert await caller.call("h1", PING) == big
