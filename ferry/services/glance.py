"""Images as Glance v2 serves them: who sees which (visibility), list with Glance's filters and
pagination, create, JSON-patch, delete, deactivate/reactivate. The image data (upload, download,
verification) is `services/image_data.py`; what a volume keeps of its image is `volume_images.py`.

One image concept: the rows the operator registers (`services/images.py`, owner None, public,
active) are Glance images too, beside the ones projects create and upload."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from ferry.db.models import Image, Server
from ferry.domain.clock import utcnow
from ferry.domain.errors import BadRequest, Conflict, Forbidden, NotFound
from ferry.domain.ids import is_uuid, new_id
from ferry.domain.images import (
    CONTAINER_FORMATS,
    CORE_FIELDS,
    DISK_FORMATS,
    PROPERTY_MAX,
    READ_ONLY,
    ImageStatus,
    Visibility,
)
from ferry.services import policy
from ferry.services.context import RequestContext

LIMIT_DEFAULT, LIMIT_MAX = 25, 1000
SORT_KEYS = frozenset(
    {"name", "status", "container_format", "disk_format", "size", "id", "created_at", "updated_at",
     "min_disk", "min_ram", "visibility", "owner", "virtual_size"}
)  # fmt: skip
FILTERS = ("name", "status", "visibility", "owner", "disk_format", "container_format", "id")
SETTABLE = (
    "name",
    "visibility",
    "protected",
    "min_disk",
    "min_ram",
    "disk_format",
    "container_format",
    "tags",
)


def visible(ctx: RequestContext, img: Image) -> bool:
    """Glance's visibility: public and community images to everyone, private and shared ones to
    their owner's project (Ferry keeps no member lists: a shared image is its owner's), all to admins."""
    if ctx.is_admin or img.visibility in (Visibility.PUBLIC, Visibility.COMMUNITY):
        return True
    return img.owner is not None and img.owner == ctx.project_id


def get_visible(s: Session, ctx: RequestContext, image_id: str) -> Image:
    img = s.get(Image, image_id) if is_uuid(image_id) else None
    if img is None or not visible(ctx, img):
        raise NotFound(f"No image found with ID {image_id}")
    return img


def owned(ctx: RequestContext, img: Image) -> bool:
    """Whether the caller may change the image: admins any, members their project's."""
    return ctx.is_admin or (img.owner is not None and img.owner == ctx.project_id)


def get_owned_image(s: Session, ctx: RequestContext, image_id: str) -> Image:
    img = get_visible(s, ctx, image_id)
    if not owned(ctx, img):
        raise Forbidden(f"You are not permitted to modify image {image_id}.")
    return img


@dataclass
class ImageFilter:
    params: dict[str, str]


class GlanceService:
    def __init__(self, db: sessionmaker[Session], images_dir: Path) -> None:
        self.db = db
        self.images_dir = images_dir

    # -- read ----------------------------------------------------------------------------------
    def get(self, ctx: RequestContext, image_id: str) -> Image:
        policy.enforce(ctx, "image:get")
        with self.db() as s:
            return get_visible(s, ctx, image_id)

    def list_images(self, ctx: RequestContext, params: dict[str, str]) -> tuple[list[Image], bool]:
        """A page of the images the caller sees, and whether a next page may follow."""
        policy.enforce(ctx, "image:get")
        limit = _int_param(params, "limit", LIMIT_DEFAULT, 0)
        limit = min(limit, LIMIT_MAX)
        keys = [k.strip() for k in params.get("sort_key", "created_at").split(",")]
        dirs = [d.strip() for d in params.get("sort_dir", "desc").split(",")]
        if "sort" in params:
            keys, dirs = [], []
            for part in params["sort"].split(","):
                k, _, d = part.strip().partition(":")
                keys.append(k)
                dirs.append(d or "desc")
        for k in keys:
            if k not in SORT_KEYS:
                raise BadRequest(f"Invalid sort key: {k}. It is not in the list of supported sort keys.")
        for d in dirs:
            if d not in ("asc", "desc"):
                raise BadRequest(f"Invalid sort direction: {d}")
        if len(dirs) not in (1, len(keys)):
            raise BadRequest("Number of sort dirs does not match the number of sort keys")
        wanted = params.get("visibility")
        if wanted is not None and wanted not in (*Visibility, "all"):
            raise BadRequest(f"Invalid visibility value: {wanted}")
        with self.db() as s:
            rows = [i for i in s.scalars(select(Image)) if visible(ctx, i)]
        rows = [i for i in rows if _matches(ctx, i, params)]
        for k, d in reversed(list(zip(keys, dirs * len(keys) if len(dirs) == 1 else dirs, strict=False))):
            rows.sort(key=partial(_sort_value, key=k), reverse=d == "desc")
        marker = params.get("marker")
        if marker is not None:
            at = next((n for n, i in enumerate(rows) if i.id == marker), None)
            if at is None:
                raise BadRequest(f"Invalid marker. Image {marker} could not be found.")
            rows = rows[at + 1 :]
        return rows[:limit], len(rows) > limit or (limit > 0 and len(rows) == limit)

    # -- create and change ---------------------------------------------------------------------
    def create(self, ctx: RequestContext, body: dict[str, Any]) -> Image:
        policy.enforce(ctx, "image:create")
        for key in body:
            if key in READ_ONLY and key != "id":
                raise Forbidden(f"Attribute '{key}' is read-only.")
        image_id = body.get("id") or new_id()
        if not is_uuid(image_id):
            raise BadRequest(f"Invalid image id {image_id!r}: it must be a UUID.")
        now = utcnow()
        img = Image(
            id=image_id, name=None, cmdline="", created_at=now, updated_at=now, owner=ctx.project_id,
            status=ImageStatus.QUEUED, visibility=Visibility.SHARED, min_disk=0, min_ram=0,
            protected=False, properties={}, tags=[],
        )  # fmt: skip
        _apply(ctx, img, {k: v for k, v in body.items() if k != "id"})
        try:
            with self.db.begin() as s:
                s.add(img)
        except IntegrityError:
            raise Conflict(
                f"An image with identifier {image_id} or name {img.name!r} already exists."
            ) from None
        return img

    def patch(self, ctx: RequestContext, image_id: str, changes: list[tuple[str, str, Any]]) -> Image:
        """Apply (op, field, value) changes: op add/replace set the field, remove unsets it."""
        policy.enforce(ctx, "image:modify")
        try:
            with self.db.begin() as s:
                img = get_owned_image(s, ctx, image_id)
                for op, name, value in changes:
                    if name in READ_ONLY:
                        raise Forbidden(f"Attribute '{name}' is read-only.")
                    if name in ("disk_format", "container_format") and img.status is not ImageStatus.QUEUED:
                        raise Forbidden(f"Attribute {name} can be only replaced for a queued image.")
                    if op == "remove":
                        _remove(img, name)
                    else:
                        if op == "add" and name in CORE_FIELDS and name not in SETTABLE:
                            raise Forbidden(f"Attribute '{name}' is reserved.")
                        _apply(ctx, img, {name: value}, replacing=op == "replace")
                img.updated_at = utcnow()
                return img
        except IntegrityError:
            raise Conflict("An image with that name already exists.") from None

    def delete(self, ctx: RequestContext, image_id: str) -> None:
        policy.enforce(ctx, "image:delete")
        with self.db.begin() as s:
            img = get_owned_image(s, ctx, image_id)
            if img.protected:
                raise Forbidden(f"Image {image_id} is protected and cannot be deleted.")
            if img.status is ImageStatus.SAVING:
                raise Conflict(f"Image {image_id} is being uploaded; delete it when the upload ends.")
            booted = s.scalar(select(Server.id).where(Server.image_id == img.id).limit(1))
            if booted is not None:
                raise Conflict(f"Image {image_id} is in use by server {booted}: delete the server first.")
            data = img.data
            s.delete(img)
        if data and Path(data).parent == self.images_dir:  # never a file the operator registered
            with contextlib.suppress(FileNotFoundError):
                os.unlink(data)

    def set_active(self, ctx: RequestContext, image_id: str, active: bool) -> None:
        """Deactivate (active → deactivated) or reactivate; repeating either is a no-op as in Glance."""
        policy.enforce(ctx, "image:deactivate")
        with self.db.begin() as s:
            img = get_owned_image(s, ctx, image_id)
            frm, to = (
                (ImageStatus.DEACTIVATED, ImageStatus.ACTIVE)
                if active
                else (ImageStatus.ACTIVE, ImageStatus.DEACTIVATED)
            )
            if img.status is to:
                return
            if img.status is not frm:
                verb = "reactivate" if active else "deactivate"
                raise Forbidden(f"Not allowed to {verb} image in status '{img.status}'")
            s.execute(
                update(Image)
                .where(Image.id == img.id, Image.status == frm)
                .values(status=to, updated_at=utcnow())
            )


def _int_param(params: dict[str, str], name: str, default: int, low: int) -> int:
    raw = params.get(name)
    if raw is None:
        return default
    if not raw.lstrip("-").isdigit() or len(raw) > 19 or int(raw) < low:
        raise BadRequest(f"{name} param must be an integer >= {low}")
    return int(raw)


def field_of(img: Image, name: str) -> Any:
    """A Glance field of the row (its declared disk format is Glance's `disk_format`)."""
    return img.declared_format if name == "disk_format" else getattr(img, name)


def _sort_value(img: Image, key: str) -> tuple[bool, Any]:
    value = field_of(img, key)
    return (value is not None, value if value is not None else "")


def _matches(ctx: RequestContext, img: Image, params: dict[str, str]) -> bool:
    for name in FILTERS:
        want = params.get(name)
        if want is None or (name == "visibility" and want == "all"):
            continue
        if name == "status" and want not in tuple(ImageStatus):
            return False
        value = field_of(img, name)
        if str(value.value if hasattr(value, "value") else value) != want:
            return False
    if "visibility" not in params and img.visibility is Visibility.COMMUNITY and img.owner != ctx.project_id:
        return False  # as Glance: community images are listed when asked for, or by their owner
    if params.get("os_hidden", "false").lower() == "true":
        return False  # Ferry hides no image (`os_hidden` is always false)
    tag = params.get("tag")
    if tag is not None and tag not in (img.tags or []):
        return False
    size = img.size if img.size is not None else -1
    low = _int_param(params, "size_min", 0, 0)
    high = _int_param(params, "size_max", 2**63 - 1, 0)
    return ("size_min" not in params and "size_max" not in params) or low <= size <= high


def _apply(ctx: RequestContext, img: Image, values: dict[str, Any], replacing: bool = False) -> None:
    for name, value in values.items():
        if name in READ_ONLY:
            raise Forbidden(f"Attribute '{name}' is read-only.")
        if name == "name":
            if value is not None and (not isinstance(value, str) or len(value) > 255):
                raise BadRequest("Invalid value for name: a string of at most 255 characters, or null.")
            img.name = value
        elif name == "visibility":
            if value not in tuple(Visibility):
                raise BadRequest(f"Invalid visibility value: {value}")
            if value == Visibility.PUBLIC and not ctx.is_admin:
                raise Forbidden("You are not authorized to complete publicize_image action.")
            img.visibility = Visibility(value)
        elif name == "protected":
            if not isinstance(value, bool):
                raise BadRequest("Invalid value for protected: it must be a boolean.")
            img.protected = value
        elif name in ("min_disk", "min_ram"):
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**31:
                raise BadRequest(f"Invalid value for {name}: a non-negative integer.")
            setattr(img, name, value)
        elif name == "disk_format":
            if value is not None and value not in DISK_FORMATS:
                raise BadRequest(f"Invalid disk format '{value}': use one of {', '.join(DISK_FORMATS)}.")
            img.declared_format = value
        elif name == "container_format":
            if value is not None and value not in CONTAINER_FORMATS:
                raise BadRequest(
                    f"Invalid container format '{value}': use one of {', '.join(CONTAINER_FORMATS)}."
                )
            img.container_format = value
        elif name == "tags":
            if not isinstance(value, list) or not all(
                isinstance(t, str) and 0 < len(t) <= 255 for t in value
            ):
                raise BadRequest("Invalid value for tags: a list of strings of at most 255 characters.")
            img.tags = list(dict.fromkeys(value))
        elif name in CORE_FIELDS:
            continue  # os_hidden and the like: accepted, not kept
        else:
            _set_property(img, name, value, replacing)


def _set_property(img: Image, name: str, value: Any, replacing: bool) -> None:
    if not name or len(name) > PROPERTY_MAX or "/" in name:
        raise BadRequest(f"Invalid property name {name[:40]!r}.")
    if value is not None and not isinstance(value, str):
        raise BadRequest(f"Invalid value for property {name!r}: it must be a string.")
    if isinstance(value, str) and len(value) > PROPERTY_MAX:
        raise BadRequest(f"Property {name!r} is longer than {PROPERTY_MAX} characters.")
    props = dict(img.properties or {})
    if replacing and name not in props:
        raise Conflict(f"Property {name} does not exist.")
    props[name] = value
    img.properties = props


def _remove(img: Image, name: str) -> None:
    if name in ("name", "disk_format", "container_format"):
        setattr(img, "declared_format" if name == "disk_format" else name, None)
        return
    if name in CORE_FIELDS:
        raise Forbidden(f"Attribute '{name}' cannot be removed.")
    props = dict(img.properties or {})
    if name not in props:
        raise Conflict(f"Property {name} does not exist.")
    del props[name]
    img.properties = props
