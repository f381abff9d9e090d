"""File storage backend: each volume is a chain of qcow2 (or one raw) layer files in a directory.

Owns the on-disk layout `<root>/volume-<name_id>/<layer_id>.<qcow2|raw>` and every file operation
on it. Layer files reference their backing by the bare sibling file name, so a volume directory is
self-contained and can be moved or mounted elsewhere. Files are first written under a temporary
name `.<layer_id>.part` and renamed into place, so a final name always holds a complete image;
a leftover `.part` file is overwritten by the next attempt and removed with the volume.
A retired volume directory is renamed into `<root>/.trash/` (atomic, instant) and deleted there in
the background; whatever a crash leaves in the trash is deleted at the next start.
It decides no policy (which layers to copy, when to delete): the services do.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import uuid
from dataclasses import replace
from pathlib import Path

from ferry.domain.errors import BadRequest, DriverError
from ferry.domain.ids import require_uuid
from ferry.domain.model import BackendConfig, DiskFormat, VolumeLocation
from ferry.drivers.storage import layout
from ferry.drivers.storage.base import (
    BackendUsage,
    LayerCheck,
    ProgressCallback,
    StorageDriver,
    StoredLayer,
)
from ferry.drivers.storage.layout import PART_SUFFIX as _PART_SUFFIX
from ferry.drivers.storage.layout import TRASH as _TRASH
from ferry.drivers.storage.qemu_img import QemuImg

# Explicit so a changed qemu-img default cannot silently change what Ferry writes.
_QCOW2_OPTIONS = {"lazy_refcounts": "off", "preallocation": "off"}


def format_of(path: Path) -> DiskFormat:
    """Format of a layer file, from its extension (never probed: see qemu_img's docstring)."""
    for fmt in DiskFormat:
        if path.suffix == f".{fmt.value}":
            return fmt
    raise BadRequest(f"Cannot tell the image format of {path}: not a .qcow2 or .raw layer file.")


def _fsync_dir(path: Path) -> None:
    # A rename is durable only once the directory is synced; the caller then records the new state.
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FileStorageDriver(StorageDriver):
    """A backend that is a directory on a local or NFS filesystem."""

    def __init__(self, config: BackendConfig, qemu_img: QemuImg | None = None) -> None:
        super().__init__(config)
        root = Path(config.path)
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.root = root.resolve()
        self.img = qemu_img or QemuImg()
        self._reclaiming: set[asyncio.Task[None]] = set()

    # -- paths ---------------------------------------------------------------------------------

    def volume_dir(self, name_id: str) -> Path:
        return layout.volume_dir(self.root, name_id, self.name)

    def layer_path(self, name_id: str, layer_id: str) -> Path:
        return layout.layer_path(self.root, name_id, layer_id, self.format, self.name)

    def part_path(self, name_id: str, layer_id: str) -> Path:
        """Temporary name a layer is written under before it is renamed into place."""
        layer = require_uuid(layer_id, "layer id")
        return layout.inside(self.root, self.volume_dir(name_id) / f".{layer}{_PART_SUFFIX}", self.name)

    def _layer_name(self, layer_id: str) -> str:
        """A layer's file name as stored in its child's qcow2 header (relative to the volume dir)."""
        return f"{require_uuid(layer_id, 'layer id')}.{self.format.value}"

    def _check_location(self, loc: VolumeLocation) -> None:
        if loc.backend != self.name:
            raise BadRequest(f"Volume location is on backend {loc.backend!r}, not {self.name!r}.")
        if loc.format is not self.format:
            raise BadRequest(f"Backend {self.name} stores {self.format.value}, not {loc.format.value}.")
        if not loc.layers or len(set(loc.layers)) != len(loc.layers):
            raise BadRequest(f"Volume location {loc.name_id} has an empty or repeated layer list.")
        if self.format is DiskFormat.RAW and len(loc.layers) != 1:
            raise BadRequest(f"Backend {self.name} is raw: a volume there has exactly one layer.")
        for layer_id in loc.layers:
            self.layer_path(loc.name_id, layer_id)

    def _require_qcow2(self) -> None:
        if self.format is not DiskFormat.QCOW2:
            raise BadRequest(f"backend {self.name} is raw: snapshots need a qcow2 backend")

    def _make_volume_dir(self, name_id: str) -> Path:
        path = self.volume_dir(name_id)
        path.mkdir(mode=0o700, exist_ok=True)
        return path

    async def _publish(self, part: Path, final: Path) -> None:
        """Rename a finished temporary file to its final name, durably: its data first (qemu-img
        convert writes with cache=unsafe and never flushes; a migration deletes the source once
        this returns), then the rename."""
        await asyncio.to_thread(_fsync_file, part)
        os.replace(part, final)
        await asyncio.to_thread(_fsync_dir, final.parent)

    # -- volumes and snapshots -----------------------------------------------------------------

    async def create_volume(self, loc: VolumeLocation, size_bytes: int) -> None:
        self._check_location(loc)
        if len(loc.layers) != 1:
            raise BadRequest("A new volume has exactly one layer.")
        _check_size(size_bytes)
        final = self.layer_path(loc.name_id, loc.active_layer)
        if final.exists():
            await self._require_size(final, size_bytes)
            return
        self._make_volume_dir(loc.name_id)
        part = self.part_path(loc.name_id, loc.active_layer)
        options = _QCOW2_OPTIONS if self.format is DiskFormat.QCOW2 else {}
        await self.img.create(part, self.format, size_bytes, options=options)
        await self._publish(part, final)

    async def delete_volume(self, name_id: str) -> None:
        path = self.volume_dir(name_id)
        with contextlib.suppress(FileNotFoundError):
            await asyncio.to_thread(shutil.rmtree, path)

    async def retire_volume(self, name_id: str) -> None:
        # Unlinking a large file costs about a second per GiB on a discard-mounted filesystem;
        # nothing refers to a retired location, so only the rename is waited for.
        path = self.volume_dir(name_id)
        trash = self.root / _TRASH
        trash.mkdir(mode=0o700, exist_ok=True)
        if not path.exists():
            return
        retired = trash / f"{path.name}.{uuid.uuid4().hex}"
        os.rename(path, retired)
        await asyncio.to_thread(_fsync_dir, self.root)
        task = asyncio.create_task(asyncio.to_thread(shutil.rmtree, retired, ignore_errors=True))
        self._reclaiming.add(task)
        task.add_done_callback(self._reclaiming.discard)

    async def reclaim(self) -> None:
        if self._reclaiming:
            await asyncio.gather(*self._reclaiming)
        await asyncio.to_thread(self._empty_trash)

    def _empty_trash(self) -> None:
        # The entries, not the directory: a concurrent retire_volume may be renaming into it.
        trash = self.root / _TRASH
        if trash.is_dir():
            for entry in os.scandir(trash):
                shutil.rmtree(entry.path, ignore_errors=True)

    async def snapshot(self, loc: VolumeLocation, new_layer_id: str) -> VolumeLocation:
        self._require_qcow2()
        self._check_location(loc)
        new_layer = require_uuid(new_layer_id, "layer id")
        if new_layer in loc.layers:
            raise BadRequest(f"Layer {new_layer} is already part of volume {loc.name_id}.")
        final = self.layer_path(loc.name_id, new_layer)
        parent = self._layer_name(loc.active_layer)
        # Replayed after a crash: the renamed file is complete; keep it if it sits on our active.
        if not (final.exists() and await self._backing_name(final) == parent):
            part = self.part_path(loc.name_id, new_layer)
            await self.img.create(part, DiskFormat.QCOW2, None, backing=parent, options=_QCOW2_OPTIONS)
            await self._publish(part, final)
        return replace(loc, layers=(*loc.layers, new_layer))

    async def drop_layer(self, name_id: str, layer_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.layer_path(name_id, layer_id).unlink()
            await asyncio.to_thread(_fsync_dir, self.volume_dir(name_id))

    async def merge_layer(self, loc: VolumeLocation, layer_id: str) -> VolumeLocation:
        self._require_qcow2()
        self._check_location(loc)
        layer = require_uuid(layer_id, "layer id")
        if layer not in loc.readonly_layers:
            raise BadRequest(f"Layer {layer} is not a read-only layer of volume {loc.name_id}.")
        index = loc.layers.index(layer)
        child = self.layer_path(loc.name_id, loc.layers[index + 1])
        new_backing = self._layer_name(loc.layers[index - 1]) if index > 0 else ""
        current = await self._backing_name(child) or ""
        if current == self._layer_name(layer):
            # Safe rebase copies into the child every cluster the layer contributed; a crash
            # during it leaves the child still backed by the layer, so a rerun redoes it.
            await self.img.rebase(child, DiskFormat.QCOW2, new_backing, DiskFormat.QCOW2)
        elif current != new_backing:
            raise DriverError(
                f"Layer {child} is backed by {current!r}, expected {self._layer_name(layer)!r}."
            )
        # Here the child no longer needs the layer (first run or replay after a crash).
        path = self.layer_path(loc.name_id, layer)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        await asyncio.to_thread(_fsync_dir, path.parent)
        return replace(loc, layers=tuple(x for x in loc.layers if x != layer))

    async def extend(self, loc: VolumeLocation, new_size_bytes: int) -> None:
        self._check_location(loc)
        _check_size(new_size_bytes)
        active = self.layer_path(loc.name_id, loc.active_layer)
        current = await self.virtual_size(active)
        if new_size_bytes < current:
            raise BadRequest(f"Cannot shrink volume {loc.name_id} from {current} to {new_size_bytes} bytes.")
        if new_size_bytes > current:
            await self.img.resize(active, self.format, new_size_bytes)
            # The caller records the new size next: the grown header must be on disk first.
            await asyncio.to_thread(_fsync_file, active)

    # -- copies --------------------------------------------------------------------------------

    async def copy_flat(self, source: Path, dest: VolumeLocation, size_bytes: int) -> None:
        await self._convert_into(source, format_of(source), dest, size_bytes)

    async def create_from_image(
        self, source: Path, source_format: DiskFormat, dest: VolumeLocation, size_bytes: int
    ) -> None:
        await self._convert_into(source, source_format, dest, size_bytes)

    async def _convert_into(
        self, source: Path, source_format: DiskFormat, dest: VolumeLocation, size_bytes: int
    ) -> None:
        """A flattened copy of `source` published as `dest`'s one layer: through its .part file
        and an atomic rename, so a published file is always whole (a replay keeps it)."""
        self._check_location(dest)
        if len(dest.layers) != 1:
            raise BadRequest("A flattened copy has exactly one layer.")
        _check_size(size_bytes)
        final = self.layer_path(dest.name_id, dest.active_layer)
        if final.exists():
            await self._require_size(final, size_bytes)
            return
        source_size = (await self.img.info(source, source_format)).virtual_size
        if source_size > size_bytes:
            raise BadRequest(f"Cannot copy {source_size} bytes into a volume of {size_bytes} bytes.")
        self._make_volume_dir(dest.name_id)
        part = self.part_path(dest.name_id, dest.active_layer)
        await self.img.convert(source, source_format, part, self.format, options=self._create_options())
        if source_size < size_bytes:
            await self.img.resize(part, self.format, size_bytes)
        await self._publish(part, final)

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
        """Always rewrites the layer through its `.part` file, then atomically replaces the final name:
        a replayed step cannot trust a file it did not see finish."""
        self._check_location(dest)
        layer = require_uuid(layer_id, "layer id")
        backing: str | None = None
        if parent_layer_id is not None:
            self._require_qcow2()
            parent_path = self.layer_path(dest.name_id, parent_layer_id)
            if not parent_path.exists():
                raise DriverError(f"Parent layer {parent_path} of {layer} has not been copied.")
            backing = self._layer_name(parent_layer_id)
        self._make_volume_dir(dest.name_id)
        part = self.part_path(dest.name_id, layer)
        await self.img.convert(
            source,
            format_of(source),
            part,
            self.format,
            backing=backing,
            options=self._create_options(),
            rate_limit=rate_limit,
            progress=progress,
        )
        if backing is not None:
            await self._make_backing_relative(part, backing)
        await self._publish(part, self.layer_path(dest.name_id, layer))

    async def _make_backing_relative(self, path: Path, backing: str) -> None:
        # qemu-img stores the -B string as given (the bare name today); guard against a version
        # that would store a resolved absolute path, which would tie the file to this directory.
        if (await self.img.info(path, DiskFormat.QCOW2)).backing_filename != backing:
            await self.img.rebase(path, DiskFormat.QCOW2, backing, DiskFormat.QCOW2, unsafe=True)

    async def create_overlay(
        self, dest: VolumeLocation, layer_id: str, parent_layer_id: str, size_bytes: int
    ) -> None:
        """Always creates a fresh empty file, replacing any leftover: a target kept from an earlier
        attempt may hold stale clusters that a `sync: top` mirror would never overwrite."""
        self._require_qcow2()
        self._check_location(dest)
        _check_size(size_bytes)
        layer = require_uuid(layer_id, "layer id")
        if not self.layer_path(dest.name_id, parent_layer_id).exists():
            raise DriverError(f"Parent layer {parent_layer_id} of overlay {layer} does not exist.")
        part = self.part_path(dest.name_id, layer)
        backing = self._layer_name(parent_layer_id)
        await self.img.create(part, DiskFormat.QCOW2, size_bytes, backing=backing, options=_QCOW2_OPTIONS)
        await self._publish(part, self.layer_path(dest.name_id, layer))

    def _create_options(self) -> dict[str, str]:
        return _QCOW2_OPTIONS if self.format is DiskFormat.QCOW2 else {}

    # -- inspection ----------------------------------------------------------------------------

    async def same_content(self, a: Path, b: Path) -> bool:
        return await self.img.compare(a, format_of(a), b, format_of(b))

    async def virtual_size(self, path: Path) -> int:
        return (await self.img.info(path, format_of(path))).virtual_size

    async def backing_chain(self, path: Path) -> list[Path]:
        top = path.absolute()
        chain = [top]
        for info in await self.img.info_chain(top, format_of(top)):
            if info.backing_filename is None:
                break
            # Relative names are relative to the directory of the image that names them.
            chain.append(Path(os.path.normpath(chain[-1].parent / info.backing_filename)))
        return chain

    async def _backing_name(self, path: Path) -> str | None:
        return (await self.img.info(path, format_of(path))).backing_filename

    async def _require_size(self, path: Path, size_bytes: int) -> None:
        current = await self.virtual_size(path)
        if current != size_bytes:
            raise DriverError(f"{path} already exists with {current} bytes, not {size_bytes}.")

    async def usage(self) -> BackendUsage:
        allocated = await asyncio.to_thread(self._allocated_bytes)
        stat = os.statvfs(self.root)
        return BackendUsage(allocated_bytes=allocated, free_bytes=stat.f_bavail * stat.f_frsize)

    def _allocated_bytes(self) -> int:
        return layout.allocated_bytes(self.root)

    def stored_layers(self) -> list[StoredLayer]:
        """Complete layer files only (never an unfinished `.<layer_id>.part` copy)."""
        return layout.layers(self.root)

    def stored_partials(self) -> list[StoredLayer]:
        return layout.partials(self.root)

    def stored_locations(self) -> list[str]:
        return [layout.name_id_of(d) for d in layout.volume_dirs(self.root)]

    async def remove_partial(self, name_id: str, layer_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.part_path(name_id, layer_id).unlink()
            await asyncio.to_thread(_fsync_dir, self.volume_dir(name_id))

    async def check_layer(self, name_id: str, layer_id: str) -> LayerCheck:
        path = self.layer_path(name_id, layer_id)
        if not path.is_file():
            return LayerCheck(present=False)
        fmt = format_of(path)
        try:
            info = await self.img.info(path, fmt)
            if fmt is DiskFormat.QCOW2:
                await self.img.check(path, fmt)
        except DriverError as e:
            return LayerCheck(present=True, problem=e.message)
        return LayerCheck(present=True, sound=True, virtual_size=info.virtual_size)


def _check_size(size_bytes: int) -> None:
    # qemu-img rounds sizes up to 512 bytes; refusing others keeps size checks exact.
    if size_bytes <= 0 or size_bytes % 512:
        raise BadRequest(f"Volume size {size_bytes} is not a positive multiple of 512 bytes.")
