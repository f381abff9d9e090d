"""A hypervisor host's agent (`ferry agent --host NAME --address IP`).

At start it registers its host and beats, reclaims the trash of the backends it reaches and
re-adopts the QEMU processes of its host's servers (settling what a crash interrupted, as
`ferry serve` does for its own); then it performs the driver calls addressed to its host on the
PostgreSQL queue until it is told to stop. It decides nothing: the conductors in the API tier
drive every migration; the agent only performs and reports.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import socket

from ferry.config import Config
from ferry.coordination.calls import check_host
from ferry.coordination.executor import AgentExecutor
from ferry.coordination.postgres import PostgresQueue
from ferry.domain.errors import BadRequest
from ferry.domain.ids import new_id
from ferry.services.app import Ferry
from ferry.services.tier import AgentHost, ProcessRole

log = logging.getLogger(__name__)


class HostAgent:
    def __init__(self, config: Config, host: AgentHost) -> None:
        check_host(host.name)
        try:
            ipaddress.ip_address(host.address)
        except ValueError:
            raise BadRequest(f"--address {host.address!r} is not an IP address") from None
        self.host = host
        self.ferry = Ferry(config, role=ProcessRole.AGENT, agent=host)
        self.queue = PostgresQueue(self.ferry.engine)
        self.executor = AgentExecutor(self.ferry.hypervisor, self.ferry.backends.drivers)
        self.id = f"{host.name}:{socket.gethostname()}:{os.getpid()}:{new_id()[:8]}"

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until `stop` is set; then let running calls finish briefly and put the rest back."""
        await self.ferry.start()
        log.info("agent %s serving host %s (%s)", self.id, self.host.name, self.host.address)
        try:
            await self.queue.serve(self.host.name, self.id, self.executor.perform, stop)
        finally:
            await self.queue.close()
            await self.ferry.stop()
        log.info("agent %s stopped; the QEMU processes of host %s keep running", self.id, self.host.name)


def run_agent(config: Config, host: AgentHost) -> None:
    """The `ferry agent` process: serve until SIGTERM or SIGINT."""
    import signal

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await HostAgent(config, host).run(stop)

    asyncio.run(main())
