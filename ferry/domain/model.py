"""Value objects shared by services and drivers: where a volume's data lives, backends, formats.

Identity is not location: a volume's id never changes; its `VolumeLocation` (backend, name_id,
layer chain) is what migration replaces in one committed step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

GiB = 1024**3


class DiskFormat(StrEnum):
    QCOW2 = "qcow2"
    RAW = "raw"


@dataclass(frozen=True)
class BackendConfig:
    """A storage pool: a directory with a format and a capacity, and where it is reachable: from
    every host (`shared`, a filesystem every host mounts) or only from the `hosts` it lists.

    `volume_backend_name` is the name it reports to the scheduler (default: its own `name`):
    several equivalent backends may share one, so that a volume type asking for it
    (`volume_backend_name=gold`) is served by any of them and one can be drained and removed
    without changing the type."""

    name: str
    path: str
    format: DiskFormat = DiskFormat.QCOW2
    capacity_gib: int = 100
    oversubscription: float = 1.0
    driver: str = "file"
    max_migrations: int = 2
    hosts: tuple[str, ...] = ()
    shared: bool = True
    volume_backend_name: str = ""

    @property
    def backend_name(self) -> str:
        return self.volume_backend_name or self.name

    @property
    def supports_snapshots(self) -> bool:
        return self.format is DiskFormat.QCOW2

    @property
    def provisionable_gib(self) -> float:
        return self.capacity_gib * self.oversubscription


@dataclass(frozen=True)
class VolumeLocation:
    """Where a volume's layers live: `<backend>/volume-<name_id>/<layer_id>.<format>`.

    `layers` lists layer ids base first; the last one is the active (writable) layer, the
    others are read-only snapshot layers.
    """

    backend: str
    name_id: str
    layers: tuple[str, ...]
    format: DiskFormat = DiskFormat.QCOW2

    @property
    def active_layer(self) -> str:
        return self.layers[-1]

    @property
    def readonly_layers(self) -> tuple[str, ...]:
        return self.layers[:-1]


@dataclass(frozen=True)
class LayerFile:
    """One image file as a hypervisor sees it."""

    path: str
    format: DiskFormat = DiskFormat.QCOW2


@dataclass(frozen=True)
class DiskChain:
    """The files behind one attached volume, base first; the last is the active layer."""

    volume_id: str
    layers: tuple[LayerFile, ...] = field(default_factory=tuple)

    @property
    def active(self) -> LayerFile:
        return self.layers[-1]
