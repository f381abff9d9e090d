"""Detaching a volume from a running server, as Nova does: the request has claimed the volume
(`detaching`); the unplug goes on in the background, asking the guest again until it releases the
disk or the attempts run out.

The guest decides when a disk leaves: one still booting, or busy, ignores the request for a while
(under TCG a guest boots for tens of seconds after its server is ACTIVE). So a detach is not a
blocking call that fails with 409 after one wait; it is work that ends in one of two states, both
visible: the volume `available` (the attachment gone), or back `in-use` with the reason in its
`status_reason` (the guest never let go). A crash in between leaves `detaching`, which start-up
recovery settles from what QEMU has plugged (`domain/settling.py`)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, update
from sqlalchemy.orm import Session, sessionmaker

from ferry.db.models import Attachment, Volume
from ferry.domain.clock import utcnow
from ferry.domain.errors import Conflict, FerryError
from ferry.domain.volumes import VolumeStatus
from ferry.drivers.hypervisor.base import HypervisorDriver
from ferry.services import failpoints, instance_actions

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Unplug:
    """One detach to carry out: the disk of `volume_id` out of `server_id`, then the rows."""

    server_id: str
    volume_id: str
    attachment_id: str
    event_id: int | None = None
    """Its `detach_volume` instance action's event, which gets the outcome."""


class GuestDetach:
    """Carries out detaches in the background, each until the guest releases the disk or
    `attempts` requests have gone unanswered."""

    def __init__(self, db: sessionmaker[Session], hypervisor: HypervisorDriver, attempts: int, wait_s: float):
        self.db = db
        self.hv = hypervisor
        self.attempts = max(1, attempts)
        self.wait_s = wait_s
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, job: Unplug) -> None:
        """Begin the unplug and wait up to `wait_s` for it: a guest that answers at once is
        detached when the request returns; one that does not goes on being asked."""
        task = self._spawn(self.run(job))
        done, _ = await asyncio.wait({task}, timeout=self.wait_s)
        if task in done:
            task.result()  # what ended it within the request is the request's (a failpoint's crash)

    async def run(self, job: Unplug) -> None:
        failpoints.hit("detach.before_unplug")
        why = await self._unplug(job)
        if why is not None:
            self._refused(job, why)
            return
        failpoints.hit("detach.after_unplug")
        self.finish(job)

    async def _unplug(self, job: Unplug) -> str | None:
        """None once the disk is out; else why it is still in."""
        for attempt in range(1, self.attempts + 1):
            try:
                await self.hv.detach_disk(job.server_id, job.volume_id)
                return None
            except Conflict as exc:  # the guest has not let go yet: ask again
                log.info("detach %s from %s: attempt %d/%d: %s", job.volume_id, job.server_id, attempt,
                         self.attempts, exc)  # fmt: skip
            except FerryError as exc:
                return f"the detach failed: {exc}"
        return f"the guest did not release the disk after {self.attempts} requests; detach again"

    def finish(self, job: Unplug) -> None:
        with self.db.begin() as s:
            s.execute(delete(Attachment).where(Attachment.id == job.attachment_id))
            s.execute(
                update(Volume)
                .where(Volume.id == job.volume_id, Volume.status == VolumeStatus.DETACHING)
                .values(status=VolumeStatus.AVAILABLE, status_reason=None, updated_at=utcnow())
            )
            instance_actions.finish(s, job.event_id)

    def _refused(self, job: Unplug, why: str) -> None:
        log.warning("detach %s from %s: %s", job.volume_id, job.server_id, why)
        with self.db.begin() as s:
            s.execute(
                update(Volume)
                .where(Volume.id == job.volume_id, Volume.status == VolumeStatus.DETACHING)
                .values(status=VolumeStatus.IN_USE, status_reason=why, updated_at=utcnow())
            )
            instance_actions.finish(s, job.event_id, why)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._ended)
        return task

    def _ended(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and isinstance(task.exception(), Exception):
            log.error("detach ended unexpectedly: %s", task.exception())
