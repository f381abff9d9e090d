"""Server states and task states (as Nova names them), the words a refusal uses for each task,
and small rules about disks. Pure: no I/O."""

from __future__ import annotations

from enum import StrEnum


class ServerStatus(StrEnum):
    BUILD = "BUILD"
    ACTIVE = "ACTIVE"
    SHUTOFF = "SHUTOFF"
    REBOOT = "HARD_REBOOT"
    ERROR = "ERROR"
    DELETED = "DELETED"


class ServerTaskState(StrEnum):
    """The one life-cycle action a server is busy with (`task_state`; None when idle)."""

    SPAWNING = "spawning"
    POWERING_OFF = "powering-off"
    POWERING_ON = "powering-on"
    REBOOTING = "rebooting"
    DELETING = "deleting"
    MIGRATING = "migrating"
    """Live migration to another host: Nova shows the server's status as MIGRATING."""


TASK_VERB = {
    ServerTaskState.SPAWNING: "spawn",
    ServerTaskState.POWERING_OFF: "power off",
    ServerTaskState.POWERING_ON: "power on",
    ServerTaskState.REBOOTING: "reboot",
    ServerTaskState.DELETING: "delete",
    ServerTaskState.MIGRATING: "live-migrate",
}
"""What the user asked for, for each task, as a refusal names it."""


def refusal(task: ServerTaskState, server_id: str, status: ServerStatus, busy: ServerTaskState | None) -> str:
    """Why `task` may not start on a server in `status` (busy with `busy`), as the user reads it."""
    doing = f" ({busy})" if busy else ""
    return f"Cannot {TASK_VERB[task]} server {server_id} while it is {status}{doing}."


POWER_STATE = {
    ServerStatus.ACTIVE: 1,
    ServerStatus.SHUTOFF: 4,
    ServerStatus.ERROR: 0,
    ServerStatus.BUILD: 0,
    ServerStatus.REBOOT: 1,
}
VM_STATE = {
    ServerStatus.ACTIVE: "active",
    ServerStatus.SHUTOFF: "stopped",
    ServerStatus.ERROR: "error",
    ServerStatus.BUILD: "building",
    ServerStatus.REBOOT: "active",
}


def device_name(used: set[str]) -> str:
    """The next free /dev/vdX name (vda is the boot disk when there is one)."""
    for letter in "bcdefghijklmnopqrstuvwxyz":
        name = f"/dev/vd{letter}"
        if name not in used:
            return name
    return "/dev/vdz"
