"""A driver call: one method of one driver contract, with its arguments, addressed to a host.

Pure values; `wire` encodes them. The method must be one the contract lists as remote
(`REMOTE_METHODS`): nothing else (no private method, no attribute) can be asked of an agent.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from ferry.domain.errors import BadRequest


class Target(StrEnum):
    HYPERVISOR = "hypervisor"
    STORAGE = "storage"


REMOTE_METHODS: dict[Target, frozenset[str]] = {
    Target.HYPERVISOR: frozenset(
        {
            "spawn", "reconnect", "is_running", "stop", "destroy", "console_output", "console_read",
            "attach_disk", "detach_disk", "disks", "set_disk_limits", "snapshot_disk", "merge_layer",
            "extend_volume", "start_mirror", "mirror_status", "wait_mirror", "set_mirror_speed",
            "set_write_blocking", "target_chain", "pivot", "cancel_mirror", "drop_files", "serial",
            "disk_slots", "prepare_incoming", "start_live_migration", "live_progress", "wait_live",
            "set_live_limits", "continue_live", "force_live", "cancel_live", "resume_guest", "run_state",
        }
    ),
    Target.STORAGE: frozenset(
        {
            "create_volume", "delete_volume", "retire_volume", "reclaim", "snapshot", "drop_layer",
            "merge_layer", "extend", "copy_flat", "create_from_image", "copy_layer", "create_overlay",
            "same_content", "virtual_size", "backing_chain", "usage", "scan_layers", "scan_partials",
            "scan_locations", "remove_partial", "check_layer",
        }
    ),
}  # fmt: skip
"""Every method of `HypervisorDriver` and `StorageDriver` an agent performs. Not here: `close`
(the caller's own connections), and the storage driver's path arithmetic (`volume_dir`,
`layer_path`), computed by the caller from the backend's configuration."""


@dataclass(frozen=True)
class DriverCall:
    target: Target
    backend: str | None
    """The storage backend a storage call is for; None for the hypervisor."""
    method: str
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.method not in REMOTE_METHODS[self.target]:
            raise BadRequest(f"{self.method!r} is not a remote {self.target.value} driver method")
        if (self.backend is None) != (self.target is Target.HYPERVISOR):
            raise BadRequest(f"a {self.target.value} call names a backend exactly when it is a storage call")

    def __str__(self) -> str:
        on = f"[{self.backend}]" if self.backend else ""
        return f"{self.target.value}{on}.{self.method}"


_HOST = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,51}")


def check_host(host: str) -> str:
    """A host name fits a PostgreSQL channel name (`ferry_host_<host>`, 63 bytes at most)."""
    if not isinstance(host, str) or not _HOST.fullmatch(host):
        raise BadRequest(f"invalid host name {host!r}: letters, digits, '.', '_', '-', at most 52")
    return host
