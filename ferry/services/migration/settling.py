"""Settling a migration that cannot simply go on: gathering the facts the recovery table needs
(`Inspect`), rolling back before the pivot, and recording how it ended. What to do is the
machine's decision (`domain.migration.recovery`); this module only performs it."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from ferry.db.models import Migration, Server, Volume
from ferry.domain.clock import utcnow
from ferry.domain.errors import FerryError
from ferry.domain.messages import MIGRATION_ABANDONED, MIGRATION_FAILED, Event
from ferry.domain.migration import EventKind, RecoveryFacts, RunStatus, Step
from ferry.domain.migration import machine as mm
from ferry.domain.servers import ServerStatus
from ferry.domain.volumes import MigrationStatus
from ferry.services.messages import Origin
from ferry.services.migration.runner import MigrationRun, Perform
from ferry.services.migration.steplog import event

log = logging.getLogger(__name__)


async def gather_facts(run: MigrationRun) -> RecoveryFacts:
    """What the database, the step log and QEMU say of this migration now."""
    p = run.plan
    with run.db() as s:
        vol = s.get(Volume, p.volume_id)
        committed = vol is not None and vol.name_id == p.dest.name_id
    facts = RecoveryFacts(
        step=run.steplog.recorded_step() or run.machine.step,
        attached=p.attached,
        committed=committed,
        pivot_completed=run.steplog.pivot_completed(),
    )
    if not p.attached or committed:
        return facts
    alive = await run.hv.is_running(run.server) and await run.hv.reconnect(run.server)
    if not alive:
        return replace(facts, server_alive=False)
    st = await run.hv.mirror_status(run.server, run.job_id)
    disk = next((d for d in await run.hv.disks(run.server) if d.volume_id == p.volume_id), None)
    on_target = bool(disk and disk.files and disk.files[0] == run.dst_path(p.dest.active_layer))
    return replace(
        facts, job_exists=st is not None, job_failed=bool(st and st.error), device_on_target=on_target
    )


async def inspect(run: MigrationRun, _: mm.Inspect) -> mm.Fact:
    return mm.Recovered(await gather_facts(run))


async def rollback(run: MigrationRun, action: mm.Rollback) -> mm.Fact:
    """Undo everything before the pivot; the source stays the only copy and is untouched."""
    p = run.plan
    run.steplog.enter(Step.ROLLBACK, honour_cancel=False, reason=action.reason)
    if action.server_died:
        _server_died(run, action.reason)
    errors = []
    if p.attached and not action.server_died:
        try:
            await run.hv.cancel_mirror(run.server, run.job_id, run.dest_chain())
        except FerryError as e:
            errors.append(e.message)
    try:
        await run.dst.delete_volume(p.dest.name_id)
    except FerryError as e:
        errors.append(e.message)
    run.steplog.write(Step.ROLLBACK, EventKind.ROLLBACK_DONE, reason=action.reason, cleanup_errors=errors)
    return mm.StepDone(Step.ROLLBACK)


def _server_died(run: MigrationRun, reason: str) -> None:
    with run.db.begin() as s:
        s.execute(
            update(Server)
            .where(Server.id == run.plan.server_id, Server.status == ServerStatus.ACTIVE.value)
            .values(
                status=ServerStatus.SHUTOFF.value,
                fault=f"process died during a volume migration: {reason}",
                updated_at=utcnow(),
            )
        )


async def finish(run: MigrationRun, action: mm.Finish) -> mm.Fact:
    p = run.plan
    with run.db.begin() as s:
        if action.status is RunStatus.SUCCESS:
            # Released in the transaction that ends the migration: the report and every check
            # that refuses "being migrated" change together.
            s.execute(
                update(Volume)
                .where(Volume.id == p.volume_id)
                .values(migration_status=MigrationStatus.SUCCESS, updated_at=utcnow())
            )
        else:
            # A rolled-back volume stays where it was; a cancelled one is as if never migrated.
            s.execute(
                update(Volume)
                .where(Volume.id == p.volume_id, Volume.name_id != p.dest.name_id)
                .values(
                    migration_status=None
                    if action.status is RunStatus.CANCELLED
                    else MigrationStatus.ERROR.value,
                    updated_at=utcnow(),
                )
            )
        values: dict[str, Any] = {
            "status": action.status.value,
            "error": action.error,
            "finished_at": utcnow(),
        }
        if action.status is RunStatus.SUCCESS:
            values["step"] = Step.DONE.value
        s.execute(update(Migration).where(Migration.id == run.mig.id).values(**values))
        if action.status is RunStatus.SUCCESS:
            s.add(event(run.mig.id, Step.DONE, EventKind.DONE))
        elif action.status is RunStatus.ERROR:
            _tell(run, s, MIGRATION_FAILED)
    return mm.StepDone(Step.DONE)


def _tell(run: MigrationRun, s: Session, what: Event) -> None:
    """Leave the volume's project a message that its migration failed."""
    vol = s.get(Volume, run.plan.volume_id)
    if vol is not None:
        run.book.leave(s, Origin(vol.project_id), what, vol.id)


async def abandon(run: MigrationRun, action: mm.Abandon) -> mm.Fact:
    """Last resort: mark the migration failed without touching any file (doctor shows leftovers)."""
    log.error("migration %s abandoned: %s", run.mig.id, action.reason)
    with run.db.begin() as s:
        s.execute(
            update(Migration)
            .where(Migration.id == run.mig.id)
            .values(status=RunStatus.ERROR.value, error=action.reason, finished_at=utcnow())
        )
        s.execute(
            update(Volume)
            .where(Volume.id == run.plan.volume_id)
            .values(migration_status=MigrationStatus.ERROR.value)
        )
        _tell(run, s, MIGRATION_ABANDONED)
    return mm.StepDone(Step.DONE)


SETTLING: dict[type[Any], Perform] = {
    mm.Inspect: inspect,
    mm.Rollback: rollback,
    mm.Finish: finish,
    mm.Abandon: abandon,
}
