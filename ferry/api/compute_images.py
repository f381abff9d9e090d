"""Nova v2.1's images proxy at /compute/v2.1/images (read only): the images servers boot from.
Gone from microversion 2.36 on, as in Nova (clients use the image service then)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from ferry.api import deps
from ferry.api.compute_views import image_view
from ferry.api.versions import at_least
from ferry.domain.errors import NotFound
from ferry.services.context import RequestContext
from ferry.services.images import ImageService

router = APIRouter(prefix="/compute/v2.1")
Ctx = Depends(deps.context)
Images = Depends(deps.images)


@router.get("/images")
@router.get("/images/detail")
def list_images(request: Request, ctx: RequestContext = Ctx, images: ImageService = Images) -> dict[str, Any]:
    _proxied(request)
    return {"images": [image_view(request, i) for i in images.list_images(ctx)]}


@router.get("/images/{image_id}")
def show_image(
    request: Request, image_id: str, ctx: RequestContext = Ctx, images: ImageService = Images
) -> dict[str, Any]:
    _proxied(request)
    return {"image": image_view(request, images.get(ctx, image_id))}


def _proxied(request: Request) -> None:
    if at_least(request, "2.36"):
        raise NotFound("The images proxy API is gone from compute microversion 2.36: use the image service.")
