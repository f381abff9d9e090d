"""Ferry's image registration beside the Nova images proxy (admin only):
`POST /compute/v2.1/ferry-images {"image": {name, kernel, initrd, cmdline, disk, disk_format}}`.

HTTP only: the body's shape is checked here; policy and the files themselves are checked by
`ImageService.register`."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import Field

from ferry.api import deps
from ferry.api.errors import body_part
from ferry.api.openapi import body
from ferry.api.schemas import Body
from ferry.domain.clock import iso_z
from ferry.services.context import RequestContext
from ferry.services.images import ImageService

router = APIRouter(prefix="/compute/v2.1")

FilePath = Field(default=None, min_length=1, max_length=4096)


class ImageRegisterBody(Body):
    name: str = Field(min_length=1, max_length=255)
    kernel: str | None = FilePath
    initrd: str | None = FilePath
    cmdline: str = Field(default="", max_length=4096)
    disk: str | None = FilePath
    disk_format: Literal["qcow2", "raw"] | None = None


@router.post("/ferry-images", status_code=201, openapi_extra=body("image", ImageRegisterBody))
async def register_image(
    request: Request,
    ctx: RequestContext = Depends(deps.context),
    images: ImageService = Depends(deps.images),
) -> dict[str, Any]:
    b = await body_part(request, "image", ImageRegisterBody)
    img = images.register(
        ctx,
        b.name,
        kernel=b.kernel,
        initrd=b.initrd,
        cmdline=b.cmdline,
        disk=b.disk,
        disk_format=b.disk_format,
    )
    return {
        "image": {
            "id": img.id,
            "name": img.name,
            "status": "ACTIVE",
            "created": iso_z(img.created_at),
            "kernel": img.kernel,
            "initrd": img.initrd,
            "cmdline": img.cmdline,
            "disk": img.disk,
            "disk_format": img.disk_format,
        }
    }
