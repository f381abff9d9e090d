"""The assembled control plane: config, database, drivers and every service, wired once."""

from __future__ import annotations

import logging
from pathlib import Path

from sqlalchemy import Engine

from ferry import config as cfgmod
from ferry.config import Config
from ferry.db.engine import make_engine, session_factory, upgrade
from ferry.drivers.hypervisor.base import HypervisorDriver
from ferry.services.compute import ComputeService
from ferry.services.doctor import Doctor
from ferry.services.hosts import HostRegistry, HostSpec
from ferry.services.identity import IdentityService
from ferry.services.images import ImageService
from ferry.services.migration import MigrationService
from ferry.services.recovery import VolumeRecovery
from ferry.services.snapshots import SnapshotService
from ferry.services.storage import Backends
from ferry.services.types import TypeService
from ferry.services.volumes import VolumeService

log = logging.getLogger(__name__)


class Ferry:
    """Owns the engine and the services; `start`/`stop` run with the HTTP server's life cycle."""

    def __init__(
        self, config: Config, engine: Engine | None = None, hypervisor: HypervisorDriver | None = None
    ) -> None:
        self.config = config
        self.engine = engine or make_engine(config.database_url)
        self.db = session_factory(self.engine)
        self.backends = Backends(config)
        self.identity = IdentityService(self.db, config.token_lifetime_s, config.identity)
        self.types = TypeService(self.db, self.backends)
        self.volumes = VolumeService(self.db, self.backends)
        self.snapshots = SnapshotService(self.db, self.backends, self.volumes)
        self.hypervisor = hypervisor or make_hypervisor(config)
        self.images = ImageService(self.db)
        self.hosts = HostRegistry(
            self.db, config.hosts, local_host(config), config.backends, here=config.host_name
        )
        self.compute = ComputeService(self.db, config, self.backends, self.hypervisor, self.hosts)
        self.snapshots.live = self.compute
        self.migrations = MigrationService(self.db, config, self.backends, self.hypervisor, self.volumes)
        self.recovery = VolumeRecovery(self.db, self.backends, self.volumes, self.hypervisor)
        self.doctor = Doctor(self.db, config, self.backends, self.hypervisor, self.recovery, self.compute)

    @classmethod
    def from_file(cls, path: Path) -> Ferry:
        cfg = cfgmod.load(path)
        upgrade(cfg.database_url, host_name=cfg.host_name)
        return cls(cfg)

    async def start(self) -> None:
        log.info("ferry control plane starting with backends %s", ", ".join(self.backends.drivers))
        for driver in self.backends.drivers.values():
            await driver.reclaim()  # what a crash left in the trash
        await self.hosts.start_local()  # the one host of the all-in-one: registered, beating
        await self.compute.reconcile()  # servers first: volume settling asks QEMU what is plugged
        await self.recovery.start()
        await self.snapshots.recover()  # before migrations plan from the layer chains
        await self.migrations.resume_all()

    async def stop(self) -> None:
        await self.hosts.stop()
        await self.migrations.stop()
        for driver in self.backends.drivers.values():
            await driver.reclaim()
        await self.hypervisor.close()
        self.identity.close()
        self.engine.dispose()


def local_host(config: Config) -> HostSpec:
    """The all-in-one control plane's own host, as it registers itself."""
    h = config.hosts
    return HostSpec(config.host_name, config.listen_host, h.offered_vcpus(), h.offered_ram_mb())


def make_hypervisor(config: Config) -> HypervisorDriver:
    h = config.hypervisor
    if h.driver == "fake":
        from ferry.drivers.hypervisor.fake import FakeHypervisorDriver

        return FakeHypervisorDriver()
    from ferry.drivers.hypervisor.qemu import QemuDriver, servers_root

    root = servers_root(config.run_dir)
    return QemuDriver(root, qemu_binary=h.qemu, accel=h.accel, root_ports=h.root_ports)
