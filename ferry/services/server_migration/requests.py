"""Server live migration, as Nova offers it (`os-migrateLive`, the server's migrations, abort,
force complete, `os-migrations`), and this process as the conductor of each one (leases as for
volume migrations: `migration.conductor`).

Checks before anything moves: the caller is an admin; the server is ACTIVE and idle, has no
local boot disk, and none of its volumes is being migrated (each kind of migration refuses the
other with a 409 naming it); the destination is another host, up, enabled, with room, and
reaches the backend of every attached volume. The server's task becomes `migrating` in the
transaction that records the migration.
"""

from __future__ import annotations

import logging
from collections.abc import Coroutine
from dataclasses import dataclass
from functools import partial
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from ferry.config import Config
from ferry.db.models import Attachment, Flavor, Server, ServerLiveMigration, ServerLiveMigrationEvent, Volume
from ferry.db.statements import compare_and_set, migrating_volume_of
from ferry.domain.clock import utcnow
from ferry.domain.errors import BadRequest, Conflict, NotFound
from ferry.domain.hosts import Need, Placed, check_migration, place
from ferry.domain.ids import new_id
from ferry.domain.instance_actions import InstanceAction
from ferry.domain.migration.lease import LeaseTerms
from ferry.domain.server_migration.plan import ABORTABLE, IN_PROGRESS, LiveStatus, LiveStep
from ferry.domain.servers import ServerStatus, ServerTaskState, refusal
from ferry.drivers.hypervisor.base import HypervisorDriver
from ferry.services import instance_actions, policy
from ferry.services.compute import ComputeService
from ferry.services.context import RequestContext
from ferry.services.extending import extending_volume_of
from ferry.services.hosts import HostRegistry
from ferry.services.migration.conducting import ConductedRuns
from ferry.services.migration.conductor import Conductor
from ferry.services.queries import get_owned
from ferry.services.server_migration.runner import LiveRun
from ferry.services.storage import Backends

log = logging.getLogger(__name__)


LIST_LIMIT = 1000


@dataclass(frozen=True)
class MigrationFilter:
    """`os-migrations` query filters (None: any)."""

    host: str | None = None
    status: str | None = None
    server_id: str | None = None
    user_id: str | None = None
    project_id: str | None = None


class LiveMigrationService:
    def __init__(
        self,
        db: sessionmaker[Session],
        config: Config,
        backends: Backends,
        hypervisor: HypervisorDriver,
        hosts: HostRegistry,
        compute: ComputeService,
    ) -> None:
        self.db, self.config, self.backends, self.hv = db, config, backends, hypervisor
        self.hosts, self.compute = hosts, compute
        self.conductor = Conductor(db, LeaseTerms(config.migration.lease_s), ServerLiveMigration)
        self.runs = ConductedRuns(self.conductor, "live migration", self._adopt)

    # -- requests -----------------------------------------------------------------------------
    async def migrate(
        self, ctx: RequestContext, server_id: str, host: str | None, bandwidth: int = 0
    ) -> ServerLiveMigration:
        policy.enforce(ctx, "server:migrate_live")
        with self.db.begin() as s:
            server = get_owned(s, Server, ctx, server_id, "Server")
            self._check_server(s, server)
            dest = self._destination(s, server, host)
            row = self._record(s, ctx, server, dest, bandwidth)
            compare_and_set(
                s,
                update(Server)
                .where(
                    Server.id == server.id, Server.task_state.is_(None), Server.status == ServerStatus.ACTIVE
                )
                .values(task_state=ServerTaskState.MIGRATING, updated_at=utcnow()),
                refusal(ServerTaskState.MIGRATING, server.id, server.status, server.task_state),
            )
            instance_actions.begin(s, ctx, server, InstanceAction.LIVE_MIGRATION)
            # After the claim's write, as ComputeService._claim: a volume extend holds the server.
            extending = s.scalar(extending_volume_of(server.id))
            if extending:
                raise Conflict(
                    f"Server {server.id}: volume {extending} is being extended; "
                    "live-migrate it when the extend is done."
                )
        self.runs.launch(row.id, partial(self._run, row.id, restart=False))
        return row

    def _check_server(self, s: Session, server: Server) -> None:
        if server.status is not ServerStatus.ACTIVE or server.task_state is not None:
            raise Conflict(refusal(ServerTaskState.MIGRATING, server.id, server.status, server.task_state))
        busy = s.scalar(migrating_volume_of(server.id))
        if busy:
            raise Conflict(
                f"Server {server.id}: volume {busy} is being migrated; live-migrate it when that is done."
            )
        if self.compute.has_boot_disk(s, server):
            raise BadRequest(
                f"Server {server.id} boots from a disk on its host: block migration is not offered."
            )

    def _destination(self, s: Session, server: Server, requested: str | None) -> str:
        if requested is not None and requested == server.host:
            raise BadRequest(f"Server {server.id} already runs on host {requested}: pick another host.")
        flavor = s.get(Flavor, server.flavor_id)
        assert flavor is not None
        others = [h for h in self.hosts.loads(s, lock=True) if h.name != server.host]
        decision = place(others, Need(flavor.vcpus, flavor.ram_mb), requested)
        if not isinstance(decision, Placed):
            raise BadRequest(f"Cannot live-migrate server {server.id}: {decision.why}")
        for vol in s.scalars(
            select(Volume)
            .join(Attachment, Attachment.volume_id == Volume.id)
            .where(Attachment.server_id == server.id)
        ):
            check_migration(self.config.backend(vol.backend), decision.host, server.id, vol.id)
        return decision.host

    def _record(
        self, s: Session, ctx: RequestContext, server: Server, dest: str, bandwidth: int
    ) -> ServerLiveMigration:
        now = utcnow()
        number = (s.scalar(select(func.max(ServerLiveMigration.number))) or 0) + 1
        row = ServerLiveMigration(
            id=new_id(), number=number, server_id=server.id, project_id=server.project_id,
            user_id=ctx.user_id, source_host=server.host, dest_host=dest, status=LiveStatus.QUEUED,
            step=LiveStep.QUEUED, bandwidth=bandwidth,
            downtime_limit_ms=self.config.migration.live_downtime_ms,
            memory_total=0, memory_processed=0, memory_remaining=0, dirty_rate=0, expected_downtime_ms=0,
            serials_checked=0, abort_requested=False, created_at=now, updated_at=now,
            conductor=self.conductor.id, lease_until=self.conductor.terms.until(now),
        )  # fmt: skip
        s.add(row)
        return row

    def list_for_server(
        self, ctx: RequestContext, server_id: str, *, in_progress: bool = True
    ) -> list[ServerLiveMigration]:
        policy.enforce(ctx, "server:migrations")
        with self.db() as s:
            get_owned(s, Server, ctx, server_id, "Server")
            stmt = select(ServerLiveMigration).where(ServerLiveMigration.server_id == server_id)
            if in_progress:
                stmt = stmt.where(ServerLiveMigration.status.in_(IN_PROGRESS))
            return list(s.scalars(stmt.order_by(ServerLiveMigration.number)))

    def get(self, ctx: RequestContext, server_id: str, migration: str) -> ServerLiveMigration:
        policy.enforce(ctx, "server:migrations")
        with self.db() as s:
            get_owned(s, Server, ctx, server_id, "Server")
            row = _find(s, migration)
            if row is None or row.server_id != server_id:
                raise NotFound(f"Migration {migration} for server {server_id} could not be found.")
            return row

    def list_all(self, ctx: RequestContext, f: MigrationFilter) -> list[ServerLiveMigration]:
        """`os-migrations`: newest first, at most `LIST_LIMIT`."""
        policy.enforce(ctx, "server:migrations")
        if f.status is not None and f.status not in LiveStatus.__members__.values():
            return []  # no migration is ever in a status Ferry does not have
        m = ServerLiveMigration
        stmt = select(m)
        if f.host is not None:
            stmt = stmt.where((m.source_host == f.host) | (m.dest_host == f.host))
        for column, value in ((m.status, f.status), (m.server_id, f.server_id), (m.user_id, f.user_id),
                              (m.project_id, f.project_id)):  # fmt: skip
            if value is not None:
                stmt = stmt.where(column == value)
        with self.db() as s:
            return list(s.scalars(stmt.order_by(m.number.desc()).limit(LIST_LIMIT)))

    def events(self, migration_id: str) -> list[ServerLiveMigrationEvent]:
        with self.db() as s:
            stmt = select(ServerLiveMigrationEvent).where(
                ServerLiveMigrationEvent.migration_id == migration_id
            )
            return list(s.scalars(stmt.order_by(ServerLiveMigrationEvent.id)))

    async def abort(self, ctx: RequestContext, server_id: str, migration: str) -> None:
        row = self.get(ctx, server_id, migration)
        with self.db.begin() as s:
            compare_and_set(
                s,
                update(ServerLiveMigration)
                .where(ServerLiveMigration.id == row.id, ServerLiveMigration.step.in_(ABORTABLE))
                .values(abort_requested=True),
                f"Migration {migration} is {row.status} ({row.step}): past its switchover, "
                "it cannot be aborted.",
            )

    async def force_complete(self, ctx: RequestContext, server_id: str, migration: str) -> None:
        row = self.get(ctx, server_id, migration)
        if row.step is not LiveStep.MIGRATE:
            raise Conflict(
                f"Migration {migration} is {row.status} ({row.step}): only a running migration is forced."
            )
        await self.hv.on_host(row.source_host).force_live(server_id)

    # -- conducting ---------------------------------------------------------------------------
    def _adopt(self, migration_id: str) -> Coroutine[Any, Any, None]:
        return self._run(migration_id, restart=True)

    async def _run(self, migration_id: str, *, restart: bool, force: bool = False) -> None:
        if not self.conductor.take(migration_id, force=force):
            return
        with self.db() as s:
            row = s.get(ServerLiveMigration, migration_id)
            assert row is not None
            spec = self.compute.spec(s, row.server_id)
        run = LiveRun(self.db, self.backends, self.hv, row, spec, self.config.migration.live_timeout_s)
        first = run.machine.start() if row.step is LiveStep.QUEUED else run.machine.restart()
        await run.drive(first)

    async def wait(self, migration_id: str) -> None:
        await self.runs.wait(migration_id)

    async def resume_all(self, *, exclusive: bool = True) -> None:
        with self.db() as s:
            ids = list(
                s.scalars(select(ServerLiveMigration.id).where(ServerLiveMigration.status.in_(IN_PROGRESS)))
            )
        for mid in ids:
            self.runs.launch(mid, partial(self._run, mid, restart=True, force=exclusive))
        self.runs.keep_leases()

    async def stop(self) -> None:
        await self.runs.stop()


def _find(s: Session, ident: str) -> ServerLiveMigration | None:
    """A migration by Nova's integer id or by its uuid."""
    if ident.isdigit() and len(ident) < 19:
        return s.scalar(select(ServerLiveMigration).where(ServerLiveMigration.number == int(ident)))
    return s.get(ServerLiveMigration, ident) if len(ident) == 36 else None
