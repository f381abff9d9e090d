"""The contract between the volume service and a storage backend.

A backend stores each volume as a chain of layer files in `volume-<name_id>/` under its root.
Paths are built only from validated UUIDs. Every method is idempotent where the docstring says
so, because a crashed control plane replays steps.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ferry.domain.model import BackendConfig, DiskFormat, VolumeLocation

ProgressCallback = Callable[[int, int], None]
"""Called with (bytes_done, bytes_total) while a copy runs."""


@dataclass(frozen=True)
class BackendUsage:
    allocated_bytes: int
    """Bytes really allocated on disk by every layer file of the backend."""
    free_bytes: int
    """Free bytes of the filesystem holding the backend."""


@dataclass(frozen=True)
class StoredLayer:
    """A layer file found on a backend (for reconciliation and `ferry doctor`)."""

    name_id: str
    layer_id: str
    path: Path
    modified: float = 0.0
    """Last modification (epoch seconds): `ferry doctor --repair` leaves recent files alone."""


@dataclass(frozen=True)
class LayerCheck:
    """What one layer file really is, for recovery and `ferry doctor`."""

    present: bool
    sound: bool = False
    """Readable by `qemu-img info`, and `qemu-img check` finds no corruption (qcow2)."""
    virtual_size: int | None = None
    problem: str | None = None


class StorageDriver(abc.ABC):
    def __init__(self, config: BackendConfig) -> None:
        self.config = config

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def format(self) -> DiskFormat:
        return self.config.format

    @abc.abstractmethod
    def volume_dir(self, name_id: str) -> Path:
        """Directory holding every layer of one volume location (not created)."""

    @abc.abstractmethod
    def layer_path(self, name_id: str, layer_id: str) -> Path:
        """Path of one layer file (not created). Raises BadRequest on a non-UUID id."""

    @abc.abstractmethod
    async def create_volume(self, loc: VolumeLocation, size_bytes: int) -> None:
        """Create an empty volume of one layer. Idempotent: an existing file of the right size is kept."""

    @abc.abstractmethod
    async def delete_volume(self, name_id: str) -> None:
        """Delete every file of a volume location and its directory. Idempotent."""

    async def retire_volume(self, name_id: str) -> None:
        """Take a volume location out of use now and reclaim its space in the background.

        For locations nothing refers to any more (the source of a finished migration): the
        caller need not wait for a large delete. Idempotent. Drivers without a cheaper way
        simply delete.
        """
        await self.delete_volume(name_id)

    async def reclaim(self) -> None:
        """Finish reclaiming the space of retired locations (at start and at shutdown)."""
        return None  # the default retire_volume defers nothing

    @abc.abstractmethod
    async def snapshot(self, loc: VolumeLocation, new_layer_id: str) -> VolumeLocation:
        """Detached snapshot: freeze the active layer, put a new empty active layer on top."""

    @abc.abstractmethod
    async def drop_layer(self, name_id: str, layer_id: str) -> None:
        """Delete one layer file that no chain uses (an overlay a crash left unused). Idempotent."""

    @abc.abstractmethod
    async def merge_layer(self, loc: VolumeLocation, layer_id: str) -> VolumeLocation:
        """Detached snapshot delete: fold read-only `layer_id` into the layer above it
        (`qemu-img rebase` onto its parent), then delete its file. Returns the new location."""

    @abc.abstractmethod
    async def extend(self, loc: VolumeLocation, new_size_bytes: int) -> None:
        """Grow the active layer (detached)."""

    @abc.abstractmethod
    async def copy_flat(self, source: Path, dest: VolumeLocation, size_bytes: int) -> None:
        """Create `dest` (one layer) as a flattened copy of the image chain whose top is `source`
        (create-from-snapshot, clone). `source` may be on another backend and in use (-U)."""

    @abc.abstractmethod
    async def create_from_image(
        self, source: Path, source_format: DiskFormat, dest: VolumeLocation, size_bytes: int
    ) -> None:
        """Create `dest` (one layer) holding the image file `source` (a Glance image's data, of
        the format it was verified to be), grown to `size_bytes`."""

    @abc.abstractmethod
    async def copy_layer(
        self,
        source: Path,
        dest: VolumeLocation,
        layer_id: str,
        parent_layer_id: str | None,
        *,
        rate_limit: int = 0,
        progress: ProgressCallback | None = None,
    ) -> None:
        """Chain-preserving copy of one layer into `dest`: the new file holds only what `source`
        holds over its own backing chain, with `parent_layer_id` (already in `dest`) as backing.
        With no parent the copy is the flattened view of `source`. Overwrites a partial file."""

    @abc.abstractmethod
    async def create_overlay(
        self, dest: VolumeLocation, layer_id: str, parent_layer_id: str, size_bytes: int
    ) -> None:
        """Create an empty qcow2 layer backed by `parent_layer_id` in `dest` (a mirror target)."""

    @abc.abstractmethod
    async def same_content(self, a: Path, b: Path) -> bool:
        """True when the guest-visible views of two image chains are identical (`qemu-img compare`)."""

    @abc.abstractmethod
    async def virtual_size(self, path: Path) -> int:
        """Virtual size of an image in bytes."""

    @abc.abstractmethod
    async def backing_chain(self, path: Path) -> list[Path]:
        """Files of the chain whose top is `path`, top first, as the image headers say."""

    @abc.abstractmethod
    async def usage(self) -> BackendUsage:
        """Real usage of the backend."""

    @abc.abstractmethod
    def stored_layers(self) -> list[StoredLayer]:
        """Every layer file present on the backend."""

    @abc.abstractmethod
    def stored_partials(self) -> list[StoredLayer]:
        """Every unfinished copy of a layer (written, never published) present on the backend."""

    @abc.abstractmethod
    def stored_locations(self) -> list[str]:
        """The name ids of every volume location that has a directory on the backend."""

    # Awaitable forms of the three inventories: a directory walk is I/O, and the only form a
    # driver on another host (`ferry.coordination.storage.RemoteStorage`) can answer.
    async def scan_layers(self) -> list[StoredLayer]:
        """`stored_layers`, off the event loop."""
        return await asyncio.to_thread(self.stored_layers)

    async def scan_partials(self) -> list[StoredLayer]:
        """`stored_partials`, off the event loop."""
        return await asyncio.to_thread(self.stored_partials)

    async def scan_locations(self) -> list[str]:
        """`stored_locations`, off the event loop."""
        return await asyncio.to_thread(self.stored_locations)

    @abc.abstractmethod
    async def remove_partial(self, name_id: str, layer_id: str) -> None:
        """Delete an unfinished copy of a layer. Idempotent."""

    @abc.abstractmethod
    async def check_layer(self, name_id: str, layer_id: str) -> LayerCheck:
        """Whether a layer's final file exists and is a sound image, and its virtual size."""
