"""Cinder's services as Ferry has them (`os-services`, `os-hosts`): a `cinder-volume` per backend
and registered host that reaches it (`host@backend`, up as that host is), and the
`cinder-scheduler` of the API that answers; what an administrator set on each (disabled, frozen);
and the volume usage `os-hosts` shows for a `cinder-volume` host.

A host filter matches as Cinder's does: `h` names `h` itself and every `h@backend` (and `h#pool`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from ferry.db.models import Snapshot, Volume, VolumeServiceState
from ferry.domain.clock import utcnow
from ferry.domain.errors import BadRequest, NotFound
from ferry.domain.hosts import HostState
from ferry.services import policy
from ferry.services.context import RequestContext
from ferry.services.hosts import MAX_REASON, HostRegistry

VOLUME_BINARY = "cinder-volume"
SCHEDULER_BINARY = "cinder-scheduler"


@dataclass(frozen=True)
class CinderService:
    binary: str
    host: str
    up: bool
    enabled: bool
    disabled_reason: str | None
    frozen: bool
    updated_at: datetime | None


@dataclass(frozen=True)
class HostUsage:
    """One project's volumes and snapshots on a `cinder-volume` host (`project` None: the total)."""

    project: str | None
    volumes: int
    volume_gib: int
    snapshots: int
    snapshot_gib: int


def host_matches(service_host: str, wanted: str) -> bool:
    return service_host == wanted or service_host.startswith((f"{wanted}@", f"{wanted}#"))


class VolumeServices:
    def __init__(
        self,
        db: sessionmaker[Session],
        hosts: HostRegistry,
        volume_host: str,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        """`volume_host`: the host every volume names as its own (`os-vol-host-attr:host`)."""
        self.db = db
        self.hosts = hosts
        self.volume_host = volume_host
        self.clock = clock

    def find(
        self, ctx: RequestContext, host: str | None = None, binary: str | None = None
    ) -> list[CinderService]:
        with self.db() as s:
            states = {(r.host, r.binary): r for r in s.scalars(select(VolumeServiceState))}
        found = [
            CinderService(
                VOLUME_BINARY,
                f"{h.name}@{b.name}",
                h.state is HostState.UP,
                h.enabled,
                h.disabled_reason,
                False,
                h.heartbeat_at,
            )
            for b, h in self.hosts.reaching(ctx)
        ]
        found.append(CinderService(SCHEDULER_BINARY, self.hosts.here, True, True, None, False, self.clock()))
        out = []
        for svc in found:
            state = states.get((svc.host, svc.binary))
            if state is not None:
                svc = replace(
                    svc,
                    enabled=svc.enabled and not state.disabled,
                    disabled_reason=state.disabled_reason if state.disabled else svc.disabled_reason,
                    frozen=state.frozen,
                )
            if (host is None or host_matches(svc.host, host)) and binary in (None, svc.binary):
                out.append(svc)
        return out

    def _state(self, s: Session, svc: CinderService) -> VolumeServiceState:
        row = s.get(VolumeServiceState, (svc.host, svc.binary))
        if row is None:
            row = VolumeServiceState(host=svc.host, binary=svc.binary, disabled=False, frozen=False)
            s.add(row)
        row.updated_at = self.clock()
        return row

    def set_enabled(
        self, ctx: RequestContext, host: str, binary: str, enabled: bool, reason: str | None = None
    ) -> CinderService:
        """Disable or enable the service `binary` on exactly `host` (Cinder's `os-services`
        `disable`, `disable-log-reason`, `enable`)."""
        policy.enforce(ctx, "host:manage")
        if reason is not None and not 1 <= len(reason.strip()) <= MAX_REASON:
            raise BadRequest(f"Invalid input: a disabled reason is 1 to {MAX_REASON} characters.")
        svc = next((x for x in self.find(ctx) if x.host == host and x.binary == binary), None)
        if svc is None:
            raise NotFound(f"Service {binary} on host {host} could not be found.")
        with self.db.begin() as s:
            row = self._state(s, svc)
            row.disabled, row.disabled_reason = not enabled, None if enabled else reason
        return next(x for x in self.find(ctx) if x.host == host and x.binary == binary)

    def set_frozen(self, ctx: RequestContext, host: str, frozen: bool) -> None:
        """Freeze or thaw every `cinder-volume` of `host` (Cinder's `os-services` `freeze`, `thaw`):
        an unknown host is invalid input, as Cinder answers."""
        policy.enforce(ctx, "host:manage")
        services = self.find(ctx, host=host, binary=VOLUME_BINARY)
        if not services:
            raise BadRequest(f"Invalid input: no volume service on host {host}.")
        with self.db.begin() as s:
            for svc in services:
                self._state(s, svc).frozen = frozen

    def usage(self, ctx: RequestContext, host: str) -> list[HostUsage]:
        """`os-hosts/{host}`: the volumes and snapshots of the `cinder-volume` `host`
        (`name@backend`), the total first, then each project's."""
        policy.enforce(ctx, "host:get")
        svc = next((x for x in self.find(ctx, binary=VOLUME_BINARY) if x.host == host and x.enabled), None)
        if svc is None:
            raise NotFound(f"Host {host} could not be found.")
        name, _, backend = host.partition("@")
        if name != self.volume_host:
            return [HostUsage(None, 0, 0, 0, 0)]
        with self.db() as s:
            vols = dict(
                (p, (int(n), int(g or 0)))
                for p, n, g in s.execute(
                    select(Volume.project_id, func.count(Volume.id), func.sum(Volume.size_gib))
                    .where(Volume.backend == backend)
                    .group_by(Volume.project_id)
                )
            )
            snaps = dict(
                (p, (int(n), int(g or 0)))
                for p, n, g in s.execute(
                    select(Snapshot.project_id, func.count(Snapshot.id), func.sum(Snapshot.size_gib))
                    .join(Volume, Volume.id == Snapshot.volume_id)
                    .where(Volume.backend == backend)
                    .group_by(Snapshot.project_id)
                )
            )
        rows = [
            HostUsage(p, *vols.get(p, (0, 0)), *snaps.get(p, (0, 0)))
            for p in sorted(vols.keys() | snaps.keys())
        ]
        total = HostUsage(
            None,
            sum(r.volumes for r in rows),
            sum(r.volume_gib for r in rows),
            sum(r.snapshots for r in rows),
            sum(r.snapshot_gib for r in rows),
        )
        return [total, *rows]
