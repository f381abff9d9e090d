"""The forward steps of a migration (DESIGN §5), each performing one machine action and returning
the fact it produced. Each records its intent, and every path, node and job it will create, before
it acts (`MigrationRun.enter`), so a restarted control plane knows everything that may exist."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from sqlalchemy import update

from ferry.db.models import Migration, Volume
from ferry.domain.clock import utcnow
from ferry.domain.errors import DriverError, FerryError
from ferry.domain.migration import EventKind, MigrationPlan, MirrorCondition, Step
from ferry.domain.migration import machine as mm
from ferry.drivers.hypervisor.base import JobStatus, MirrorStatus
from ferry.services import failpoints
from ferry.services.migration.runner import MigrationRun, Perform
from ferry.services.migration.steplog import event


async def reserve(run: MigrationRun, _: mm.Reserve) -> mm.Fact:
    run.enter(Step.RESERVE, destination=run.plan.dest.backend, name_id=run.plan.dest.name_id)
    run.steplog.done(Step.RESERVE)
    return mm.StepDone(Step.RESERVE)


async def copy_layers(run: MigrationRun, _: mm.CopyLayers) -> mm.Fact:
    p: MigrationPlan = run.plan
    layers = p.layers_to_copy
    run.enter(
        Step.COPY_LAYERS,
        directory=str(run.dst.volume_dir(p.dest.name_id)),
        files=[run.dst_path(lid) for lid in layers],
    )
    parent: str | None = None
    for i, layer in enumerate(layers):
        source = run.src.layer_path(p.source.name_id, layer)
        await run.cancellable(
            run.dst.copy_layer(
                source,
                p.dest,
                layer,
                parent,
                rate_limit=run.steplog.speed(),
                progress=lambda d, t: run.steplog.progress(d, t),
            )
        )
        same = await run.cancellable(run.dst.same_content(source, run.dst.layer_path(p.dest.name_id, layer)))
        if not same:
            raise DriverError(f"copy of layer {layer} differs from its source")
        run.steplog.write(Step.COPY_LAYERS, EventKind.LAYER_COPIED, layer=layer, index=i + 1, of=len(layers))
        parent = layer
    run.steplog.done(Step.COPY_LAYERS)
    return mm.StepDone(Step.COPY_LAYERS)


async def open_target(run: MigrationRun, _: mm.OpenTarget) -> mm.Fact:
    p = run.plan
    target = run.dest_chain()
    run.enter(Step.OPEN_TARGET, file=run.dst_path(p.dest.active_layer), job_id=run.job_id)
    run.steplog.update(job_id=run.job_id)
    if p.sync_top:
        await run.dst.create_overlay(p.dest, p.dest.active_layer, p.source.layers[-2], p.size_bytes)
    else:
        await run.dst.create_volume(p.dest, p.size_bytes)
    await run.hv.start_mirror(
        run.server, p.volume_id, run.job_id, target, sync_top=p.sync_top, speed=run.steplog.speed()
    )
    run.steplog.done(Step.OPEN_TARGET, target=[lf.path for lf in target.layers])
    return mm.StepDone(Step.OPEN_TARGET)


def _sample(run: MigrationRun, st: MirrorStatus) -> mm.Fact:
    run.steplog.progress(st.offset, st.length)
    if st.status is JobStatus.CONCLUDED or st.error:
        return mm.JobEnded(st.error)
    return mm.MirrorSample(
        time.monotonic(), st.offset, st.length, st.ready, st.actively_synced, st.write_blocking
    )


async def _status(run: MigrationRun) -> MirrorStatus:
    st = await run.hv.mirror_status(run.server, run.job_id)
    if st is None:
        raise DriverError(f"mirror job {run.job_id} is gone from QEMU")
    return st


async def mirror(run: MigrationRun, _: mm.Mirror) -> mm.Fact:
    run.enter(Step.MIRROR, job_id=run.job_id)
    return _sample(run, await _status(run))


async def watch_mirror(run: MigrationRun, action: mm.WatchMirror) -> mm.Fact:
    """Wait for the job's next change that matters (convergence or its end), or `timeout` for a
    progress sample: the same rule as the machine's, so a READY job that is not yet actively
    synced is sampled, not spun on."""
    try:
        st = await run.cancellable(
            asyncio.wait_for(
                run.hv.wait_mirror(run.server, run.job_id, MirrorCondition.CONVERGED, timeout=3600.0),
                action.timeout,
            )
        )
    except TimeoutError:
        st = await _status(run)
    return _sample(run, st)


async def switch_to_write_blocking(run: MigrationRun, action: mm.SwitchToWriteBlocking) -> mm.Fact:
    await run.hv.set_write_blocking(run.server, run.job_id)
    run.steplog.copy_mode_switched(action.remaining)
    return mm.CopyModeSwitched()


async def close_mirror(run: MigrationRun, action: mm.CloseMirror) -> mm.Fact:
    run.steplog.progress(action.bytes, action.bytes, force=True)
    run.steplog.done(Step.MIRROR, ready=True, bytes=action.bytes)
    return mm.StepDone(Step.MIRROR)


async def verify_target(run: MigrationRun, _: mm.VerifyTarget) -> mm.Fact:
    """Invariant 4: never pivot onto an unverified target."""
    p = run.plan
    run.enter(Step.VERIFY_TARGET)
    expected = tuple(reversed([lf.path for lf in run.dest_chain().layers]))
    active = run.dst.layer_path(p.dest.name_id, p.dest.active_layer)
    if p.attached:
        chain = await run.hv.target_chain(run.server, run.job_id)
        if tuple(chain) != expected:
            raise DriverError(f"mirror target chain {chain} is not the expected {expected}")
        size = await run.dst.virtual_size(active)
        if size != p.size_bytes:
            raise DriverError(f"target size {size} differs from the volume's {p.size_bytes}")
    else:
        files = await run.dst.backing_chain(active)
        if tuple(str(f) for f in files) != expected:
            raise DriverError(f"destination chain {files} is not the expected {expected}")
    run.steplog.done(Step.VERIFY_TARGET, chain=list(expected))
    return mm.StepDone(Step.VERIFY_TARGET)


async def pivot(run: MigrationRun, _: mm.Pivot) -> mm.Fact:
    run.enter(Step.PIVOT, job_id=run.job_id)
    t0 = time.monotonic()
    await run.hv.pivot(run.server, run.job_id)
    run.pivot_ms = (time.monotonic() - t0) * 1000
    run.steplog.write(Step.PIVOT, EventKind.PIVOT_COMPLETED)  # from here on, only forward
    failpoints.hit("pivot.after_complete")
    return mm.PivotCompleted()


async def confirm_pivot(run: MigrationRun, _: mm.ConfirmPivot) -> mm.Fact:
    """Confirm from QEMU itself: the device runs on the target file, serial = volume id."""
    vid = run.plan.volume_id
    disk = next((d for d in await run.hv.disks(run.server) if d.volume_id == vid), None)
    want = run.dst_path(run.plan.dest.active_layer)
    if disk is None or not disk.files or disk.files[0] != want:
        raise DriverError(f"after pivot the device shows {disk.files if disk else None}, not {want}")
    if disk.serial != vid:  # read by qom-get in the same disks() call
        raise DriverError(f"disk serial {disk.serial!r} differs from volume id {vid}")
    run.steplog.write(Step.PIVOT, EventKind.SERIAL_CHECKED, serial=disk.serial, file=want)
    run.steplog.update(pivot_ms=run.pivot_ms)
    run.steplog.done(Step.PIVOT, pivot_ms=round(run.pivot_ms, 2))
    return mm.PivotConfirmed(run.pivot_ms)


async def commit(run: MigrationRun, _: mm.Commit) -> mm.Fact:
    """One transaction: the volume now lives at the destination (and takes its new type). Its
    migration_status stays `migrating` until cleanup is done: `success` means nothing holds it."""
    p = run.plan
    run.enter(Step.COMMIT)
    values: dict[str, Any] = {"backend": p.dest.backend, "name_id": p.dest.name_id, "updated_at": utcnow()}
    if run.mig.new_type_id:
        values["volume_type_id"] = run.mig.new_type_id
    with run.db.begin() as s:
        s.execute(update(Volume).where(Volume.id == p.volume_id).values(**values))
        s.execute(update(Migration).where(Migration.id == run.mig.id).values(step=Step.CLEANUP.value))
        s.add(event(run.mig.id, Step.COMMIT, EventKind.DONE, backend=p.dest.backend, name_id=p.dest.name_id))
    failpoints.hit("commit.after")
    return mm.StepDone(Step.COMMIT)


async def cleanup(run: MigrationRun, _: mm.Cleanup) -> mm.Fact:
    p = run.plan
    run.enter(Step.CLEANUP, directory=str(run.src.volume_dir(p.source.name_id)))
    if p.attached:
        try:
            if await run.hv.is_running(run.server):
                await run.hv.drop_files(run.server, run.source_chain().layers)
        except FerryError as e:
            # The guest already runs on the destination; stale read-only nodes only hold
            # unlinked files open until the next restart of its process.
            run.steplog.write(
                Step.CLEANUP, EventKind.NOTE, message=f"could not drop old block nodes: {e.message}"
            )
    await run.src.retire_volume(p.source.name_id)
    failpoints.hit("cleanup.after_retire")  # renamed into the trash, not yet deleted
    run.steplog.done(Step.CLEANUP)
    return mm.StepDone(Step.CLEANUP)


STEPS: dict[type[Any], Perform] = {
    mm.Reserve: reserve,
    mm.CopyLayers: copy_layers,
    mm.OpenTarget: open_target,
    mm.Mirror: mirror,
    mm.WatchMirror: watch_mirror,
    mm.SwitchToWriteBlocking: switch_to_write_blocking,
    mm.CloseMirror: close_mirror,
    mm.VerifyTarget: verify_target,
    mm.Pivot: pivot,
    mm.ConfirmPivot: confirm_pivot,
    mm.Commit: commit,
    mm.Cleanup: cleanup,
}
