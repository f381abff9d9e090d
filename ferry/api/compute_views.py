"""JSON views of compute resources, named and shaped as Nova names and shapes them: servers, their
volume attachments, flavors and images, each with its bookmark link.

Views only present: they take the services' read types (`ferry.services.records`), never ORM rows.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request

from ferry.api.versions import at_least, base_url
from ferry.domain.clock import iso_z
from ferry.domain.servers import POWER_STATE, VM_STATE
from ferry.services.records import AttachmentRecord, FlavorRecord, ImageRecord, ServerRecord


def bookmark(request: Request, kind: str, ident: str) -> list[dict[str, str]]:
    return [{"rel": "bookmark", "href": f"{base_url(request)}/compute/{kind}/{ident}"}]


def server_view(
    request: Request,
    s: ServerRecord,
    volumes: list[str],
    show_host: bool = False,
    flavor: FlavorRecord | None = None,
) -> dict[str, Any]:
    """`show_host`: with where it runs (Nova's extended server attributes, for admins). `flavor`:
    embedded from microversion 2.47 (else a link to it)."""
    where = (
        {"OS-EXT-SRV-ATTR:host": s.host, "OS-EXT-SRV-ATTR:hypervisor_hostname": s.host} if show_host else {}
    )
    # Nova shows a fault only on a server in ERROR (tempest's schema refuses a null one).
    fault = (
        {"fault": {"code": 500, "created": iso_z(s.updated_at), "message": s.fault}}
        if s.fault and s.status == "ERROR"
        else {}
    )
    return {
        **where,
        **fault,
        **_versioned_server(request, s, show_host),
        **_status_dependent(s),
        "id": s.id,
        "name": s.name,
        "status": "MIGRATING" if s.task_state == "migrating" else s.status,  # as Nova derives it
        "tenant_id": s.project_id,
        "user_id": s.user_id,
        "image": {"id": s.image_id, "links": bookmark(request, "images", s.image_id)},
        "flavor": _server_flavor(request, s, flavor),
        "created": iso_z(s.created_at),
        "updated": iso_z(s.updated_at),
        "addresses": {},
        "metadata": dict(s.meta),
        "hostId": "",
        "accessIPv4": s.access_ipv4 or "",
        "accessIPv6": s.access_ipv6 or "",
        "key_name": s.key_name,
        "config_drive": "",
        "OS-DCF:diskConfig": "MANUAL",
        "OS-EXT-AZ:availability_zone": "nova",
        "OS-SRV-USG:launched_at": iso_z(s.created_at),
        "OS-SRV-USG:terminated_at": None,
        "security_groups": [],
        "OS-EXT-STS:vm_state": VM_STATE.get(s.status, "error"),
        "OS-EXT-STS:task_state": s.task_state,
        "OS-EXT-STS:power_state": POWER_STATE.get(s.status, 0),
        "os-extended-volumes:volumes_attached": [{"id": v} for v in volumes],
        "links": bookmark(request, "servers", s.id),
    }


PROGRESS_STATUSES = frozenset({"ACTIVE", "BUILD", "REBUILD", "RESIZE", "VERIFY_RESIZE", "MIGRATING"})
"""The statuses whose servers Nova shows with a `progress`."""


def _status_dependent(s: ServerRecord) -> dict[str, Any]:
    """Nova's fields that only some statuses carry: `progress` while a server is in a progress
    status, `fault` once it is in ERROR."""
    if s.status == "ERROR":
        fault = {"code": 500, "created": iso_z(s.updated_at), "message": s.fault or "Unknown error."}
        return {"fault": fault}
    return {"progress": 0} if s.status in PROGRESS_STATUSES else {}


def _versioned_server(request: Request, s: ServerRecord, admin: bool) -> dict[str, Any]:
    """What Nova's microversions added to a server, each from its version on."""
    out: dict[str, Any] = {}
    if admin and at_least(request, "2.3"):
        out.update({
            "OS-EXT-SRV-ATTR:instance_name": f"instance-{s.id[:8]}", "OS-EXT-SRV-ATTR:hostname": s.name,
            "OS-EXT-SRV-ATTR:reservation_id": "", "OS-EXT-SRV-ATTR:launch_index": 0,
            "OS-EXT-SRV-ATTR:kernel_id": "", "OS-EXT-SRV-ATTR:ramdisk_id": "",
            "OS-EXT-SRV-ATTR:root_device_name": None, "OS-EXT-SRV-ATTR:user_data": None,
        })  # fmt: skip
    for version, key, value in SERVER_ADDITIONS:
        if at_least(request, version):
            out[key] = value
    if at_least(request, "2.19"):
        out["description"] = s.description
    if at_least(request, "2.26"):
        out["tags"] = list(s.tags)
    return out


SERVER_ADDITIONS: tuple[tuple[str, str, Any], ...] = (
    ("2.9", "locked", False),
    ("2.63", "trusted_image_certificates", None),
    ("2.71", "server_groups", []),
    ("2.73", "locked_reason", None),
)
"""Fields later microversions add to a server, with the value every Ferry server has."""


def _server_flavor(request: Request, s: ServerRecord, flavor: FlavorRecord | None) -> dict[str, Any]:
    if flavor is None or not at_least(request, "2.47"):
        return {"id": s.flavor_id, "links": bookmark(request, "flavors", s.flavor_id)}
    return {
        "original_name": flavor.name, "vcpus": flavor.vcpus, "ram": flavor.ram_mb, "disk": flavor.disk_gib,
        "ephemeral": flavor.ephemeral_gib, "swap": flavor.swap_mb, "extra_specs": dict(flavor.extra_specs),
    }  # fmt: skip


UPDATE_HIDES = ("OS-EXT-", "OS-SRV-USG:", "os-extended-volumes:")
UPDATE_HIDDEN = frozenset({"config_drive", "key_name", "security_groups"})


def updated_server_view(full: dict[str, Any]) -> dict[str, Any]:
    """A server as Nova's update answers it: without the extension attributes of a show (the
    availability zone, states, usage, host, key name, security groups, attached volumes)."""
    return {k: v for k, v in full.items() if not k.startswith(UPDATE_HIDES) and k not in UPDATE_HIDDEN}


def server_summary(request: Request, s: ServerRecord) -> dict[str, Any]:
    return {"id": s.id, "name": s.name, "links": bookmark(request, "servers", s.id)}


def volume_attachment_view(request: Request, a: AttachmentRecord) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": a.volume_id,
        "serverId": a.server_id,
        "volumeId": a.volume_id,
        "device": a.device,
    }
    if at_least(request, "2.70"):
        out["tag"] = None
    if at_least(request, "2.79"):
        out["delete_on_termination"] = False
    return out


def flavor_view(request: Request, f: FlavorRecord) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": f.id,
        "name": f.name,
        "vcpus": f.vcpus,
        "ram": f.ram_mb,
        "disk": f.disk_gib,
        "swap": f.swap_mb or "",  # Nova shows no swap as ""
        "OS-FLV-EXT-DATA:ephemeral": f.ephemeral_gib,
        "OS-FLV-DISABLED:disabled": False,
        "rxtx_factor": f.rxtx_factor,
        "os-flavor-access:is_public": f.is_public,
        "links": [
            {"rel": "self", "href": f"{base_url(request)}/compute/v2.1/flavors/{f.id}"},
            *bookmark(request, "flavors", f.id),
        ],
    }
    if at_least(request, "2.55"):
        out["description"] = f.description
    if at_least(request, "2.61"):
        out["extra_specs"] = dict(f.extra_specs)
    return out


NOVA_IMAGE_STATUS = {"active": "ACTIVE", "queued": "SAVING", "saving": "SAVING", "deactivated": "DELETED"}


def image_view(request: Request, i: ImageRecord) -> dict[str, Any]:
    return {
        "id": i.id,
        "name": i.name,
        # Nova's proxy names Glance's statuses in capitals (queued/saving: SAVING; deactivated: …).
        "status": NOVA_IMAGE_STATUS.get(str(i.status), "ERROR"),
        "created": iso_z(i.created_at),
        "updated": iso_z(i.created_at),
        "minDisk": i.min_disk,
        "minRam": i.min_ram,
        "progress": 100 if str(i.status) == "active" else 25,
        "metadata": {},
        "links": bookmark(request, "images", i.id),
    }
