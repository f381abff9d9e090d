"""Volume migration and retype: the persisted, resumable workflow of DESIGN §5.

Each step writes its intent (and every path, node and job it will create) to the step log before
it acts, and its outcome after. A restarted control plane reads the log, asks QEMU and the
backends what really exists, and resumes, commits or rolls back (`domain.migration.recover`).
The source is deleted only after the destination is committed (invariant 3).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from ferry.config import Config
from ferry.db.models import Migration, MigrationEvent, Server, Volume
from ferry.domain import migration as dm
from ferry.domain.clock import utcnow
from ferry.domain.errors import BadRequest, Conflict, DriverError, FerryError, NotFound
from ferry.domain.ids import new_id
from ferry.domain.migration import MigrationPlan, Recovery, RecoveryFacts, RunStatus, Step
from ferry.domain.model import BackendConfig, DiskChain, GiB, VolumeLocation
from ferry.domain.volumes import MIGRATION_BUSY, MigrationStatus
from ferry.drivers.hypervisor.base import HypervisorDriver, JobStatus, MirrorStatus
from ferry.services import failpoints, policy
from ferry.services.context import RequestContext
from ferry.services.queries import get_type, get_volume, running_server
from ferry.services.storage import Backends
from ferry.services.volumes import VolumeService

log = logging.getLogger(__name__)
PROGRESS_INTERVAL = 0.5
T = TypeVar("T")
JOB_COMPLETED = "mirror job completed: the guest runs on the destination"
SWAP_REFUSED = (
    "Swapping a volume directly is not supported: it would leave the guest's disk serial "
    "naming a volume id that no longer exists. Move the data with os-migrate_volume "
    "(`ferry volume migrate VOLUME --to BACKEND`) or os-retype; they serve attached and "
    "detached volumes, with or without snapshots."
)


class Cancelled(Exception):
    """The operator cancelled the migration."""


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
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._cancels: dict[str, asyncio.Event] = {}
        self._slots: dict[str, asyncio.Semaphore] = {
            b.name: asyncio.Semaphore(b.max_migrations) for b in config.backends
        }

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
        self._launch(mig.id)
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
            busy = s.scalar(
                select(Migration.id).where(Migration.volume_id == vol.id, Migration.status.in_(dm.ACTIVE))
            )
            res = s.execute(
                update(Volume)
                .where(
                    Volume.id == vol.id,
                    Volume.status.in_(("available", "in-use")),
                    (Volume.migration_status.is_(None)) | (Volume.migration_status.not_in(MIGRATION_BUSY)),
                )
                .values(migration_status=MigrationStatus.STARTING.value, updated_at=utcnow())
            )
            if busy or res.rowcount != 1:  # type: ignore[attr-defined]
                raise Conflict(f"Volume {vol.id} is already being migrated.")
            # Live only when a running process has the volume open; a stopped server's volume is
            # copied offline (starting that server is refused until the migration ends).
            server_id = running_server(s, vol.id)
            mig = Migration(
                id=new_id(),
                volume_id=vol.id,
                status=RunStatus.QUEUED.value,
                step=Step.QUEUED.value,
                prev_volume_status=vol.status,
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
            )
            s.add(mig)
            s.add(
                _event(
                    mig.id,
                    Step.QUEUED,
                    "info",
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
            vtype = get_type(s, new_type)
            if vtype.id == vol.volume_type_id:
                raise BadRequest(f"Volume {vol.id} already has type {vtype.name!r}.")
            pinned = (vtype.extra_specs or {}).get("volume_backend_name")
            if not pinned or pinned == vol.backend:
                if vol.migration_status in MIGRATION_BUSY:
                    raise Conflict(f"Volume {vol.id} is being migrated.")
                vol.volume_type_id = vtype.id
                vol.updated_at = utcnow()
                return
            if migration_policy == "never":
                raise BadRequest(
                    f"Type {vtype.name!r} needs backend {pinned!r} but the volume is on "
                    f"{vol.backend!r}: retype with migration_policy 'on-demand' to move it."
                )
        await self.migrate(ctx, volume_id, pinned, new_type_id=vtype.id, action="volume:retype")

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

    def active_for(self, volume_ids: list[str]) -> dict[str, Migration]:
        if not volume_ids:
            return {}
        with self.db() as s:
            rows = s.scalars(
                select(Migration).where(Migration.volume_id.in_(volume_ids), Migration.status.in_(dm.ACTIVE))
            )
            return {m.volume_id: m for m in rows}

    def _active(self, ctx: RequestContext, volume_id: str) -> Migration:
        with self.db() as s:
            vol = get_volume(s, ctx, volume_id)
            mig = s.scalar(
                select(Migration).where(Migration.volume_id == vol.id, Migration.status.in_(dm.ACTIVE))
            )
            if mig is None:
                raise Conflict(f"Volume {vol.id} has no migration in progress.")
            return mig

    async def cancel(self, ctx: RequestContext, volume_id: str) -> None:
        policy.enforce(ctx, "volume:migration_cancel")
        mig = self._active(ctx, volume_id)
        with self.db.begin() as s:
            res = s.execute(
                update(Migration)
                .where(
                    Migration.id == mig.id,
                    Migration.step.not_in((Step.PIVOT.value, Step.COMMIT.value, Step.CLEANUP.value)),
                )
                .values(cancel_requested=True)
            )
            if res.rowcount != 1:  # type: ignore[attr-defined]
                raise Conflict(f"Migration of volume {volume_id} is past the point of no return (pivot).")
            s.add(_event(mig.id, Step(mig.step), "info", message="cancel requested"))
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
            s.add(_event(mig.id, Step(mig.step), "info", message="speed changed", bytes_per_sec=speed))
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
            mig = s.scalar(
                select(Migration).where(Migration.volume_id == volume_id, Migration.status.in_(dm.ACTIVE))
            )
        if mig is None:
            raise Conflict(f"No migration of volume {volume_id} is in progress. {SWAP_REFUSED}")
        return mig

    # -- engine ------------------------------------------------------------------------
    def _launch(self, migration_id: str, work: Coroutine[Any, Any, None] | None = None) -> None:
        task = asyncio.get_running_loop().create_task(work or self._run(migration_id))
        self._tasks[migration_id] = task
        task.add_done_callback(lambda _t: self._forget(migration_id))

    def _forget(self, migration_id: str) -> None:
        self._tasks.pop(migration_id, None)
        self._cancels.pop(migration_id, None)

    async def wait(self, migration_id: str) -> None:
        task = self._tasks.get(migration_id)
        if task is not None:
            await asyncio.shield(task)

    async def stop(self) -> None:
        for task in list(self._tasks.values()):
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    async def _run(self, migration_id: str) -> None:
        mig = self._load(migration_id)
        async with self._slots[mig.dst_backend]:
            run = _Run(self, mig)
            try:
                await run.execute()
            except Cancelled:
                await self._settle(run, "cancelled by the operator", cancelled=True)
            except FerryError as e:
                log.error("migration %s failed at %s: %s", migration_id, run.step, e.message)
                await self._settle(run, e.message)
            except Exception as e:  # a bug must not leave the volume locked
                log.exception("migration %s crashed at %s", migration_id, run.step)
                await self._settle(run, f"internal error: {type(e).__name__}: {e}")

    async def _settle(self, run: _Run, reason: str, cancelled: bool = False) -> None:
        """Roll back; if even that fails, record the failure so nothing stays `running`."""
        try:
            await run.rollback(reason, cancelled)
        except Exception as e:
            log.exception("migration %s: rollback failed", run.mig.id)
            run.fail(f"{reason}; rollback failed: {e}")

    def _load(self, migration_id: str) -> Migration:
        with self.db() as s:
            mig = s.get(Migration, migration_id)
            if mig is None:
                raise NotFound(f"Migration {migration_id} could not be found.")
            return mig

    async def resume_all(self) -> None:
        """At start: settle every migration the previous control plane left unfinished."""
        with self.db() as s:
            ids = list(
                s.scalars(
                    select(Migration.id).where(Migration.status.in_(dm.ACTIVE)).order_by(Migration.created_at)
                )
            )
        for mid in ids:
            mig = self._load(mid)
            if mig.step == Step.QUEUED.value:
                self._launch(mid)
                continue
            self._launch(mid, self._recover(mid))

    async def _recover(self, migration_id: str) -> None:
        mig = self._load(migration_id)
        run = _Run(self, mig)
        try:
            decision = dm.recover(await run.facts())
            run.log(Step(mig.step), "info", message=f"control plane restarted: {decision.value}")
            if decision is Recovery.ROLLBACK:
                await run.rollback(f"control plane restarted during {mig.step}; rolled back")
            elif decision is Recovery.RESUME:
                async with self._slots[mig.dst_backend]:
                    await run.execute(resume_from=Step.MIRROR)
            elif decision is Recovery.COMMIT:
                await run.execute(resume_from=Step.COMMIT)
            else:
                await run.execute(resume_from=Step.CLEANUP)
        except Cancelled:
            await self._settle(run, "cancelled by the operator", cancelled=True)
        except FerryError as e:
            log.error("recovering migration %s failed: %s", migration_id, e.message)
            await self._settle(run, e.message)


def _event(mid: str, step: Step, event: str, **detail: Any) -> MigrationEvent:
    return MigrationEvent(migration_id=mid, at=utcnow(), step=step.value, event=event, detail=detail)


class _Run:
    """One migration being carried out: the plan, the drivers, and the step log."""

    def __init__(self, svc: MigrationService, mig: Migration) -> None:
        self.svc = svc
        self.db = svc.db
        self.hv = svc.hv
        self.mig = mig
        self.step = Step(mig.step)
        cfg = svc.config
        src_fmt = cfg.backend(mig.src_backend).format
        source = VolumeLocation(mig.src_backend, mig.src_name_id, tuple(mig.layers), src_fmt)
        with self.db() as s:
            vol = s.get(Volume, mig.volume_id)
            assert vol is not None
            size = vol.size_gib * GiB
        self.plan: MigrationPlan = dm.plan(
            mig.volume_id, source, cfg.backend(mig.dst_backend), mig.dst_name_id, size, mig.server_id
        )
        self.src = svc.backends.driver(mig.src_backend)
        self.dst = svc.backends.driver(mig.dst_backend)
        self.job_id = mig.job_id or f"ferry-mirror-{mig.id[:8]}"
        self._last_progress = 0.0
        self._last_bytes = (0.0, 0)

    # -- bookkeeping -------------------------------------------------------------------
    def log(self, step: Step, event: str, **detail: Any) -> None:
        with self.db.begin() as s:
            s.add(_event(self.mig.id, step, event, **detail))

    def enter(self, step: Step, **created: Any) -> None:
        """Record the intent (and what the step will create) before acting."""
        failpoints.hit(f"{step.value}.before")
        self.step = step
        with self.db.begin() as s:
            values: dict[str, Any] = {"step": step.value, "status": RunStatus.RUNNING.value}
            if step is Step.RESERVE:
                values["started_at"] = utcnow()
            s.execute(update(Migration).where(Migration.id == self.mig.id).values(**values))
            if step is Step.RESERVE:
                s.execute(
                    update(Volume)
                    .where(Volume.id == self.plan.volume_id)
                    .values(migration_status=MigrationStatus.MIGRATING.value)
                )
            s.add(_event(self.mig.id, step, "start", **created))

    def done(self, step: Step, **detail: Any) -> None:
        self.log(step, "done", **detail)
        failpoints.hit(f"{step.value}.after")

    def progress(self, done: int, total: int, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_progress < PROGRESS_INTERVAL:
            return
        t0, b0 = self._last_bytes
        rate = (done - b0) / (now - t0) if t0 and now > t0 and done >= b0 else 0.0
        self._last_progress, self._last_bytes = now, (now, done)
        with self.db.begin() as s:
            s.execute(
                update(Migration)
                .where(Migration.id == self.mig.id)
                .values(bytes_done=done, bytes_total=total, rate=rate)
            )

    def check_cancel(self) -> None:
        if self.svc.cancel_event(self.mig.id).is_set():
            raise Cancelled()
        with self.db() as s:
            if s.scalar(select(Migration.cancel_requested).where(Migration.id == self.mig.id)):
                raise Cancelled()

    async def cancellable(self, work: Coroutine[Any, Any, T]) -> T:
        """Run `work`, stopping it (a running qemu-img is killed) when a cancel arrives."""
        self.check_cancel()
        task = asyncio.ensure_future(work)
        waiter = asyncio.ensure_future(self.svc.cancel_event(self.mig.id).wait())
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            waiter.cancel()
            return task.result()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        raise Cancelled()

    def speed(self) -> int:
        with self.db() as s:
            return int(s.scalar(select(Migration.speed).where(Migration.id == self.mig.id)) or 0)

    def src_path(self, layer: str) -> str:
        return str(self.src.layer_path(self.plan.source.name_id, layer))

    def dst_path(self, layer: str) -> str:
        return str(self.dst.layer_path(self.plan.dest.name_id, layer))

    def dest_chain(self) -> DiskChain:
        return self.svc.backends.disk_chain(self.plan.volume_id, self.plan.dest)

    def source_chain(self) -> DiskChain:
        return self.svc.backends.disk_chain(self.plan.volume_id, self.plan.source)

    # -- the workflow ------------------------------------------------------------------
    async def execute(self, resume_from: Step | None = None) -> None:
        steps = self.plan.steps
        start = steps.index(resume_from) if resume_from else 0
        for step in steps[start:]:
            await STEP_ACTIONS[step](self)
        with self.db.begin() as s:
            s.execute(
                update(Migration)
                .where(Migration.id == self.mig.id)
                .values(status=RunStatus.SUCCESS.value, step=Step.DONE.value, finished_at=utcnow())
            )
            s.add(_event(self.mig.id, Step.DONE, "done"))

    async def reserve(self) -> None:
        self.enter(Step.RESERVE, destination=self.plan.dest.backend, name_id=self.plan.dest.name_id)
        self.done(Step.RESERVE)

    async def copy_layers(self) -> None:
        layers = self.plan.layers_to_copy
        self.enter(
            Step.COPY_LAYERS,
            directory=str(self.dst.volume_dir(self.plan.dest.name_id)),
            files=[self.dst_path(lid) for lid in layers],
        )
        parent: str | None = None
        for i, layer in enumerate(layers):
            await self.cancellable(
                self.dst.copy_layer(
                    self.src.layer_path(self.plan.source.name_id, layer),
                    self.plan.dest,
                    layer,
                    parent,
                    rate_limit=self.speed(),
                    progress=lambda d, t: self.progress(d, t),
                )
            )
            same = await self.cancellable(
                self.dst.same_content(
                    self.src.layer_path(self.plan.source.name_id, layer),
                    self.dst.layer_path(self.plan.dest.name_id, layer),
                )
            )
            if not same:
                raise DriverError(f"copy of layer {layer} differs from its source")
            self.log(
                Step.COPY_LAYERS,
                "info",
                message=f"layer {i + 1}/{len(layers)} copied and compared",
                layer=layer,
            )
            parent = layer
        self.done(Step.COPY_LAYERS)

    async def open_target(self) -> None:
        target = self.dest_chain()
        active = self.plan.dest.active_layer
        self.enter(Step.OPEN_TARGET, file=self.dst_path(active), job_id=self.job_id)
        with self.db.begin() as s:
            s.execute(update(Migration).where(Migration.id == self.mig.id).values(job_id=self.job_id))
        if self.plan.sync_top:
            await self.dst.create_overlay(
                self.plan.dest, active, self.plan.source.layers[-2], self.plan.size_bytes
            )
        else:
            await self.dst.create_volume(self.plan.dest, self.plan.size_bytes)
        assert self.plan.server_id is not None
        await self.hv.start_mirror(
            self.plan.server_id,
            self.plan.volume_id,
            self.job_id,
            target,
            sync_top=self.plan.sync_top,
            speed=self.speed(),
        )
        self.done(Step.OPEN_TARGET, target=[lf.path for lf in target.layers])

    async def mirror(self) -> None:
        self.enter(Step.MIRROR, job_id=self.job_id)
        server = self.plan.server_id
        assert server is not None
        watch = dm.ConvergenceWatch(self.svc.config.migration.stall_seconds)
        deadline = time.monotonic() + self.svc.config.migration.ready_timeout_s
        while True:
            st = await self._next_status(server)
            self.progress(st.offset, st.length)
            if st.status is JobStatus.CONCLUDED or st.error:
                raise DriverError(f"mirror job ended before the pivot: {st.error or 'concluded'}")
            if st.ready and (st.actively_synced or not st.write_blocking):
                break
            self.check_cancel()
            if not st.write_blocking and watch.stalled(time.monotonic(), st.length - st.offset):
                await self.hv.set_write_blocking(server, self.job_id)
                with self.db.begin() as s:
                    s.execute(
                        update(Migration)
                        .where(Migration.id == self.mig.id)
                        .values(copy_mode="write-blocking")
                    )
                self.log(
                    Step.MIRROR,
                    "info",
                    message="copy mode switched to write-blocking",
                    remaining=st.length - st.offset,
                )
            if time.monotonic() > deadline:
                raise DriverError("mirror did not become ready in time")
        self.progress(st.offset, st.length, force=True)
        self.done(Step.MIRROR, ready=True, bytes=st.length)

    async def _next_status(self, server: str) -> MirrorStatus:
        """The job's state after its next event, or after PROGRESS_INTERVAL for a progress sample
        (QEMU sends no progress events)."""
        try:
            return await asyncio.wait_for(
                self.hv.wait_mirror(server, self.job_id, lambda s: s.ready, timeout=3600.0), PROGRESS_INTERVAL
            )
        except TimeoutError:
            st = await self.hv.mirror_status(server, self.job_id)
            if st is None:
                raise DriverError(f"mirror job {self.job_id} is gone from QEMU") from None
            return st

    async def verify_target(self) -> None:
        """Invariant 4: never pivot onto an unverified target."""
        self.enter(Step.VERIFY_TARGET)
        expected = tuple(reversed([lf.path for lf in self.dest_chain().layers]))
        if self.plan.attached:
            assert self.plan.server_id is not None
            chain = await self.hv.target_chain(self.plan.server_id, self.job_id)
            if tuple(chain) != expected:
                raise DriverError(f"mirror target chain {chain} is not the expected {expected}")
            size = await self.dst.virtual_size(
                self.dst.layer_path(self.plan.dest.name_id, self.plan.dest.active_layer)
            )
            if size != self.plan.size_bytes:
                raise DriverError(f"target size {size} differs from the volume's {self.plan.size_bytes}")
        else:
            files = await self.dst.backing_chain(
                self.dst.layer_path(self.plan.dest.name_id, self.plan.dest.active_layer)
            )
            if tuple(str(p) for p in files) != expected:
                raise DriverError(f"destination chain {files} is not the expected {expected}")
        self.done(Step.VERIFY_TARGET, chain=list(expected))

    async def pivot(self) -> None:
        server = self.plan.server_id
        assert server is not None
        self.enter(Step.PIVOT, job_id=self.job_id)
        t0 = time.monotonic()
        await self.hv.pivot(server, self.job_id)
        pivot_ms = (time.monotonic() - t0) * 1000
        self.log(Step.PIVOT, "info", message=JOB_COMPLETED)  # from here on, only forward
        failpoints.hit("pivot.after_complete")
        await self.confirm_pivot(server)
        with self.db.begin() as s:
            s.execute(update(Migration).where(Migration.id == self.mig.id).values(pivot_ms=pivot_ms))
        self.done(Step.PIVOT, pivot_ms=round(pivot_ms, 2))

    async def confirm_pivot(self, server: str) -> None:
        """Confirm from QEMU itself: the device runs on the target file, serial = volume id."""
        vid = self.plan.volume_id
        disk = next((d for d in await self.hv.disks(server) if d.volume_id == vid), None)
        want = self.dst_path(self.plan.dest.active_layer)
        if disk is None or not disk.files or disk.files[0] != want:
            raise DriverError(f"after pivot the device shows {disk.files if disk else None}, not {want}")
        serial = disk.serial  # read by qom-get in the same disks() call
        if serial != vid:
            raise DriverError(f"disk serial {serial!r} differs from volume id {vid}")
        self.log(Step.PIVOT, "info", message="serial checked", serial=serial, file=want)

    async def commit(self) -> None:
        self.enter(Step.COMMIT)
        with self.db.begin() as s:
            values: dict[str, Any] = {
                "backend": self.plan.dest.backend,
                "name_id": self.plan.dest.name_id,
                "migration_status": MigrationStatus.SUCCESS.value,
                "updated_at": utcnow(),
            }
            if self.mig.new_type_id:
                values["volume_type_id"] = self.mig.new_type_id
            s.execute(update(Volume).where(Volume.id == self.plan.volume_id).values(**values))
            s.execute(update(Migration).where(Migration.id == self.mig.id).values(step=Step.CLEANUP.value))
            s.add(
                _event(
                    self.mig.id,
                    Step.COMMIT,
                    "done",
                    backend=self.plan.dest.backend,
                    name_id=self.plan.dest.name_id,
                )
            )
        failpoints.hit("commit.after")

    async def cleanup(self) -> None:
        self.enter(Step.CLEANUP, directory=str(self.src.volume_dir(self.plan.source.name_id)))
        if self.plan.attached:
            assert self.plan.server_id is not None
            try:
                if await self.hv.is_running(self.plan.server_id):
                    await self.hv.drop_files(self.plan.server_id, self.source_chain().layers)
            except FerryError as e:
                # The guest already runs on the destination; stale read-only nodes only hold
                # unlinked files open until the next restart of its process.
                self.log(Step.CLEANUP, "info", message=f"could not drop old block nodes: {e.message}")
        await self.src.retire_volume(self.plan.source.name_id)
        failpoints.hit("cleanup.after_retire")  # renamed into the trash, not yet deleted
        self.done(Step.CLEANUP)

    # -- failure -----------------------------------------------------------------------
    async def facts(self) -> RecoveryFacts:
        with self.db() as s:
            vol = s.get(Volume, self.plan.volume_id)
            committed = vol is not None and vol.name_id == self.plan.dest.name_id
            step = Step(s.scalar(select(Migration.step).where(Migration.id == self.mig.id)) or self.mig.step)
            completed = any(
                e.detail.get("message") == JOB_COMPLETED
                for e in s.scalars(
                    select(MigrationEvent).where(
                        MigrationEvent.migration_id == self.mig.id, MigrationEvent.step == Step.PIVOT.value
                    )
                )
            )
        facts = RecoveryFacts(
            step=step, attached=self.plan.attached, committed=committed, pivot_completed=completed
        )
        if not self.plan.attached or committed:
            return facts
        server = self.plan.server_id
        assert server is not None
        alive = await self.hv.is_running(server) and await self.hv.reconnect(server)
        if not alive:
            return replace(facts, server_alive=False)
        st = await self.hv.mirror_status(server, self.job_id)
        disk = next((d for d in await self.hv.disks(server) if d.volume_id == self.plan.volume_id), None)
        on_target = bool(disk and disk.files and disk.files[0] == self.dst_path(self.plan.dest.active_layer))
        return replace(
            facts, job_exists=st is not None, job_failed=bool(st and st.error), device_on_target=on_target
        )

    def _server_died(self, reason: str) -> None:
        with self.db.begin() as s:
            s.execute(
                update(Server)
                .where(Server.id == self.plan.server_id, Server.status == "ACTIVE")
                .values(
                    status="SHUTOFF",
                    fault=f"process died during a volume migration: {reason}",
                    updated_at=utcnow(),
                )
            )

    def fail(self, reason: str) -> None:
        """Last resort: mark the migration failed without touching any file (doctor shows leftovers)."""
        with self.db.begin() as s:
            s.execute(
                update(Migration)
                .where(Migration.id == self.mig.id)
                .values(status=RunStatus.ERROR.value, error=reason, finished_at=utcnow())
            )
            s.execute(
                update(Volume)
                .where(Volume.id == self.plan.volume_id)
                .values(migration_status=MigrationStatus.ERROR.value)
            )

    async def rollback(self, reason: str, cancelled: bool = False) -> None:
        """Undo everything before the pivot; the source stays the only copy and is untouched."""
        facts = await self.facts()
        if facts.committed or facts.past_pivot:
            # Past the point of no return: never delete the target. Finish instead.
            self.log(self.step, "info", message=f"{reason}; pivot already done, finishing instead")
            await self.execute(resume_from=Step.CLEANUP if facts.committed else Step.COMMIT)
            return
        self.log(Step.ROLLBACK, "start", reason=reason)
        if self.plan.attached and not facts.server_alive:
            self._server_died(reason)
        errors = []
        if self.plan.attached and facts.server_alive:
            assert self.plan.server_id is not None
            try:
                await self.hv.cancel_mirror(self.plan.server_id, self.job_id, self.dest_chain())
            except FerryError as e:
                errors.append(e.message)
        try:
            await self.dst.delete_volume(self.plan.dest.name_id)
        except FerryError as e:
            errors.append(e.message)
        status = RunStatus.CANCELLED if cancelled else RunStatus.ERROR
        with self.db.begin() as s:
            s.execute(
                update(Volume)
                .where(Volume.id == self.plan.volume_id, Volume.name_id != self.plan.dest.name_id)
                .values(
                    migration_status=None if cancelled else MigrationStatus.ERROR.value, updated_at=utcnow()
                )
            )
            s.execute(
                update(Migration)
                .where(Migration.id == self.mig.id)
                .values(status=status.value, error=None if cancelled else reason, finished_at=utcnow())
            )
            s.add(_event(self.mig.id, Step.ROLLBACK, "done", reason=reason, cleanup_errors=errors))


STEP_ACTIONS = {
    Step.RESERVE: _Run.reserve,
    Step.COPY_LAYERS: _Run.copy_layers,
    Step.OPEN_TARGET: _Run.open_target,
    Step.MIRROR: _Run.mirror,
    Step.VERIFY_TARGET: _Run.verify_target,
    Step.PIVOT: _Run.pivot,
    Step.COMMIT: _Run.commit,
    Step.CLEANUP: _Run.cleanup,
}
