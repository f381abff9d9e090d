"""Images (what a server boots) and flavors (its size).

An image is a kernel (with an optional initrd and command line) or a bootable disk: files on the
control plane's host, which QEMU opens when a server boots. A registered image is also a public,
active Glance image (`services/glance.py`): a disk one with its own data; a kernel one as Glance
keeps an Amazon-style image, with its kernel and initrd registered as `aki`/`ari` images of their
own that its `kernel_id`/`ramdisk_id` properties name (its data, what a volume created from it
holds, is the initrd: the test guest's root filesystem)."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from ferry.db.models import Image
from ferry.domain.clock import utcnow
from ferry.domain.errors import BadRequest, Conflict, NotFound
from ferry.domain.ids import is_uuid, new_id
from ferry.domain.images import ImageStatus, Visibility
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
            return [i for i in s.scalars(select(Image).order_by(Image.name)) if _sees(ctx, i)]

    def get(self, ctx: RequestContext, ref: str) -> Image:
        policy.enforce(ctx, "image:get")
        with self.db() as s:
            return find_image(s, ref, ctx)

    def delete(self, ctx: RequestContext, ref: str) -> None:
        policy.enforce(ctx, "image:manage")
        with self.db.begin() as s:
            s.delete(find_image(s, ref))


def find_image(s: Session, ref: str, ctx: RequestContext | None = None) -> Image:
    """The image by id or name; with `ctx`, only one the caller sees (Glance's visibility)."""
    img = s.get(Image, ref) if is_uuid(ref) else None
    img = img or s.scalar(select(Image).where(Image.name == ref))
    if img is None or (ctx is not None and not _sees(ctx, img)):
        raise NotFound(f"Image {ref} could not be found.")
    return img


def bootable(img: Image) -> str | None:
    """Why a server cannot boot the image (None: it can)."""
    if img.status is not ImageStatus.ACTIVE:
        return f"Image {img.id} is {img.status}, not active."
    if not img.kernel and not img.disk:
        return f"Image {img.id} ({img.declared_format}) is neither a kernel nor a bootable disk."
    return None


def _sees(ctx: RequestContext, img: Image) -> bool:
    if ctx.is_admin or img.visibility in (Visibility.PUBLIC, Visibility.COMMUNITY):
        return True
    return img.owner is not None and img.owner == ctx.project_id


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
    now = utcnow()
    try:
        with db.begin() as s:
            props: dict[str, str] = {}
            if kernel:
                props["kernel_id"] = _part(s, f"{name}-kernel", kernel, "aki", now).id
            if initrd:
                props["ramdisk_id"] = _part(s, f"{name}-ramdisk", initrd, "ari", now).id
            data = _abs(disk) or _abs(initrd) or _abs(kernel)
            img = Image(
                id=new_id(),
                name=name,
                kernel=_abs(kernel),
                initrd=_abs(initrd),
                cmdline=cmdline,
                disk=_abs(disk),
                disk_format=fmt,
                created_at=now,
                updated_at=now,
                declared_format=fmt.value if fmt else "ami",
                container_format="bare" if fmt else "ami",
                properties=props,
                **_glance_data(data, fmt),
            )
            s.add(img)
        return img
    except IntegrityError:
        raise Conflict(f"Image {name!r} already exists.") from None


def _part(s: Session, name: str, path: str, kind: str, now: object) -> Image:
    """A kernel or initrd as a Glance image of its own (`aki`, `ari`)."""
    img = Image(
        id=new_id(),
        name=name,
        cmdline="",
        created_at=now,
        updated_at=now,
        declared_format=kind,
        container_format=kind,
        properties={},
        **_glance_data(_abs(path), None),
    )
    s.add(img)
    return img


def _glance_data(path: str | None, fmt: DiskFormat | None) -> dict[str, object]:
    """The Glance fields of a registered file: public, active, its size, hashes, virtual size."""
    out: dict[str, object] = {
        "status": ImageStatus.ACTIVE,
        "visibility": Visibility.PUBLIC,
        "owner": None,
        "min_disk": 0,
        "min_ram": 0,
        "protected": False,
        "tags": [],
        "data": path,
    }
    if path is None:
        return out
    md5, sha = hashlib.md5(usedforsecurity=False), hashlib.sha512()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            md5.update(chunk)
            sha.update(chunk)
            size += len(chunk)
    virtual = size
    if fmt is DiskFormat.QCOW2:
        virtual = _qcow2_virtual_size(path)
    out.update(
        size=size,
        virtual_size=virtual,
        checksum=md5.hexdigest(),
        os_hash_algo="sha512",
        os_hash_value=sha.hexdigest(),
    )
    return out


def _qcow2_virtual_size(path: str) -> int:
    try:
        out = subprocess.run(
            ["qemu-img", "info", "--output=json", "-U", "-f", "qcow2", path],
            capture_output=True,
            check=True,
            timeout=60,
        ).stdout
        return int(json.loads(out)["virtual-size"])
    except (OSError, subprocess.SubprocessError, ValueError, KeyError):
        raise BadRequest(f"Image file {path} is not a readable qcow2 image.") from None


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
