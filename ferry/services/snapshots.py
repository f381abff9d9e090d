"""Snapshot use cases. A snapshot freezes the volume's active layer and puts a new empty active
layer on top; deleting it folds its layer into the layer above. Attached volumes do both live
through `LiveDisks` (the compute service); detached ones through the storage driver.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session, sessionmaker

from ferry.db.models import Snapshot, Volume
from ferry.db.statements import compare_and_set
from ferry.domain.clock import utcnow
from ferry.domain.errors import BadRequest, Conflict, FerryError
from ferry.domain.ids import new_id
from ferry.domain.messages import SNAPSHOT_DELETE_FAILED, SNAPSHOT_FAILED
from ferry.domain.model import GiB, LayerFile, VolumeLocation
from ferry.domain.volumes import (
    MIGRATION_BUSY,
    SNAPSHOT_DELETABLE,
    SNAPSHOT_UNSETTLED,
    SNAPSHOTTABLE,
    SnapshotStatus,
    VolumeStatus,
    check_metadata,
)
from ferry.drivers.storage.base import StorageDriver
from ferry.services import failpoints, policy
from ferry.services.context import RequestContext
from ferry.services.matching import Matching, narrow
from ferry.services.messages import Origin
from ferry.services.queries import (
    being_copied_into,
    check_limit,
    get_owned,
    get_volume,
    paginate,
    parse_sort,
    running_server,
)
from ferry.services.storage import Backends
from ferry.services.volumes import VolumeService

log = logging.getLogger(__name__)


class LiveDisks(Protocol):
    """What the snapshot service needs from the compute side for attached volumes."""

    async def live_snapshot(self, server_id: str, volume_id: str, new_active: LayerFile) -> None: ...

    async def live_merge(self, server_id: str, volume_id: str, layer: LayerFile) -> None: ...

    async def live_files(self, server_id: str, volume_id: str) -> tuple[str, ...] | None:
        """The image files the running disk of `volume_id` uses, active first (None: not attached)."""
        ...


class SnapshotService:
    def __init__(self, db: sessionmaker[Session], backends: Backends, volumes: VolumeService) -> None:
        self.db = db
        self.backends = backends
        self.volumes = volumes
        self.live: LiveDisks | None = None

    def get(self, ctx: RequestContext, snapshot_id: str) -> Snapshot:
        policy.enforce(ctx, "snapshot:get")
        with self.db() as s:
            return get_owned(s, Snapshot, ctx, snapshot_id, "Snapshot")

    def list_snapshots(
        self,
        ctx: RequestContext,
        volume_id: str | None = None,
        all_tenants: bool = False,
        limit: int | None = None,
        marker: str | None = None,
        sort: str | None = None,
        matching: Matching | None = None,
        *,
        sort_key: str | None = None,
        sort_dir: str | None = None,
        offset: int | None = None,
    ) -> list[Snapshot]:
        policy.enforce(ctx, "snapshot:get")
        if all_tenants:
            policy.enforce(ctx, "volume:get_all_tenants")
        key, desc = parse_sort(sort, sort_key, sort_dir)
        stmt = select(Snapshot)
        if not all_tenants:
            stmt = stmt.where(Snapshot.project_id == ctx.project_id)
        if volume_id:
            stmt = stmt.where(Snapshot.volume_id == volume_id)
        with self.db() as s:
            stmt = narrow(s, stmt, Snapshot, matching or Matching())
            stmt = paginate(s, stmt, Snapshot, key, desc, marker, check_limit(limit))
            return list(s.scalars(stmt.offset(offset) if offset else stmt))

    def update(self, ctx: RequestContext, snapshot_id: str, changes: dict[str, Any]) -> Snapshot:
        policy.enforce(ctx, "snapshot:update")
        with self.db.begin() as s:
            snap = get_owned(s, Snapshot, ctx, snapshot_id, "Snapshot")
            for key in ("name", "description"):
                if key in changes:
                    setattr(snap, key, changes[key])
            if "metadata" in changes:
                snap.meta = check_metadata(changes["metadata"])
            snap.updated_at = utcnow()
            return snap

    # -- create ------------------------------------------------------------------------
    async def create(
        self,
        ctx: RequestContext,
        volume_id: str,
        name: str | None,
        description: str | None,
        metadata: dict[str, str],
        *,
        force: bool = True,
    ) -> Snapshot:
        """`force`: a volume that is not available (attached) may be snapshotted live. Cinder's API
        asks for it below microversion 3.66 (`force=True` in the request)."""
        policy.enforce(ctx, "snapshot:create")
        check_metadata(metadata)
        async with self.volumes.chain_lock(volume_id):  # reads the active layer, then replaces it
            return await self._create_locked(ctx, volume_id, name, description, metadata, force)

    async def _create_locked(
        self,
        ctx: RequestContext,
        volume_id: str,
        name: str | None,
        description: str | None,
        metadata: dict[str, str],
        force: bool = True,
    ) -> Snapshot:
        new_layer = new_id()
        with self.db.begin() as s:
            vol = get_volume(s, ctx, volume_id)
            self._check_can_snapshot(vol, force)
            self.volumes.quotas.claim_volume(
                s, vol.project_id, vol.volume_type_id, snapshots=1, gigabytes=vol.size_gib
            )
            loc = self.backends.location(s, vol)
            live_server = running_server(s, vol.id)
            now = utcnow()
            snap = Snapshot(
                id=new_id(),
                project_id=vol.project_id,
                user_id=ctx.user_id,
                volume_id=vol.id,
                layer_id=vol.active_layer_id,
                position=vol.next_layer_position,
                name=name,
                description=description,
                size_gib=vol.size_gib,
                status=SnapshotStatus.CREATING,
                meta=metadata,
                created_at=now,
                updated_at=now,
            )
            _bump_position(s, vol)
            s.add(snap)
        try:
            driver = self.backends.driver(loc.backend)
            if live_server is None:
                await driver.snapshot(loc, new_layer)
            else:
                assert self.live is not None
                await driver.create_overlay(loc, new_layer, loc.active_layer, vol.size_gib * GiB)
                failpoints.hit("snapshot.after_overlay")
                path = str(driver.layer_path(loc.name_id, new_layer))
                await self.live.live_snapshot(live_server, vol.id, LayerFile(path, loc.format))
            failpoints.hit("snapshot.after_switch")
        except FerryError:
            with self.db.begin() as s:
                s.execute(delete(Snapshot).where(Snapshot.id == snap.id))
                self.volumes.book.leave(s, Origin.of(ctx), SNAPSHOT_FAILED, snap.id)
            raise
        now = utcnow()
        with self.db.begin() as s:
            s.execute(
                update(Volume).where(Volume.id == vol.id).values(active_layer_id=new_layer, updated_at=now)
            )
            s.execute(
                update(Snapshot)
                .where(Snapshot.id == snap.id)
                .values(status=SnapshotStatus.AVAILABLE, updated_at=now)
            )
        snap.status, snap.updated_at = SnapshotStatus.AVAILABLE, now
        return snap

    # -- restart -----------------------------------------------------------------------
    async def recover(self) -> None:
        """At start: settle the snapshot changes the previous control plane left half done.

        A `creating` snapshot is completed when the new active layer is in use (the guest writes
        to it, or, with no running guest, the file exists on its parent) and undone otherwise; a
        `deleting` one is merged again (merging is idempotent).
        """
        with self.db() as s:
            pending = list(
                s.execute(
                    select(Snapshot.id, Snapshot.status)
                    .join(Volume, Volume.id == Snapshot.volume_id)
                    # a cascade delete's snapshots go with their volume (volume recovery ends it)
                    .where(Snapshot.status.in_(SNAPSHOT_UNSETTLED), Volume.status != VolumeStatus.DELETING)
                    .order_by(Snapshot.created_at)
                )
            )
        for snapshot_id, status in pending:
            if status is SnapshotStatus.DELETING:
                self.volumes.spawn(self._merge(snapshot_id))
                continue
            try:
                await self._settle_create(snapshot_id)
            except FerryError as e:
                log.error(
                    "snapshot %s: could not settle its creation (next start retries): %s", snapshot_id, e
                )

    async def _settle_create(self, snapshot_id: str) -> None:
        with self.db() as s:
            volume_id = s.scalar(select(Snapshot.volume_id).where(Snapshot.id == snapshot_id))
        if volume_id is None:
            return
        async with self.volumes.chain_lock(volume_id):
            with self.db() as s:
                snap = s.get(Snapshot, snapshot_id)
                vol = s.get(Volume, volume_id)
                if snap is None or vol is None or snap.status is not SnapshotStatus.CREATING:
                    return
                if snap.layer_id != vol.active_layer_id:
                    # The volume switched away from the layer: the snapshot was completed (an
                    # administrator's os-reset_status put it back to creating).
                    snap.status = SnapshotStatus.AVAILABLE
                    s.commit()
                    return
                loc = self.backends.location(s, vol)
                server = running_server(s, vol.id)
            driver = self.backends.driver(loc.backend)
            overlay = await self._overlay_on_active(driver, loc)
            if server is not None and overlay is not None:
                assert self.live is not None
                files = await self.live.live_files(server, volume_id)
                if not files or files[0] != str(driver.layer_path(loc.name_id, overlay)):
                    await driver.drop_layer(loc.name_id, overlay)  # created, never switched to
                    overlay = None
            with self.db.begin() as s:
                if overlay is None:
                    s.execute(delete(Snapshot).where(Snapshot.id == snapshot_id))
                else:
                    now = utcnow()
                    s.execute(
                        update(Volume)
                        .where(Volume.id == volume_id)
                        .values(active_layer_id=overlay, updated_at=now)
                    )
                    s.execute(
                        update(Snapshot)
                        .where(Snapshot.id == snapshot_id)
                        .values(status=SnapshotStatus.AVAILABLE, updated_at=now)
                    )
            log.warning(
                "snapshot %s of volume %s: %s after a control-plane restart",
                snapshot_id,
                volume_id,
                "undone" if overlay is None else "completed",
            )

    @staticmethod
    async def _overlay_on_active(driver: StorageDriver, loc: VolumeLocation) -> str | None:
        """The layer file in the volume's directory, outside its chain, backed by its active layer."""
        active = driver.layer_path(loc.name_id, loc.active_layer)
        for layer in await driver.scan_layers():
            if layer.name_id != loc.name_id or layer.layer_id in loc.layers:
                continue
            chain = await driver.backing_chain(layer.path)
            if len(chain) > 1 and chain[1] == active:
                return layer.layer_id
        return None

    def _check_can_snapshot(self, vol: Volume, force: bool = True) -> None:
        if vol.status not in SNAPSHOTTABLE:  # first: a volume no backend took has no backend
            raise BadRequest(f"Volume {vol.id} is {vol.status}: snapshots need available or in-use.")
        if vol.status is not VolumeStatus.AVAILABLE and not force:
            raise BadRequest(
                f"Invalid volume: Volume {vol.id} status must be available, but current status is: "
                f"{vol.status} (snapshot an attached volume with force=true)."
            )
        backend = self.backends.config.backend(vol.backend)
        if not backend.supports_snapshots:
            raise BadRequest(
                f"Volume {vol.id} is on raw backend {backend.name!r}: snapshots need a qcow2 "
                "backend (migrate or retype the volume to one first)."
            )
        if vol.migration_status in MIGRATION_BUSY:
            raise Conflict(f"Volume {vol.id} is being migrated; snapshot it when the migration ends.")

    # -- delete ------------------------------------------------------------------------
    async def delete(self, ctx: RequestContext, snapshot_id: str) -> None:
        """Mark the snapshot deleting and merge its layer in the background."""
        self._mark_deleting(ctx, snapshot_id)
        self.volumes.spawn(self._merge(snapshot_id))

    async def force_delete(self, ctx: RequestContext, snapshot_id: str) -> None:
        """Cinder's `os-force_delete` (admin): delete whatever the snapshot's status, under the
        chain lock (no create or merge of this volume runs meanwhile). A snapshot whose layer is
        still the volume's active one never took effect: its row goes, the layer stays."""
        policy.enforce(ctx, "snapshot:force_delete")
        with self.db() as s:
            volume_id = get_owned(s, Snapshot, ctx, snapshot_id, "Snapshot").volume_id
        async with self.volumes.chain_lock(volume_id):
            with self.db.begin() as s:
                snap = get_owned(s, Snapshot, ctx, snapshot_id, "Snapshot")
                vol = s.get(Volume, snap.volume_id)
                assert vol is not None
                if vol.migration_status in MIGRATION_BUSY:
                    raise Conflict(f"Volume {vol.id} is being migrated; delete the snapshot when it ends.")
                if snap.layer_id == vol.active_layer_id:
                    s.delete(snap)
                    return
                snap.status, snap.updated_at = SnapshotStatus.DELETING, utcnow()
                _bump_position(s, vol)
        self.volumes.spawn(self._merge(snapshot_id))

    async def delete_now(self, ctx: RequestContext, snapshot_id: str) -> None:
        """Delete and wait for the merge (cascade deletes, CLI --wait)."""
        self._mark_deleting(ctx, snapshot_id)
        await self._merge(snapshot_id)

    def _mark_deleting(self, ctx: RequestContext, snapshot_id: str) -> None:
        policy.enforce(ctx, "snapshot:delete")
        with self.db.begin() as s:
            snap = get_owned(s, Snapshot, ctx, snapshot_id, "Snapshot")
            vol = s.get(Volume, snap.volume_id)
            assert vol is not None
            if vol.migration_status in MIGRATION_BUSY:
                raise Conflict(f"Volume {vol.id} is being migrated; delete the snapshot when it ends.")
            copying = being_copied_into(s, Volume.snapshot_id, snap.id)
            if copying is not None:
                raise Conflict(
                    f"Snapshot {snap.id} is being copied into volume {copying}; delete it when "
                    "that volume is created."
                )
            compare_and_set(
                s,
                update(Snapshot)
                .where(Snapshot.id == snap.id, Snapshot.status.in_(SNAPSHOT_DELETABLE))
                .values(status=SnapshotStatus.DELETING, updated_at=utcnow()),
                f"Snapshot {snap.id} is {snap.status}: only {', '.join(SNAPSHOT_DELETABLE)} snapshots "
                "can be deleted.",
            )
            _bump_position(s, vol)

    async def _merge(self, snapshot_id: str) -> None:
        with self.db() as s:
            volume_id = s.scalar(select(Snapshot.volume_id).where(Snapshot.id == snapshot_id))
        if volume_id is not None:
            async with self.volumes.chain_lock(volume_id):
                await self._merge_locked(snapshot_id)

    async def _merge_locked(self, snapshot_id: str) -> None:
        with self.db() as s:
            snap = s.get(Snapshot, snapshot_id)
            if snap is None or snap.status is not SnapshotStatus.DELETING:
                return
            vol = s.get(Volume, snap.volume_id)
            assert vol is not None
            loc = self.backends.location(s, vol)
            live_server = running_server(s, vol.id)
        driver = self.backends.driver(loc.backend)
        try:
            if live_server is not None:
                assert self.live is not None
                path = str(driver.layer_path(loc.name_id, snap.layer_id))
                await self.live.live_merge(live_server, vol.id, LayerFile(path, loc.format))
            # Detached: rebase + delete. Attached: the stream already folded the layer; this deletes it.
            await driver.merge_layer(loc, snap.layer_id)
        except FerryError as e:
            log.error("deleting snapshot %s failed: %s", snapshot_id, e)
            with self.db.begin() as s:
                s.execute(
                    update(Snapshot)
                    .where(Snapshot.id == snapshot_id)
                    .values(status=SnapshotStatus.ERROR_DELETING)
                )
                self.volumes.book.leave(s, Origin(snap.project_id), SNAPSHOT_DELETE_FAILED, snapshot_id)
            return
        with self.db.begin() as s:
            s.execute(delete(Snapshot).where(Snapshot.id == snapshot_id))


def _bump_position(s: Session, vol: Volume) -> None:
    """Optimistic lock on the volume's layer chain: two chain changes cannot interleave."""
    compare_and_set(
        s,
        update(Volume)
        .where(Volume.id == vol.id, Volume.next_layer_position == vol.next_layer_position)
        .values(next_layer_position=vol.next_layer_position + 1),
        f"Volume {vol.id} changed concurrently; retry.",
    )
