"""Ferry's own additions beside the Cinder and Nova APIs (admin): where a volume's layers live,
what the hypervisor reports for a server's disks, and drift between database, QEMU and disks.

HTTP only: the services decide who may ask (`volume:admin_fields`, `doctor:run`) and find out.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from ferry.api import deps
from ferry.services.compute import ComputeService
from ferry.services.context import RequestContext
from ferry.services.doctor import Doctor
from ferry.services.volumes import VolumeService

router = APIRouter(prefix="/volume/v3/{project_id}")
compute_router = APIRouter(prefix="/compute/v2.1")


@router.get("/volumes/{volume_id}/location")
def volume_location(
    project_id: str,
    volume_id: str,
    ctx: RequestContext = Depends(deps.project_context),
    volumes: VolumeService = Depends(deps.volumes),
) -> dict[str, Any]:
    """The volume's backend, name_id and layer files, base first (the last is the active layer)."""
    layout = volumes.layout(ctx, volume_id)
    loc = layout.location
    return {
        "location": {
            "backend": loc.backend,
            "name_id": loc.name_id,
            "format": loc.format.value,
            "directory": str(layout.directory),
            "layers": [
                {"id": layer.id, "path": str(layer.path), "snapshot_id": layer.snapshot_id}
                for layer in layout.layers
            ],
        }
    }


@compute_router.get("/servers/{server_id}/ferry-disks")
async def server_disks(
    server_id: str,
    ctx: RequestContext = Depends(deps.context),
    compute: ComputeService = Depends(deps.compute),
) -> dict[str, Any]:
    """What the hypervisor itself reports for each disk: serial (qom-get) and file chain."""
    disks = await compute.hypervisor_disks(ctx, server_id)
    return {"disks": [{"volume_id": d.volume_id, "serial": d.serial, "files": list(d.files)} for d in disks]}


@router.get("/ferry-doctor")
async def doctor(
    ctx: RequestContext = Depends(deps.project_context), checkup: Doctor = Depends(deps.doctor)
) -> dict[str, Any]:
    """Drift between the database, the running QEMU processes and the backend directories."""
    drift = await checkup.check(ctx)
    return {"healthy": not drift, "drift": [d.as_dict() for d in drift]}


@router.post("/ferry-doctor")
async def doctor_repair(
    ctx: RequestContext = Depends(deps.project_context), checkup: Doctor = Depends(deps.doctor)
) -> dict[str, Any]:
    """`ferry doctor --repair`: the safe repairs (stuck statuses settled as at start-up, unowned
    files past the threshold removed), what was done, and the drift still found afterwards."""
    report = await checkup.repair(ctx)
    return {
        "repaired": report.repaired,
        "healthy": not report.drift,
        "drift": [d.as_dict() for d in report.drift],
    }
