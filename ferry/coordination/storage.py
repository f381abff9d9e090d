"""`RemoteStorage`: the storage contract for one file backend, each I/O method a driver call sent
to an up host that reaches the backend (`host_for()`, injected: the host registry decides).

Path arithmetic (`volume_dir`, `layer_path`) is computed here from the backend's configured root,
as the file driver computes it (`storage.layout`): no round trip, and the same paths the agent
uses, because every host mounts the backend at the path in `ferry.toml`. The inventories are
remote only in their awaitable forms (`scan_layers`, `scan_partials`, `scan_locations`): the
synchronous `stored_*` cannot wait for a host and raise DriverError saying so.
`copy_layer`'s progress callback stays here: the agent reports progress on the action and this
side calls it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from ferry.coordination.calls import DriverCall, Target
from ferry.coordination.queue import HostQueue
from ferry.domain.errors import DriverError
from ferry.domain.model import BackendConfig, DiskFormat, VolumeLocation
from ferry.drivers.storage import layout
from ferry.drivers.storage.base import BackendUsage, LayerCheck, ProgressCallback, StorageDriver, StoredLayer

HostFor = Callable[[], Awaitable[str]]
"""The name of an up host that reaches this backend."""


class RemoteStorage(StorageDriver):
    def __init__(
        self,
        queue: HostQueue,
        config: BackendConfig,
        host_for: HostFor,
        *,
        timeout: float = 120.0,
        slow_timeout: float = 6 * 3600.0,
    ) -> None:
        if config.driver != "file":
            raise DriverError(f"backend {config.name}: no remote form of a {config.driver!r} driver")
        super().__init__(config)
        self.root = Path(config.path).resolve()
        self.queue = queue
        self.host_for = host_for
        self.timeout = timeout
        self.slow_timeout = slow_timeout
        """For what copies, compares or deletes a whole volume."""

    async def _call(
        self, method: str, *args: Any, slow: bool = False, progress: ProgressCallback | None = None, **kw: Any
    ) -> Any:
        call = DriverCall(Target.STORAGE, self.name, method, args, kw)
        bound = self.slow_timeout if slow else self.timeout
        return await self.queue.call(await self.host_for(), call, timeout=bound, progress=progress)

    # -- paths, computed here ----------------------------------------------------------------
    def volume_dir(self, name_id: str) -> Path:
        return layout.volume_dir(self.root, name_id, self.name)

    def layer_path(self, name_id: str, layer_id: str) -> Path:
        return layout.layer_path(self.root, name_id, layer_id, self.format, self.name)

    # -- volumes and snapshots ---------------------------------------------------------------
    async def create_volume(self, loc: VolumeLocation, size_bytes: int) -> None:
        await self._call("create_volume", loc, size_bytes)

    async def delete_volume(self, name_id: str) -> None:
        await self._call("delete_volume", name_id, slow=True)

    async def retire_volume(self, name_id: str) -> None:
        await self._call("retire_volume", name_id)

    async def reclaim(self) -> None:
        await self._call("reclaim", slow=True)

    async def snapshot(self, loc: VolumeLocation, new_layer_id: str) -> VolumeLocation:
        out: VolumeLocation = await self._call("snapshot", loc, new_layer_id)
        return out

    async def drop_layer(self, name_id: str, layer_id: str) -> None:
        await self._call("drop_layer", name_id, layer_id)

    async def merge_layer(self, loc: VolumeLocation, layer_id: str) -> VolumeLocation:
        out: VolumeLocation = await self._call("merge_layer", loc, layer_id, slow=True)
        return out

    async def extend(self, loc: VolumeLocation, new_size_bytes: int) -> None:
        await self._call("extend", loc, new_size_bytes)

    # -- copies ------------------------------------------------------------------------------
    async def copy_flat(self, source: Path, dest: VolumeLocation, size_bytes: int) -> None:
        await self._call("copy_flat", source, dest, size_bytes, slow=True)

    async def create_from_image(
        self, source: Path, source_format: DiskFormat, dest: VolumeLocation, size_bytes: int
    ) -> None:
        await self._call("create_from_image", source, source_format, dest, size_bytes, slow=True)

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
        await self._call(
            "copy_layer", source, dest, layer_id, parent_layer_id, rate_limit=rate_limit,
            slow=True, progress=progress,
        )  # fmt: skip

    async def create_overlay(
        self, dest: VolumeLocation, layer_id: str, parent_layer_id: str, size_bytes: int
    ) -> None:
        await self._call("create_overlay", dest, layer_id, parent_layer_id, size_bytes)

    # -- inspection --------------------------------------------------------------------------
    async def same_content(self, a: Path, b: Path) -> bool:
        return bool(await self._call("same_content", a, b, slow=True))

    async def virtual_size(self, path: Path) -> int:
        out: int = await self._call("virtual_size", path)
        return out

    async def backing_chain(self, path: Path) -> list[Path]:
        out: list[Path] = await self._call("backing_chain", path)
        return out

    async def usage(self) -> BackendUsage:
        out: BackendUsage = await self._call("usage")
        return out

    def stored_layers(self) -> list[StoredLayer]:
        raise self._not_sync("stored_layers", "scan_layers")

    def stored_partials(self) -> list[StoredLayer]:
        raise self._not_sync("stored_partials", "scan_partials")

    def stored_locations(self) -> list[str]:
        raise self._not_sync("stored_locations", "scan_locations")

    def _not_sync(self, method: str, instead: str) -> DriverError:
        return DriverError(
            f"backend {self.name} is on another host: {method} cannot wait for it; use {instead}"
        )

    async def scan_layers(self) -> list[StoredLayer]:
        out: list[StoredLayer] = await self._call("scan_layers", slow=True)
        return out

    async def scan_partials(self) -> list[StoredLayer]:
        out: list[StoredLayer] = await self._call("scan_partials", slow=True)
        return out

    async def scan_locations(self) -> list[str]:
        out: list[str] = await self._call("scan_locations", slow=True)
        return out

    async def remove_partial(self, name_id: str, layer_id: str) -> None:
        await self._call("remove_partial", name_id, layer_id)

    async def check_layer(self, name_id: str, layer_id: str) -> LayerCheck:
        out: LayerCheck = await self._call("check_layer", name_id, layer_id, slow=True)
        return out
