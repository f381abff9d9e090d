"""Creating a volume: empty, from a snapshot, a clone of another, or from an image; placed by
the scheduler's rules (`domain/scheduling.py`), its quota claimed in the same transaction as its
row, its file written off the request (`_finish_create`) and published whole.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from ferry.db.models import Snapshot, Volume, VolumeType
from ferry.domain.clock import utcnow
from ferry.domain.errors import BadRequest, Conflict, FerryError
from ferry.domain.ids import new_id
from ferry.domain.messages import CREATE_FAILED, NO_VALID_BACKEND
from ferry.domain.model import DiskFormat, GiB, VolumeLocation
from ferry.domain.scheduling import UNPLACED, NoValidBackend, PoolStats, check_zones, choose_backend
from ferry.domain.volumes import MIGRATION_BUSY, SnapshotStatus, VolumeStatus, check_metadata, check_size
from ferry.services import failpoints, policy
from ferry.services.context import RequestContext
from ferry.services.messages import MessageBook, Origin
from ferry.services.queries import get_owned, get_type, get_volume
from ferry.services.quotas import QuotaService
from ferry.services.storage import Backends
from ferry.services.volume_images import ImageSource, check_fits, image_source, keep_metadata, metadata_of

log = logging.getLogger(__name__)


@dataclass
class VolumeCreate:
    size: int | None = None
    name: str | None = None
    description: str | None = None
    volume_type: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    snapshot_id: str | None = None
    source_volid: str | None = None
    availability_zone: str | None = None
    image_ref: str | None = None


class VolumeCreation:
    """`VolumeService.create`: `creating` is the service's set of volumes whose file this
    process is writing (what `in_flight` and a force delete consult); `spawn` runs the copy."""

    def __init__(
        self,
        db: sessionmaker[Session],
        backends: Backends,
        book: MessageBook,
        quotas: QuotaService,
        default_type: str,
        creating: set[str],
        spawn: Callable[[Coroutine[Any, Any, None]], None],
    ) -> None:
        self.db = db
        self.backends = backends
        self.book = book
        self.quotas = quotas
        self.default_type_name = default_type
        self._creating = creating
        self.spawn = spawn

    @staticmethod
    @contextmanager
    def _type_may_vanish(type_ref: str | None) -> Iterator[None]:
        """A type deleted between its lookup and the insert fails the foreign key: a 409, not a 500."""
        try:
            yield
        except IntegrityError:
            raise Conflict(
                f"Volume type {type_ref!r} was deleted while the volume was created; retry."
            ) from None

    def default_type(self, s: Session) -> VolumeType | None:
        """The type a volume created without one gets (Cinder's default type), if it exists."""
        return s.scalar(select(VolumeType).where(VolumeType.name == self.default_type_name))

    async def create(self, ctx: RequestContext, req: VolumeCreate) -> Volume:
        policy.enforce(ctx, "volume:create")
        check_metadata(req.metadata)
        image = self._image(ctx, req)
        if image is not None:
            source_path, source_size, source_type = image.path, image.min_gib, None
        else:
            source_path, source_size, source_type = self._source(ctx, req)
        size = check_size(req.size if req.size is not None else source_size)
        if image is not None:
            check_fits(size, image)
        if size < source_size:
            raise BadRequest(f"Size {size} GiB is smaller than the source's {source_size} GiB.")
        vol_id, name_id, layer = new_id(), new_id(), new_id()
        with self._type_may_vanish(req.volume_type), self.db.begin() as s:
            vtype = (
                get_type(s, req.volume_type, ctx)
                if req.volume_type
                else (get_type(s, source_type) if source_type else self.default_type(s))
            )
            specs = dict(vtype.extra_specs or {}) if vtype else {}
            check_zones(specs, req.availability_zone)
            try:  # Cinder's scheduler: no backend passing the type's filters leaves the volume in error
                pool: PoolStats | None = choose_backend(self.backends.pool_stats(s), size, specs)
                unplaced = None
            except NoValidBackend as e:
                pool, unplaced = None, e.message
            # Last before the insert: the claim holds the project's quota lock until the commit. A
            # volume left in error by the scheduler counts too, as in Cinder, until it is deleted.
            vtype_id = vtype.id if vtype else None
            self.quotas.claim_volume(s, ctx.project_id, vtype_id, volumes=1, gigabytes=size, volume_size=size)
            now = utcnow()
            vol = Volume(
                id=vol_id,
                project_id=ctx.project_id,
                user_id=ctx.user_id,
                name=req.name,
                description=req.description,
                size_gib=size,
                status=VolumeStatus.CREATING if pool else VolumeStatus.ERROR,
                status_reason=unplaced,
                volume_type_id=vtype_id,
                backend=pool.backend.name if pool else UNPLACED,
                name_id=name_id,
                active_layer_id=layer,
                meta=req.metadata,
                snapshot_id=req.snapshot_id,
                source_volid=req.source_volid,
                next_layer_position=1,
                created_at=now,
                updated_at=now,
            )
            s.add(vol)
            s.flush()  # the volume's row before its image metadata
            keep_metadata(s, vol_id, image.metadata if image is not None else self._inherited(s, req))
            if pool is None:
                log.warning("volume %s: %s", vol_id, unplaced)
                self.book.leave(s, Origin.of(ctx), NO_VALID_BACKEND, vol_id)
        if pool is None:
            return vol
        failpoints.hit("volume-create.after_row")
        loc = VolumeLocation(pool.backend.name, name_id, (layer,), pool.backend.format)
        if source_path is None:
            await self._finish_create(vol_id, loc, size, None, Origin.of(ctx))
            with self.db() as s:
                return get_volume(s, ctx, vol_id)
        image_format = image.format if image else None
        self.spawn(self._finish_create(vol_id, loc, size, source_path, Origin.of(ctx), image_format))
        return vol

    def _image(self, ctx: RequestContext, req: VolumeCreate) -> ImageSource | None:
        if req.image_ref is None:
            return None
        if req.snapshot_id or req.source_volid:
            raise BadRequest("Give one source: imageRef, snapshot_id or source_volid.")
        with self.db() as s:
            return image_source(s, ctx, req.image_ref)

    @staticmethod
    def _inherited(s: Session, req: VolumeCreate) -> dict[str, str] | None:
        """A clone, or a volume from a snapshot, keeps its source's image metadata (Cinder's)."""
        if req.source_volid:
            return metadata_of(s, req.source_volid)
        snap = s.get(Snapshot, req.snapshot_id) if req.snapshot_id else None
        return metadata_of(s, snap.volume_id) if snap is not None else None

    def _source(self, ctx: RequestContext, req: VolumeCreate) -> tuple[Any, int, str | None]:
        """Resolve snapshot_id/source_volid into (image path to copy, its size, its type id)."""
        if req.snapshot_id and req.source_volid:
            raise BadRequest("Give snapshot_id or source_volid, not both.")
        with self.db() as s:
            if req.snapshot_id:
                snap = get_owned(s, Snapshot, ctx, req.snapshot_id, "Snapshot")
                if snap.status is not SnapshotStatus.AVAILABLE:
                    raise BadRequest(f"Snapshot {snap.id} is {snap.status}, not available.")
                src = s.get(Volume, snap.volume_id)
                assert src is not None
                loc = self.backends.location(s, src)
                return self.backends.layer_path(loc, snap.layer_id), snap.size_gib, src.volume_type_id
            if req.source_volid:
                src = get_volume(s, ctx, req.source_volid)
                if src.status is not VolumeStatus.AVAILABLE or src.migration_status in MIGRATION_BUSY:
                    raise BadRequest(
                        f"Volume {src.id} is {src.status}: only a detached, idle volume can be cloned "
                        "(for an attached one, create a snapshot and a volume from it)."
                    )
                loc = self.backends.location(s, src)
                return self.backends.layer_path(loc, loc.active_layer), src.size_gib, src.volume_type_id
        return None, 1, None

    async def _finish_create(
        self,
        vol_id: str,
        loc: VolumeLocation,
        size: int,
        source: Any,
        origin: Origin,
        image_format: DiskFormat | None = None,
    ) -> None:
        """Write the new volume's file (empty, a copy, or an image's data converted) and settle its
        status. Crash-safe as every create: the file is published whole by a rename, and start-up
        recovery settles a `creating` volume from whether it is there."""
        driver = self.backends.driver(loc.backend)
        reason: str | None = None
        self._creating.add(vol_id)
        try:
            failpoints.hit("volume-create.before_file")
            if source is None:
                await driver.create_volume(loc, size * GiB)
            elif image_format is not None:
                await driver.create_from_image(source, image_format, loc, size * GiB)
            else:
                await driver.copy_flat(source, loc, size * GiB)
            failpoints.hit("volume-create.after_file")
            new = VolumeStatus.AVAILABLE
        except FerryError as e:
            log.error("creating volume %s failed: %s", vol_id, e)
            new, reason = VolumeStatus.ERROR, f"creation failed: {e.message}"
        finally:
            self._creating.discard(vol_id)
        with self.db.begin() as s:
            done = s.execute(
                update(Volume)
                .where(Volume.id == vol_id, Volume.status == VolumeStatus.CREATING)
                .values(status=new, status_reason=reason, updated_at=utcnow())
            )
            if new is VolumeStatus.ERROR and done.rowcount:  # type: ignore[attr-defined]
                self.book.leave(s, origin, CREATE_FAILED, vol_id)
