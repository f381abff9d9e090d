"""Reverting a volume to its latest snapshot (Cinder's `revert` volume action, microversion 3.40).

The latest snapshot's layer is the frozen parent of the volume's active layer: reverting puts a new
empty active layer on that parent and drops the old active layer, so the volume reads as it was
when the snapshot was taken (at the volume's current size: a volume extended since keeps its size,
as Cinder's revert extends it back). Only a detached `available` volume is reverted, and only to
its latest snapshot, which must be `available`, as Cinder requires.
"""

from __future__ import annotations

import logging

from sqlalchemy import select, update

from ferry.db.models import Snapshot, Volume
from ferry.db.statements import compare_and_set
from ferry.domain.clock import utcnow
from ferry.domain.errors import BadRequest, Conflict, FerryError
from ferry.domain.ids import new_id
from ferry.domain.model import GiB
from ferry.domain.volumes import MIGRATION_BUSY, SnapshotStatus, VolumeStatus
from ferry.services import policy
from ferry.services.context import RequestContext
from ferry.services.queries import attachment_of, get_owned, get_volume
from ferry.services.snapshots import SnapshotService

log = logging.getLogger(__name__)


async def revert_to_snapshot(
    snapshots: SnapshotService, ctx: RequestContext, volume_id: str, snapshot_id: str
) -> None:
    """Revert `volume_id` to its latest snapshot `snapshot_id`."""
    policy.enforce(ctx, "volume:revert_to_snapshot")
    async with snapshots.volumes.chain_lock(volume_id):
        await _revert_locked(snapshots, ctx, volume_id, snapshot_id)


async def _revert_locked(
    snapshots: SnapshotService, ctx: RequestContext, volume_id: str, snapshot_id: str
) -> None:
    with snapshots.db.begin() as s:
        vol = get_volume(s, ctx, volume_id)
        snap = get_owned(s, Snapshot, ctx, snapshot_id, "Snapshot")
        if snap.volume_id != vol.id:
            raise BadRequest(f"Snapshot {snap.id} is not a snapshot of volume {vol.id}.")
        if vol.status is not VolumeStatus.AVAILABLE or attachment_of(s, vol.id) is not None:
            raise BadRequest(f"Volume {vol.id} is {vol.status}: only an available volume can be reverted.")
        if vol.migration_status in MIGRATION_BUSY:
            raise Conflict(f"Volume {vol.id} is being migrated; revert it when the migration ends.")
        latest = s.scalar(
            select(Snapshot.id)
            .where(Snapshot.volume_id == vol.id)
            .order_by(Snapshot.position.desc())
            .limit(1)
        )
        if latest != snap.id:
            raise BadRequest(
                f"Volume {vol.id} can only be reverted to its latest snapshot ({latest}), not {snap.id}."
            )
        if snap.status is not SnapshotStatus.AVAILABLE:
            raise BadRequest(
                f"Snapshot {snap.id} is {snap.status}: only an available snapshot can be reverted to."
            )
        loc = snapshots.backends.location(s, vol)
        old_active, parent, size = vol.active_layer_id, snap.layer_id, vol.size_gib
        # The frozen parent of the active layer is the latest snapshot's, or the chain is not
        # what the rows say: refuse rather than revert to something else.
        if len(loc.layers) < 2 or loc.layers[-2] != parent:
            raise Conflict(f"Volume {vol.id}'s layer chain does not end on snapshot {snap.id}; retry.")
    driver = snapshots.backends.driver(loc.backend)
    new_active = new_id()
    await driver.create_overlay(loc, new_active, parent, size * GiB)
    try:
        with snapshots.db.begin() as s:
            # Conditional on the volume still being detached, available and on the old layer: an
            # attach that began meanwhile keeps the chain it opened.
            compare_and_set(
                s,
                update(Volume)
                .where(
                    Volume.id == volume_id,
                    Volume.status == VolumeStatus.AVAILABLE,
                    Volume.active_layer_id == old_active,
                )
                .values(active_layer_id=new_active, updated_at=utcnow()),
                f"Volume {volume_id} changed while it was being reverted; retry.",
            )
    except FerryError:
        await driver.drop_layer(loc.name_id, new_active)
        raise
    try:
        await driver.drop_layer(loc.name_id, old_active)
    except FerryError as e:  # the revert stands; the old file is only garbage now
        log.warning("volume %s reverted, but its old active layer %s stays: %s", volume_id, old_active, e)
