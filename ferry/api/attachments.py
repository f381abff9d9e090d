"""Cinder v3 attachments at /volume/v3/{project_id}/attachments: which server holds which volume.
(Attaching and detaching are Nova's calls: `compute.py`.)

HTTP only: read through `ComputeService`, render here.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from ferry.api import deps
from ferry.services.compute import ComputeService
from ferry.services.context import RequestContext
from ferry.services.records import AttachmentRecord

router = APIRouter(prefix="/volume/v3/{project_id}")
Ctx = Depends(deps.project_context)
Compute = Depends(deps.compute)


@router.get("/attachments")
@router.get("/attachments/detail")
def list_attachments(
    project_id: str, ctx: RequestContext = Ctx, compute: ComputeService = Compute
) -> dict[str, Any]:
    return {"attachments": [_attachment(a) for a in compute.list_attachments(ctx)]}


@router.get("/attachments/{attachment_id}")
def show_attachment(
    project_id: str, attachment_id: str, ctx: RequestContext = Ctx, compute: ComputeService = Compute
) -> dict[str, Any]:
    return {"attachment": _attachment(compute.get_attachment(ctx, attachment_id))}


def _attachment(a: AttachmentRecord) -> dict[str, Any]:
    return {
        "id": a.id,
        "volume_id": a.volume_id,
        "instance": a.server_id,
        "status": "attached",
        "attach_mode": "rw",
        "attached_at": a.created_at.isoformat(),
        "detached_at": None,
        "connection_info": {"driver_volume_type": "file"},
    }
