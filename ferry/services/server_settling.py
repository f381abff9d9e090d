"""Servers at a control plane's (or an agent's) start: re-attach to every QEMU that outlived the
previous one and settle every task a crash interrupted, as `domain.settling.settle_server`
decides. Also what `ferry doctor --repair` runs for a stuck server."""

from __future__ import annotations

import logging

from sqlalchemy import select

from ferry.db.models import Server
from ferry.db.statements import migrating_volume_of
from ferry.domain.errors import FerryError
from ferry.domain.servers import ServerStatus
from ferry.domain.settling import Outcome, ServerFacts, ServerSettlement, settle_server
from ferry.services.compute import ComputeService

log = logging.getLogger(__name__)


class ServerSettling:
    def __init__(self, compute: ComputeService) -> None:
        self.compute = compute

    async def reconcile(self, host: str | None = None) -> None:
        """Every server (of `host`: an agent's) whose process outlived the previous control
        plane is re-attached to, and every interrupted task settled."""
        stmt = select(Server) if host is None else select(Server).where(Server.host == host)
        with self.compute.db() as s:
            servers = [
                (srv.id, srv.status, srv.task_state, s.scalar(migrating_volume_of(srv.id)) is not None)
                for srv in s.scalars(stmt)
            ]
        for server_id, status, task, migrating in servers:
            if task is None and status in (ServerStatus.SHUTOFF, ServerStatus.ERROR):
                continue  # stopped on purpose or failed before: nothing to reconnect to
            try:
                alive = await self.compute.hv.reconnect(server_id)
                await self.settle(server_id, ServerFacts(status, task, alive, migrating))
            except FerryError as e:
                log.error("server %s: could not settle it (next start retries): %s", server_id, e)

    async def settle(self, server_id: str, facts: ServerFacts) -> ServerSettlement:
        """Perform what the server table decides for these facts."""
        decision = settle_server(facts)
        if decision.status is None:
            await self.compute.finish_delete(server_id)
        elif decision.outcome is not Outcome.LEAVE or facts.status is not decision.status:
            self.compute.set_status(server_id, decision.status, fault=decision.fault)
        if decision.outcome is not Outcome.LEAVE:
            log.warning(
                "server %s (%s, %s): %s after a control-plane restart: %s",
                server_id, facts.status, facts.task, decision.outcome, decision.why,
            )  # fmt: skip
        return decision
