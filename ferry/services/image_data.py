"""An image's data: uploads streamed to disk (hashed on the way, never held whole in memory),
verified with `qemu-img info` against the declared disk format, published atomically; downloads;
volumes published as images (`os-volume_upload_image`); and what a crash leaves mid-upload.

Statuses as Glance: queued → saving → active. A refused or failed upload puts the image back in
`queued` (its data dropped) so that it can be uploaded again, as Glance restores it."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from ferry.db.models import Image
from ferry.db.statements import compare_and_set
from ferry.domain.clock import utcnow
from ferry.domain.errors import BadRequest, Conflict, FerryError, Forbidden
from ferry.domain.images import BOOTABLE_FORMATS, ImageStatus, format_mismatch
from ferry.domain.model import DiskFormat
from ferry.drivers.storage.qemu_img import QemuImg
from ferry.services import policy
from ferry.services.context import RequestContext
from ferry.services.glance import get_owned_image, get_visible

log = logging.getLogger(__name__)

QEMU_FORMATS = {"qcow2": "qcow2", "raw": "raw", "vmdk": "vmdk", "vhd": "vpc", "vhdx": "vhdx", "vdi": "vdi"}
"""Declared formats a volume can be published in, as qemu-img names them."""


@dataclass(frozen=True)
class ImageBytes:
    """What a download streams: the data file (None: the image has no data yet) and its size."""

    path: Path | None
    size: int
    checksum: str | None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class ImageData:
    def __init__(self, db: sessionmaker[Session], images_dir: Path, qemu_img: QemuImg | None = None) -> None:
        self.db = db
        self.dir = images_dir
        self.img = qemu_img or QemuImg()

    def _paths(self, image_id: str) -> tuple[Path, Path]:
        return self.dir / f"{image_id}.part", self.dir / image_id

    async def upload(self, ctx: RequestContext, image_id: str, chunks: AsyncIterator[bytes]) -> None:
        policy.enforce(ctx, "image:upload")
        with self.db.begin() as s:
            img = get_owned_image(s, ctx, image_id)
            if img.status is not ImageStatus.QUEUED:
                raise Conflict(f"Image status transition from {img.status} to saving is not allowed")
            if not img.declared_format or not img.container_format:
                raise BadRequest("Properties disk_format, container_format must be set prior to saving data.")
            declared = img.declared_format
            self._claim(s, image_id)
        part, final = self._paths(image_id)
        try:
            size, md5, sha = await self._receive(part, chunks)
            info = await self._verify(part, declared)
            await self._publish(part, final)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                part.unlink()
            self._release(image_id)
            raise
        self._activate(image_id, final, size, md5, sha, info)

    @staticmethod
    def _claim(s: Session, image_id: str) -> None:
        compare_and_set(
            s,
            update(Image)
            .where(Image.id == image_id, Image.status == ImageStatus.QUEUED)
            .values(status=ImageStatus.SAVING, updated_at=utcnow()),
            f"Image {image_id} is already being uploaded.",
        )

    def _release(self, image_id: str) -> None:
        with self.db.begin() as s:
            s.execute(
                update(Image)
                .where(Image.id == image_id, Image.status == ImageStatus.SAVING)
                .values(status=ImageStatus.QUEUED, updated_at=utcnow())
            )

    async def _receive(self, part: Path, chunks: AsyncIterator[bytes]) -> tuple[int, str, str]:
        """Write the body to `part` as it arrives; its size, md5 and sha512."""
        self.dir.mkdir(parents=True, exist_ok=True)
        md5, sha = hashlib.md5(usedforsecurity=False), hashlib.sha512()
        size = 0
        fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            async for chunk in chunks:
                if not chunk:
                    continue
                md5.update(chunk)
                sha.update(chunk)
                size += len(chunk)
                await asyncio.to_thread(_write_all, fd, chunk)
            await asyncio.to_thread(os.fsync, fd)
        finally:
            os.close(fd)
        return size, md5.hexdigest(), sha.hexdigest()

    async def _verify(self, path: Path, declared: str) -> int:
        """The data's virtual size, once `qemu-img info` agrees it is what it claims."""
        try:
            info = await self.img.probe(path)
        except FerryError:
            raise BadRequest(f"Image data is not a readable {declared} image.") from None
        why = format_mismatch(declared, info.format, bool(info.backing_filename))
        if why is not None:
            raise BadRequest(why)
        return info.virtual_size

    async def _publish(self, part: Path, final: Path) -> None:
        os.replace(part, final)
        dfd = os.open(self.dir, os.O_RDONLY)
        try:
            await asyncio.to_thread(os.fsync, dfd)
        finally:
            os.close(dfd)

    def _activate(self, image_id: str, final: Path, size: int, md5: str, sha: str, virtual: int) -> None:
        with self.db.begin() as s:
            img = s.get(Image, image_id)
            if img is None:
                return
            bootable = BOOTABLE_FORMATS.get(img.declared_format or "")
            s.execute(
                update(Image)
                .where(Image.id == image_id, Image.status == ImageStatus.SAVING)
                .values(
                    status=ImageStatus.ACTIVE,
                    data=str(final),
                    size=size,
                    virtual_size=virtual,
                    checksum=md5,
                    os_hash_algo="sha512",
                    os_hash_value=sha,
                    # A qcow2 or raw image is also a disk a server can boot from.
                    disk=str(final) if bootable else None,
                    disk_format=bootable,
                    updated_at=utcnow(),
                )
            )

    def download(self, ctx: RequestContext, image_id: str) -> ImageBytes:
        policy.enforce(ctx, "image:download")
        with self.db() as s:
            img = get_visible(s, ctx, image_id)
            if img.status is ImageStatus.DEACTIVATED and not ctx.is_admin:
                raise Forbidden("The requested image has been deactivated. Image data download is forbidden.")
            if img.status is not ImageStatus.ACTIVE and img.status is not ImageStatus.DEACTIVATED:
                return ImageBytes(None, 0, None)
            return ImageBytes(Path(img.data) if img.data else None, img.size or 0, img.checksum)

    async def publish_volume(
        self, image_id: str, source: Path, source_fmt: DiskFormat, declared: str
    ) -> None:
        """Convert a volume's chain (its active layer `source`) into the `saving` image's data;
        the image goes active, or back to queued if the copy fails."""
        part, final = self._paths(image_id)
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            target = QEMU_FORMATS[declared]
            await self.img.convert(source, source_fmt, part, target)  # type: ignore[arg-type]
            size, md5, sha = await asyncio.to_thread(_hash_file, part)
            info = await self.img.info(part, target)  # type: ignore[arg-type]
            await self._publish(part, final)
        except BaseException as e:
            log.error("publishing image %s from a volume failed: %s", image_id, e)
            with contextlib.suppress(FileNotFoundError):
                part.unlink()
            self._release(image_id)
            if not isinstance(e, Exception):
                raise
            return
        self._activate(image_id, final, size, md5, sha, info.virtual_size)

    def settle(self) -> list[str]:
        """At start-up: an upload a crash interrupted leaves its image `saving` with a partial
        file; drop the file and put the image back in `queued` (the client uploads again)."""
        with self.db.begin() as s:
            ids = list(s.scalars(select(Image.id).where(Image.status == ImageStatus.SAVING)))
            s.execute(
                update(Image).where(Image.id.in_(ids)).values(status=ImageStatus.QUEUED, updated_at=utcnow())
            )
        for image_id in ids:
            with contextlib.suppress(FileNotFoundError):
                self._paths(image_id)[0].unlink()
        return ids


def _hash_file(path: Path) -> tuple[int, str, str]:
    md5, sha = hashlib.md5(usedforsecurity=False), hashlib.sha512()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            md5.update(chunk)
            sha.update(chunk)
            size += len(chunk)
    return size, md5.hexdigest(), sha.hexdigest()
