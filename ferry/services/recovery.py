"""Settling volumes that a crash (or a lost task) left in a transitional status: gather the facts
from the database, the backends and QEMU, let `domain.settling.settle_volume` decide, perform it.

Runs at start (`Ferry.start`, after the servers are reconciled and before snapshots and migrations
recover) and from `ferry doctor --repair` for statuses stuck longer than a threshold. At start no
copy can still be running, so every unfinished `.part` file is swept first. It never touches a
volume a migration holds (the migration settles it) nor one this process is still working on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session, sessionmaker

from ferry.db.models import Attachment, Server, Volume
from ferry.domain.clock import utcnow
from ferry.domain.errors import FerryError
from ferry.domain.instance_actions import InstanceAction
from ferry.domain.messages import CREATE_FAILED, EXTEND_FAILED
from ferry.domain.servers import ServerStatus
from ferry.domain.settling import UNSETTLED_VOLUME, Outcome, VolumeFacts, VolumeSettlement, settle_volume
from ferry.domain.volumes import MIGRATION_BUSY, AttachmentStatus, VolumeStatus
from ferry.drivers.hypervisor.base import HypervisorDriver
from ferry.drivers.storage.base import LayerCheck, StoredLayer
from ferry.services import instance_actions
from ferry.services.messages import Origin
from ferry.services.storage import Backends
from ferry.services.volumes import VolumeService

log = logging.getLogger(__name__)
PLUGGING = {
    VolumeStatus.ATTACHING: InstanceAction.ATTACH_VOLUME,
    VolumeStatus.DETACHING: InstanceAction.DETACH_VOLUME,
}
"""The statuses of a volume being plugged in or out, and the server action each is."""


@dataclass(frozen=True)
class Settled:
    """One volume settled: what was found and what was decided (for logs and the doctor's report)."""

    volume_id: str
    found: VolumeStatus
    decision: VolumeSettlement


class VolumeRecovery:
    def __init__(
        self, db: sessionmaker[Session], backends: Backends, volumes: VolumeService, hv: HypervisorDriver
    ) -> None:
        self.db = db
        self.backends = backends
        self.volumes = volumes
        self.hv = hv

    async def start(self) -> list[Settled]:
        """At start: sweep every unfinished copy, then settle every unsettled volume."""
        for partial in await self.sweep_partials():
            log.warning("removed unfinished copy %s after a control-plane restart", partial.path)
        return await self.settle_unsettled()

    async def sweep_partials(self, older_than: datetime | None = None) -> list[StoredLayer]:
        """Remove `.part` files (those last written before `older_than`, when given) that no
        create in progress here owns. Returns what was removed."""
        busy = self._busy_name_ids()
        removed: list[StoredLayer] = []
        for driver in self.backends.drivers.values():
            for part in await driver.scan_partials():
                if part.name_id in busy or (older_than and part.modified > older_than.timestamp()):
                    continue
                await driver.remove_partial(part.name_id, part.layer_id)
                removed.append(part)
        return removed

    def _busy_name_ids(self) -> set[str]:
        with self.db() as s:
            rows = s.execute(select(Volume.id, Volume.name_id)).all()
        return {name_id for vid, name_id in rows if self.volumes.in_flight(vid)}

    async def settle_unsettled(self, updated_before: datetime | None = None) -> list[Settled]:
        """Settle every volume in a transitional status (last changed before `updated_before`,
        when given) that no migration holds and no work of this process still touches."""
        stmt = select(Volume.id, Volume.status).where(Volume.status.in_(UNSETTLED_VOLUME))
        if updated_before is not None:
            stmt = stmt.where(Volume.updated_at < updated_before)
        with self.db() as s:
            pending = list(s.execute(stmt.order_by(Volume.created_at)))
        done: list[Settled] = []
        for volume_id, status in pending:
            if self.volumes.in_flight(volume_id):
                continue
            try:
                decision = await self.settle(volume_id)
            except FerryError as e:
                log.error("volume %s: could not settle it (next start retries): %s", volume_id, e)
                continue
            if decision is not None and decision.outcome is not Outcome.LEAVE:
                log.warning("volume %s (%s): %s: %s", volume_id, status, decision.outcome, decision.why)
                done.append(Settled(volume_id, status, decision))
        return done

    async def settle(self, volume_id: str) -> VolumeSettlement | None:
        facts = await self.facts(volume_id)
        if facts is None:
            return None
        decision = settle_volume(facts)
        if decision.outcome is not Outcome.LEAVE:
            await self._perform(volume_id, facts, decision)
        return decision

    # -- facts -----------------------------------------------------------------------------
    async def facts(self, volume_id: str) -> VolumeFacts | None:
        with self.db() as s:
            vol = s.get(Volume, volume_id)
            if vol is None:
                return None
            loc = self.backends.location(s, vol)
            att = s.scalar(select(Attachment).where(Attachment.volume_id == volume_id))
            server = s.get(Server, att.server_id) if att is not None else None
            base = VolumeFacts(
                status=vol.status,
                size_gib=vol.size_gib,
                target_size_gib=vol.target_size_gib,
                migrating=vol.migration_status in MIGRATION_BUSY,
                attached=att is not None,
            )
        disk = None
        if (
            server is not None
            and server.status is ServerStatus.ACTIVE
            and await self.hv.is_running(server.id)
        ):
            disk = next(
                (d for d in await self.hv.disks(server.id) if d.volume_id == volume_id == d.serial), None
            )
        check = LayerCheck(present=False)
        # A running guest's image is judged by QEMU (`disk.size`): `qemu-img check` behind the
        # writer's back is no proof either way.
        live_size = disk.size if disk is not None else None
        if base.status is VolumeStatus.CREATING or (
            base.status is VolumeStatus.EXTENDING and live_size is None
        ):
            check = await self.backends.driver(loc.backend).check_layer(loc.name_id, loc.active_layer)
        return VolumeFacts(
            status=base.status,
            size_gib=base.size_gib,
            target_size_gib=base.target_size_gib,
            migrating=base.migrating,
            file_present=check.present,
            file_sound=check.sound,
            file_size=check.virtual_size,
            attached=base.attached,
            plugged=disk is not None,
            disk_size=live_size,
        )

    # -- performing ------------------------------------------------------------------------
    async def _perform(self, volume_id: str, f: VolumeFacts, d: VolumeSettlement) -> None:
        with self.db() as s:
            vol = s.get(Volume, volume_id)
            assert vol is not None
            backend, name_id, project_id = vol.backend, vol.name_id, vol.project_id
        if d.status is None:
            await self.volumes.finish_delete(volume_id, backend, name_id)
            return
        if f.status is VolumeStatus.CREATING and not f.file_present:
            # Nothing whole was written: drop what a copy left (the volume keeps its row, in error).
            await self.backends.driver(backend).retire_volume(name_id)
        values: dict[str, object] = {"status": d.status, "target_size_gib": None, "updated_at": utcnow()}
        values["status_reason"] = d.why if d.outcome is Outcome.FAIL else None
        if d.size_gib is not None:
            values["size_gib"] = d.size_gib
        with self.db.begin() as s:
            settled = s.execute(
                update(Volume).where(Volume.id == volume_id, Volume.status == f.status).values(**values)
            )
            event = {VolumeStatus.CREATING: CREATE_FAILED, VolumeStatus.EXTENDING: EXTEND_FAILED}.get(
                f.status
            )
            if d.outcome is Outcome.FAIL and event is not None and settled.rowcount:  # type: ignore[attr-defined]
                self.volumes.book.leave(s, Origin(project_id), event, volume_id)
            if d.status is VolumeStatus.IN_USE:
                s.execute(
                    update(Attachment)
                    .where(Attachment.volume_id == volume_id)
                    .values(status=AttachmentStatus.ATTACHED)
                )
            if f.status in PLUGGING:
                self._end_event(s, volume_id, f.status, d)
                if d.status is not VolumeStatus.IN_USE:
                    s.execute(delete(Attachment).where(Attachment.volume_id == volume_id))

    @staticmethod
    def _end_event(s: Session, volume_id: str, status: VolumeStatus, d: VolumeSettlement) -> None:
        """The server's attach or detach event ends as the volume was settled: a success if
        completed, an error saying why if rolled back."""
        server_id = s.scalar(select(Attachment.server_id).where(Attachment.volume_id == volume_id))
        if server_id is None:
            return
        action = PLUGGING[status]
        instance_actions.settled(s, server_id, action, None if d.outcome is Outcome.COMPLETE else d.why)


def stuck_since(threshold_s: float) -> datetime:
    """The moment before which a transitional status counts as stuck."""
    return utcnow() - timedelta(seconds=threshold_s)
