"""Ferry's own additions beside the Cinder API (admin): where a volume's layers live."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from sqlalchemy import select

from ferry.api import deps
from ferry.db.models import Snapshot
from ferry.services import policy
from ferry.services.app import Ferry
from ferry.services.context import RequestContext
from ferry.services.queries import get_volume

router = APIRouter(prefix="/volume/v3/{project_id}")
compute_router = APIRouter(prefix="/compute/v2.1")


@router.get("/volumes/{volume_id}/location")
def volume_location(
    project_id: str,
    volume_id: str,
    ctx: RequestContext = Depends(deps.project_context),
    app: Ferry = Depends(deps.ferry),
) -> dict[str, Any]:
    """The volume's backend, name_id and layer files, base first (the last is the active layer)."""
    policy.enforce(ctx, "volume:admin_fields")
    with app.db() as s:
        vol = get_volume(s, ctx, volume_id)
        loc = app.backends.location(s, vol)
        snaps = dict(
            s.execute(select(Snapshot.layer_id, Snapshot.id).where(Snapshot.volume_id == vol.id)).all()
        )
    layers = [
        {"id": lid, "path": str(app.backends.layer_path(loc, lid)), "snapshot_id": snaps.get(lid)}
        for lid in loc.layers
    ]
    return {
        "location": {
            "backend": loc.backend,
            "name_id": loc.name_id,
            "format": loc.format.value,
            "directory": str(app.backends.driver(loc.backend).volume_dir(loc.name_id)),
            "layers": layers,
        }
    }


@compute_router.get("/servers/{server_id}/ferry-disks")
async def server_disks(
    server_id: str, ctx: RequestContext = Depends(deps.context), app: Ferry = Depends(deps.ferry)
) -> dict[str, Any]:
    """What the hypervisor itself reports for each disk: serial (qom-get) and file chain."""
    policy.enforce(ctx, "volume:admin_fields")
    disks = await app.compute.hypervisor_disks(ctx, server_id)
    return {"disks": [{"volume_id": d.volume_id, "serial": d.serial, "files": list(d.files)} for d in disks]}


@router.get("/ferry-doctor")
async def doctor(
    ctx: RequestContext = Depends(deps.project_context), app: Ferry = Depends(deps.ferry)
) -> dict[str, Any]:
    """Drift between the database, the running QEMU processes and the backend directories."""
    drift = await app.doctor.check(ctx)
    return {"healthy": not drift, "drift": [d.as_dict() for d in drift]}
