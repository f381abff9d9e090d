"""JSON views of hosts as Nova and Cinder show them: compute services, hypervisors, volume
services. Views only present: they take `HostLoad`s (and backends), never ORM rows.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ferry.domain.clock import iso
from ferry.domain.hosts import HostLoad, hypervisor_id, service_id
from ferry.domain.model import BackendConfig

COMPUTE_BINARY = "nova-compute"
ZONE = "nova"


def _status(h: HostLoad) -> str:
    return "enabled" if h.enabled else "disabled"


def service_view(h: HostLoad) -> dict[str, Any]:
    return {
        "id": service_id(h.name),
        "binary": COMPUTE_BINARY,
        "host": h.name,
        "zone": ZONE,
        "status": _status(h),
        "state": h.state.value,
        "updated_at": iso(h.heartbeat_at),
        "disabled_reason": h.disabled_reason,
        "forced_down": False,
    }


def hypervisor_summary(h: HostLoad) -> dict[str, Any]:
    return {
        "id": hypervisor_id(h.name),
        "hypervisor_hostname": h.name,
        "state": h.state.value,
        "status": _status(h),
    }


def hypervisor_view(h: HostLoad) -> dict[str, Any]:
    return {
        **hypervisor_summary(h),
        "hypervisor_type": "QEMU",
        "host_ip": h.address,
        "vcpus": h.vcpus,
        "vcpus_used": h.vcpus_used,
        "memory_mb": h.ram_mb,
        "memory_mb_used": h.ram_mb_used,
        "free_ram_mb": h.free_ram_mb,
        "running_vms": h.servers,
        "service": {"host": h.name, "id": service_id(h.name), "disabled_reason": h.disabled_reason},
    }


def volume_service_view(backend: BackendConfig, h: HostLoad) -> dict[str, Any]:
    """Cinder's `cinder-volume` of one backend on one host that reaches it (`host@backend`)."""
    return {
        **_cinder_service("cinder-volume", f"{h.name}@{backend.name}", iso(h.heartbeat_at)),
        "status": _status(h),
        "state": h.state.value,
        "disabled_reason": h.disabled_reason,
    }


def scheduler_view(host: str, now: datetime) -> dict[str, Any]:
    """Cinder's `cinder-scheduler`: the API process that answers, so up and enabled."""
    return _cinder_service("cinder-scheduler", host, iso(now))


def _cinder_service(binary: str, host: str, updated_at: str | None) -> dict[str, Any]:
    return {
        "binary": binary,
        "host": host,
        "zone": ZONE,
        "status": "enabled",
        "state": "up",
        "updated_at": updated_at,
        "disabled_reason": None,
        "cluster": None,
        "frozen": False,
        "replication_status": "not-capable",
        "active_backend_id": None,
    }
