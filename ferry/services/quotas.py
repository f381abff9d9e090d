"""Quota use cases: show, set and reset a project's limits and the `default` class's, the absolute
limits view, and `claim`: the check other services run inside the transaction that takes the
resource, so that concurrent creates of one project cannot overshoot.

Race safety: usage is counted from the volume and snapshot rows, never kept in counters that could
drift. A claim first bumps the project's `quota_claim_locks` row (inserted on first use), which
serializes the claims of one project until their transactions end: on PostgreSQL the UPDATE holds
the row lock and, at READ COMMITTED, every later statement of the transaction sees the rows the
previous claimer committed; on SQLite the UPDATE is the transaction's first write, so it takes the
database's write lock and reads the newest snapshot. The count and the INSERT of the new row then
happen under that lock, and a second claimer counts the first one's row.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, sessionmaker

from ferry.config import QuotasConfig
from ferry.db.models import Migration, Project, QuotaClaimLock, QuotaLimit, Snapshot, Volume, VolumeType
from ferry.db.statements import updated_one
from ferry.domain.compute_quotas import COMPUTE_KEYS
from ferry.domain.errors import BadRequest, Forbidden, NotFound
from ferry.domain.migration import ACTIVE
from ferry.domain.quotas import (
    DEFAULT_CLASS,
    GIGABYTES,
    LIMIT_ONLY,
    SNAPSHOTS,
    TYPE_PARTS,
    UNLIMITED,
    VOLUMES,
    Counts,
    ResourceSet,
    absolute_limits,
    check_claim,
    check_not_below_usage,
    check_volume_size,
    effective_limits,
    parse_quota_set,
    per_type,
    volume_deltas,
)
from ferry.services import policy
from ferry.services.context import RequestContext

MAX_CLASS_NAME = 255


def quota_class_name(name: str) -> str:
    """A quota class's name as both APIs take it (Cinder's and Nova's os-quota-class-sets)."""
    if not 1 <= len(name) <= MAX_CLASS_NAME:
        raise BadRequest(f"Invalid input: quota_class_name must be 1 to {MAX_CLASS_NAME} characters.")
    return name


def lock_project(s: Session, project_id: str) -> None:
    """Serialize this transaction's quota claim with every other one of the project (see above)."""
    bump = (
        update(QuotaClaimLock)
        .where(QuotaClaimLock.project_id == project_id)
        .values(claims=QuotaClaimLock.claims + 1)
    )
    if updated_one(s, bump):
        return
    insert = pg_insert if s.get_bind().dialect.name == "postgresql" else sqlite_insert
    s.execute(insert(QuotaClaimLock).values(project_id=project_id, claims=0).on_conflict_do_nothing())
    s.execute(bump)  # a racing first claimer inserted it: wait for its lock like any other claim


def _type_names(s: Session) -> dict[str, str]:
    return {row.id: row.name for row in s.execute(select(VolumeType.id, VolumeType.name))}


def usage(s: Session, project_id: str, type_names: Mapping[str, str]) -> dict[str, int]:
    """What the project holds, per resource: every volume row (whatever its status, until it is
    deleted) and every snapshot row; gigabytes count both, as Cinder does by default. A volume
    being extended counts at its target size; one being retyped by a migration counts under its
    new type too until the migration ends (Cinder reserves the new type at the request)."""
    used: dict[str, int] = {}

    def add(name: str, value: int) -> None:
        used[name] = used.get(name, 0) + int(value or 0)

    def add_typed(type_id: str | None, part: str, value: int) -> None:
        add(part, value)
        if type_id is not None and type_id in type_names:
            add(per_type(part, type_names[type_id]), value)

    size = func.coalesce(Volume.target_size_gib, Volume.size_gib)
    volumes = (
        select(Volume.volume_type_id, func.count(), func.sum(size))
        .where(Volume.project_id == project_id)
        .group_by(Volume.volume_type_id)
    )
    for type_id, count, gib in s.execute(volumes):
        add_typed(type_id, VOLUMES, count)
        add_typed(type_id, GIGABYTES, gib)
    snapshots = (
        select(Volume.volume_type_id, func.count(), func.sum(Snapshot.size_gib))
        .join(Volume, Volume.id == Snapshot.volume_id)
        .where(Snapshot.project_id == project_id)
        .group_by(Volume.volume_type_id)
    )
    for type_id, count, gib in s.execute(snapshots):
        add_typed(type_id, SNAPSHOTS, count)
        add_typed(type_id, GIGABYTES, gib)
    retyping = (
        select(Migration.new_type_id, func.count(), func.sum(Volume.size_gib))
        .join(Volume, Volume.id == Migration.volume_id)
        .where(Volume.project_id == project_id, Migration.status.in_(ACTIVE))
        .where(Migration.new_type_id.is_not(None), Migration.new_type_id != Volume.volume_type_id)
        .group_by(Migration.new_type_id)
    )
    for type_id, count, gib in s.execute(retyping):
        if type_id is not None and type_id in type_names:
            add(per_type(VOLUMES, type_names[type_id]), count)
            add(per_type(GIGABYTES, type_names[type_id]), gib)
    return used


def overrides(s: Session, is_class: bool, scope: str) -> dict[str, int]:
    """The limits an admin set for this project (or class), of every service (volume and compute
    keys never share a name)."""
    rows = select(QuotaLimit.resource, QuotaLimit.hard_limit).where(
        QuotaLimit.is_class.is_(is_class), QuotaLimit.scope == scope
    )
    return {row.resource: row.hard_limit for row in s.execute(rows)}


def store_limits(s: Session, is_class: bool, scope: str, limits: Mapping[str, int]) -> None:
    if not limits:
        return
    s.execute(
        delete(QuotaLimit).where(
            QuotaLimit.is_class.is_(is_class), QuotaLimit.scope == scope, QuotaLimit.resource.in_(limits)
        )
    )
    s.add_all(QuotaLimit(is_class=is_class, scope=scope, resource=k, hard_limit=v) for k, v in limits.items())


def forget_limits(s: Session, project_id: str, *, compute: bool) -> None:
    """Drop a project's own limits of one service (Cinder's or Nova's quota-set DELETE)."""
    of_compute = QuotaLimit.resource.in_(COMPUTE_KEYS)
    s.execute(
        delete(QuotaLimit).where(
            QuotaLimit.is_class.is_(False),
            QuotaLimit.scope == project_id,
            of_compute if compute else ~of_compute,
        )
    )


def rename_type_limits(s: Session, old: str, new: str) -> None:
    """A renamed type keeps its per-type limits (Cinder's `update_quota_resource`)."""
    for part in TYPE_PARTS:
        s.execute(
            update(QuotaLimit)
            .where(QuotaLimit.resource == per_type(part, old))
            .values(resource=per_type(part, new))
        )


def forget_type_limits(s: Session, name: str) -> None:
    """A deleted type's limits go with it: a new type of the same name starts from -1."""
    s.execute(delete(QuotaLimit).where(QuotaLimit.resource.in_([per_type(p, name) for p in TYPE_PARTS])))


class QuotaService:
    def __init__(self, db: sessionmaker[Session], config: QuotasConfig) -> None:
        self.db = db
        self.config = config

    # -- the engine other services call, inside their own transaction -------------------------------
    def resources(self, s: Session) -> ResourceSet:
        return ResourceSet.volumes(self.config.defaults(), _type_names(s).values())

    def limits(self, s: Session, project_id: str) -> dict[str, int]:
        resources = self.resources(s)
        classes = overrides(s, True, DEFAULT_CLASS)
        return effective_limits(resources, classes, overrides(s, False, project_id))

    def claim(self, s: Session, project_id: str, deltas: Counts, *, volume_size: int | None = None) -> None:
        """Refuse (413) a request that would take the project past a limit; else return, holding
        the project's claim lock until the caller's transaction ends. The caller inserts or
        updates the rows the claim is for in the same transaction."""
        lock_project(s, project_id)
        limits = self.limits(s, project_id)
        if volume_size is not None:
            check_volume_size(limits, volume_size)
        if any(limits.get(k, UNLIMITED) != UNLIMITED for k, d in deltas.items() if d > 0):
            check_claim(limits, usage(s, project_id, _type_names(s)), deltas)

    def claim_volume(
        self, s: Session, project_id: str, type_id: str | None, *, volumes: int = 0, gigabytes: int = 0,
        snapshots: int = 0, volume_size: int | None = None,
    ) -> None:  # fmt: skip
        """`claim` for a volume or snapshot change: the global counters and its type's."""
        name = _type_names(s).get(type_id) if type_id else None
        deltas = volume_deltas(name, volumes=volumes, gigabytes=gigabytes, snapshots=snapshots)
        self.claim(s, project_id, deltas, volume_size=volume_size)

    def claim_retype(self, s: Session, project_id: str, new_type_id: str, size_gib: int) -> None:
        """A retype moves a volume into the new type's counters (the old type's free themselves
        when its type changes). As Cinder, only the new type's volumes and gigabytes are checked."""
        name = _type_names(s)[new_type_id]
        self.claim(s, project_id, {per_type(VOLUMES, name): 1, per_type(GIGABYTES, name): size_gib})

    # -- os-quota-sets -----------------------------------------------------------------------------
    def _target(self, s: Session, ctx: RequestContext, target: str, action: str) -> None:
        policy.enforce(ctx, action)
        if target != ctx.project_id and not ctx.is_admin:
            raise Forbidden(f"Policy does not allow {action} to be performed on project {target}.")
        if s.get(Project, target) is None:
            raise NotFound(f"Project {target} could not be found.")

    def show(self, ctx: RequestContext, target: str, with_usage: bool = False) -> dict[str, Any]:
        with self.db() as s:
            self._target(s, ctx, target, "quota:show")
            limits = self.limits(s, target)
            if not with_usage:
                return dict(limits)
            used = usage(s, target, _type_names(s))
        return {
            k: {"limit": v, "in_use": 0 if k in LIMIT_ONLY else used.get(k, 0), "reserved": 0}
            for k, v in limits.items()
        }

    def defaults(self, ctx: RequestContext, target: str) -> dict[str, int]:
        with self.db() as s:
            self._target(s, ctx, target, "quota:show")
            return effective_limits(self.resources(s), overrides(s, True, DEFAULT_CLASS), {})

    def update(self, ctx: RequestContext, target: str, body: Mapping[str, object]) -> dict[str, int]:
        with self.db.begin() as s:
            self._target(s, ctx, target, "quota:update")
            wanted = parse_quota_set(body, self.resources(s))
            lock_project(s, target)  # no claim slips in between the check and the new limit
            # As Cinder: only a limit the project already has of its own is held to its usage
            # (`get_project_quotas(defaults=False)`); one still taken from the class is not.
            own = overrides(s, False, target)
            checked = {k: v for k, v in wanted.items() if k in own}
            check_not_below_usage(checked, usage(s, target, _type_names(s)))
            store_limits(s, False, target, wanted)
        with self.db() as s:
            return self.limits(s, target)

    def delete(self, ctx: RequestContext, target: str) -> None:
        """Back to the class's limits (Cinder: the project's overrides are removed)."""
        with self.db.begin() as s:
            self._target(s, ctx, target, "quota:delete")
            forget_limits(s, target, compute=False)

    # -- os-quota-class-sets -----------------------------------------------------------------------
    def show_class(self, ctx: RequestContext, name: str) -> dict[str, int]:
        policy.enforce(ctx, "quota_class:get")
        with self.db() as s:
            return effective_limits(self.resources(s), overrides(s, True, quota_class_name(name)), {})

    def update_class(self, ctx: RequestContext, name: str, body: Mapping[str, object]) -> dict[str, int]:
        policy.enforce(ctx, "quota_class:update")
        name = quota_class_name(name)
        with self.db.begin() as s:
            store_limits(s, True, name, parse_quota_set(body, self.resources(s), what="quota class set"))
        with self.db() as s:
            return effective_limits(self.resources(s), overrides(s, True, name), {})

    # -- limits ------------------------------------------------------------------------------------
    def absolute(self, ctx: RequestContext, project_id: str | None = None) -> dict[str, int]:
        """The caller's project's limits and usage (an admin may name another project)."""
        policy.enforce(ctx, "limits:get")
        target = project_id if project_id and ctx.is_admin else ctx.project_id
        with self.db() as s:
            if s.get(Project, target) is None:
                raise NotFound(f"Project {target} could not be found.")
            return absolute_limits(self.limits(s, target), usage(s, target, _type_names(s)))
