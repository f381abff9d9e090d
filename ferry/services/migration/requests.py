"""Volume migration and retype requests (DESIGN §5): reserve, report, cancel, speed, and the guarded
Nova/Cinder swap callbacks; and the tasks that carry migrations out (`MigrationRun`), started here,
resumed here after a restart. The source is deleted only after the destination is committed
(invariant 3); every decision on the way is the machine's (`domain.migration.machine`).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from functools import partial
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from ferry.config import Config
from ferry.db.models import Migration, MigrationEvent, Volume
from ferry.db.statements import active_migration, active_migrations, compare_and_set, not_migrating
from ferry.domain import migration as dm
from ferry.domain import scheduling as sched
from ferry.domain.clock import utcnow
from ferry.domain.errors import BadRequest, Conflict, NotFound
from ferry.domain.ids import new_id
from ferry.domain.migration import NO_RETURN, EventKind, RunStatus, Step
from ferry.domain.migration.lease import LeaseTerms
from ferry.domain.model import BackendConfig
from ferry.domain.volumes import MIGRATION_BUSY, MigrationStatus
from ferry.drivers.hypervisor.base import HypervisorDriver
from ferry.services import policy
from ferry.services.context import RequestContext
from ferry.services.hosts import check_destination_reach
from ferry.services.migration.conducting import ConductedRuns
from ferry.services.migration.conductor import Conductor
from ferry.services.migration.runner import MigrationRun, Perform
from ferry.services.migration.settling import SETTLING
from ferry.services.migration.steplog import event
from ferry.services.migration.steps import STEPS
from ferry.services.queries import get_type, get_volume, running_server, server_task
from ferry.services.storage import Backends
from ferry.services.volumes import VolumeService

log = logging.getLogger(__name__)
HANDLERS: dict[type[Any], Perform] = {**STEPS, **SETTLING}
SWAP_REFUSED = (
    "Swapping a volume directly is not supported: it would leave the guest's disk serial "
    "naming a volume id that no longer exists. Move the data with os-migrate_volume "
    "(`ferry volume migrate VOLUME --to BACKEND`) or os-retype; they serve attached and "
    "detached volumes, with or without snapshots."
)


@dataclass
class MigrationReport:
    migration: Migration
    events: list[MigrationEvent]


class MigrationService:
    def __init__(
        self,
        db: sessionmaker[Session],
        config: Config,
        backends: Backends,
        hypervisor: HypervisorDriver,
        volumes: VolumeService,
    ) -> None:
        self.db = db
        self.volumes = volumes
        self.config = config
        self.backends = backends
        self.hv = hypervisor
        self._cancels: dict[str, asyncio.Event] = {}
        self._slots: dict[str, asyncio.Semaphore] = {
            b.name: asyncio.Semaphore(b.max_migrations) for b in config.backends
        }
        self.conductor = Conductor(db, LeaseTerms(config.migration.lease_s))
        self.runs = ConductedRuns(
            self.conductor,
            "migration",
            self._recover,
            cancel_asked=lambda mid: self.cancel_event(mid).set(),  # its run sees it here
            forget=self._forget,
        )

    # -- requests ----------------------------------------------------------------------
    async def migrate(
        self,
        ctx: RequestContext,
        volume_id: str,
        host: str,
        *,
        new_type_id: str | None = None,
        action: str = "volume:migrate",
        speed: int | None = None,
    ) -> Migration:
        policy.enforce(ctx, action)
        dest = self.backends.resolve(host)
        async with self.volumes.chain_lock(volume_id):  # no snapshot change while the plan is made
            mig = self._reserve(ctx, volume_id, dest, new_type_id, speed)
        self.runs.launch(mig.id, partial(self._run, mig.id))
        return mig

    def _reserve(
        self,
        ctx: RequestContext,
        volume_id: str,
        dest: BackendConfig,
        new_type_id: str | None,
        speed: int | None,
    ) -> Migration:
        with self.db.begin() as s:
            vol = get_volume(s, ctx, volume_id)
            if vol.status not in ("available", "in-use"):
                raise BadRequest(
                    f"Volume {vol.id} is {vol.status}: only available or in-use volumes migrate."
                )
            source = self.backends.location(s, vol)
            dm.check_destination(source, self.config.backend(vol.backend), dest)
            pool = next(p for p in self.backends.pool_stats(s) if p.backend.name == dest.name)
            if not pool.fits(vol.size_gib):
                raise BadRequest(f"Backend {dest.name!r} has no capacity for {vol.size_gib} GiB.")
            type_id = new_type_id or vol.volume_type_id  # a retype's destination passes the new type
            if type_id:
                vtype = get_type(s, type_id)
                sched.check_migration_destination(pool, vtype.name, vtype.extra_specs or {})
            check_destination_reach(s, vol.id, dest)
            busy = s.scalar(active_migration(vol.id).with_only_columns(Migration.id))
            if busy:
                raise Conflict(f"Volume {vol.id} is already being migrated.")
            task = server_task(s, vol.id)
            if task is not None:
                raise Conflict(
                    f"Volume {vol.id}: its server {task[0]} is busy ({task[1]}); migrate when it is done."
                )
            compare_and_set(
                s,
                update(Volume)
                .where(Volume.id == vol.id, Volume.status.in_(("available", "in-use")), not_migrating())
                .values(migration_status=MigrationStatus.STARTING.value, updated_at=utcnow()),
                f"Volume {vol.id} is already being migrated.",
            )
            # Live only when a running process has the volume open; a stopped server's volume is
            # copied offline (starting that server is refused until the migration ends).
            server_id = running_server(s, vol.id)
            if new_type_id is not None:  # counted under the new type from here (quotas.usage)
                self.volumes.quotas.claim_retype(s, vol.project_id, new_type_id, vol.size_gib)
            mig = Migration(
                id=new_id(),
                volume_id=vol.id,
                status=RunStatus.QUEUED.value,
                step=Step.QUEUED.value,
                server_id=server_id,
                src_backend=vol.backend,
                src_name_id=vol.name_id,
                dst_backend=dest.name,
                dst_name_id=new_id(),
                layers=list(source.layers),
                new_type_id=new_type_id,
                reserved_gib=vol.size_gib,
                speed=self.config.migration.default_speed if speed is None else speed,
                created_at=utcnow(),
                # leased from birth: no other conductor may adopt it before this one starts it
                conductor=self.conductor.id,
                lease_until=self.conductor.terms.until(utcnow()),
            )
            s.add(mig)
            s.add(
                event(
                    mig.id,
                    Step.QUEUED,
                    EventKind.NOTE,
                    message="queued",
                    source=vol.backend,
                    destination=dest.name,
                    attached=server_id is not None,
                    layers=len(source.layers),
                )
            )
        return mig

    async def retype(self, ctx: RequestContext, volume_id: str, new_type: str, migration_policy: str) -> None:
        policy.enforce(ctx, "volume:retype")
        if migration_policy not in ("never", "on-demand"):
            raise BadRequest("migration_policy must be 'never' or 'on-demand'.")
        with self.db.begin() as s:
            vol = get_volume(s, ctx, volume_id)
            vtype = get_type(s, new_type, ctx)  # a private type only for the projects it is shared with
            if vtype.id == vol.volume_type_id:
                raise BadRequest(f"Volume {vol.id} already has type {vtype.name!r}.")
            dest = sched.retype_destination(
                self.backends.pool_stats(s),
                vol.backend,
                vol.size_gib,
                vtype.name,
                vtype.extra_specs or {},
                may_migrate=migration_policy == "on-demand",
            )
            if dest is None:  # the volume's backend passes the new type: a change of type only
                if vol.migration_status in MIGRATION_BUSY:
                    raise Conflict(f"Volume {vol.id} is being migrated.")
                self.volumes.quotas.claim_retype(s, vol.project_id, vtype.id, vol.size_gib)
                vol.volume_type_id = vtype.id
                vol.updated_at = utcnow()
                return
        await self.migrate(ctx, volume_id, dest.backend.name, new_type_id=vtype.id, action="volume:retype")

    def report(self, ctx: RequestContext, volume_id: str) -> MigrationReport:
        policy.enforce(ctx, "volume:migration_get")
        with self.db() as s:
            vol = get_volume(s, ctx, volume_id)
            mig = s.scalar(
                select(Migration)
                .where(Migration.volume_id == vol.id)
                .order_by(Migration.created_at.desc())
                .limit(1)
            )
            if mig is None:
                raise NotFound(f"Volume {vol.id} has never been migrated.")
            events = list(
                s.scalars(
                    select(MigrationEvent)
                    .where(MigrationEvent.migration_id == mig.id)
                    .order_by(MigrationEvent.id)
                )
            )
            return MigrationReport(mig, events)

    def _active(self, ctx: RequestContext, volume_id: str) -> Migration:
        with self.db() as s:
            vol = get_volume(s, ctx, volume_id)
            mig = s.scalar(active_migration(vol.id))
            if mig is None:
                raise Conflict(f"Volume {vol.id} has no migration in progress.")
            return mig

    async def cancel(self, ctx: RequestContext, volume_id: str) -> None:
        policy.enforce(ctx, "volume:migration_cancel")
        mig = self._active(ctx, volume_id)
        with self.db.begin() as s:
            compare_and_set(
                s,
                update(Migration)
                .where(Migration.id == mig.id, Migration.step.not_in(NO_RETURN))
                .values(cancel_requested=True),
                f"Migration of volume {volume_id} is past the point of no return (pivot).",
            )
            s.add(event(mig.id, Step(mig.step), EventKind.CANCEL_REQUESTED))
        self.cancel_event(mig.id).set()

    def cancel_event(self, migration_id: str) -> asyncio.Event:
        return self._cancels.setdefault(migration_id, asyncio.Event())

    async def set_speed(self, ctx: RequestContext, volume_id: str, speed: int) -> None:
        policy.enforce(ctx, "volume:migration_set_speed")
        if speed < 0:
            raise BadRequest("bytes_per_sec must be 0 (unlimited) or positive.")
        mig = self._active(ctx, volume_id)
        with self.db.begin() as s:
            s.execute(update(Migration).where(Migration.id == mig.id).values(speed=speed))
            s.add(event(mig.id, Step(mig.step), EventKind.SPEED_CHANGED, bytes_per_sec=speed))
        if mig.step == Step.MIRROR.value and mig.server_id and mig.job_id:
            await self.hv.set_mirror_speed(mig.server_id, mig.job_id, speed)

    async def swap_requested(
        self, ctx: RequestContext, server_id: str, old_volume: str, new_volume: str
    ) -> None:
        """Nova's swap PUT. Only the service role, only while this volume is being migrated: the
        migration engine performs the swap itself, so the call is an acknowledgement."""
        if not policy.allowed(ctx, "server:swap_volume"):
            raise Conflict(SWAP_REFUSED)
        self._require_migrating(ctx, old_volume)

    async def completion(self, ctx: RequestContext, volume_id: str) -> dict[str, Any]:
        """Cinder's os-migrate_volume_completion, likewise internal."""
        if not policy.allowed(ctx, "volume:migrate_completion"):
            raise Conflict(SWAP_REFUSED)
        mig = self._require_migrating(ctx, volume_id)
        return {"save_volume_id": mig.volume_id}

    def _require_migrating(self, ctx: RequestContext, volume_id: str) -> Migration:
        with self.db() as s:
            mig = s.scalar(active_migration(volume_id))
        if mig is None:
            raise Conflict(f"No migration of volume {volume_id} is in progress. {SWAP_REFUSED}")
        return mig

    # -- engine ----------------------------------------------------------------------------
    def _forget(self, migration_id: str) -> None:
        self._cancels.pop(migration_id, None)

    async def wait(self, migration_id: str) -> None:
        await self.runs.wait(migration_id)

    async def stop(self) -> None:
        await self.runs.stop()

    def _new_run(self, migration_id: str) -> MigrationRun:
        with self.db() as s:
            mig = s.get(Migration, migration_id)
            if mig is None:
                raise NotFound(f"Migration {migration_id} could not be found.")
        cancel = self.cancel_event(migration_id)
        if mig.cancel_requested:
            cancel.set()  # requested before a restart: honoured as soon as the machine allows
        run = MigrationRun(self.db, self.config, self.backends, self.hv, mig, cancel, HANDLERS)
        run.book = self.volumes.book
        return run

    async def _run(self, migration_id: str) -> None:
        if not self.conductor.take(migration_id):
            return  # another conductor drives it
        await self._start(self._new_run(migration_id))

    async def _start(self, run: MigrationRun) -> None:
        async with self._slots[run.mig.dst_backend]:
            await run.drive(run.machine.start())

    async def resume_all(self, *, exclusive: bool = True) -> None:
        """At start: settle every migration a previous conductor left unfinished, then keep this
        conductor's leases. `exclusive`: this is the only conductor (the all-in-one `ferry serve`),
        so the leases a dead predecessor held are taken at once rather than after they lapse."""
        with self.db() as s:
            ids = list(
                s.scalars(active_migrations().with_only_columns(Migration.id).order_by(Migration.created_at))
            )
        for mid in ids:
            self.runs.launch(mid, partial(self._recover, mid, force=exclusive))
        self.runs.keep_leases()

    async def _recover(self, migration_id: str, *, force: bool = False) -> None:
        if not self.conductor.take(migration_id, force=force):
            return
        run = self._new_run(migration_id)
        if run.machine.step is Step.QUEUED:
            await self._start(run)
            return
        action = await self._first_settled(run)
        if isinstance(action, dm.machine.Mirror):  # resumed: the job copies again, under the limit
            async with self._slots[run.mig.dst_backend]:
                await run.drive(action)
        else:
            await run.drive(action)

    @staticmethod
    async def _first_settled(run: MigrationRun) -> dm.machine.Action:
        """Perform the restart's inspection and return what the machine decided from it."""
        inspect = run.machine.restart()
        fact = await run.perform(inspect)
        action = run.machine.feed(fact)
        if isinstance(fact, dm.machine.Recovered) and isinstance(inspect, dm.machine.Inspect):
            run.on_decision(inspect, fact.facts)
        return action
