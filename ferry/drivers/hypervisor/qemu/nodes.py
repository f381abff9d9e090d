"""Block nodes: their names, their blockdev-add options, and adding and deleting them over QMP.

Names come from the file path alone ("f"/"p" + 20 hex of sha1(absolute path) for the
format/protocol node), so a fresh driver finds the nodes an earlier control plane opened.
Also grows a node under its users (block_resize). Does not own devices (devices.py) nor jobs
that move data between nodes (jobs.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from collections.abc import Iterable
from typing import Any

from ferry.domain.errors import BadRequest, DriverError
from ferry.domain.model import DiskFormat, LayerFile
from ferry.drivers.hypervisor.qmp import Json, QmpConnection


# -- naming ------------------------------------------------------------------------------
def absolute(path: str) -> str:
    return os.path.abspath(path)


def _hash(path: str) -> str:
    return hashlib.sha1(absolute(path).encode()).hexdigest()[:20]


def format_node(path: str) -> str:
    """Node name of the format (qcow2/raw) node of an image file."""
    return "f" + _hash(path)


def file_node(path: str) -> str:
    """Node name of the protocol (file) node of an image file."""
    return "p" + _hash(path)


def layer_nodes_top_first(paths: Iterable[str]) -> list[str]:
    """Format then file node of each path, in the order given (pass them top first)."""
    return [name for p in paths for name in (format_node(p), file_node(p))]


def plain_filename(name: str) -> str:
    """The image file behind a QEMU filename: explicit backing overrides make QEMU report a
    `json:{...}` pseudo-filename whose `file.filename` is the real one."""
    if not name.startswith("json:"):
        return name
    node: Any = json.loads(name[len("json:") :])
    while isinstance(node, dict) and "file" in node:
        node = node["file"]
    return node if isinstance(node, str) else str(node.get("filename", name))


def chain_files(image: Json) -> tuple[str, ...]:
    """Files of an ImageInfo chain (`image`, `backing-image`, ...), active first."""
    files: list[str] = []
    level: Json | None = image
    while level is not None:
        files.append(plain_filename(str(level["filename"])))
        level = level.get("backing-image")
    return tuple(files)


# -- options -----------------------------------------------------------------------------
def node_options(layer: LayerFile, backing: str | None, *, writable: bool) -> tuple[Json, Json]:
    """blockdev-add arguments of the file node and the format node of one layer."""
    path = absolute(layer.path)
    protocol: Json = {
        "driver": "file",
        "filename": path,
        "node-name": file_node(path),
        # Read-only layers are read-only at the format node; the file node follows its users
        # (auto-read-only), so a later block-stream into this layer can reopen it read-write.
        "read-only": False,
        "auto-read-only": not writable,
        "aio": "threads",
        "discard": "unmap",
    }
    fmt: Json = {
        "driver": layer.format.value,
        "file": file_node(path),
        "node-name": format_node(path),
        "read-only": not writable,
        "discard": "unmap",
        "detect-zeroes": "unmap",
    }
    if layer.format is DiskFormat.QCOW2:
        fmt["backing"] = backing
    elif backing is not None:
        raise BadRequest(f"{path}: a raw layer cannot have a backing layer.")
    return protocol, fmt


def chain_options(layers: Iterable[LayerFile], *, top_writable: bool = True) -> list[Json]:
    """blockdev-add arguments for a whole chain, base first, each file node before its format node."""
    layers = list(layers)
    options: list[Json] = []
    backing: str | None = None
    for i, layer in enumerate(layers):
        writable = top_writable and i == len(layers) - 1
        options.extend(node_options(layer, backing, writable=writable))
        backing = format_node(layer.path)
    return options


# -- QMP -----------------------------------------------------------------------------------
async def node_names(conn: QmpConnection) -> set[str]:
    return {str(n["node-name"]) for n in await conn.query("query-named-block-nodes", {"flat": True})}


async def add_nodes(conn: QmpConnection, options: list[Json]) -> list[str]:
    """blockdev-add each node that is not there yet; on failure delete the ones added here.
    Returns the names added, in order."""
    existing = await node_names(conn)
    added: list[str] = []
    try:
        for opts in options:
            if opts["node-name"] not in existing:
                await conn.execute("blockdev-add", opts)
                added.append(str(opts["node-name"]))
    except DriverError:
        await del_nodes(conn, reversed(added))
        raise
    return added


async def del_nodes(conn: QmpConnection, names: Iterable[str]) -> None:
    """blockdev-del the nodes that exist, in the order given (parents before children)."""
    existing = await node_names(conn)
    for name in names:
        if name in existing:
            await conn.execute("blockdev-del", {"node-name": name})


async def drop_layers(conn: QmpConnection, files: Iterable[LayerFile]) -> None:
    """Delete the nodes of `files`, given base first as in a chain: top first, each format node
    before its file node."""
    await del_nodes(conn, layer_nodes_top_first(absolute(f.path) for f in reversed(list(files))))


async def grow(conn: QmpConnection, node: str, path: str, current: int, new_size: int) -> None:
    """Grow format node `node` (of image file `path`, now `current` bytes) to `new_size` under
    its users: QMP block_resize writes the grown qcow2 header synchronously and raises the
    virtio-blk capacity-change notification, so the guest rereads the size without a replug.
    Then the file (a raw one's length too) is flushed: the caller records the size next."""
    if new_size > current:
        await conn.execute("block_resize", {"node-name": node, "size": new_size})
    await asyncio.to_thread(_fsync_path, path)


def _fsync_path(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
