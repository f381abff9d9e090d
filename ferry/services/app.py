"""The assembled control plane: config, database, drivers and every service, wired once."""

from __future__ import annotations

import logging
from pathlib import Path

from sqlalchemy import Engine

from ferry import config as cfgmod
from ferry.config import Config
from ferry.db.engine import make_engine, session_factory, upgrade
from ferry.drivers.hypervisor.base import HypervisorDriver
from ferry.services.app_credentials import AppCredentialService
from ferry.services.compute import ComputeService
from ferry.services.compute_quotas import ComputeQuotas
from ferry.services.doctor import Doctor
from ferry.services.flavors import FlavorService
from ferry.services.glance import GlanceService
from ferry.services.hosts import HostRegistry, HostSpec
from ferry.services.identity import IdentityService
from ferry.services.image_data import ImageData
from ferry.services.images import ImageService
from ferry.services.instance_actions import InstanceActions
from ferry.services.keypairs import KeyPairs
from ferry.services.messages import MessageBook, MessageService
from ferry.services.metadata import MetadataService
from ferry.services.migration import MigrationService
from ferry.services.pools import PoolService
from ferry.services.projects import ProjectService
from ferry.services.qos import QosService
from ferry.services.quotas import QuotaService
from ferry.services.recovery import VolumeRecovery
from ferry.services.role_assignments import RoleAssignmentService
from ferry.services.server_details import ServerDetailService
from ferry.services.server_migration import LiveMigrationService
from ferry.services.server_settling import ServerSettling
from ferry.services.snapshots import SnapshotService
from ferry.services.storage import Backends
from ferry.services.summary import VolumeSummary
from ferry.services.tier import (
    AgentHost,
    ProcessRole,
    local_drivers,
    remote_drivers,
    require_postgresql,
)
from ferry.services.type_access import TypeAccess
from ferry.services.types import TypeService
from ferry.services.users import UserService
from ferry.services.volume_admin import VolumeAdmin
from ferry.services.volume_images import VolumeUploads
from ferry.services.volume_services import VolumeServices
from ferry.services.volumes import VolumeService

log = logging.getLogger(__name__)


def prepare(path: Path, role: ProcessRole = ProcessRole.ALL) -> Config:
    """The configuration at `path`, with the database schema brought up to date (once, before
    any worker of an API tier forks)."""
    cfg = cfgmod.load(path)
    if role is not ProcessRole.ALL:
        require_postgresql(cfg, role)
    upgrade(cfg.database_url, host_name=cfg.host_name)
    return cfg


class Ferry:
    """Owns the engine and the services; `start`/`stop` run with the process's life cycle.

    `role` (`tier.ProcessRole`) says which part of a deployment this process is: the all-in-one
    (every service on local drivers), an API-tier worker (the same services over the host queue:
    `tier.remote_drivers`), or a host's agent (`agent`: local drivers for one host)."""

    def __init__(
        self,
        config: Config,
        engine: Engine | None = None,
        hypervisor: HypervisorDriver | None = None,
        *,
        role: ProcessRole = ProcessRole.ALL,
        agent: AgentHost | None = None,
    ) -> None:
        self.config = config
        self.role = role
        self.agent = agent
        if role is not ProcessRole.ALL:
            require_postgresql(config, role)
        self.engine = engine or make_engine(config.database_url)
        self.db = session_factory(self.engine)
        self.hosts = HostRegistry(
            self.db, config.hosts, self._own_host(), config.backends, here=config.host_name
        )
        if role is ProcessRole.API:
            drivers = remote_drivers(config, self.engine, self.hosts)
        else:
            drivers = local_drivers(config, agent, hypervisor)
        self.queue = drivers.queue
        self.backends = Backends(config, drivers.storage)
        self.hypervisor = drivers.hypervisor
        self.identity = IdentityService(self.db, config.token_lifetime_s, config.identity)
        self.types = TypeService(self.db, self.backends, config.default_volume_type)
        self.type_access = TypeAccess(self.db)
        self.qos = QosService(self.db)
        self.projects = ProjectService(self.db)
        self.users = UserService(self.db, self.identity.passwords)
        self.role_assignments = RoleAssignmentService(self.db)
        self.app_credentials = AppCredentialService(self.db, self.identity.passwords)
        self.quotas = QuotaService(self.db, config.quotas)
        self.compute_quotas = ComputeQuotas(self.db, config.quotas)
        self.keypairs = KeyPairs(self.db, self.compute_quotas)
        self.flavors = FlavorService(self.db)
        self.server_details = ServerDetailService(self.db, self.compute_quotas)
        self.volumes = VolumeService(
            self.db,
            self.backends,
            MessageBook(config.messages),
            quotas=self.quotas,
            default_type=config.default_volume_type,
        )
        self.messages = MessageService(self.db)
        self.pools = PoolService(self.db, self.backends)
        self.snapshots = SnapshotService(self.db, self.backends, self.volumes)
        self.metadata = MetadataService(self.db)
        self.volume_services = VolumeServices(self.db, self.hosts, config.host_name)
        self.volume_summary = VolumeSummary(self.db)
        self.images = ImageService(self.db)
        self.instance_actions = InstanceActions(self.db)
        self.glance = GlanceService(self.db, config.images_dir)
        self.image_data = ImageData(self.db, config.images_dir)
        self.volume_uploads = VolumeUploads(self.db, self.backends, self.image_data)
        self.compute = ComputeService(
            self.db, config, self.backends, self.hypervisor, self.hosts, self.compute_quotas
        )
        self.volume_admin = VolumeAdmin(self.db, self.volumes, self.compute.detaching)
        self.snapshots.live = self.compute
        self.volumes.live = self.compute
        self.migrations = MigrationService(self.db, config, self.backends, self.hypervisor, self.volumes)
        self.servers = ServerSettling(self.compute)
        self.live = LiveMigrationService(
            self.db, config, self.backends, self.hypervisor, self.hosts, self.compute
        )
        self.recovery = VolumeRecovery(self.db, self.backends, self.volumes, self.hypervisor)
        self.doctor = Doctor(self.db, config, self.backends, self.hypervisor, self.recovery, self.servers)

    @classmethod
    def from_file(cls, path: Path) -> Ferry:
        return cls(prepare(path))

    def _own_host(self) -> HostSpec | None:
        """The host this process registers and beats for: the all-in-one's, an agent's; none
        for the API tier."""
        h = self.config.hosts
        if self.agent is not None:
            return HostSpec(self.agent.name, self.agent.address, h.offered_vcpus(), h.offered_ram_mb())
        if self.role is ProcessRole.API:
            return None
        return HostSpec(self.config.host_name, self.config.listen_host, h.offered_vcpus(), h.offered_ram_mb())

    async def start(self) -> None:
        log.info("ferry %s starting with backends %s", self.role.value, ", ".join(self.backends.drivers))
        if self.agent is None:  # the API's concern: a new database, or one from before default types
            self.types.ensure_default()
        if self.role is ProcessRole.API:
            # Stateless: the agents re-adopt their servers; unfinished migrations are taken over
            # once their conductor's lease lapses (another worker may be driving them now).
            await self.migrations.resume_all(exclusive=False)
            await self.live.resume_all(exclusive=False)
            return
        for driver in self.backends.drivers.values():
            await driver.reclaim()  # what a crash left in the trash
        await self.hosts.start_local()  # this process's host: registered, beating
        if self.agent is not None:
            await self.servers.reconcile(host=self.agent.name)  # re-adopt this host's QEMUs
            return
        await self.servers.reconcile()  # servers first: volume settling asks QEMU what is plugged
        self.messages.purge_expired()
        await self.recovery.start()
        self.image_data.settle()  # uploads a crash interrupted: their images back to queued
        await self.snapshots.recover()  # before migrations plan from the layer chains
        await self.migrations.resume_all()
        await self.live.resume_all()

    async def stop(self) -> None:
        await self.hosts.stop()
        await self.migrations.stop()
        await self.live.stop()
        if self.role is not ProcessRole.API:
            for driver in self.backends.drivers.values():
                await driver.reclaim()
        await self.hypervisor.close()
        if self.queue is not None:
            await self.queue.close()
        self.identity.close()
        self.engine.dispose()
