"""Volumes and images (Cinder's side): what a volume created from an image takes from it (the data
to convert, the size it needs, the `volume_image_metadata` Cinder copies), and a volume published
as a new image (`os-volume_upload_image`).

A volume is bootable when it holds an image's metadata (created from an image, or cloned from or
created from a snapshot of such a volume)."""

from __future__ import annotations

import asyncio
import math
import os
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from ferry.db.models import Image, Volume
from ferry.domain.clock import iso, utcnow
from ferry.domain.errors import BadRequest
from ferry.domain.ids import new_id
from ferry.domain.images import CONTAINER_FORMATS, PROBED_AS, ImageStatus, Visibility
from ferry.domain.model import DiskFormat, GiB
from ferry.domain.volumes import VolumeStatus
from ferry.services import policy
from ferry.services.context import RequestContext
from ferry.services.glance import get_visible
from ferry.services.image_data import QEMU_FORMATS, ImageData
from ferry.services.queries import get_volume
from ferry.services.storage import Backends

COPIED = ("checksum", "container_format", "disk_format", "min_disk", "min_ram", "size")
"""The image fields Cinder copies into a volume's image metadata (beside id, name, properties)."""


@dataclass(frozen=True)
class ImageSource:
    """An active image a volume is created from."""

    path: Path
    format: DiskFormat
    """What the data was verified to be (`domain.images.format_mismatch`)."""
    min_gib: int
    """The smallest volume that holds it: its virtual size and its min_disk, in GiB."""
    metadata: dict[str, str]


def image_source(s: Session, ctx: RequestContext, image_ref: str) -> ImageSource:
    try:
        img = get_visible(s, ctx, image_ref)
    except Exception:
        raise BadRequest(
            f"Invalid image identifier or unable to access requested image {image_ref}."
        ) from None
    if img.status is not ImageStatus.ACTIVE or not img.data:
        raise BadRequest(f"Image {img.id} is not active.")
    declared = img.declared_format or "raw"
    if declared in PROBED_AS and declared != "qcow2":
        raise BadRequest(f"Image {img.id} is {declared}: volumes are created from raw or qcow2 images.")
    fmt = DiskFormat.QCOW2 if declared == "qcow2" else DiskFormat.RAW
    virtual = img.virtual_size if img.virtual_size is not None else _file_size(img.data)
    meta = {"image_id": img.id, "image_name": img.name or ""}
    for key in COPIED:
        value = img.declared_format if key == "disk_format" else getattr(img, key)
        meta[key] = "" if value is None else str(value)
    meta.update({k: str(v) for k, v in (img.properties or {}).items() if v is not None})
    return ImageSource(Path(img.data), fmt, max(math.ceil(virtual / GiB), img.min_disk, 1), meta)


def check_fits(size: int, src: ImageSource) -> None:
    """Cinder's refusals of a volume too small for its image."""
    min_disk = int(src.metadata.get("min_disk") or 0)
    if size < min_disk:
        raise BadRequest(f"Volume size {size}GB cannot be smaller than the image minDisk size {min_disk}GB.")
    if size < src.min_gib:
        raise BadRequest(f"Size of specified image {src.min_gib}GB is larger than volume size {size}GB.")


def _file_size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        raise BadRequest(f"The data of image at {path} is missing.") from None


def keep_metadata(s: Session, volume_id: str, meta: dict[str, str] | None) -> None:
    """A volume made from an image (or from a volume or snapshot that was) keeps its metadata and
    is bootable, as Cinder's."""
    if meta:
        s.execute(update(Volume).where(Volume.id == volume_id).values(image_meta=dict(meta), bootable=True))


def metadata_of(s: Session, volume_id: str) -> dict[str, str] | None:
    vol = s.get(Volume, volume_id)
    return dict(vol.image_meta) if vol is not None and vol.image_meta else None


@dataclass(frozen=True)
class UploadRequest:
    image_name: str
    disk_format: str = "raw"
    container_format: str = "bare"
    force: bool = False
    visibility: str = "private"
    protected: bool = False


class VolumeUploads:
    """`os-volume_upload_image`: a new image (saving) filled from the volume in the background."""

    def __init__(self, db: sessionmaker[Session], backends: Backends, data: ImageData) -> None:
        self.db = db
        self.backends = backends
        self.data = data
        self._tasks: set[asyncio.Task[None]] = set()

    def upload(self, ctx: RequestContext, volume_id: str, req: UploadRequest) -> dict[str, Any]:
        policy.enforce(ctx, "volume:upload_image")
        if req.disk_format not in QEMU_FORMATS:
            raise BadRequest(
                f"Invalid disk-format '{req.disk_format}': use one of {', '.join(QEMU_FORMATS)}."
            )
        if req.container_format not in CONTAINER_FORMATS:
            raise BadRequest(f"Invalid container-format '{req.container_format}'.")
        if req.visibility not in tuple(Visibility):
            raise BadRequest(f"Invalid visibility '{req.visibility}'.")
        if req.visibility == Visibility.PUBLIC and not ctx.is_admin:
            policy.enforce(ctx, "volume:upload_public")
        now = utcnow()
        with self.db.begin() as s:
            vol = get_volume(s, ctx, volume_id)
            if vol.status is VolumeStatus.IN_USE and not req.force:
                raise BadRequest(
                    f"Volume {vol.id} status must be available to upload (it is in-use): use force=True."
                )
            if vol.status not in (VolumeStatus.AVAILABLE, VolumeStatus.IN_USE):
                raise BadRequest(
                    f"Volume {vol.id} status must be available or in-use, but it is {vol.status}."
                )
            loc = self.backends.location(s, vol)
            source = self.backends.layer_path(loc, loc.active_layer)
            image = Image(
                id=new_id(), name=req.image_name, cmdline="", created_at=now, updated_at=now,
                owner=ctx.project_id, status=ImageStatus.SAVING, visibility=Visibility(req.visibility),
                declared_format=req.disk_format, container_format=req.container_format, min_disk=0,
                min_ram=0, protected=req.protected, properties={}, tags=[],
            )  # fmt: skip
            s.add(image)
            body = {
                "id": vol.id,
                "updated_at": iso(vol.updated_at),
                "status": "uploading",
                "display_description": vol.description,
                "size": vol.size_gib,
                "volume_type": None,
                "image_id": image.id,
                "container_format": req.container_format,
                "disk_format": req.disk_format,
                "image_name": req.image_name,
                "protected": req.protected,
                "visibility": req.visibility,
                "is_public": req.visibility == Visibility.PUBLIC,
            }
        self._spawn(self.data.publish_volume(image.id, source, loc.format, req.disk_format))
        return body

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
