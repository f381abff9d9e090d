"""The agent's performer: a driver call done on this host's real drivers (`AgentExecutor`), and
why each driver method may be performed again after a redelivery (`REPLAY`).

An action is redelivered when its agent died (or stopped) while performing it: the next agent
runs the call again from the start. That is safe only because every remote method is idempotent,
by its contract or because it checks the state first; `REPLAY` says which for each one, and a
test keeps it in step with `calls.REMOTE_METHODS`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ferry.coordination.calls import DriverCall, Target
from ferry.coordination.queue import Progress
from ferry.domain.errors import BadRequest, NotFound
from ferry.drivers.hypervisor.base import HypervisorDriver
from ferry.drivers.storage.base import StorageDriver

_READ = "reads only"
_CONTRACT = "idempotent by its contract"

REPLAY: dict[Target, dict[str, str]] = {
    Target.HYPERVISOR: {
        # The QEMU driver derives everything from QEMU and the run directory, never from memory.
        "spawn": "a server whose QEMU runs is resumed, not started again",
        "reconnect": _READ,
        "is_running": _READ,
        "stop": _CONTRACT,
        "destroy": _CONTRACT,
        "console_output": _READ,
        "console_read": _READ,
        "attach_disk": "checks first: a disk plugged with the same active file is left",
        "detach_disk": _CONTRACT,
        "disks": _READ,
        "set_disk_limits": "sets values",
        "snapshot_disk": "checks first: a disk already on the new active file is left",
        "merge_layer": "checks first: a layer no longer in the chain is not streamed again",
        "extend_volume": "checks first: a disk already of the size is left",
        "start_mirror": "checks first: an existing job, or a disk already on the target, is left",
        "mirror_status": _READ,
        "wait_mirror": _READ,
        "set_mirror_speed": "sets a value",
        "set_write_blocking": "checks first: a job already write-blocking is left",
        "target_chain": _READ,
        "pivot": "checks first: a job already gone is confirmed on the target from the run dir",
        "cancel_mirror": _CONTRACT,
        "drop_files": _CONTRACT,
        "serial": _READ,
        "disk_slots": _READ,
        "prepare_incoming": "checks first: a destination already started is asked its URI again",
        "start_live_migration": "checks first: a migration under way is left",
        "live_progress": _READ,
        "wait_live": _READ,
        "set_live_limits": "sets values",
        "continue_live": "checks first: only a migration paused before its switchover continues",
        "force_live": "sets a value",
        "cancel_live": "checks first: an ended migration is left",
        "resume_guest": "checks first: a running guest is left",
        "run_state": _READ,
    },
    Target.STORAGE: {
        "create_volume": "checks first: a file of the right size is kept",
        "delete_volume": _CONTRACT,
        "retire_volume": _CONTRACT,
        "reclaim": _CONTRACT,
        "snapshot": "checks first: a published layer backed by the active one is kept",
        "drop_layer": _CONTRACT,
        "merge_layer": "checks first: a child no longer backed by the layer is not rebased again",
        "extend": "checks first: grows only a smaller file",
        "copy_flat": "checks first: a published copy is kept (its size checked)",
        "create_from_image": "checks first: a published copy is kept (its size checked)",
        "copy_layer": "rewritten through its .part file, published by an atomic rename",
        "create_overlay": "recreated empty; sent only before the mirror that writes into it",
        "same_content": _READ,
        "virtual_size": _READ,
        "backing_chain": _READ,
        "usage": _READ,
        "scan_layers": _READ,
        "scan_partials": _READ,
        "scan_locations": _READ,
        "remove_partial": _CONTRACT,
        "check_layer": _READ,
    },
}


class AgentExecutor:
    """Performs calls on the local drivers: the hypervisor (None on a storage-only host) and the
    storage drivers of the backends this host reaches, by backend name."""

    def __init__(
        self, hypervisor: HypervisorDriver | None, storage_drivers: Mapping[str, StorageDriver]
    ) -> None:
        self.hypervisor = hypervisor
        self.storage_drivers = dict(storage_drivers)

    async def perform(self, call: DriverCall, progress: Progress) -> Any:
        """The call's result; the driver's own error when it fails."""
        kwargs = dict(call.kwargs)
        if "progress" in kwargs:
            raise BadRequest("progress is reported by the agent, not sent")
        if call.target is Target.STORAGE and call.method == "copy_layer":
            kwargs["progress"] = progress
        method = getattr(self._driver(call), call.method)  # a REMOTE_METHODS name (DriverCall checks)
        return await method(*call.args, **kwargs)

    def _driver(self, call: DriverCall) -> HypervisorDriver | StorageDriver:
        if call.target is Target.HYPERVISOR:
            if self.hypervisor is None:
                raise NotFound("this host runs no hypervisor")
            return self.hypervisor
        assert call.backend is not None
        driver = self.storage_drivers.get(call.backend)
        if driver is None:
            raise NotFound(f"backend {call.backend} is not reachable from this host")
        return driver
