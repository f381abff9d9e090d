"""Cinder's volume and snapshot actions beyond the life cycle: an administrator's status resets,
force detach, and the flags a volume carries (`bootable`, `readonly`).

A reset changes what the database says, never a file or a guest, and only within the facts
`domain.resets` keeps true; force detach unplugs the disk from a running guest first. Neither
touches a volume a migration holds or one this process is still working on.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import exists, update
from sqlalchemy.orm import Session, sessionmaker

from ferry.db.models import Attachment, Server, Snapshot, Volume
from ferry.db.statements import active_migration, not_migrating, updated_one
from ferry.domain.clock import utcnow
from ferry.domain.errors import BadRequest, Conflict
from ferry.domain.resets import snapshot_report, snapshot_reset, volume_reset
from ferry.domain.servers import ServerStatus
from ferry.domain.volumes import MIGRATION_BUSY, VolumeStatus
from ferry.services import policy
from ferry.services.context import RequestContext
from ferry.services.detaching import GuestDetach, Unplug
from ferry.services.queries import attachment_of, get_owned, get_volume
from ferry.services.volumes import VolumeService


class VolumeAdmin:
    def __init__(self, db: sessionmaker[Session], volumes: VolumeService, detaching: GuestDetach) -> None:
        self.db = db
        self.volumes = volumes
        self.detaching = detaching

    def _check_idle(self, s: Session, vol: Volume) -> None:
        if s.scalar(active_migration(vol.id)) is not None or vol.migration_status in MIGRATION_BUSY:
            raise Conflict(f"Volume {vol.id} is being migrated: cancel the migration (or let it end) first.")
        if self.volumes.in_flight(vol.id):
            raise Conflict(f"Ferry is still working on volume {vol.id}'s files; retry when that ends.")

    # -- volumes -----------------------------------------------------------------------
    def reset_status(self, ctx: RequestContext, volume_id: str, args: dict[str, Any]) -> None:
        """`os-reset_status`: set the status, attach status or migration status an admin says."""
        policy.enforce(ctx, "volume:reset_status")
        with self.db.begin() as s:
            vol = get_volume(s, ctx, volume_id)
            reset = volume_reset(
                args.get("status"),
                args.get("attach_status"),
                args.get("migration_status"),
                attached=attachment_of(s, vol.id) is not None,
            )
            self._check_idle(s, vol)
            if reset.status is not None:
                vol.status, vol.status_reason = reset.status, None
            if reset.clear_migration:
                vol.migration_status = None
            elif reset.migration_status is not None:
                vol.migration_status = reset.migration_status
            vol.updated_at = utcnow()

    def set_bootable(self, ctx: RequestContext, volume_id: str, bootable: bool) -> None:
        policy.enforce(ctx, "volume:update")
        with self.db.begin() as s:
            vol = get_volume(s, ctx, volume_id)
            vol.bootable, vol.updated_at = bootable, utcnow()

    def set_readonly(self, ctx: RequestContext, volume_id: str, readonly: bool) -> None:
        """`os-update_readonly_flag`: as Cinder, only on an available volume."""
        policy.enforce(ctx, "volume:update_readonly")
        with self.db.begin() as s:
            vol = get_volume(s, ctx, volume_id)
            if vol.status is not VolumeStatus.AVAILABLE:
                raise BadRequest(
                    f"Volume {vol.id} status must be available to update readonly flag, but current "
                    f"status is: {vol.status}."
                )
            vol.readonly, vol.updated_at = readonly, utcnow()

    def reserve(self, ctx: RequestContext, volume_id: str, reserve: bool) -> None:
        """`os-reserve` (available -> attaching) and `os-unreserve` (back, while no attachment)."""
        policy.enforce(ctx, "volume:update")
        new, expect = (
            (VolumeStatus.ATTACHING, VolumeStatus.AVAILABLE)
            if reserve
            else (VolumeStatus.AVAILABLE, VolumeStatus.ATTACHING)
        )
        with self.db.begin() as s:
            vol = get_volume(s, ctx, volume_id)
            if not reserve and attachment_of(s, vol.id) is not None:
                raise BadRequest(f"Volume {vol.id} is being attached; it cannot be unreserved.")
            self._move(s, vol, new, expect, "reserve" if reserve else "unreserve")

    def mark_detaching(self, ctx: RequestContext, volume_id: str, begin: bool) -> None:
        """`os-begin_detaching` (in-use -> detaching) and `os-roll_detaching` (back)."""
        policy.enforce(ctx, "volume:update")
        new, expect = (
            (VolumeStatus.DETACHING, VolumeStatus.IN_USE)
            if begin
            else (VolumeStatus.IN_USE, VolumeStatus.DETACHING)
        )
        with self.db.begin() as s:
            vol = get_volume(s, ctx, volume_id)
            if attachment_of(s, vol.id) is None:
                raise BadRequest(f"Volume {vol.id} is not attached.")
            self._move(s, vol, new, expect, "begin detaching" if begin else "roll back detaching")

    def settle_unattached(self, ctx: RequestContext, volume_id: str) -> None:
        """`os-detach` of a volume with no attachment (a force detach or a lost detach took it):
        as Cinder ("detach called, but volume not attached"), the volume becomes available if it
        was left in-use or detaching; otherwise nothing changes."""
        policy.enforce(ctx, "volume:update")
        unattached = ~exists().where(Attachment.volume_id == volume_id)
        stuck = (VolumeStatus.IN_USE, VolumeStatus.DETACHING)
        with self.db.begin() as s:
            get_volume(s, ctx, volume_id)
            s.execute(
                update(Volume)
                .where(Volume.id == volume_id, Volume.status.in_(stuck), unattached, not_migrating())
                .values(status=VolumeStatus.AVAILABLE, updated_at=utcnow())
            )

    def _move(self, s: Session, vol: Volume, new: VolumeStatus, expect: VolumeStatus, what: str) -> None:
        stmt = (
            update(Volume)
            .where(Volume.id == vol.id, Volume.status == expect, not_migrating())
            .values(status=new, updated_at=utcnow())
        )
        if not updated_one(s, stmt):
            raise BadRequest(f"Cannot {what} volume {vol.id}: it is {vol.status}, not {expect}.")

    async def force_detach(self, ctx: RequestContext, volume_id: str, attachment_id: str | None) -> None:
        """`os-force_detach`: unplug the disk from its server's running guest (if it runs), then
        drop the attachment; the volume becomes available."""
        policy.enforce(ctx, "volume:force_detach")
        with self.db.begin() as s:
            vol = get_volume(s, ctx, volume_id)
            att = attachment_of(s, vol.id)
            if att is None or (attachment_id is not None and att.id != attachment_id):
                which = f"attachment {attachment_id}" if attachment_id else "any attachment"
                raise BadRequest(f"Error force detaching volume {vol.id}: it has no {which}.")
            if vol.status is VolumeStatus.DELETING:
                raise Conflict(f"Volume {vol.id} is being deleted.")
            self._check_idle(s, vol)
            server = s.get(Server, att.server_id)
            running = server is not None and server.status is ServerStatus.ACTIVE
            before, att_id, server_id = vol.status, att.id, att.server_id
            claim = (
                update(Volume)
                .where(Volume.id == vol.id, Volume.status == before, not_migrating())
                .values(status=VolumeStatus.DETACHING, updated_at=utcnow())
            )
            if not updated_one(s, claim):  # a detach or a reset got there first
                raise Conflict(f"Volume {vol.id} changed meanwhile; retry.")
        job = Unplug(server_id, volume_id, att_id)
        if running:  # the guest must let go: as a detach, asked again in the background
            await self.detaching.start(job)
        else:
            self.detaching.finish(job)

    # -- snapshots ---------------------------------------------------------------------
    def reset_snapshot_status(self, ctx: RequestContext, snapshot_id: str, status: object) -> None:
        policy.enforce(ctx, "snapshot:reset_status")
        new = snapshot_reset(status)
        with self.db.begin() as s:
            snap = get_owned(s, Snapshot, ctx, snapshot_id, "Snapshot")
            vol = s.get(Volume, snap.volume_id)
            if vol is not None and vol.migration_status in MIGRATION_BUSY:
                raise Conflict(f"Volume {vol.id} is being migrated; reset the snapshot when it ends.")
            snap.status, snap.updated_at = new, utcnow()

    def update_snapshot_status(self, ctx: RequestContext, snapshot_id: str, args: dict[str, Any]) -> None:
        """`os-update_snapshot_status`: the status (and progress) a creating or deleting snapshot reports."""
        policy.enforce(ctx, "snapshot:update_status")
        with self.db.begin() as s:
            snap = get_owned(s, Snapshot, ctx, snapshot_id, "Snapshot")
            new, progress = snapshot_report(snap.status, args.get("status"), args.get("progress"))
            values: dict[str, Any] = {"status": new, "updated_at": utcnow()}
            if progress is not None:
                values["progress"] = progress
            stmt = (
                update(Snapshot)
                .where(Snapshot.id == snap.id, Snapshot.status == snap.status)
                .values(**values)
            )
            if not updated_one(s, stmt):
                raise Conflict(f"Snapshot {snap.id} changed meanwhile; retry.")
