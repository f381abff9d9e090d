"""Nova v2.1 flavors at /compute/v2.1/flavors (read only: the bootstrap creates them)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from ferry.api import deps
from ferry.api.compute_views import flavor_view
from ferry.services.context import RequestContext
from ferry.services.images import ImageService

router = APIRouter(prefix="/compute/v2.1")
Ctx = Depends(deps.context)
Images = Depends(deps.images)


@router.get("/flavors")
@router.get("/flavors/detail")
def list_flavors(
    request: Request, ctx: RequestContext = Ctx, images: ImageService = Images
) -> dict[str, Any]:
    return {"flavors": [flavor_view(request, f) for f in images.flavors(ctx)]}


@router.get("/flavors/{flavor_id}")
def show_flavor(
    request: Request, flavor_id: str, ctx: RequestContext = Ctx, images: ImageService = Images
) -> dict[str, Any]:
    return {"flavor": flavor_view(request, images.flavor(ctx, flavor_id))}
