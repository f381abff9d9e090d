"""Guest devices: the virtio-blk disks on their PCIe root ports, as QEMU's QOM tree shows them.

Owns: device ids (`disk-<volume id>`), finding a free root port (`rp0..rpN-1`), device_add
arguments, reading plugged disks back from query-block and their serial from qom-get, and an
unplug that waits for the guest's acknowledgement (DEVICE_DELETED).
Does not own the block nodes behind a device (nodes.py) nor when to plug or unplug.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ferry.domain.errors import Conflict, NotFound
from ferry.drivers.hypervisor.qemu.nodes import chain_files
from ferry.drivers.hypervisor.qmp import Json, QmpCommandError, QmpConnection, device_deleted

PERIPHERAL = "/machine/peripheral"
ROOT_PORT = re.compile(r"rp(\d+)")
DISK_QDEV = re.compile(rf"{PERIPHERAL}/disk-([0-9a-f-]{{36}})(/virtio-backend)?")


@dataclass(frozen=True)
class PluggedDisk:
    """An attached disk as query-block shows it."""

    volume_id: str
    top_node: str
    files: tuple[str, ...]
    """Image files of its chain, active first."""
    size: int
    """The active layer's virtual size in bytes, as QEMU has it open."""


def device_id(volume_id: str) -> str:
    return f"disk-{volume_id}"


def device_args(volume_id: str, drive: str, port: str) -> Json:
    """device_add (or -device) arguments of a volume's disk on root port `port`."""
    return {
        "driver": "virtio-blk-pci",
        "id": device_id(volume_id),
        "drive": drive,
        "serial": volume_id,
        "bus": port,
    }


async def peripherals(conn: QmpConnection) -> set[str]:
    props = await conn.query("qom-list", {"path": PERIPHERAL})
    return {str(p["name"]) for p in props if str(p.get("type", "")).startswith("child<")}


async def free_port(conn: QmpConnection, server_id: str, present: set[str]) -> str:
    """A root port with no device behind it, found from QEMU's QOM tree (query-pci only sees
    what the guest firmware has enumerated). `present`: the current peripherals."""
    ports = sorted((p for p in present if ROOT_PORT.fullmatch(p)), key=lambda p: int(p[2:]))
    used: set[str] = set()
    for dev in present.difference(ports):
        bus = await conn.execute("qom-get", {"path": f"{PERIPHERAL}/{dev}", "property": "parent_bus"})
        used.add(str(bus).rstrip("/").split("/")[-1])
    for port in ports:
        if port not in used:
            return port
    raise Conflict(f"server {server_id} has no free hotplug slot ({len(ports)} root ports, all in use)")


async def plugged_disks(conn: QmpConnection) -> list[PluggedDisk]:
    disks = []
    for block in await conn.query("query-block"):
        m = DISK_QDEV.fullmatch(str(block.get("qdev", "")))
        if m is not None and "inserted" in block:
            inserted = block["inserted"]
            image = inserted["image"]
            disks.append(
                PluggedDisk(m[1], str(inserted["node-name"]), chain_files(image), int(image["virtual-size"]))
            )
    return disks


async def plugged_disk(conn: QmpConnection, volume_id: str) -> PluggedDisk:
    for disk in await plugged_disks(conn):
        if disk.volume_id == volume_id:
            return disk
    raise NotFound(f"volume {volume_id} is not attached")


async def serial(conn: QmpConnection, volume_id: str) -> str:
    path = f"{PERIPHERAL}/{device_id(volume_id)}"
    try:
        return str(await conn.execute("qom-get", {"path": path, "property": "serial"}))
    except QmpCommandError as exc:
        if exc.error_class == "DeviceNotFound":
            raise NotFound(f"volume {volume_id} is not attached") from exc
        raise


async def unplug(conn: QmpConnection, dev: str, timeout: float) -> None:
    """device_del and wait for DEVICE_DELETED (the guest has to acknowledge)."""
    with conn.subscribe(device_deleted(dev)) as sub:
        try:
            await conn.execute("device_del", {"id": dev})
        except QmpCommandError as exc:
            if exc.error_class == "DeviceNotFound":
                return
            if "in the process of unplug" not in exc.desc:
                raise
        if not await sub.wait(timeout) and dev in await peripherals(conn):
            # The guest decides: one still booting (or hung) ignores the request for now.
            raise Conflict(
                f"device {dev} was not released by the guest within {timeout:g} s "
                "(is it still booting?); the unplug request stays pending: retry the detach"
            )


THROTTLE_ARGS = {
    "total_bytes_sec": "bps",
    "read_bytes_sec": "bps_rd",
    "write_bytes_sec": "bps_wr",
    "total_iops_sec": "iops",
    "read_iops_sec": "iops_rd",
    "write_iops_sec": "iops_wr",
    "total_bytes_sec_max": "bps_max",
    "read_bytes_sec_max": "bps_rd_max",
    "write_bytes_sec_max": "bps_wr_max",
    "total_iops_sec_max": "iops_max",
    "read_iops_sec_max": "iops_rd_max",
    "write_iops_sec_max": "iops_wr_max",
    "size_iops_sec": "iops_size",
}
"""Nova's front-end QoS keys (libvirt's iotune names) and block_set_io_throttle's arguments."""


def throttle_args(volume_id: str, limits: dict[str, int]) -> Json:
    """block_set_io_throttle arguments for a disk: the six rates are required (0: no limit). The
    device is the virtio-blk backend inside the PCI device: that one holds the block backend."""
    args: Json = {
        "id": f"{PERIPHERAL}/{device_id(volume_id)}/virtio-backend",
        "bps": 0,
        "bps_rd": 0,
        "bps_wr": 0,
        "iops": 0,
        "iops_rd": 0,
        "iops_wr": 0,
    }
    for key, value in limits.items():
        if key in THROTTLE_ARGS:
            args[THROTTLE_ARGS[key]] = value
    return args


async def throttle(conn: QmpConnection, volume_id: str) -> dict[str, int]:
    """A disk's throttle as query-block shows it, by Nova's key names (the limits set, not 0)."""
    for block in await conn.query("query-block"):
        m = DISK_QDEV.fullmatch(str(block.get("qdev", "")))
        if m is not None and m[1] == volume_id and "inserted" in block:
            inserted = block["inserted"]
            return {key: int(inserted[arg]) for key, arg in THROTTLE_ARGS.items() if inserted.get(arg)}
    raise NotFound(f"volume {volume_id} is not attached")
