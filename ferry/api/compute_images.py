"""Nova v2.1's images proxy at /compute/v2.1/images (read only): the images servers boot from."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from ferry.api import deps
from ferry.api.compute_views import image_view
from ferry.services.context import RequestContext
from ferry.services.images import ImageService

router = APIRouter(prefix="/compute/v2.1")
Ctx = Depends(deps.context)
Images = Depends(deps.images)


@router.get("/images")
@router.get("/images/detail")
def list_images(request: Request, ctx: RequestContext = Ctx, images: ImageService = Images) -> dict[str, Any]:
    return {"images": [image_view(request, i) for i in images.list_images(ctx)]}


@router.get("/images/{image_id}")
def show_image(
    request: Request, image_id: str, ctx: RequestContext = Ctx, images: ImageService = Images
) -> dict[str, Any]:
    return {"image": image_view(request, images.get(ctx, image_id))}
