"""Detach as Nova does it (`services/detaching.py`), on the fake hypervisor: the request answers
while a slow guest is still being asked; the volume ends `available`, or back `in-use` with the
reason when the guest never lets go."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy import select

from ferry.db.models import Attachment, Volume
from ferry.domain.errors import Conflict, DriverError
from ferry.drivers.hypervisor.fake import FakeHypervisorDriver
from ferry.services.app import Ferry
from tests.unit.test_migration_service import ADMIN, attached_volume, make_ferry, run, until

NOT_RELEASED = "device was not released by the guest within 30 s"


class SlowGuest(FakeHypervisorDriver):
    """A guest that lets `refusals` unplug requests time out (each takes a moment, as QEMU's wait
    for the guest does) before it releases the disk."""

    refusals = 0

    async def detach_disk(self, server_id: str, volume_id: str) -> None:
        if self.refusals:
            self.refusals -= 1
            self.calls.append(("detach_disk", server_id, volume_id))
            await asyncio.sleep(0.05)
            raise Conflict(NOT_RELEASED)
        await super().detach_disk(server_id, volume_id)


def slow_app(tmp: Path, hv: FakeHypervisorDriver, attempts: int = 8, wait_s: float = 0.0) -> Ferry:
    app = make_ferry(tmp, hv)
    app.compute.detaching.attempts, app.compute.detaching.wait_s = attempts, wait_s
    return app


def status(app: Ferry, vid: str) -> tuple[str, str | None]:
    with app.db() as s:
        vol = s.scalars(select(Volume).where(Volume.id == vid)).one()
        return vol.status, vol.status_reason


def attachments(app: Ferry, vid: str) -> int:
    with app.db() as s:
        return len(list(s.scalars(select(Attachment).where(Attachment.volume_id == vid))))


def test_a_guest_that_answers_at_once_is_detached_when_the_request_returns(tmp_path: Path) -> None:
    async def go() -> None:
        app = slow_app(tmp_path, FakeHypervisorDriver(), wait_s=5.0)
        sid, vid = await attached_volume(app, tmp_path)
        await app.compute.detach(ADMIN, sid, vid)
        assert status(app, vid) == ("available", None) and attachments(app, vid) == 0

    run(go)


def test_a_slow_guest_is_asked_again_in_the_background(tmp_path: Path) -> None:
    async def go() -> None:
        hv = SlowGuest()
        app = slow_app(tmp_path, hv, attempts=4)
        sid, vid = await attached_volume(app, tmp_path)
        hv.refusals = 3  # still booting: three requests go unanswered
        await app.compute.detach(ADMIN, sid, vid)
        assert status(app, vid)[0] == "detaching"  # answered before the guest let go
        await until("detached", lambda: status(app, vid) == ("available", None))
        assert attachments(app, vid) == 0
        assert [c for c in hv.calls if c[0] == "detach_disk"] == [("detach_disk", sid, vid)] * 4

    run(go)


def test_a_guest_that_never_lets_go_leaves_the_volume_in_use_with_the_reason(tmp_path: Path) -> None:
    async def go() -> None:
        hv = FakeHypervisorDriver()
        app = slow_app(tmp_path, hv, attempts=2)
        sid, vid = await attached_volume(app, tmp_path)
        for _ in range(2):
            hv.fail_next("detach_disk", Conflict(NOT_RELEASED))
        await app.compute.detach(ADMIN, sid, vid)
        _, why = await until("refused", lambda: (s := status(app, vid))[0] == "in-use" and s)
        assert why is not None and "after 2 requests" in why
        assert attachments(app, vid) == 1 and vid in hv.servers[sid].disks
        # Detaching again, once the guest answers, works and clears the reason.
        await app.compute.detach(ADMIN, sid, vid)
        await until("detached", lambda: status(app, vid) == ("available", None))

    run(go)


def test_a_driver_failure_is_not_retried(tmp_path: Path) -> None:
    async def go() -> None:
        hv = FakeHypervisorDriver()
        app = slow_app(tmp_path, hv, attempts=8)
        sid, vid = await attached_volume(app, tmp_path)
        hv.fail_next("detach_disk", DriverError("QMP connection lost"))
        await app.compute.detach(ADMIN, sid, vid)
        _, why = await until("refused", lambda: (s := status(app, vid))[0] == "in-use" and s)
        assert why is not None and "QMP connection lost" in why
        assert len([c for c in hv.calls if c[0] == "detach_disk"]) == 1

    run(go)
