"""Compute quota use cases (Nova's os-quota-sets, os-quota-class-sets, limits) and the claim a
server create runs inside its own transaction. Limits share `quota_limits` with the volume quotas
(names never collide) and the project's claim lock (`services/quotas.lock_project`), so that
concurrent creates of one project cannot overshoot: usage is counted from the server rows, with
every earlier claimer's row committed, under that lock.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from ferry.config import QuotasConfig
from ferry.db.models import Flavor, KeyPair, Project, Server
from ferry.domain.compute_quotas import (
    COUNTED,
    KEY_PAIRS,
    METADATA_ITEMS,
    absolute_compute_limits,
    check_key_pairs,
    check_metadata_items,
    check_not_below_used,
    check_server_claim,
    compute_resources,
    parse_compute_quota_set,
    server_deltas,
)
from ferry.domain.errors import Forbidden, NotFound
from ferry.domain.quotas import DEFAULT_CLASS, UNLIMITED, ResourceSet, effective_limits
from ferry.services import policy
from ferry.services.context import RequestContext
from ferry.services.quotas import forget_limits, lock_project, overrides, quota_class_name, store_limits


@dataclass(frozen=True)
class Shown:
    """What a microversion shows: nova-network's quotas (below 2.36), injected files (below 2.57)
    and, in the limits view, maxImageMeta (below 2.39)."""

    networks: bool = True
    injected: bool = True
    image_meta: bool = True


ALL = Shown()


def compute_usage(s: Session, project_id: str) -> dict[str, int]:
    """The project's servers, whatever their state until their row goes: instances, cores, ram."""
    row = s.execute(
        select(func.count(Server.id), func.sum(Flavor.vcpus), func.sum(Flavor.ram_mb))
        .join(Flavor, Flavor.id == Server.flavor_id)
        .where(Server.project_id == project_id)
    ).one()
    return dict(zip(COUNTED, (int(v or 0) for v in row), strict=True))


class ComputeQuotas:
    def __init__(self, db: sessionmaker[Session], config: QuotasConfig) -> None:
        self.db = db
        self.config = config

    def resources(self, shown: Shown = ALL) -> ResourceSet:
        return compute_resources(
            self.config.compute_defaults(), networks=shown.networks, injected=shown.injected
        )

    def limits(self, s: Session, project_id: str, shown: Shown = ALL) -> dict[str, int]:
        return effective_limits(
            self.resources(shown), overrides(s, True, DEFAULT_CLASS), overrides(s, False, project_id)
        )

    # -- claims other services run in their own transaction ---------------------------------------
    def claim_servers(self, s: Session, project_id: str, flavor: Flavor, count: int = 1) -> None:
        """Refuse (403, as Nova) servers that would take the project past instances, cores or
        ram; else return holding the project's claim lock: the caller inserts the server rows."""
        lock_project(s, project_id)
        limits = self.limits(s, project_id)
        deltas = server_deltas(flavor.vcpus, flavor.ram_mb, count)
        if any(limits[k] != UNLIMITED for k in COUNTED):
            check_server_claim(limits, compute_usage(s, project_id), deltas)

    def claim_key_pair(self, s: Session, project_id: str, user_id: str) -> None:
        """A new key pair of the user's, under the key_pairs limit of the project the user is in."""
        lock_project(s, project_id)
        limit = self.limits(s, project_id)[KEY_PAIRS]
        if limit != UNLIMITED:
            owned = s.scalar(select(func.count()).select_from(KeyPair).where(KeyPair.user_id == user_id))
            check_key_pairs(limit, int(owned or 0))

    def check_metadata(self, s: Session, project_id: str, count: int) -> None:
        check_metadata_items(self.limits(s, project_id)[METADATA_ITEMS], count)

    # -- os-quota-sets -----------------------------------------------------------------------------
    def _target(self, s: Session, ctx: RequestContext, target: str, action: str) -> None:
        """`action` is a `quota:*` rule; another project's quotas are an admin's."""
        policy.enforce(ctx, action)
        if target != ctx.project_id and not ctx.is_admin:
            verb = action.removeprefix("quota:")
            raise Forbidden(f"Policy doesn't allow os_compute_api:os-quota-sets:{verb} to be performed.")
        if s.get(Project, target) is None:
            raise NotFound(f"Project {target} could not be found.")

    def show(self, ctx: RequestContext, target: str, shown: Shown, detail: bool = False) -> dict[str, Any]:
        with self.db() as s:
            self._target(s, ctx, target, "quota:show")
            limits = self.limits(s, target, shown)
            if not detail:
                return dict(limits)
            used = compute_usage(s, target)
        return {k: {"limit": v, "in_use": used.get(k, 0), "reserved": 0} for k, v in limits.items()}

    def defaults(self, ctx: RequestContext, target: str, shown: Shown) -> dict[str, int]:
        with self.db() as s:
            self._target(s, ctx, target, "quota:show")
            return effective_limits(self.resources(shown), overrides(s, True, DEFAULT_CLASS), {})

    def update(
        self, ctx: RequestContext, target: str, body: Mapping[str, object], shown: Shown
    ) -> dict[str, int]:
        with self.db.begin() as s:
            self._target(s, ctx, target, "quota:update")
            wanted, force = parse_compute_quota_set(body, self.resources(shown))
            lock_project(s, target)  # no server slips in between the check and the new limit
            if not force:
                check_not_below_used(wanted, compute_usage(s, target))
            store_limits(s, False, target, wanted)
        with self.db() as s:
            return self.limits(s, target, shown)

    def delete(self, ctx: RequestContext, target: str) -> None:
        """Back to the class's limits (Nova: the project's own limits are removed)."""
        with self.db.begin() as s:
            self._target(s, ctx, target, "quota:delete")
            forget_limits(s, target, compute=True)

    # -- os-quota-class-sets -----------------------------------------------------------------------
    def show_class(self, ctx: RequestContext, name: str, shown: Shown) -> dict[str, int]:
        policy.enforce(ctx, "quota_class:get")
        with self.db() as s:
            return effective_limits(self.resources(shown), overrides(s, True, quota_class_name(name)), {})

    def update_class(
        self, ctx: RequestContext, name: str, body: Mapping[str, object], shown: Shown
    ) -> dict[str, int]:
        policy.enforce(ctx, "quota_class:update")
        name = quota_class_name(name)
        with self.db.begin() as s:
            wanted, _ = parse_compute_quota_set(body, self.resources(shown))
            store_limits(s, True, name, wanted)
        with self.db() as s:
            return effective_limits(self.resources(shown), overrides(s, True, name), {})

    # -- limits ------------------------------------------------------------------------------------
    def absolute(self, ctx: RequestContext, shown: Shown, tenant_id: str | None = None) -> dict[str, int]:
        """The caller's project's compute limits and usage (an admin may name another project)."""
        policy.enforce(ctx, "limits:get")
        target = tenant_id if tenant_id and ctx.is_admin else ctx.project_id
        with self.db() as s:
            limits = self.limits(s, target, ALL)
            used = compute_usage(s, target)
        return absolute_compute_limits(
            limits, used, networks=shown.networks, injected=shown.injected, image_meta=shown.image_meta
        )
