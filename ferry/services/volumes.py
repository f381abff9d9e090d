"""Volume use cases: list, show, update, extend, delete; create is `volume_create.py`'s.

State changes are conditional updates, so two racing requests can never both move one volume.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session, sessionmaker

from ferry.db.models import VOLUME_COLUMNS, Attachment, Migration, Snapshot, Volume, VolumeRow, VolumeType
from ferry.db.statements import compare_and_set, compensate, not_migrating, updated_one
from ferry.domain.clock import utcnow
from ferry.domain.errors import BadRequest, Conflict, FerryError, NotFound
from ferry.domain.instance_actions import InstanceAction
from ferry.domain.messages import EXTEND_FAILED
from ferry.domain.model import GiB, VolumeLocation
from ferry.domain.scheduling import UNPLACED
from ferry.domain.volumes import (
    DELETABLE,
    FORCE_DELETABLE,
    MIGRATION_BUSY,
    SNAPSHOT_DELETABLE,
    VOLUME_ACTION,
    SnapshotStatus,
    VolumeStatus,
    check_metadata,
    check_size,
)
from ferry.services import failpoints, instance_actions, policy
from ferry.services.context import RequestContext
from ferry.services.extending import LiveExtend, ServerClaim, claim_server
from ferry.services.matching import Matching, narrow
from ferry.services.messages import MessageBook, Origin
from ferry.services.queries import (
    attachment_of,
    being_copied_into,
    check_limit,
    get_volume,
    paginate,
    parse_sort,
)
from ferry.services.quotas import QuotaService
from ferry.services.records import LayerFileInfo, VolumeLayout
from ferry.services.storage import Backends
from ferry.services.volume_create import VolumeCreate, VolumeCreation

log = logging.getLogger(__name__)
_STATUS_VALUES = frozenset(VolumeStatus)


@dataclass
class VolumeFilter:
    name: str | None = None
    status: str | None = None
    all_tenants: bool = False
    limit: int | None = None
    marker: str | None = None
    sort: str | None = None
    sort_key: str | None = None
    sort_dir: str | None = None
    matching: Matching = field(default_factory=Matching)
    offset: int | None = None


def set_status(s: Session, volume_id: str, new: VolumeStatus, *, expect: tuple[VolumeStatus, ...]) -> None:
    """Move a volume to `new` (a status in `VOLUME_ACTION`) only if it is in one of `expect` and
    not migrating; the refusal names the action from the table."""
    stmt = (
        update(Volume)
        .where(Volume.id == volume_id, Volume.status.in_(expect), not_migrating())
        .values(status=new, updated_at=utcnow())
    )
    if not updated_one(s, stmt):
        row = s.get(Volume, volume_id)
        state = f"status '{row.status}'" if row else "gone"
        if row is not None and row.migration_status in MIGRATION_BUSY:
            state = f"being migrated (migration_status '{row.migration_status}')"
        raise Conflict(
            f"Cannot {VOLUME_ACTION[new]} volume {volume_id}: it is {state}; expected {' or '.join(expect)}."
        )


CASCADE_TAKES = (*SNAPSHOT_DELETABLE, SnapshotStatus.DELETING)
"""Snapshots a cascade delete takes with their volume: a `deleting` one's merge is superseded."""


class VolumeService:
    def __init__(
        self,
        db: sessionmaker[Session],
        backends: Backends,
        book: MessageBook | None = None,
        quotas: QuotaService | None = None,
        default_type: str = "__DEFAULT__",
    ) -> None:
        self.db = db
        self.backends = backends
        self.book = book or MessageBook(backends.config.messages)
        self.quotas = quotas or QuotaService(db, backends.config.quotas)
        self.default_type_name = default_type
        self._tasks: set[asyncio.Task[None]] = set()
        self._chains: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._creating: set[str] = set()
        self.live: LiveExtend | None = None
        self.creation = VolumeCreation(
            db, backends, self.book, self.quotas, default_type, self._creating, self.spawn
        )

    def in_flight(self, volume_id: str) -> bool:
        """Whether this process is still working on the volume's files (a create or copy, an
        extend, a snapshot): `ferry doctor --repair` must not settle what is only slow."""
        lock = self._chains.get(volume_id)
        return volume_id in self._creating or (lock is not None and lock.locked())

    def chain_lock(self, volume_id: str) -> asyncio.Lock:
        """One change of a volume's layer files at a time (snapshot, merge, extend): each reads the
        chain before it acts, so overlapping ones act on a chain the other is replacing."""
        return self._chains[volume_id]

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run background work, keeping a reference so it is not garbage-collected."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- create ------------------------------------------------------------------------
    def default_type(self, s: Session) -> VolumeType | None:
        return self.creation.default_type(s)

    async def create(self, ctx: RequestContext, req: VolumeCreate) -> Volume:
        return await self.creation.create(ctx, req)

    # -- read --------------------------------------------------------------------------
    def get(self, ctx: RequestContext, volume_id: str) -> Volume:
        policy.enforce(ctx, "volume:get")
        with self.db() as s:
            return get_volume(s, ctx, volume_id)

    def list_volumes(self, ctx: RequestContext, f: VolumeFilter) -> list[VolumeRow]:
        policy.enforce(ctx, "volume:get_all")
        if f.all_tenants:
            policy.enforce(ctx, "volume:get_all_tenants")
        key, desc = parse_sort(f.sort, f.sort_key, f.sort_dir)
        stmt = select(*VOLUME_COLUMNS)
        if not f.all_tenants:
            stmt = stmt.where(Volume.project_id == ctx.project_id)
        if f.name is not None:
            stmt = stmt.where(Volume.name == f.name)
        if f.status is not None:
            if f.status not in _STATUS_VALUES:
                return []  # no volume is ever in a status Ferry does not have
            stmt = stmt.where(Volume.status == VolumeStatus(f.status))
        with self.db() as s:
            stmt = narrow(s, stmt, Volume, f.matching)
            stmt = paginate(s, stmt, Volume, key, desc, f.marker, check_limit(f.limit))
            if f.offset:
                stmt = stmt.offset(f.offset)
            # Columns, not entities: through the connection, past the ORM's per-row machinery
            # (a third of a 1000-volume page's time).
            return [VolumeRow._make(row) for row in s.connection().execute(stmt)]

    def sees_admin_fields(self, ctx: RequestContext) -> bool:
        """Whether the caller's volume views show hosts, name ids and migration progress."""
        return policy.allowed(ctx, "volume:admin_fields")

    def layout(self, ctx: RequestContext, volume_id: str) -> VolumeLayout:
        """Where the volume's layer files live (admin), base first, each with its snapshot."""
        policy.enforce(ctx, "volume:admin_fields")
        with self.db() as s:
            vol = get_volume(s, ctx, volume_id)
            loc = self.backends.location(s, vol)
            snaps = dict(
                s.execute(select(Snapshot.layer_id, Snapshot.id).where(Snapshot.volume_id == vol.id)).all()
            )
        layers = tuple(
            LayerFileInfo(lid, self.backends.layer_path(loc, lid), snaps.get(lid)) for lid in loc.layers
        )
        return VolumeLayout(loc, self.backends.driver(loc.backend).volume_dir(loc.name_id), layers)

    def attachments(self, volume_ids: list[str]) -> dict[str, Attachment]:
        if not volume_ids:
            return {}
        with self.db() as s:
            rows = s.scalars(select(Attachment).where(Attachment.volume_id.in_(volume_ids)))
            return {a.volume_id: a for a in rows}

    # -- change ------------------------------------------------------------------------
    def update(self, ctx: RequestContext, volume_id: str, changes: dict[str, Any]) -> Volume:
        policy.enforce(ctx, "volume:update")
        with self.db.begin() as s:
            vol = get_volume(s, ctx, volume_id)
            if "name" in changes:
                vol.name = changes["name"]
            if "description" in changes:
                vol.description = changes["description"]
            if "metadata" in changes:
                vol.meta = check_metadata(changes["metadata"])
            vol.updated_at = utcnow()
            return vol

    async def extend(
        self, ctx: RequestContext, volume_id: str, new_size: object, *, allow_in_use: bool = False
    ) -> None:
        """Grow the volume to `new_size` GiB. A detached one grows through its storage driver; an
        attached one (`allow_in_use`: Cinder's 3.42) under its running guest through the
        hypervisor (`live.live_extend`), or, its server shut off, through the storage driver."""
        policy.enforce(ctx, "volume:extend")
        async with self.chain_lock(volume_id):
            await self._extend_locked(ctx, volume_id, new_size, allow_in_use)

    async def _extend_locked(
        self, ctx: RequestContext, volume_id: str, new_size: object, allow_in_use: bool
    ) -> None:
        with self.db.begin() as s:
            vol = get_volume(s, ctx, volume_id)
            size = check_size(new_size)
            if size <= vol.size_gib:
                raise BadRequest(f"New size {size} GiB must be larger than the current {vol.size_gib} GiB.")
            attached = vol.status is VolumeStatus.IN_USE
            if attached and not allow_in_use:
                raise BadRequest(
                    f"Volume {vol.id} status must be available to extend, currently in-use "
                    "(an attached volume extends from microversion 3.42)."
                )
            grow = size - vol.size_gib
            self.quotas.claim_volume(s, vol.project_id, vol.volume_type_id, gigabytes=grow, volume_size=size)
            pool = next((p for p in self.backends.pool_stats(s) if p.backend.name == vol.backend), None)
            if pool is None:
                raise BadRequest(f"Volume {vol.id} is {vol.status} on no backend: it cannot be extended.")
            if not pool.fits(grow):
                raise BadRequest(f"No capacity to extend volume {vol.id} to {size} GiB on {vol.backend}.")
            back = VolumeStatus.IN_USE if attached else VolumeStatus.AVAILABLE
            set_status(s, vol.id, VolumeStatus.EXTENDING, expect=(back,))
            claim = claim_server(s, vol.id) if attached else None
            # Durable intent, in the same transaction as the claim: a restart settles the extend
            # from the image's real size against this, so the database never disagrees with it.
            s.execute(update(Volume).where(Volume.id == vol.id).values(target_size_gib=size))
            loc = self.backends.location(s, vol)
        failpoints.hit("volume-extend.before_resize")
        failed = update(Volume).where(Volume.id == volume_id).values(status=VolumeStatus.ERROR_EXTENDING)
        try:
            with compensate(self.db, failed):
                await self._grow(ctx, loc, volume_id, size, claim)
        except FerryError:
            with self.db.begin() as s:
                self.book.leave(s, Origin.of(ctx), EXTEND_FAILED, volume_id)
            raise
        failpoints.hit("volume-extend.after_resize")
        with self.db.begin() as s:
            s.execute(
                update(Volume)
                .where(Volume.id == volume_id)
                .values(size_gib=size, target_size_gib=None, status=back, updated_at=utcnow())
            )

    async def _grow(
        self, ctx: RequestContext, loc: VolumeLocation, volume_id: str, size: int, claim: ServerClaim | None
    ) -> None:
        if claim is None:
            await self.backends.driver(loc.backend).extend(loc, size * GiB)
            return
        if not claim.running:  # grown offline, recorded on its server as Nova records any extend
            async with instance_actions.recorded(self.db, ctx, claim.server_id, InstanceAction.EXTEND_VOLUME):
                await self.backends.driver(loc.backend).extend(loc, size * GiB)
            return
        # QEMU has the image open: it must grow the file itself (never qemu-img behind it).
        assert self.live is not None
        try:
            await self.live.live_extend(ctx, claim.server_id, volume_id, size * GiB)
        except NotFound as e:  # the volume exists: its server's process lost the disk
            raise Conflict(f"Server {claim.server_id} cannot grow volume {volume_id}: {e.message}") from e

    async def delete(
        self, ctx: RequestContext, volume_id: str, cascade: bool = False, *, force: bool = False
    ) -> None:
        """Delete the volume; with `cascade`, its snapshots with it (their layers live in the
        volume's directory). Every precondition is checked, and the volume and its snapshots are
        claimed, in one transaction before anything is touched: a refused delete changes nothing.
        Under the chain lock: a snapshot merge under way ends first; one still pending is
        superseded (its layer goes with the directory). `force` (Cinder's `os-force_delete`, admin):
        whatever the volume's status, but never while this process still works on its files."""
        policy.enforce(ctx, "volume:force_delete" if force else "volume:delete")
        async with self.chain_lock(volume_id):
            if force and volume_id in self._creating:
                raise Conflict(f"Volume {volume_id} is still being created; force-delete it when that ends.")
            await self._delete_locked(ctx, volume_id, cascade, force)

    async def _delete_locked(self, ctx: RequestContext, volume_id: str, cascade: bool, force: bool) -> None:
        with self.db.begin() as s:
            vol = get_volume(s, ctx, volume_id)
            snaps = self._check_deletable(s, vol, cascade, force)
            expect = FORCE_DELETABLE if force else DELETABLE
            set_status(s, vol.id, VolumeStatus.DELETING, expect=expect)
            if snaps:
                compare_and_set(
                    s,
                    update(Snapshot)
                    .where(Snapshot.volume_id == vol.id, Snapshot.status.in_(CASCADE_TAKES))
                    .values(status=SnapshotStatus.DELETING, updated_at=utcnow()),
                    f"Volume {vol.id}: a snapshot changed while it was being deleted; retry.",
                    rows=len(snaps),
                )
            name_id, backend = vol.name_id, vol.backend
        failed = (
            update(Volume).where(Volume.id == volume_id).values(status=VolumeStatus.ERROR_DELETING),
            update(Snapshot)
            .where(Snapshot.volume_id == volume_id)
            .values(status=SnapshotStatus.ERROR_DELETING),
        )
        with compensate(self.db, *failed):
            await self.finish_delete(volume_id, backend, name_id)

    async def finish_delete(self, volume_id: str, backend: str, name_id: str) -> None:
        """Retire a `deleting` volume's files, then its rows. Idempotent: start-up recovery
        completes an interrupted delete with it."""
        failpoints.hit("volume-delete.before_retire")
        if backend != UNPLACED:  # a volume no backend took has no files
            await self.backends.driver(backend).retire_volume(name_id)
        failpoints.hit("volume-delete.after_retire")
        with self.db.begin() as s:
            s.execute(delete(Snapshot).where(Snapshot.volume_id == volume_id))
            s.execute(delete(Migration).where(Migration.volume_id == volume_id))
            s.execute(delete(Volume).where(Volume.id == volume_id))

    @staticmethod
    def _check_deletable(s: Session, vol: Volume, cascade: bool, force: bool = False) -> list[Snapshot]:
        """Refuse what would fail, before anything is changed; the snapshots a cascade takes."""
        if attachment_of(s, vol.id) is not None:
            raise BadRequest(f"Volume {vol.id} is attached to a server: detach it first.")
        snaps = list(s.scalars(select(Snapshot).where(Snapshot.volume_id == vol.id)))
        if snaps and not cascade:
            raise BadRequest(f"Volume {vol.id} has snapshots: delete them first or use cascade=true.")
        if vol.status not in DELETABLE and not force:
            raise BadRequest(f"Volume {vol.id} is {vol.status}: it must be available or error to delete.")
        busy = next((sn for sn in snaps if sn.status not in CASCADE_TAKES), None)
        if busy is not None:
            raise Conflict(
                f"Snapshot {busy.id} of volume {vol.id} is {busy.status}; delete the volume when it settles."
            )
        for column, source in [(Volume.source_volid, vol.id), *((Volume.snapshot_id, sn.id) for sn in snaps)]:
            copying = being_copied_into(s, column, source)
            if copying is not None:
                raise Conflict(
                    f"Volume {vol.id} is being copied into volume {copying}; delete it when that "
                    "volume is created."
                )
        return snaps
