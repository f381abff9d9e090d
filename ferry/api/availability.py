"""Cinder v3 discovery at /volume/v3/{project_id}: `os-availability-zone` (Ferry has one zone),
`extensions` (Cinder's extension descriptors of the extensions Ferry offers) and
`volumes/summary` (3.12; its `metadata` from 3.36).

HTTP only. The summary is registered before `volumes.py`'s routes (`app.py`): `/volumes/summary`
must not be read as the volume `summary`.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from ferry.api import deps
from ferry.api.host_views import ZONE
from ferry.api.schemas import QueryText, flag
from ferry.api.versions import at_least
from ferry.api.views import stored
from ferry.domain.errors import NotFound
from ferry.services.context import RequestContext
from ferry.services.summary import VolumeSummary

router = APIRouter(prefix="/volume/v3/{project_id}")
Ctx = Depends(deps.project_context)

EXTENSIONS = (
    ("AdminActions", "os-admin-actions", "2012-08-25T00:00:00+00:00", "Enable admin actions."),
    (
        "AvailabilityZones",
        "os-availability-zone",
        "2013-06-27T00:00:00+00:00",
        "Describe Availability Zones.",
    ),
    ("ExtendedServices", "os-extended-services", "2014-01-10T00:00:00-00:00", "Extended services support."),
    (
        "ExtendedSnapshotAttributes",
        "os-extended-snapshot-attributes",
        "2012-06-19T00:00:00+00:00",
        "Extended SnapshotAttributes support.",
    ),
    ("Hosts", "os-hosts", "2011-06-29T00:00:00+00:00", "Admin-only host administration."),
    ("Scheduler_stats", "scheduler-stats", "2014-09-07T00:00:00+00:00", "Scheduler stats support."),
    ("Services", "os-services", "2012-10-28T00:00:00-00:00", "Services support."),
    (
        "SnapshotActions",
        "os-snapshot-actions",
        "2013-07-16T00:00:00+00:00",
        "Enable snapshot manager actions.",
    ),
    ("TypesExtraSpecs", "os-types-extra-specs", "2011-08-24T00:00:00+00:00", "Type extra specs support."),
    ("TypesManage", "os-types-manage", "2011-08-24T00:00:00+00:00", "Types manage support."),
    ("VolumeActions", "os-volume-actions", "2012-05-31T00:00:00+00:00", "Enable volume actions."),
    (
        "VolumeHostAttribute",
        "os-vol-host-attr",
        "2011-11-03T00:00:00+00:00",
        "Expose host as an attribute of a volume.",
    ),
    (
        "VolumeImageMetadata",
        "os-vol-image-meta",
        "2012-12-07T00:00:00+00:00",
        "Show image metadata associated with the volume.",
    ),
    (
        "VolumeMigStatusAttribute",
        "os-vol-mig-status-attr",
        "2013-08-08T00:00:00+00:00",
        "Expose migration_status as an attribute of a volume.",
    ),
    (
        "VolumeTenantAttribute",
        "os-vol-tenant-attr",
        "2011-11-03T00:00:00+00:00",
        "Expose the internal project_id as an attribute of a volume.",
    ),
)
"""Cinder's descriptors (name, alias, updated, description) of what Ferry serves. An extension
Ferry gains (quotas, QoS, type access, capabilities …) is added here with it."""


def _extension(name: str, alias: str, updated: str, description: str) -> dict[str, Any]:
    return {"name": name, "alias": alias, "updated": updated, "description": description, "links": []}


@router.get("/extensions")
def list_extensions(project_id: str, ctx: RequestContext = Ctx) -> dict[str, Any]:
    return {"extensions": [_extension(*e) for e in EXTENSIONS]}


@router.get("/extensions/{alias}")
def show_extension(project_id: str, alias: str, ctx: RequestContext = Ctx) -> dict[str, Any]:
    for e in EXTENSIONS:
        if e[1] == alias:
            return {"extension": _extension(*e)}
    raise NotFound(f"Extension {alias} could not be found.")


@router.get("/os-availability-zone")
def list_availability_zones(project_id: str, ctx: RequestContext = Ctx) -> dict[str, Any]:
    return {"availabilityZoneInfo": [{"zoneName": ZONE, "zoneState": {"available": True}}]}


@router.get("/volumes/summary")
def volume_summary(
    request: Request,
    project_id: str,
    ctx: RequestContext = Ctx,
    summary: VolumeSummary = Depends(deps.volume_summary),
    all_tenants: QueryText = None,
) -> dict[str, Any]:
    """Cinder's volume summary (3.12): the count and total size of the caller's volumes (every
    project's for an admin with `all_tenants`), and from 3.36 each metadata key's values."""
    if not at_least(request, "3.12", "volume"):
        raise NotFound("Volume summary could not be found.")  # below 3.12 it is a volume id
    count, size, metadata = summary.summarize(ctx, flag(all_tenants))
    out: dict[str, Any] = {"total_size": size, "total_count": count}
    if at_least(request, "3.36", "volume"):
        out["metadata"] = stored(metadata)
    return {"volume-summary": out}
