"""Server states (as Nova names them) and small rules about disks."""

from __future__ import annotations

from enum import StrEnum


class ServerStatus(StrEnum):
    BUILD = "BUILD"
    ACTIVE = "ACTIVE"
    SHUTOFF = "SHUTOFF"
    REBOOT = "HARD_REBOOT"
    ERROR = "ERROR"
    DELETED = "DELETED"


POWER_STATE = {"ACTIVE": 1, "SHUTOFF": 4, "ERROR": 0, "BUILD": 0, "HARD_REBOOT": 1}
VM_STATE = {
    "ACTIVE": "active",
    "SHUTOFF": "stopped",
    "ERROR": "error",
    "BUILD": "building",
    "HARD_REBOOT": "active",
}


def device_name(used: set[str]) -> str:
    """The next free /dev/vdX name (vda is the boot disk when there is one)."""
    for letter in "bcdefghijklmnopqrstuvwxyz":
        name = f"/dev/vd{letter}"
        if name not in used:
            return name
    return "/dev/vdz"
