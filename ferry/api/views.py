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
from ferry.domain.scheduling import PoolStats, reported_capabilities
from ferry.services.records import (
    AttachmentRecord,
    MigrationRecord,
    MigrationReportRecord,
    QosSpecsRecord,
    SnapshotRecord,
    VolumeRecord,
    VolumeTypeRecord,
)


def stored(pairs: dict[str, Any] | None) -> dict[str, Any]:
    """A free-form object read from the database, fit to render (see the module's docstring)."""
    return scrub(pairs) if pairs else {}


def attachment_view(a: AttachmentRecord, host: str) -> dict[str, Any]:
    return {
        "id": a.volume_id,  # Cinder's: the attachment's `id` names the volume, `attachment_id` itself
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
    host: str | None,
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
        "bootable": "true" if v.bootable else "false",
        "encrypted": False,
        "multiattach": False,
        "metadata": volume_metadata(v),
        "attachments": [attachment_view(attachment, host or "")] if attachment else [],
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
    if v.image_meta is not None:
        out["volume_image_metadata"] = stored(v.image_meta)
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


def volume_metadata(v: VolumeRecord) -> dict[str, Any]:
    """The metadata a volume's view shows: its own, and Cinder's visible admin metadata
    (`readonly`, once `os-update_readonly_flag` set it, as "True" or "False")."""
    meta = stored(v.meta)
    if v.readonly is not None:
        meta["readonly"] = str(v.readonly)
    return meta


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


def snapshot_view(s: SnapshotRecord, *, extended: bool) -> dict[str, Any]:
    """Cinder's snapshot view; `extended` (show and detail) adds the extended snapshot attributes.
    `view_versions.SNAPSHOT_GATES` removes what the request's microversion does not show."""
    out: dict[str, Any] = {
        "id": s.id,
        "name": s.name,
        "description": s.description,
        "volume_id": s.volume_id,
        "size": s.size_gib,
        "status": s.status,
        "metadata": stored(s.meta),
        "created_at": iso(s.created_at),
        "updated_at": iso(s.updated_at),
        "group_snapshot_id": None,
        "user_id": s.user_id,
    }
    if extended:
        progress = s.progress or ("100%" if s.status == "available" else "0%")
        out["os-extended-snapshot-attributes:progress"] = progress
        out["os-extended-snapshot-attributes:project_id"] = s.project_id
    return out


def type_view(
    t: VolumeTypeRecord, specs: dict[str, Any], *, qos: bool = False, access: bool = True
) -> dict[str, Any]:
    """A volume type as Cinder's views render it: `specs` are the extra specs the caller may
    read; `qos_specs_id` only where Cinder's show/list add it for admins (`qos`), the
    `os-volume-type-access:is_public` extension everywhere but in an update's answer (`access`)."""
    out: dict[str, Any] = {
        "id": t.id,
        "name": t.name,
        "description": t.description,
        "is_public": t.is_public,
        "extra_specs": stored(specs),
    }
    if access:
        out["os-volume-type-access:is_public"] = t.is_public
    if qos:
        out["qos_specs_id"] = t.qos_specs_id
    return out


def qos_view(q: QosSpecsRecord) -> dict[str, Any]:
    return {"id": q.id, "name": q.name, "consumer": q.consumer.value, "specs": stored(q.specs)}


def pool_view(p: PoolStats, host: str | None, detail: bool) -> dict[str, Any]:
    """A pool of get_pools: its capabilities are what the scheduler matches extra specs against,
    with the filesystem's own figures."""
    out: dict[str, Any] = {"name": host}
    if detail:
        out["capabilities"] = {
            **reported_capabilities(p),
            "allocated_bytes": p.allocated_bytes,
            "filesystem_free_bytes": p.free_bytes,
            "timestamp": None,
        }
    return out


def capabilities_view(p: PoolStats, service: str) -> dict[str, Any]:
    """Cinder's capabilities/{host}: the backend's reported identity, as get_pools shows it."""
    caps = reported_capabilities(p)
    return {
        "namespace": f"OS::Storage::Capabilities::{service}",
        "vendor_name": caps["vendor_name"],
        "volume_backend_name": caps["volume_backend_name"],
        "pool_name": caps["pool_name"],
        "driver_version": caps["driver_version"],
        "storage_protocol": caps["storage_protocol"],
        "display_name": None,
        "description": None,
        "visibility": None,
        "replication_targets": [],
        "properties": {
            "thin_provisioning_support": _property(
                "boolean", "Thin provisioning", "Thin provisioned volumes."
            ),
            "disk_format": _property("string", "Disk format", f"Volumes are {caps['disk_format']} images."),
        },
    }


def _property(kind: str, title: str, description: str) -> dict[str, str]:
    return {"type": kind, "title": title, "description": description}


def listing(
    key: str, items: list[dict[str, Any]], links: list[dict[str, str]] | None = None, count: int | None = None
) -> Response:
    """A list body, serialized directly: the views are plain JSON already, and FastAPI's generic
    encoder would walk every value of a 1000-item page again (ten times the cost of orjson).
    `render` still shows rows holding text that orjson refuses. `links`: Cinder's
    `<key>_links` (a full page's next link, `paging.next_links`); `count`: 3.45's total."""
    body: dict[str, Any] = {key: items}
    if links:
        body[f"{key}_links"] = links
    if count is not None:
        body["count"] = count
    return Response(render(body), media_type="application/json")
