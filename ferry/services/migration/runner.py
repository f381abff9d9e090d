"""Carries out one migration: asks the `MigrationMachine` what to do, performs it with the drivers,
and feeds back what happened. Decides nothing itself; every branch is the machine's. The forward
steps live in `steps.py`, settling (inspect, rollback, finish) in `settling.py`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from ferry.db.models import Migration, Volume
from ferry.domain.errors import FerryError, Unavailable
from ferry.domain.migration import Cause, EventKind, MigrationPlan, Recovery, RecoveryFacts, Step, plan
from ferry.domain.migration import machine as mm
from ferry.domain.model import DiskChain, GiB, VolumeLocation
from ferry.drivers.hypervisor.base import HypervisorDriver
from ferry.services.messages import MessageBook
from ferry.services.migration.steplog import CancelledByOperator, StepLog

if TYPE_CHECKING:
    from ferry.config import Config
    from ferry.services.storage import Backends

log = logging.getLogger(__name__)
T = TypeVar("T")
Perform = Callable[["MigrationRun", Any], Awaitable[mm.Fact]]


class MigrationRun:
    """One migration being carried out: its plan, its machine, the drivers and the step log."""

    def __init__(
        self,
        db: sessionmaker[Session],
        config: Config,
        backends: Backends,
        hv: HypervisorDriver,
        mig: Migration,
        cancel: asyncio.Event,
        handlers: dict[type[Any], Perform],
    ) -> None:
        self.db, self.config, self.backends, self.hv = db, config, backends, hv
        self.book = MessageBook(config.messages)
        """Where a failed migration tells the volume's project (the service's shared book)."""
        self.mig = mig
        self._cancel = cancel
        self.handlers = handlers
        src_fmt = config.backend(mig.src_backend).format
        source = VolumeLocation(mig.src_backend, mig.src_name_id, tuple(mig.layers), src_fmt)
        with db() as s:
            vol = s.get(Volume, mig.volume_id)
            assert vol is not None
            size = vol.size_gib * GiB
        self.plan: MigrationPlan = plan(
            mig.volume_id, source, config.backend(mig.dst_backend), mig.dst_name_id, size, mig.server_id
        )
        self.src = backends.driver(mig.src_backend)
        self.dst = backends.driver(mig.dst_backend)
        self.job_id = mig.job_id or f"ferry-mirror-{mig.id[:8]}"
        self.steplog = StepLog(db, mig.id, mig.volume_id)
        self.pivot_ms = mig.pivot_ms or 0.0
        limits = mm.Limits(config.migration.stall_seconds, config.migration.ready_timeout_s)
        self.machine = mm.MigrationMachine(
            self.plan.steps, limits, step=Step(mig.step), pivot_completed=self.steplog.pivot_completed()
        )

    # -- the loop -----------------------------------------------------------------------------
    async def drive(self, action: mm.Action) -> None:
        """Perform actions until the machine finishes; each outcome becomes the next fact."""
        while not isinstance(action, mm.Finish | mm.Abandon):
            fact = await self.perform(action)
            try:
                performed, action = action, self.machine.feed(fact)
            except mm.IllegalTransition as e:
                log.exception("migration %s: illegal transition", self.mig.id)
                action = mm.Abandon(f"internal error: {e}")
                continue
            if isinstance(fact, mm.Recovered) and isinstance(performed, mm.Inspect):
                self.on_decision(performed, fact.facts)
        await self.handlers[type(action)](self, action)

    async def perform(self, action: mm.Action) -> mm.Fact:
        """Carry out one action; whatever happens becomes a fact (a bug included)."""
        if self.machine.cancellable and self._cancel.is_set():
            return mm.CancelRequested()
        try:
            return await self.handlers[type(action)](self, action)
        except CancelledByOperator:
            return mm.CancelRequested() if self.machine.cancellable else mm.Failed("cancelled too late")
        except Unavailable:
            raise  # no fact can be read now: the run waits (MigrationService)
        except (OperationalError, InterfaceError) as e:
            raise Unavailable("the database is unavailable", e) from e
        except FerryError as e:
            log.error("migration %s failed at %s: %s", self.mig.id, self.machine.step, e.message)
            return mm.Failed(e.message)
        except Exception as e:  # a bug must not leave the volume locked
            log.exception("migration %s crashed at %s", self.mig.id, self.machine.step)
            return mm.Failed(f"internal error: {type(e).__name__}: {e}")

    def on_decision(self, inspected: mm.Inspect, facts: RecoveryFacts) -> None:
        """Say in the step log what the machine decided from the facts, and why."""
        decision = self.machine.decision
        if inspected.cause is Cause.RESTART:
            self.steplog.write(facts.step, EventKind.RESTARTED, decision=str(decision))
        elif decision in (Recovery.COMMIT, Recovery.CLEANUP):
            message = f"{inspected.reason}; pivot already done, finishing instead"
            self.steplog.write(facts.step, EventKind.NOTE, message=message)

    # -- what the steps share -----------------------------------------------------------------
    def enter(self, step: Step, **created: Any) -> None:
        self.steplog.enter(step, honour_cancel=self.machine.cancellable, **created)

    async def cancellable(self, work: Coroutine[Any, Any, T]) -> T:
        """Run `work`, stopping it (a running qemu-img is killed) when a cancel arrives."""
        if not self.machine.cancellable:
            return await work
        if self._cancel.is_set():
            work.close()
            raise CancelledByOperator()
        task = asyncio.ensure_future(work)
        waiter = asyncio.ensure_future(self._cancel.wait())
        try:
            await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:  # the run itself is stopped: take its work down with it
            task.cancel()
            waiter.cancel()
            raise
        if task.done():
            waiter.cancel()
            return task.result()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        raise CancelledByOperator()

    @property
    def server(self) -> str:
        assert self.plan.server_id is not None, "only an attached migration has a server"
        return self.plan.server_id

    def dst_path(self, layer: str) -> str:
        return str(self.dst.layer_path(self.plan.dest.name_id, layer))

    def dest_chain(self) -> DiskChain:
        return self.backends.disk_chain(self.plan.volume_id, self.plan.dest)

    def source_chain(self) -> DiskChain:
        return self.backends.disk_chain(self.plan.volume_id, self.plan.source)
