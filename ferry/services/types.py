"""Volume types and their extra specs. The scheduler (`domain.scheduling`) places a type's volumes
on the backends that pass its specs: `volume_backend_name`, `capabilities:*`, `RESKEY:availability_zones`."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, exists, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from ferry.db.models import Volume, VolumeType
from ferry.domain.errors import BadRequest, Conflict
from ferry.domain.ids import new_id
from ferry.services import policy
from ferry.services.context import RequestContext
from ferry.services.queries import get_type
from ferry.services.quotas import forget_type_limits, rename_type_limits
from ferry.services.storage import Backends


class TypeService:
    def __init__(self, db: sessionmaker[Session], backends: Backends) -> None:
        self.db = db
        self.backends = backends

    def list_types(self, ctx: RequestContext) -> list[VolumeType]:
        policy.enforce(ctx, "type:get")
        with self.db() as s:
            stmt = select(VolumeType).order_by(VolumeType.name)
            if not ctx.is_admin:
                stmt = stmt.where(VolumeType.is_public.is_(True))
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
        if not name.strip():
            raise BadRequest("Volume type name must not be empty.")
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
            raise Conflict(f"Volume type {name!r} already exists.") from None

    def update(self, ctx: RequestContext, ref: str, changes: dict[str, Any]) -> VolumeType:
        policy.enforce(ctx, "type:manage")
        for key in ("name", "is_public"):
            if key in changes and changes[key] is None:
                raise BadRequest(f"Volume type {key} must not be null.")
        if "name" in changes and not changes["name"].strip():
            raise BadRequest("Volume type name must not be empty.")
        try:
            with self.db.begin() as s:
                vt = get_type(s, ref)
                if "name" in changes and changes["name"] != vt.name:
                    rename_type_limits(s, vt.name, changes["name"])
                for key in ("name", "description", "is_public"):
                    if key in changes:
                        setattr(vt, key, changes[key])
            return vt
        except IntegrityError:
            raise Conflict(f"Volume type {changes.get('name')!r} already exists.") from None

    def specs(self, ctx: RequestContext, ref: str) -> dict[str, Any]:
        """The type's extra specs, which only admins may read."""
        policy.enforce(ctx, "type:manage")
        return self.get(ctx, ref).extra_specs or {}

    def set_specs(self, ctx: RequestContext, ref: str, specs: dict[str, str]) -> dict[str, Any]:
        policy.enforce(ctx, "type:manage")
        self._check_specs(specs)
        with self.db.begin() as s:
            vt = get_type(s, ref)
            vt.extra_specs = {**(vt.extra_specs or {}), **specs}
            return dict(vt.extra_specs)

    def unset_spec(self, ctx: RequestContext, ref: str, key: str) -> None:
        policy.enforce(ctx, "type:manage")
        with self.db.begin() as s:
            vt = get_type(s, ref)
            specs = dict(vt.extra_specs or {})
            if key not in specs:
                raise BadRequest(f"Volume type {vt.name} has no extra spec {key!r}.")
            del specs[key]
            vt.extra_specs = specs

    def delete(self, ctx: RequestContext, ref: str) -> None:
        """Delete an unused type. The check and the delete are one conditional statement, so a
        volume created in between cannot slip under it; a volume of the type inserted while the
        statement runs (the foreign key refuses the delete) makes it a 409: try again."""
        policy.enforce(ctx, "type:manage")
        try:
            with self.db.begin() as s:
                vt = get_type(s, ref)
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
            known = self.backends.backend_names()
            if name is not None and " " not in name.strip() and name not in known:
                raise BadRequest(
                    f"No backend reports volume_backend_name {name!r}; known: {', '.join(sorted(known))}."
                )
