"""Carries out one server live migration: asks the `LiveMachine` what to do, performs it on the
source's and the destination's hypervisor, logs each step before it acts, feeds back what
happened. Decides nothing itself.

Verification (before any guest byte moves, and again at the switchover) compares, for every
attached volume, the destination's disk serial with the volume id and its open chain with the
volume's recorded location: QEMU checks neither.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from ferry.db.models import Attachment, Host, Server, ServerLiveMigration, ServerLiveMigrationEvent, Volume
from ferry.domain.clock import utcnow
from ferry.domain.errors import DriverError, FerryError, Unavailable
from ferry.domain.live import LiveProgress, LiveSettings, LiveState
from ferry.domain.server_migration import machine as lm
from ferry.domain.server_migration.plan import STATUS_OF, LiveStatus, LiveStep
from ferry.domain.server_migration.recovery import LiveFacts
from ferry.domain.servers import ServerStatus, ServerTaskState
from ferry.drivers.hypervisor.base import HypervisorDriver, ServerSpec
from ferry.services import instance_actions
from ferry.services.qos import volume_disk_limits
from ferry.services.storage import Backends

log = logging.getLogger(__name__)
WATCH_S = 1.0
"""How long one wait for the switchover lasts before progress is recorded again."""
SWITCHOVER_S = 120.0


class LiveRun:
    def __init__(
        self,
        db: sessionmaker[Session],
        backends: Backends,
        hv: HypervisorDriver,
        row: ServerLiveMigration,
        spec: ServerSpec,
        timeout_s: float,
    ) -> None:
        self.db, self.backends = db, backends
        self.id, self.server = row.id, row.server_id
        self.source_host, self.dest_host = row.source_host, row.dest_host
        self.src, self.dst = hv.on_host(row.source_host), hv.on_host(row.dest_host)
        self.settings = LiveSettings(row.bandwidth, row.downtime_limit_ms)
        self.spec = spec
        self.timeout_s = timeout_s
        self.machine = lm.LiveMachine(LiveStep(row.step))
        self.watched = 0.0

    # -- the loop -----------------------------------------------------------------------------
    async def drive(self, action: lm.Action) -> None:
        while not isinstance(action, lm.Finish):
            fact = await self.perform(action)
            try:
                action = self.machine.feed(fact)
            except lm.IllegalTransition as e:
                log.exception("live migration %s: illegal transition", self.id)
                action = lm.Finish(LiveStatus.ERROR, f"internal error: {e}")
        self.finish(action)

    async def perform(self, action: lm.Action) -> lm.Fact:
        try:
            if isinstance(action, lm.Perform):
                self.enter(action.step)
                await STEPS[action.step](self)
                self.log(action.step, "done")
                return lm.Done(action.step)
            if isinstance(action, lm.Watch):
                return await self.watch()
            if isinstance(action, lm.Inspect):
                self.log(self.machine.step, "inspect", reason=action.reason)
                return lm.Recovered(await self.facts())
            assert isinstance(action, lm.RollBack)  # Finish ends `drive` before it gets here
            return await self.roll_back(action)
        except Unavailable:
            raise  # nothing can be read now: the run waits (the service's keeper resumes it)
        except (OperationalError, InterfaceError) as e:
            raise Unavailable("the database is unavailable", e) from e
        except FerryError as e:
            log.error("live migration %s failed at %s: %s", self.id, self.machine.step, e.message)
            return lm.Failed(e.message)
        except Exception as e:  # a bug must not leave the server locked in `migrating`
            log.exception("live migration %s crashed at %s", self.id, self.machine.step)
            return lm.Failed(f"internal error: {type(e).__name__}")

    # -- steps --------------------------------------------------------------------------------
    async def prepare(self) -> None:
        slots = await self.src.disk_slots(self.server)
        address = self._address(self.dest_host)
        uri = await self.dst.prepare_incoming(self.spec, slots, address)
        self._update(uri=uri)

    async def verify(self) -> None:
        checked = await self._verify_destination()
        self._update(serials_checked=checked)
        self.log(LiveStep.VERIFY, "serials-checked", count=checked)

    async def migrate(self) -> None:
        uri = self._row().uri
        if uri is None:
            raise DriverError("no destination URI was recorded")
        await self.src.start_live_migration(self.server, uri, self.settings)

    async def watch(self) -> lm.Fact:
        if self._row().abort_requested:
            return lm.AbortRequested()
        progress = await self.src.wait_live(self.server, (LiveState.PRE_SWITCHOVER,), WATCH_S)
        self._record(progress)
        self.watched += WATCH_S
        if self.watched > self.timeout_s and not progress.state.ended:
            return lm.Failed(f"the live migration did not converge within {self.timeout_s:g} s")
        return lm.Sampled(progress)

    async def switchover(self) -> None:
        await self._verify_destination()  # once more: nothing changed since the copy began
        await self.src.continue_live(self.server)
        done = await self.src.wait_live(self.server, (LiveState.COMPLETED,), SWITCHOVER_S)
        self._record(done)
        if done.state is not LiveState.COMPLETED:
            raise DriverError(f"the switchover ended {done.state}: {done.error or 'no reason given'}")
        dest, source = await self.dst.run_state(self.server), await self.src.run_state(self.server)
        if dest != "running":
            raise DriverError(f"after the switchover the destination is {dest}, not running")
        self.log(
            LiveStep.SWITCHOVER, "switched", destination=dest, source=source, downtime_ms=done.downtime_ms
        )
        await self._throttle_destination()

    async def _throttle_destination(self) -> None:
        """The disks' front-end QoS on the destination's QEMU (a throttle is not migrated with
        the guest, as Nova's libvirt iotune is part of the destination's domain). The guest runs
        there already: a failure here is logged, never a reason to undo the switchover."""
        with self.db() as s:
            limits = {d.volume_id: volume_disk_limits(s, d.volume_id) for d in self.spec.disks}
        for volume_id, limit in limits.items():
            if not limit:
                continue
            try:
                await self.dst.set_disk_limits(self.server, volume_id, limit)
            except FerryError as e:
                log.warning(
                    "server %s: the QoS of volume %s was not applied on %s: %s",
                    self.server,
                    volume_id,
                    self.dest_host,
                    e,
                )

    async def commit(self) -> None:
        with self.db.begin() as s:
            s.execute(
                update(Server)
                .where(Server.id == self.server)
                .values(host=self.dest_host, updated_at=utcnow())  # still `migrating` until it finishes
            )
            s.execute(
                update(ServerLiveMigration)
                .where(ServerLiveMigration.id == self.id)
                .values(step=LiveStep.COMMIT, status=LiveStatus.POST_MIGRATING, updated_at=utcnow())
            )

    async def cleanup(self) -> None:
        await self.src.destroy(self.server)

    # -- settling -----------------------------------------------------------------------------
    async def facts(self) -> LiveFacts:
        with self.db() as s:
            host = s.scalar(select(Server.host).where(Server.id == self.server))
        return LiveFacts(
            committed=host == self.dest_host,
            source=await self.src.run_state(self.server),
            destination=await self.dst.run_state(self.server),
        )

    async def roll_back(self, action: lm.RollBack) -> lm.Fact:
        self.log(self.machine.step, "rollback", reason=action.reason)
        if await self.src.run_state(self.server) is not None:
            if action.resume_source:
                await self.src.resume_guest(self.server)
            else:
                await self.src.cancel_live(self.server)
                await self.src.wait_live(self.server, (LiveState.CANCELLED,), SWITCHOVER_S)
                await self.src.resume_guest(self.server)
        await self.dst.destroy(self.server)  # the waiting destination and its run dir
        return lm.Done(self.machine.step)

    def finish(self, action: lm.Finish) -> None:
        now = utcnow()
        with self.db.begin() as s:
            s.execute(
                update(ServerLiveMigration)
                .where(ServerLiveMigration.id == self.id)
                .values(status=action.status, error=action.reason, updated_at=now, finished_at=now)
            )
            server: dict[str, Any] = {"task_state": None, "updated_at": now}
            if action.status is LiveStatus.ERROR:
                server.update(status=ServerStatus.ERROR, fault=action.reason)
            s.execute(
                update(Server)
                .where(Server.id == self.server, Server.task_state == ServerTaskState.MIGRATING)
                .values(**server)
            )
            instance_actions.task_ended(s, self.server, _failure(action))
        self.log(self.machine.step, str(action.status), reason=action.reason)
        log.info(
            "live migration %s of server %s: %s %s", self.id, self.server, action.status, action.reason or ""
        )

    # -- the step log and the record ----------------------------------------------------------
    def enter(self, step: LiveStep) -> None:
        with self.db.begin() as s:
            s.execute(
                update(ServerLiveMigration)
                .where(ServerLiveMigration.id == self.id)
                .values(step=step, status=STATUS_OF[step], updated_at=utcnow())
            )
            s.add(
                ServerLiveMigrationEvent(
                    migration_id=self.id, at=utcnow(), step=step, event="started", detail={}
                )
            )

    def log(self, step: LiveStep, event: str, **detail: Any) -> None:
        with self.db.begin() as s:
            s.add(
                ServerLiveMigrationEvent(
                    migration_id=self.id, at=utcnow(), step=step, event=event, detail=detail
                )
            )

    def _record(self, p: LiveProgress) -> None:
        self._update(
            memory_total=p.memory_total, memory_processed=p.memory_processed,
            memory_remaining=p.memory_remaining, dirty_rate=p.dirty_rate,
            expected_downtime_ms=p.expected_downtime_ms,
            **({"downtime_ms": p.downtime_ms} if p.downtime_ms is not None else {}),
        )  # fmt: skip

    def _update(self, **values: Any) -> None:
        with self.db.begin() as s:
            s.execute(
                update(ServerLiveMigration)
                .where(ServerLiveMigration.id == self.id)
                .values(updated_at=utcnow(), **values)
            )

    def _row(self) -> ServerLiveMigration:
        with self.db() as s:
            row = s.get(ServerLiveMigration, self.id)
            assert row is not None
            return row

    def _address(self, host: str) -> str:
        with self.db() as s:
            address = s.scalar(select(Host.address).where(Host.name == host))
        if address is None:
            raise DriverError(f"host {host} has no address")
        return address

    async def _verify_destination(self) -> int:
        with self.db() as s:
            vols = list(
                s.scalars(select(Volume).join(Attachment, Attachment.volume_id == Volume.id)
                          .where(Attachment.server_id == self.server))
            )  # fmt: skip
            want = {
                v.id: tuple(
                    lay.path
                    for lay in reversed(self.backends.disk_chain(v.id, self.backends.location(s, v)).layers)
                )
                for v in vols
            }
        found = {d.volume_id: d for d in await self.dst.disks(self.server)}
        if set(found) != set(want):
            raise DriverError(
                f"destination disks {sorted(found)} are not the attached volumes {sorted(want)}"
            )
        for vid, files in want.items():
            disk = found[vid]
            if disk.serial != vid:
                raise DriverError(f"destination disk of volume {vid} has serial {disk.serial!r}")
            if tuple(disk.files) != files:
                raise DriverError(
                    f"destination disk of volume {vid} opened {disk.files}, not its location {files}"
                )
        return len(want)


STEPS = {
    LiveStep.PREPARE: LiveRun.prepare,
    LiveStep.VERIFY: LiveRun.verify,
    LiveStep.MIGRATE: LiveRun.migrate,
    LiveStep.SWITCHOVER: LiveRun.switchover,
    LiveStep.COMMIT: LiveRun.commit,
    LiveStep.CLEANUP: LiveRun.cleanup,
}


def _failure(action: lm.Finish) -> str | None:
    """Why the live migration did not complete (its instance action's event reason), or None."""
    return None if action.status is LiveStatus.COMPLETED else action.reason or str(action.status)
