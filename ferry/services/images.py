"""Images (what a server boots) and flavors (its size).

An image is a kernel (with an optional initrd and command line) or a bootable disk: files on the
control plane's host, which QEMU opens when a server boots."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from ferry.db.models import Flavor, Image
from ferry.domain.clock import utcnow
from ferry.domain.errors import BadRequest, Conflict, NotFound
from ferry.domain.ids import is_uuid, new_id
from ferry.domain.model import DiskFormat
from ferry.services import policy
from ferry.services.context import RequestContext

TEST_GUEST = "ferry-test-guest"
NAME_MAX = 255


class ImageService:
    def __init__(self, db: sessionmaker[Session]) -> None:
        self.db = db

    def register(
        self,
        ctx: RequestContext,
        name: str,
        *,
        kernel: str | None = None,
        initrd: str | None = None,
        cmdline: str = "",
        disk: str | None = None,
        disk_format: str | None = None,
    ) -> Image:
        """Register an image for the API caller: paths must be absolute (a relative one would be read
        from the server's working directory, which the caller does not know)."""
        policy.enforce(ctx, "image:register")
        for path in (kernel, initrd, disk):
            if path and not Path(path).is_absolute():
                raise BadRequest(f"Image file {path} is not an absolute path.")
        return register_image(
            self.db, name, kernel=kernel, initrd=initrd, cmdline=cmdline, disk=disk, disk_format=disk_format
        )

    def list_images(self, ctx: RequestContext) -> list[Image]:
        policy.enforce(ctx, "image:get")
        with self.db() as s:
            return list(s.scalars(select(Image).order_by(Image.name)))

    def get(self, ctx: RequestContext, ref: str) -> Image:
        policy.enforce(ctx, "image:get")
        with self.db() as s:
            return find_image(s, ref)

    def delete(self, ctx: RequestContext, ref: str) -> None:
        policy.enforce(ctx, "image:manage")
        with self.db.begin() as s:
            s.delete(find_image(s, ref))

    def flavors(self, ctx: RequestContext) -> list[Flavor]:
        policy.enforce(ctx, "flavor:get")
        with self.db() as s:
            return list(s.scalars(select(Flavor).order_by(Flavor.ram_mb)))

    def flavor(self, ctx: RequestContext, ref: str) -> Flavor:
        policy.enforce(ctx, "flavor:get")
        with self.db() as s:
            f = s.get(Flavor, ref) or s.scalar(select(Flavor).where(Flavor.name == ref))
            if f is None:
                raise NotFound(f"Flavor {ref} could not be found.")
            return f


def find_image(s: Session, ref: str) -> Image:
    img = s.get(Image, ref) if is_uuid(ref) else None
    img = img or s.scalar(select(Image).where(Image.name == ref))
    if img is None:
        raise NotFound(f"Image {ref} could not be found.")
    return img


def register_image(
    db: sessionmaker[Session],
    name: str,
    *,
    kernel: str | None = None,
    initrd: str | None = None,
    cmdline: str = "",
    disk: str | None = None,
    disk_format: str | None = None,
) -> Image:
    _check_name(name)
    if bool(kernel) == bool(disk):
        raise BadRequest("Give either a kernel (with an optional initrd) or a disk.")
    for path in (kernel, initrd, disk):
        if path and not _is_regular_file(path):
            raise BadRequest(f"Image file {path} does not exist or is not a regular file.")
    fmt = _disk_format(disk_format, required=bool(disk))
    try:
        with db.begin() as s:
            img = Image(
                id=new_id(),
                name=name,
                kernel=_abs(kernel),
                initrd=_abs(initrd),
                cmdline=cmdline,
                disk=_abs(disk),
                disk_format=fmt,
                created_at=utcnow(),
            )
            s.add(img)
        return img
    except IntegrityError:
        raise Conflict(f"Image {name!r} already exists.") from None


def _check_name(name: str) -> None:
    if not name.strip():
        raise BadRequest("Image name must not be empty.")
    if len(name) > NAME_MAX:
        raise BadRequest(f"Image name must be at most {NAME_MAX} characters.")
    try:
        name.encode()
    except UnicodeEncodeError:  # a lone surrogate: JSON can carry one as a \u escape
        raise BadRequest("Image name must be valid UTF-8.") from None


def _is_regular_file(path: str) -> bool:
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):  # missing, unreadable, name too long, NUL byte
        return False


def _disk_format(given: str | None, *, required: bool) -> DiskFormat | None:
    """The format of a disk image: required with a disk, and always one Ferry knows."""
    if given is None and not required:
        return None
    try:
        return DiskFormat(given or "")
    except ValueError:
        raise BadRequest(f"disk_format must be {' or '.join(DiskFormat)}.") from None


def _abs(path: str | None) -> str | None:
    return str(Path(path).resolve()) if path else None
