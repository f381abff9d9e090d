"""Flavor use cases (Nova's flavors, os-flavor-access, os-extra_specs): list and show what the caller
may see, and the admin's create, describe, delete, access grants and extra specs.

A private flavor is seen, and booted, only by the projects granted it and by admins. A flavor
that servers still use is not deleted (409): a server's row refers to its flavor, where Nova
copies the flavor into the instance.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import delete, exists, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.elements import ColumnElement

from ferry.db.models import Flavor, FlavorProject, Server
from ferry.domain.errors import BadRequest, Conflict, NotFound
from ferry.domain.ids import new_id
from ferry.services import policy
from ferry.services.context import RequestContext


@dataclass(frozen=True)
class FlavorSpec:
    """What an admin's create names (validated at the edge)."""

    name: str
    ram_mb: int
    vcpus: int
    disk_gib: int
    flavor_id: str | None = None
    ephemeral_gib: int = 0
    swap_mb: int = 0
    rxtx_factor: float = 1.0
    is_public: bool = True
    description: str | None = None


@dataclass(frozen=True)
class FlavorFilter:
    min_ram: int | None = None
    min_disk: int | None = None
    limit: int | None = None
    marker: str | None = None


NO_FILTER = FlavorFilter()
MAX_PAGE = 1000


@dataclass(frozen=True)
class FlavorPage:
    flavors: list[Flavor]
    more: bool
    """Whether flavors follow the page (Nova's `flavors_links`)."""


def check_fits(flavor: Flavor, min_ram: int, min_disk: int) -> None:
    """Nova's create checks of a flavor against its image's minimums (400); a flavor of disk 0
    takes the image's size, so only its memory is checked."""
    if flavor.ram_mb < min_ram:
        raise BadRequest("Flavor's memory is too small for requested image.")
    if flavor.disk_gib and flavor.disk_gib < min_disk:
        raise BadRequest("Flavor's disk is too small for requested image.")


def _visible(ctx: RequestContext) -> ColumnElement[bool]:
    granted = exists().where(FlavorProject.flavor_id == Flavor.id, FlavorProject.project_id == ctx.project_id)
    return or_(Flavor.is_public.is_(True), granted)


def find_flavor(s: Session, ctx: RequestContext, ref: str) -> Flavor:
    """The flavor by id (or, Ferry's convenience, by name) if the caller may see it."""
    f = s.get(Flavor, ref) or s.scalar(select(Flavor).where(Flavor.name == ref))
    if f is None or not (ctx.is_admin or s.scalar(select(_visible(ctx)).where(Flavor.id == f.id))):
        raise NotFound(f"Flavor {ref} could not be found.")
    return f


class FlavorService:
    def __init__(self, db: sessionmaker[Session]) -> None:
        self.db = db

    # -- reading -----------------------------------------------------------------------------------
    def list_flavors(
        self, ctx: RequestContext, is_public: bool | None = True, where: FlavorFilter = NO_FILTER
    ) -> FlavorPage:
        """As Nova: members see public flavors and those granted to their project; an admin by
        default the same, with `is_public=false` only private ones, with `None` all. Then
        Nova's `minRam`/`minDisk` filters and a page after `marker` (a flavor id)."""
        policy.enforce(ctx, "flavor:get")
        stmt = select(Flavor).order_by(Flavor.ram_mb, Flavor.id)
        if not ctx.is_admin or is_public is True:
            stmt = stmt.where(_visible(ctx))
        elif is_public is False:
            stmt = stmt.where(Flavor.is_public.is_(False))
        if where.min_ram is not None:
            stmt = stmt.where(Flavor.ram_mb >= where.min_ram)
        if where.min_disk is not None:
            stmt = stmt.where(Flavor.disk_gib >= where.min_disk)
        with self.db() as s:
            found = list(s.scalars(stmt))
        if where.marker is not None:
            ids = [f.id for f in found]
            if where.marker not in ids:
                raise BadRequest(f"marker [{where.marker}] not found")
            found = found[ids.index(where.marker) + 1 :]
        limit = min(where.limit, MAX_PAGE) if where.limit is not None else MAX_PAGE
        return FlavorPage(found[:limit], more=len(found) > limit)

    def get(self, ctx: RequestContext, ref: str) -> Flavor:
        policy.enforce(ctx, "flavor:get")
        with self.db() as s:
            return find_flavor(s, ctx, ref)

    # -- an admin's ------------------------------------------------------------------------------
    def create(self, ctx: RequestContext, spec: FlavorSpec) -> Flavor:
        policy.enforce(ctx, "flavor:manage")
        fid = spec.flavor_id or new_id()
        try:
            with self.db.begin() as s:
                if s.get(Flavor, fid) is not None:
                    raise Conflict(f"Flavor with ID {fid} already exists.")
                if s.scalar(select(Flavor.id).where(Flavor.name == spec.name)) is not None:
                    raise Conflict(f"Flavor with name {spec.name} already exists.")
                flavor = Flavor(
                    id=fid, name=spec.name, vcpus=spec.vcpus, ram_mb=spec.ram_mb, disk_gib=spec.disk_gib,
                    ephemeral_gib=spec.ephemeral_gib, swap_mb=spec.swap_mb, rxtx_factor=spec.rxtx_factor,
                    is_public=spec.is_public, description=spec.description, extra_specs={},
                )  # fmt: skip
                s.add(flavor)
        except IntegrityError:  # a racing create of the same id or name
            raise Conflict(f"Flavor with name {spec.name} or ID {fid} already exists.") from None
        return flavor

    def describe(self, ctx: RequestContext, flavor_id: str, description: str | None) -> Flavor:
        """Nova's 2.55 flavor update: only the description changes."""
        policy.enforce(ctx, "flavor:manage")
        with self.db.begin() as s:
            flavor = self._by_id(s, flavor_id)
            flavor.description = description
        return flavor

    def delete(self, ctx: RequestContext, flavor_id: str) -> None:
        policy.enforce(ctx, "flavor:manage")
        with self.db.begin() as s:
            flavor = self._by_id(s, flavor_id)
            used = s.scalar(select(func.count()).select_from(Server).where(Server.flavor_id == flavor.id))
            if used:
                raise Conflict(f"Flavor {flavor_id} is used by {used} server(s): delete them first.")
            s.execute(delete(FlavorProject).where(FlavorProject.flavor_id == flavor.id))
            s.delete(flavor)

    @staticmethod
    def _by_id(s: Session, flavor_id: str) -> Flavor:
        flavor = s.get(Flavor, flavor_id)
        if flavor is None:
            raise NotFound(f"Flavor {flavor_id} could not be found.")
        return flavor

    # -- os-flavor-access --------------------------------------------------------------------------
    def access(self, ctx: RequestContext, flavor_id: str) -> list[str]:
        policy.enforce(ctx, "flavor:manage")
        with self.db() as s:
            flavor = self._by_id(s, flavor_id)
            if flavor.is_public:
                raise NotFound("Access list not available for public flavors.")
            return self._projects(s, flavor_id)

    @staticmethod
    def _projects(s: Session, flavor_id: str) -> list[str]:
        rows = select(FlavorProject.project_id).where(FlavorProject.flavor_id == flavor_id)
        return list(s.scalars(rows.order_by(FlavorProject.project_id)))

    def grant(self, ctx: RequestContext, flavor_id: str, project_id: str) -> list[str]:
        policy.enforce(ctx, "flavor:manage")
        exists_already = Conflict(
            f"Flavor access already exists for flavor {flavor_id} and project {project_id} combination."
        )
        try:
            with self.db.begin() as s:
                flavor = self._by_id(s, flavor_id)
                if flavor.is_public:
                    raise Conflict("Can not add access to a public flavor.")
                if s.get(FlavorProject, (flavor_id, project_id)) is not None:
                    raise exists_already
                s.add(FlavorProject(flavor_id=flavor_id, project_id=project_id))
        except IntegrityError:  # a racing grant of the same pair
            raise exists_already from None
        with self.db() as s:
            return self._projects(s, flavor_id)

    def revoke(self, ctx: RequestContext, flavor_id: str, project_id: str) -> list[str]:
        policy.enforce(ctx, "flavor:manage")
        with self.db.begin() as s:
            self._by_id(s, flavor_id)
            gone = s.execute(
                delete(FlavorProject).where(
                    FlavorProject.flavor_id == flavor_id, FlavorProject.project_id == project_id
                )
            )
            if not gone.rowcount:  # type: ignore[attr-defined]
                raise NotFound(f"Flavor access not found for {flavor_id} / {project_id} combination.")
            return self._projects(s, flavor_id)

    # -- os-extra_specs ----------------------------------------------------------------------------
    def extra_specs(self, ctx: RequestContext, flavor_id: str) -> dict[str, str]:
        return dict(self.get(ctx, flavor_id).extra_specs)

    def set_extra_specs(
        self, ctx: RequestContext, flavor_id: str, specs: Mapping[str, str]
    ) -> dict[str, str]:
        policy.enforce(ctx, "flavor:manage")
        with self.db.begin() as s:
            flavor = self._by_id(s, flavor_id)
            flavor.extra_specs = {**flavor.extra_specs, **specs}
        return dict(specs)

    def unset_extra_spec(self, ctx: RequestContext, flavor_id: str, key: str) -> None:
        policy.enforce(ctx, "flavor:manage")
        with self.db.begin() as s:
            flavor = self._by_id(s, flavor_id)
            if key not in flavor.extra_specs:
                raise NotFound(f"Flavor {flavor_id} has no extra specs with key {key}.")
            flavor.extra_specs = {k: v for k, v in flavor.extra_specs.items() if k != key}
