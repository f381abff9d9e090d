"""JSON views of compute resources, named and shaped as Nova names and shapes them: servers, their
volume attachments, flavors and images, each with its bookmark link.

Views only present: they take the services' read types (`ferry.services.records`), never ORM rows.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request

from ferry.api.versions import base_url
from ferry.domain.clock import iso_z
from ferry.domain.servers import POWER_STATE, VM_STATE
from ferry.services.records import AttachmentRecord, FlavorRecord, ImageRecord, ServerRecord


def bookmark(request: Request, kind: str, ident: str) -> list[dict[str, str]]:
    return [{"rel": "bookmark", "href": f"{base_url(request)}/compute/{kind}/{ident}"}]


def server_view(
    request: Request, s: ServerRecord, volumes: list[str], show_host: bool = False
) -> dict[str, Any]:
    """`show_host`: with where it runs (Nova's extended server attributes, for admins)."""
    where = (
        {"OS-EXT-SRV-ATTR:host": s.host, "OS-EXT-SRV-ATTR:hypervisor_hostname": s.host} if show_host else {}
    )
    return {
        **where,
        "id": s.id,
        "name": s.name,
        "status": s.status,
        "tenant_id": s.project_id,
        "user_id": s.user_id,
        "image": {"id": s.image_id, "links": bookmark(request, "images", s.image_id)},
        "flavor": {"id": s.flavor_id, "links": bookmark(request, "flavors", s.flavor_id)},
        "created": iso_z(s.created_at),
        "updated": iso_z(s.updated_at),
        "addresses": {},
        "metadata": {},
        "hostId": "",
        "accessIPv4": "",
        "accessIPv6": "",
        "key_name": None,
        "config_drive": "",
        "progress": 0,
        "OS-DCF:diskConfig": "MANUAL",
        "security_groups": [],
        "OS-EXT-STS:vm_state": VM_STATE.get(s.status, "error"),
        "OS-EXT-STS:task_state": s.task_state,
        "OS-EXT-STS:power_state": POWER_STATE.get(s.status, 0),
        "os-extended-volumes:volumes_attached": [{"id": v} for v in volumes],
        "fault": {"code": 500, "message": s.fault} if s.fault and s.status == "ERROR" else None,
        "links": bookmark(request, "servers", s.id),
    }


def server_summary(request: Request, s: ServerRecord) -> dict[str, Any]:
    return {"id": s.id, "name": s.name, "links": bookmark(request, "servers", s.id)}


def volume_attachment_view(a: AttachmentRecord) -> dict[str, Any]:
    return {"id": a.volume_id, "serverId": a.server_id, "volumeId": a.volume_id, "device": a.device}


def flavor_view(request: Request, f: FlavorRecord) -> dict[str, Any]:
    return {
        "id": f.id,
        "name": f.name,
        "vcpus": f.vcpus,
        "ram": f.ram_mb,
        "disk": f.disk_gib,
        "swap": "",
        "OS-FLV-EXT-DATA:ephemeral": 0,
        "rxtx_factor": 1.0,
        "os-flavor-access:is_public": True,
        "links": bookmark(request, "flavors", f.id),
    }


def image_view(request: Request, i: ImageRecord) -> dict[str, Any]:
    return {
        "id": i.id,
        "name": i.name,
        "status": "ACTIVE",
        "created": iso_z(i.created_at),
        "updated": iso_z(i.created_at),
        "minDisk": 0,
        "minRam": 0,
        "progress": 100,
        "metadata": {},
        "links": bookmark(request, "images", i.id),
    }
