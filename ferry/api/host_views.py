"""JSON views of hosts as Nova and Cinder show them: compute services, hypervisors, volume
services. Views only present: they take `HostLoad`s (and backends), never ORM rows.
"""

from __future__ import annotations

from typing import Any

from ferry.domain.clock import iso
from ferry.domain.hosts import HostLoad, hypervisor_id, service_id
from ferry.services.volume_services import CinderService, HostUsage

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


def cinder_service_view(svc: CinderService) -> dict[str, Any]:
    """One of Cinder's services in `os-services` (with `os-extended-services`' fields)."""
    return {
        "binary": svc.binary,
        "host": svc.host,
        "zone": ZONE,
        "status": "enabled" if svc.enabled else "disabled",
        "state": "up" if svc.up else "down",
        "updated_at": iso(svc.updated_at),
        "disabled_reason": svc.disabled_reason,
        "cluster": None,
        "frozen": svc.frozen,
        "replication_status": "not-capable",
        "active_backend_id": None,
    }


def cinder_host_view(svc: CinderService) -> dict[str, Any]:
    """One of Cinder's services as `os-hosts` lists it."""
    return {
        "host_name": svc.host,
        "service": svc.binary,
        "zone": ZONE,
        "service-status": "available" if svc.up else "unavailable",
        "service-state": "enabled" if svc.enabled else "disabled",
        "last-update": iso(svc.updated_at),
    }


def host_usage_view(host: str, u: HostUsage) -> dict[str, Any]:
    """One row of `os-hosts/{host}`: Cinder writes the numbers as strings."""
    return {
        "resource": {
            "host": host,
            "project": u.project or "(total)",
            "volume_count": str(u.volumes),
            "total_volume_gb": str(u.volume_gib),
            "snapshot_count": str(u.snapshots),
            "total_snapshot_gb": str(u.snapshot_gib),
        }
    }
