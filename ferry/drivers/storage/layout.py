"""What lies under a file backend's root, read from the directory tree: volume directories, the
layer files in them, the unfinished `.<layer_id>.part` files, and the blocks they all use.

Owns the names of the on-disk layout (`volume-<uuid>/`, `<layer>.<fmt>`, `.<layer>.part`,
`.trash/`) and the path arithmetic from a root (`volume_dir`, `layer_path`: also what a caller on
another host computes); reads only — creating, publishing and deleting stay in `file.py`.
"""

from __future__ import annotations

import os
from pathlib import Path

from ferry.domain.errors import BadRequest
from ferry.domain.ids import is_uuid, require_uuid
from ferry.domain.model import DiskFormat
from ferry.drivers.storage.base import StoredLayer

VOLUME_PREFIX = "volume-"
PART_SUFFIX = ".part"
TRASH = ".trash"
_FORMATS = frozenset(f.value for f in DiskFormat)


def inside(root: Path, path: Path, backend: str) -> Path:
    """`path`, if it stays inside the backend's (resolved) root. UUIDs cannot contain '/' or
    '..'; this also refuses a symlink planted inside the root."""
    if not path.resolve().is_relative_to(root):
        raise BadRequest(f"Path {path} is outside backend {backend}.")
    return path


def volume_dir(root: Path, name_id: str, backend: str) -> Path:
    """Directory of one volume location: path arithmetic, also for a root on another host."""
    return inside(root, root / f"{VOLUME_PREFIX}{require_uuid(name_id, 'volume name id')}", backend)


def layer_path(root: Path, name_id: str, layer_id: str, fmt: DiskFormat, backend: str) -> Path:
    layer = require_uuid(layer_id, "layer id")
    return inside(root, volume_dir(root, name_id, backend) / f"{layer}.{fmt.value}", backend)


def canonical_uuid(value: str) -> bool:
    return is_uuid(value) and value == value.lower()


def volume_dirs(root: Path) -> list[Path]:
    """`volume-<uuid>` directories under the root; anything else there is ignored."""
    dirs: list[Path] = []
    with os.scandir(root) as entries:
        for entry in entries:
            name = entry.name
            if not name.startswith(VOLUME_PREFIX) or not entry.is_dir(follow_symlinks=False):
                continue
            if canonical_uuid(name.removeprefix(VOLUME_PREFIX)):
                dirs.append(Path(entry.path))
    return sorted(dirs)


def name_id_of(volume_dir: Path) -> str:
    return volume_dir.name.removeprefix(VOLUME_PREFIX)


def _layer_id(entry_name: str) -> str | None:
    """The layer id of a complete layer file's name (`<uuid>.<fmt>`), else None."""
    stem, _, ext = entry_name.partition(".")
    return stem if ext in _FORMATS and canonical_uuid(stem) else None


def _partial_layer_id(entry_name: str) -> str | None:
    """The layer id of an unfinished copy's name (`.<uuid>.part`), else None."""
    if not (entry_name.startswith(".") and entry_name.endswith(PART_SUFFIX)):
        return None
    stem = entry_name[1 : -len(PART_SUFFIX)]
    return stem if canonical_uuid(stem) else None


def _scan(root: Path, *, partial: bool) -> list[StoredLayer]:
    pick = _partial_layer_id if partial else _layer_id
    found: list[StoredLayer] = []
    for volume in volume_dirs(root):
        with os.scandir(volume) as entries:
            for entry in entries:
                layer = pick(entry.name)
                if layer is not None and entry.is_file(follow_symlinks=False):
                    modified = entry.stat(follow_symlinks=False).st_mtime
                    found.append(StoredLayer(name_id_of(volume), layer, Path(entry.path), modified))
    return sorted(found, key=lambda s: str(s.path))


def layers(root: Path) -> list[StoredLayer]:
    """Complete layer files only (never an unfinished `.<layer_id>.part` copy)."""
    return _scan(root, partial=False)


def partials(root: Path) -> list[StoredLayer]:
    """Unfinished copies (`.<layer_id>.part`): never whole, whatever their size."""
    return _scan(root, partial=True)


def allocated_bytes(root: Path) -> int:
    """Blocks of every file in every volume directory (`.part` files and the trash included:
    they use space until deleted)."""
    total = 0
    trash = root / TRASH
    retired = [Path(e.path) for e in os.scandir(trash) if e.is_dir()] if trash.is_dir() else []
    for volume in volume_dirs(root) + retired:
        with os.scandir(volume) as entries:
            for entry in entries:
                if entry.is_file(follow_symlinks=False):
                    total += entry.stat(follow_symlinks=False).st_blocks * 512
    return total
