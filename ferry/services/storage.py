"""Backends as the services see them: driver lookup, volume locations and pool statistics."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ferry.config import Config
from ferry.db.models import Migration, Snapshot, Volume
from ferry.domain.errors import BadRequest
from ferry.domain.migration import ACTIVE
from ferry.domain.model import BackendConfig, DiskChain, DiskFormat, LayerFile, VolumeLocation
from ferry.domain.scheduling import UNPLACED, PoolStats
from ferry.domain.volumes import SnapshotStatus
from ferry.drivers.storage.base import StorageDriver
from ferry.drivers.storage.file import FileStorageDriver


class Backends:
    """Every configured backend and its driver."""

    def __init__(self, config: Config, drivers: dict[str, StorageDriver] | None = None) -> None:
        """`drivers`: by backend name (the role's: `tier`); default, a file driver for each."""
        self.config = config
        self.drivers = (
            drivers if drivers is not None else {b.name: FileStorageDriver(b) for b in config.backends}
        )

    def driver(self, name: str) -> StorageDriver:
        try:
            return self.drivers[name]
        except KeyError:
            raise BadRequest(f"Unknown backend {name!r}.") from None

    def resolve(self, ref: str) -> BackendConfig:
        """Accept `host@backend#pool`, `backend#pool` or a bare backend name."""
        name = ref.split("@", 1)[-1].split("#", 1)[0] if ref else ""
        for b in self.config.backends:
            if b.name == name:
                return b
        raise BadRequest(f"Unknown backend {ref!r}; known: {', '.join(sorted(self.drivers))}.")

    def host_attr(self, backend: str) -> str | None:
        """Cinder's `host@backend#pool` (a single-pool backend's pool is named after its
        volume_backend_name); None for a volume no backend took (`UNPLACED`)."""
        if backend == UNPLACED:
            return None
        return f"{self.config.host_name}@{backend}#{self.config.backend(backend).backend_name}"

    def backend_names(self) -> set[str]:
        """The volume_backend_names the backends report (several may share one)."""
        return {b.backend_name for b in self.config.backends}

    # -- locations ---------------------------------------------------------------------
    def location(self, s: Session, vol: Volume) -> VolumeLocation:
        layers = tuple(
            s.scalars(
                select(Snapshot.layer_id)
                .where(Snapshot.volume_id == vol.id, Snapshot.status != SnapshotStatus.CREATING)
                .order_by(Snapshot.position)
            )
        )
        # A volume no backend took has no files: its location names no backend (nothing to touch).
        fmt = DiskFormat.QCOW2 if vol.backend == UNPLACED else self.config.backend(vol.backend).format
        return VolumeLocation(vol.backend, vol.name_id, (*layers, vol.active_layer_id), fmt)

    def layer_path(self, loc: VolumeLocation, layer_id: str) -> Path:
        return self.driver(loc.backend).layer_path(loc.name_id, layer_id)

    def disk_chain(self, volume_id: str, loc: VolumeLocation) -> DiskChain:
        return DiskChain(
            volume_id, tuple(LayerFile(str(self.layer_path(loc, lid)), loc.format) for lid in loc.layers)
        )

    # -- capacity ----------------------------------------------------------------------
    def provisioned(self, s: Session) -> dict[str, int]:
        used: dict[str, int] = {b.name: 0 for b in self.config.backends}
        for name, total in s.execute(
            select(Volume.backend, func.sum(Volume.size_gib)).group_by(Volume.backend)
        ):
            used[name] = used.get(name, 0) + int(total or 0)
        reserved = (
            select(Migration.dst_backend, func.sum(Migration.reserved_gib))
            .where(Migration.status.in_(ACTIVE))
            .group_by(Migration.dst_backend)
        )
        for name, total in s.execute(reserved):
            used[name] = used.get(name, 0) + int(total or 0)
        return used

    def pool_stats(self, s: Session) -> list[PoolStats]:
        used = self.provisioned(s)
        return [PoolStats(b, used.get(b.name, 0)) for b in self.config.backends]

    async def pool_stats_with_usage(self, s: Session) -> list[PoolStats]:
        out = []
        for p in self.pool_stats(s):
            u = await self.drivers[p.backend.name].usage()
            out.append(PoolStats(p.backend, p.provisioned_gib, u.allocated_bytes, u.free_bytes))
        return out
