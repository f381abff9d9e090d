"""How a restarted control plane settles a volume or a server that a crash left in a transitional
state, as decision tables (docs/recovery.md, "Volumes and servers"). Fed facts that the services
gather from the database, the backends and QEMU; returns what the state must become and why.

Pure: no I/O. Migrations (`domain/migration/recovery.py`) and snapshots settle themselves; a
volume a migration holds is left to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from ferry.domain.model import GiB
from ferry.domain.servers import ServerStatus, ServerTaskState
from ferry.domain.volumes import VolumeStatus

UNSETTLED_VOLUME = (
    VolumeStatus.CREATING,
    VolumeStatus.EXTENDING,
    VolumeStatus.DELETING,
    VolumeStatus.ATTACHING,
    VolumeStatus.DETACHING,
)
"""What an interrupted request can leave a volume in; nothing else moves a volume out of them."""


class Outcome(StrEnum):
    LEAVE = "leave"
    """Nothing to settle (or not ours: a migration holds the volume)."""
    COMPLETE = "complete"
    """The work finished (or is a committed intent that is safe to finish): record it."""
    ROLL_BACK = "roll-back"
    """The work did not happen: put the state back to what it was."""
    FAIL = "fail"
    """Neither is safe: an error state with the reason, from which delete is allowed."""


# -- volumes ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class VolumeFacts:
    """One volume as a restarted control plane finds it."""

    status: VolumeStatus
    size_gib: int
    target_size_gib: int | None = None
    """The size an extend recorded before it grew the file (None: no extend was recorded)."""
    migrating: bool = False
    file_present: bool = False
    """The active layer's final file exists (a `.part` file does not count: it is never whole)."""
    file_sound: bool = False
    """`qemu-img check` (qcow2) and `info` passed on it."""
    file_size: int | None = None
    """Its virtual size in bytes (None when unreadable)."""
    attached: bool = False
    """An attachment row names the volume."""
    plugged: bool = False
    """The server's running QEMU has a disk whose serial is the volume id."""
    disk_size: int | None = None
    """That disk's virtual size in bytes as QEMU has it open (None: not plugged or not reported).
    For a running guest it, not the file's header read behind QEMU's back, is the image's size."""


@dataclass(frozen=True)
class VolumeSettlement:
    outcome: Outcome
    status: VolumeStatus | None
    """The status to set; None: the volume is gone (a delete completed)."""
    why: str
    size_gib: int | None = None
    """The size to record, when it changes (a completed extend)."""


def _leave(f: VolumeFacts, why: str) -> VolumeSettlement:
    return VolumeSettlement(Outcome.LEAVE, f.status, why)


def settle_volume(f: VolumeFacts) -> VolumeSettlement:
    """The volume table of docs/recovery.md."""
    if f.migrating:
        return _leave(f, "its migration settles it")
    if f.status is VolumeStatus.CREATING:
        return _settle_create(f)
    if f.status is VolumeStatus.EXTENDING:
        return _settle_extend(f)
    if f.status is VolumeStatus.DELETING:
        return VolumeSettlement(
            Outcome.COMPLETE, None, "the delete was accepted and checked: retiring the files is idempotent"
        )
    if f.status is VolumeStatus.ATTACHING:
        if f.plugged:
            return VolumeSettlement(Outcome.COMPLETE, VolumeStatus.IN_USE, "QEMU has the disk plugged")
        return VolumeSettlement(Outcome.ROLL_BACK, VolumeStatus.AVAILABLE, "QEMU never got the disk")
    if f.status is VolumeStatus.DETACHING:
        if f.plugged:
            return VolumeSettlement(
                Outcome.ROLL_BACK, VolumeStatus.IN_USE, "the guest still has the disk: detach again"
            )
        return VolumeSettlement(Outcome.COMPLETE, VolumeStatus.AVAILABLE, "QEMU no longer has the disk")
    return _leave(f, "not transitional")


def _whole(f: VolumeFacts, size_gib: int) -> bool:
    return f.file_present and f.file_sound and f.file_size == size_gib * GiB


def _settle_create(f: VolumeFacts) -> VolumeSettlement:
    if _whole(f, f.size_gib):
        return VolumeSettlement(
            Outcome.COMPLETE, VolumeStatus.AVAILABLE, "the file was published whole and has the right size"
        )
    if f.file_present:
        return VolumeSettlement(
            Outcome.FAIL,
            VolumeStatus.ERROR,
            f"creation interrupted: its file is {_described(f)}, not a sound {f.size_gib} GiB image",
        )
    return VolumeSettlement(
        Outcome.FAIL,
        VolumeStatus.ERROR,
        "creation interrupted by a control-plane restart: no data was written",
    )


def _settle_extend(f: VolumeFacts) -> VolumeSettlement:
    """An attached volume (its extend began `in-use`) goes back to `in-use`, a detached one to
    `available`. A running guest's disk is judged by the size QEMU has it at (`block_resize`
    grows it there), any other by its file."""
    target = f.target_size_gib
    back = VolumeStatus.IN_USE if f.attached else VolumeStatus.AVAILABLE
    if f.plugged and f.disk_size is not None:
        if target is not None and f.disk_size == target * GiB:
            return VolumeSettlement(
                Outcome.COMPLETE, back, f"the running guest's disk already has the new {target} GiB", target
            )
        if f.disk_size == f.size_gib * GiB:
            return VolumeSettlement(
                Outcome.ROLL_BACK, back, f"the running guest's disk still has the old {f.size_gib} GiB"
            )
        return VolumeSettlement(
            Outcome.FAIL,
            VolumeStatus.ERROR,
            f"extend interrupted: the running guest's disk has {f.disk_size} bytes, "
            f"neither {f.size_gib} nor {target} GiB",
        )
    if target is not None and _whole(f, target):
        return VolumeSettlement(Outcome.COMPLETE, back, f"the file already has the new {target} GiB", target)
    if _whole(f, f.size_gib):
        return VolumeSettlement(Outcome.ROLL_BACK, back, f"the file still has the old {f.size_gib} GiB")
    return VolumeSettlement(
        Outcome.FAIL,
        VolumeStatus.ERROR,
        f"extend interrupted: its file is {_described(f)}, neither {f.size_gib} nor {target} GiB",
    )


def _described(f: VolumeFacts) -> str:
    if not f.file_present:
        return "missing"
    if not f.file_sound or f.file_size is None:
        return "unreadable or damaged"
    return f"{f.file_size} bytes"


# -- servers ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerFacts:
    status: ServerStatus
    task: ServerTaskState | None
    running: bool
    """Its QEMU process is alive (reconnected)."""
    volume_migrating: bool = False
    """One of its volumes is held by a migration (a delete must wait for it)."""


@dataclass(frozen=True)
class ServerSettlement:
    outcome: Outcome
    status: ServerStatus | None
    """The status to set (the task state is cleared); None: the server is gone (a delete completed)."""
    why: str
    fault: str | None = None


GONE = "process not running at control-plane start"


def _as_found(f: ServerFacts) -> ServerSettlement:
    """No task was in flight: the status follows the process."""
    if f.status in (ServerStatus.SHUTOFF, ServerStatus.ERROR):
        return ServerSettlement(Outcome.LEAVE, f.status, "stopped on purpose or failed before")
    if f.running:
        return ServerSettlement(Outcome.LEAVE, ServerStatus.ACTIVE, "its process is alive")
    return ServerSettlement(Outcome.ROLL_BACK, ServerStatus.SHUTOFF, "its process is gone", GONE)


def settle_server(f: ServerFacts) -> ServerSettlement:
    """The server table of docs/recovery.md."""
    task = f.task
    if task is None:
        return _as_found(f)
    if task is ServerTaskState.MIGRATING:  # never decided here: two hosts' QEMUs are involved
        return ServerSettlement(Outcome.LEAVE, f.status, "its live migration's conductor settles it")
    if task is ServerTaskState.DELETING:
        if f.volume_migrating:
            back = _as_found(ServerFacts(f.status, None, f.running))
            return ServerSettlement(
                Outcome.ROLL_BACK,
                back.status,
                "a volume is being migrated: the delete is refused",
                back.fault,
            )
        return ServerSettlement(Outcome.COMPLETE, None, "the delete was accepted: destroying is idempotent")
    if f.running:
        if task is ServerTaskState.POWERING_OFF:
            return ServerSettlement(Outcome.ROLL_BACK, ServerStatus.ACTIVE, "the process still runs")
        return ServerSettlement(Outcome.COMPLETE, ServerStatus.ACTIVE, "the process runs")
    if task is ServerTaskState.POWERING_OFF:
        return ServerSettlement(Outcome.COMPLETE, ServerStatus.SHUTOFF, "the process is gone")
    if task is ServerTaskState.POWERING_ON:
        return ServerSettlement(Outcome.ROLL_BACK, ServerStatus.SHUTOFF, "the process never started")
    if task is ServerTaskState.REBOOTING:
        return ServerSettlement(
            Outcome.FAIL, ServerStatus.SHUTOFF, "stopped, never booted again", "reboot interrupted: start it"
        )
    return ServerSettlement(
        Outcome.FAIL, ServerStatus.ERROR, "it never booted", "spawn interrupted by a control-plane restart"
    )
