"""JSON views of block storage resources, named and shaped as Cinder names and shapes them.

Views only present: they take the services' read types (`ferry.services.records`), never ORM rows,
and are told what the caller may see (`admin`) instead of deciding it. Free-form JSON columns
(metadata, extra specs) go out through `stored`: rows from before the edge checked text may hold
lone surrogates, which FastAPI's response serialization refuses."""

from __future__ import annotations

from typing import Any

from fastapi.responses import Response

from ferry.api.responses import render, scrub
from ferry.domain.clock import iso
from ferry.domain.scheduling import PoolStats
from ferry.services.records import (
    AttachmentRecord,
    MigrationRecord,
    MigrationReportRecord,
    SnapshotRecord,
    VolumeRecord,
    VolumeTypeRecord,
)


def stored(pairs: dict[str, Any] | None) -> dict[str, Any]:
    """A free-form object read from the database, fit to render (see the module's docstring)."""
    return scrub(pairs) if pairs else {}


def attachment_view(a: AttachmentRecord, host: str) -> dict[str, Any]:
    return {
        "id": a.id,
        "attachment_id": a.id,
        "volume_id": a.volume_id,
        "server_id": a.server_id,
        "host_name": host,
        "device": a.device,
        "attached_at": iso(a.created_at),
    }


def volume_view(
    v: VolumeRecord,
    base: str,
    *,
    attachment: AttachmentRecord | None,
    type_name: str | None,
    admin: bool,
    host: str,
    image_metadata: dict[str, str] | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": v.id,
        "name": v.name,
        "description": v.description,
        "size": v.size_gib,
        "status": v.status,
        "volume_type": type_name,
        "volume_type_id": v.volume_type_id,
        "availability_zone": "nova",
        "bootable": "true" if image_metadata else "false",
        "encrypted": False,
        "multiattach": False,
        "metadata": stored(v.meta),
        "attachments": [attachment_view(attachment, host)] if attachment else [],
        "snapshot_id": v.snapshot_id,
        "source_volid": v.source_volid,
        "user_id": v.user_id,
        "os-vol-tenant-attr:tenant_id": v.project_id,
        "created_at": iso(v.created_at),
        "updated_at": iso(v.updated_at),
        "replication_status": None,
        "consistencygroup_id": None,
        "group_id": None,
        "shared_targets": False,
        "service_uuid": None,
        "cluster_name": None,
        "provider_id": None,
        "links": [{"rel": "self", "href": f"{base}/volumes/{v.id}"}],
    }
    if image_metadata:
        out["volume_image_metadata"] = stored(image_metadata)
    if admin:
        out.update(
            {
                "os-vol-host-attr:host": host,
                "os-vol-mig-status-attr:migstat": v.migration_status,
                "os-vol-mig-status-attr:name_id": v.name_id,
                "migration_status": v.migration_status,
            }
        )
    return out


def _percent(m: MigrationRecord) -> float:
    return round(100.0 * m.bytes_done / m.bytes_total, 1) if m.bytes_total else 0.0


def migration_view(report: MigrationReportRecord) -> dict[str, Any]:
    m = report.migration
    remaining = max(m.bytes_total - m.bytes_done, 0)
    return {
        "id": m.id,
        "volume_id": m.volume_id,
        "status": m.status,
        "phase": m.step,
        "source_backend": m.src_backend,
        "destination_backend": m.dst_backend,
        "attached": bool(m.server_id),
        "server_id": m.server_id,
        "bytes_done": m.bytes_done,
        "bytes_total": m.bytes_total,
        "percent": _percent(m),
        "rate_bytes_per_sec": round(m.rate, 1),
        "eta_seconds": round(remaining / m.rate, 1) if m.rate > 0 and m.status == "running" else None,
        "copy_mode": m.copy_mode,
        "speed_bytes_per_sec": m.speed,
        "pivot_ms": m.pivot_ms,
        "error": m.error,
        "created_at": iso(m.created_at),
        "started_at": iso(m.started_at),
        "finished_at": iso(m.finished_at),
        "steps": [
            {"at": iso(e.at), "step": e.step, "event": e.event, "detail": e.detail} for e in report.events
        ],
    }


def volume_summary(v: VolumeRecord, base: str) -> dict[str, Any]:
    return {"id": v.id, "name": v.name, "links": [{"rel": "self", "href": f"{base}/volumes/{v.id}"}]}


def snapshot_view(s: SnapshotRecord) -> dict[str, Any]:
    return {
        "id": s.id,
        "name": s.name,
        "description": s.description,
        "volume_id": s.volume_id,
        "size": s.size_gib,
        "status": s.status,
        "metadata": stored(s.meta),
        "created_at": iso(s.created_at),
        "updated_at": iso(s.updated_at),
        "progress": "100%" if s.status == "available" else "0%",
        "os-extended-snapshot-attributes:project_id": s.project_id,
        "user_id": s.user_id,
    }


def type_view(t: VolumeTypeRecord, admin: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": t.id,
        "name": t.name,
        "description": t.description,
        "is_public": t.is_public,
        "os-volume-type-access:is_public": t.is_public,
        "extra_specs": stored(t.extra_specs),
    }
    if not admin:
        out["extra_specs"] = {}
    return out


def pool_view(p: PoolStats, host: str, detail: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"name": host}
    if detail:
        gib = 1024**3
        out["capabilities"] = {
            "volume_backend_name": p.backend.name,
            "pool_name": p.backend.name,
            "vendor_name": "Ferry",
            "driver_version": "1.0",
            "storage_protocol": "file",
            "disk_format": p.backend.format.value,
            "total_capacity_gb": p.backend.capacity_gib,
            "free_capacity_gb": round(p.backend.capacity_gib - p.allocated_bytes / gib, 2),
            "allocated_capacity_gb": p.provisioned_gib,
            "provisioned_capacity_gb": p.provisioned_gib,
            "max_over_subscription_ratio": p.backend.oversubscription,
            "thin_provisioning_support": True,
            "thick_provisioning_support": False,
            "reserved_percentage": 0,
            "allocated_bytes": p.allocated_bytes,
            "filesystem_free_bytes": p.free_bytes,
            "multiattach": False,
            "timestamp": None,
        }
    return out


def listing(key: str, items: list[dict[str, Any]]) -> Response:
    """A list body, serialized directly: the views are plain JSON already, and FastAPI's generic
    encoder would walk every value of a 1000-item page again (ten times the cost of orjson).
    `render` still shows rows holding text that orjson refuses."""
    return Response(render({key: items}), media_type="application/json")
