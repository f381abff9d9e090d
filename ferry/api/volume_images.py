"""Cinder's `os-volume_upload_image` volume action: publish the volume as a new Glance image.
Answered 202 with Cinder's body while the image is filled in the background (saving → active).

HTTP only: the arguments are parsed here; rules and policy are `services/volume_images.py`."""

from __future__ import annotations

from typing import Any, Protocol

from fastapi.responses import JSONResponse, Response
from pydantic import Field, field_validator

from ferry.api.errors import parse
from ferry.api.schemas import Body
from ferry.domain.errors import BadRequest
from ferry.services.context import RequestContext
from ferry.services.volume_images import UploadRequest, VolumeUploads

BOOL_WORDS = {
    "true": True,
    "yes": True,
    "1": True,
    "on": True,
    "false": False,
    "no": False,
    "0": False,
    "off": False,
}


class UploadImageBody(Body):
    image_name: str = Field(min_length=1, max_length=255)
    disk_format: str = Field(default="raw", max_length=16)
    container_format: str = Field(default="bare", max_length=16)
    force: bool = False
    visibility: str = Field(default="private", max_length=16)
    protected: bool = False

    @field_validator("force", "protected", mode="before")
    @classmethod
    def _boolean(cls, v: object) -> object:
        """Cinder takes a boolean or its word ("True", "false", …)."""
        if isinstance(v, str):
            if v.strip().lower() not in BOOL_WORDS:
                raise ValueError(f"'{v}' is not a valid boolean value")
            return BOOL_WORDS[v.strip().lower()]
        return v


class HasUploads(Protocol):
    @property
    def uploads(self) -> VolumeUploads: ...


async def upload_image(on: HasUploads, ctx: RequestContext, volume_id: str, args: Any) -> Response:
    if not isinstance(args, dict):
        raise BadRequest("Invalid input: 'os-volume_upload_image' must be an object.")
    b = parse(UploadImageBody, args, "os-volume_upload_image")
    req = UploadRequest(
        image_name=b.image_name,
        disk_format=b.disk_format,
        container_format=b.container_format,
        force=b.force,
        visibility=b.visibility,
        protected=b.protected,
    )
    body = on.uploads.upload(ctx, volume_id, req)
    return JSONResponse({"os-volume_upload_image": body}, status_code=202)
