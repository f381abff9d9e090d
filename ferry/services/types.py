"""Volume types and their extra specs, as Cinder has them. The scheduler (`domain.scheduling`)
places a type's volumes on the backends that pass its specs: `volume_backend_name`, `capabilities:*`,
`RESKEY:availability_zones`; the default type (`default_volume_type`, Cinder's `__DEFAULT__`) is what
a volume created without a type gets. Sharing private types is `type_access.py`."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import delete, exists, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from ferry.db.models import Volume, VolumeType, VolumeTypeProject
from ferry.domain.errors import BadRequest, Conflict, NotFound
from ferry.domain.ids import new_id
from ferry.services import policy
from ferry.services.context import RequestContext
from ferry.services.queries import get_type
from ferry.services.quotas import forget_type_limits, rename_type_limits
from ferry.services.storage import Backends

USER_VISIBLE_SPECS = frozenset({"multiattach", "RESKEY:availability_zones", "replication_enabled"})
"""The extra specs Cinder shows to non-admins (the rest need `types_extra_specs:read_sensitive`)."""
SPEC_KEY = re.compile(r"^[A-Za-z0-9_.:\-/ ]{1,255}$")
"""Cinder's extra-spec key names: letters, digits and `_ . : - /` (and inner spaces)."""
DEFAULT_TYPE_DESCRIPTION = "Default Volume Type"


def check_specs_input(specs: dict[str, str]) -> None:
    for key, value in specs.items():
        if not SPEC_KEY.match(key) or key != key.strip():
            raise BadRequest(
                f"Invalid input: extra spec key {key[:40]!r}: key names can only contain letters, "
                "digits, underscores, periods, colons, slashes and hyphens (1 to 255 characters)."
            )
        if len(value) > 255:
            raise BadRequest(f"Invalid input: extra spec {key[:40]!r}: values are at most 255 characters.")


class TypeService:
    def __init__(
        self, db: sessionmaker[Session], backends: Backends, default_name: str = "__DEFAULT__"
    ) -> None:
        self.db = db
        self.backends = backends
        self.default_name = default_name

    def ensure_default(self) -> None:
        """Create the default type if it is missing (at start: a new database or an upgraded one)."""
        with self.db() as s:
            if s.scalar(select(VolumeType.id).where(VolumeType.name == self.default_name)):
                return
        try:
            with self.db.begin() as s:
                s.add(
                    VolumeType(
                        id=new_id(),
                        name=self.default_name,
                        description=DEFAULT_TYPE_DESCRIPTION,
                        is_public=True,
                        extra_specs={},
                    )
                )
        except IntegrityError:
            pass  # another process created it first

    def default(self, ctx: RequestContext) -> VolumeType:
        policy.enforce(ctx, "type:get")
        with self.db() as s:
            vt = s.scalar(select(VolumeType).where(VolumeType.name == self.default_name))
            if vt is None:
                raise NotFound("Default volume type can not be found.")
            return vt

    def default_type(self, s: Session) -> VolumeType | None:
        """The default type inside a caller's transaction (volume create)."""
        return s.scalar(select(VolumeType).where(VolumeType.name == self.default_name))

    def list_types(self, ctx: RequestContext, is_public: bool | None = True) -> list[VolumeType]:
        """Cinder's listing: non-admins see the public types and those shared with their project;
        admins choose with `is_public` (True: the same; False: private only; None: all)."""
        policy.enforce(ctx, "type:get")
        if not ctx.is_admin:
            is_public = True
        with self.db() as s:
            stmt = select(VolumeType).order_by(VolumeType.name)
            if is_public is True:
                shared = exists().where(
                    VolumeTypeProject.volume_type_id == VolumeType.id,
                    VolumeTypeProject.project_id == ctx.project_id,
                )
                stmt = stmt.where(or_(VolumeType.is_public.is_(True), shared))
            elif is_public is False:
                stmt = stmt.where(VolumeType.is_public.is_(False))
            return list(s.scalars(stmt))

    def get(self, ctx: RequestContext, ref: str) -> VolumeType:
        policy.enforce(ctx, "type:get")
        with self.db() as s:
            return get_type(s, ref, ctx)

    def create(
        self,
        ctx: RequestContext,
        name: str,
        description: str | None,
        is_public: bool,
        extra_specs: dict[str, str],
    ) -> VolumeType:
        policy.enforce(ctx, "type:manage")
        name = name.strip()
        if not name:
            raise BadRequest("Volume type name can not be empty.")
        check_specs_input(extra_specs)
        self._check_specs(extra_specs)
        try:
            with self.db.begin() as s:
                vt = VolumeType(
                    id=new_id(),
                    name=name,
                    description=description,
                    is_public=is_public,
                    extra_specs=extra_specs,
                )
                s.add(vt)
            return vt
        except IntegrityError:
            raise Conflict(f"Volume Type {name} already exists.") from None

    def update(self, ctx: RequestContext, ref: str, changes: dict[str, Any]) -> VolumeType:
        policy.enforce(ctx, "type:manage")
        if all(v is None for v in changes.values()):
            raise BadRequest("Specify volume type name, description, is_public or a combination thereof.")
        changes = {k: v for k, v in changes.items() if v is not None or k == "description"}
        if "name" in changes:
            changes["name"] = changes["name"].strip()
            if not changes["name"]:
                raise BadRequest("Volume type name can not be empty.")
        try:
            with self.db.begin() as s:
                vt = get_type(s, ref, ctx)
                if "name" in changes and changes["name"] != vt.name:
                    rename_type_limits(s, vt.name, changes["name"])
                for key in ("name", "description", "is_public"):
                    if key in changes:
                        setattr(vt, key, changes[key])
            return vt
        except IntegrityError:
            raise Conflict(f"Volume Type {changes.get('name')} already exists.") from None

    def visible_specs(self, ctx: RequestContext, specs: dict[str, Any] | None) -> dict[str, Any]:
        """The extra specs this caller may read: all for admins, the user-visible ones for others."""
        specs = specs or {}
        if ctx.is_admin:
            return dict(specs)
        return {k: v for k, v in specs.items() if k in USER_VISIBLE_SPECS}

    def specs(self, ctx: RequestContext, ref: str) -> dict[str, Any]:
        return self.visible_specs(ctx, self.get(ctx, ref).extra_specs)

    def spec(self, ctx: RequestContext, ref: str, key: str) -> dict[str, Any]:
        specs = self.specs(ctx, ref)
        if key not in specs:
            raise NotFound(f"Volume Type {ref} has no extra specs with key {key[:255]}.")
        return {key: specs[key]}

    def set_specs(self, ctx: RequestContext, ref: str, specs: dict[str, str]) -> dict[str, str]:
        """Add or change the given keys, keeping the others (Cinder's POST and PUT {key})."""
        policy.enforce(ctx, "type:manage")
        check_specs_input(specs)
        self._check_specs(specs)
        with self.db.begin() as s:
            vt = get_type(s, ref, ctx)
            vt.extra_specs = {**(vt.extra_specs or {}), **specs}
        return specs

    def unset_spec(self, ctx: RequestContext, ref: str, key: str) -> None:
        policy.enforce(ctx, "type:manage")
        with self.db.begin() as s:
            vt = get_type(s, ref, ctx)
            specs = dict(vt.extra_specs or {})
            if key not in specs:
                raise NotFound(f"Volume Type {vt.id} has no extra specs with key {key[:255]}.")
            del specs[key]
            vt.extra_specs = specs

    def encryption(self, ctx: RequestContext, ref: str) -> dict[str, Any]:
        """A type's encryption: Ferry encrypts no volume, so every type answers Cinder's `{}`."""
        self.get(ctx, ref)
        return {}

    def refuse_encryption(self, ctx: RequestContext, ref: str) -> None:
        policy.enforce(ctx, "type:manage")
        self.get(ctx, ref)
        raise BadRequest(
            "Ferry does not offer encrypted volumes: volume types can not be given an encryption."
        )

    def delete(self, ctx: RequestContext, ref: str) -> None:
        """Delete an unused type. The check and the delete are one conditional statement, so a
        volume created in between cannot slip under it; a volume of the type inserted while the
        statement runs (the foreign key refuses the delete) makes it a 409: try again."""
        policy.enforce(ctx, "type:manage")
        try:
            with self.db.begin() as s:
                vt = get_type(s, ref, ctx)
                if vt.name == self.default_name:
                    raise BadRequest("The default volume type can not be deleted.")
                in_use = exists().where(Volume.volume_type_id == vt.id)
                gone = s.execute(delete(VolumeType).where(VolumeType.id == vt.id, ~in_use))
                if not gone.rowcount:  # type: ignore[attr-defined]
                    raise BadRequest(f"Volume type {vt.name} is in use by volumes.")
                forget_type_limits(s, vt.name)
        except IntegrityError:
            raise Conflict(f"Volume type {ref} is being used by a volume just created; try again.") from None

    def _check_specs(self, specs: dict[str, str]) -> None:
        """A plain `volume_backend_name` (no operator) must be one a backend reports: a typo would
        otherwise leave every volume of the type in error."""
        for key in ("volume_backend_name", "capabilities:volume_backend_name"):
            name = specs.get(key)
            if name is None or " " in name.strip():
                continue
            known = self.backends.backend_names()
            if name not in known:
                raise BadRequest(
                    f"No backend reports volume_backend_name {name!r}; known: {', '.join(sorted(known))}."
                )
