"""Nova's instance actions: what each server action Ferry performs is called, and its events.

Names are Nova's (`nova/compute/instance_actions.py` and the compute manager's event names), so
`openstack server event list` and tempest read Ferry's record as they read Nova's. No
`swap_volume`: a volume migration moves the disk under the guest with its serial unchanged, and
Nova's swap PUT is only acknowledged (`MigrationService.swap_requested`).
"""

from __future__ import annotations

from enum import StrEnum

from ferry.domain.servers import ServerTaskState


class InstanceAction(StrEnum):
    CREATE = "create"
    START = "start"
    STOP = "stop"
    REBOOT = "reboot"
    DELETE = "delete"
    ATTACH_VOLUME = "attach_volume"
    DETACH_VOLUME = "detach_volume"
    LIVE_MIGRATION = "live-migration"
    EXTEND_VOLUME = "extend_volume"


class EventResult(StrEnum):
    SUCCESS = "Success"
    ERROR = "Error"


EVENT: dict[InstanceAction, str] = {
    InstanceAction.CREATE: "compute__do_build_and_run_instance",
    InstanceAction.START: "compute_start_instance",
    InstanceAction.STOP: "compute_stop_instance",
    InstanceAction.REBOOT: "compute_reboot_instance",
    InstanceAction.DELETE: "compute_terminate_instance",
    InstanceAction.ATTACH_VOLUME: "compute_attach_volume",
    InstanceAction.DETACH_VOLUME: "compute_detach_volume",
    InstanceAction.LIVE_MIGRATION: "compute_live_migration",
    InstanceAction.EXTEND_VOLUME: "compute_extend_volume",
}
"""The one event Ferry records under each action (Nova's compute-manager event for it)."""

OF_TASK: dict[ServerTaskState, InstanceAction] = {
    ServerTaskState.SPAWNING: InstanceAction.CREATE,
    ServerTaskState.POWERING_ON: InstanceAction.START,
    ServerTaskState.POWERING_OFF: InstanceAction.STOP,
    ServerTaskState.REBOOTING: InstanceAction.REBOOT,
    ServerTaskState.DELETING: InstanceAction.DELETE,
    ServerTaskState.MIGRATING: InstanceAction.LIVE_MIGRATION,
}
"""The action a server's life-cycle task is: its event ends when the task slot is released."""

LIFE_CYCLE = frozenset(OF_TASK.values())
