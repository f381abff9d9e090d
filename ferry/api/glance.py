"""Glance v2 (the subset Ferry serves) at `/image`: version discovery, images (list, show, create,
JSON-patch, delete), their data (upload streamed to disk, download streamed), deactivate and
reactivate, tags, and the image schema clients fetch.

HTTP only: bodies are parsed here, policy and rules are `services/glance.py` and `image_data.py`."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from ferry.api import deps
from ferry.api.errors import json_body
from ferry.api.versions import base_url
from ferry.domain.errors import BadRequest, NotFound, UnsupportedMediaType
from ferry.services.context import RequestContext
from ferry.services.glance import GlanceService
from ferry.services.image_data import ImageData
from ferry.services.records import GlanceImageRecord

router = APIRouter(prefix="/image")
Ctx = Depends(deps.context)
Glance = Depends(deps.glance)
Data = Depends(deps.image_data)
PATCH_TYPES = ("application/openstack-images-v2.1-json-patch", "application/openstack-images-v2.0-json-patch")
VERSIONS = ("2.16", "2.15", "2.9", "2.7", "2.6", "2.5", "2.4", "2.3", "2.2", "2.1", "2.0")
CHUNK = 64 * 1024
GLANCE_TIME = "%Y-%m-%dT%H:%M:%SZ"


def _versions(request: Request) -> dict[str, Any]:
    href = f"{base_url(request)}/image/v2/"
    return {
        "versions": [
            {
                "id": f"v{v}",
                "status": "CURRENT" if n == 0 else "SUPPORTED",
                "links": [{"rel": "self", "href": href}],
            }
            for n, v in enumerate(VERSIONS)
        ]
    }


@router.get("", include_in_schema=False)
@router.get("/", include_in_schema=False)
def versions_multiple(request: Request) -> JSONResponse:
    return JSONResponse(_versions(request), status_code=300)


@router.get("/versions", include_in_schema=False)
def versions(request: Request) -> dict[str, Any]:
    return _versions(request)


def image_view(img: GlanceImageRecord) -> dict[str, Any]:
    view: dict[str, Any] = {k: v for k, v in (img.properties or {}).items()}
    view.update(
        {
            "id": img.id,
            "name": img.name,
            "status": img.status,
            "visibility": img.visibility,
            "protected": img.protected,
            "os_hidden": False,
            "owner": img.owner,
            "checksum": img.checksum,
            "os_hash_algo": img.os_hash_algo,
            "os_hash_value": img.os_hash_value,
            "size": img.size,
            "virtual_size": img.virtual_size,
            "min_disk": img.min_disk,
            "min_ram": img.min_ram,
            "disk_format": img.declared_format,
            "container_format": img.container_format,
            "tags": list(img.tags or []),
            "created_at": img.created_at.strftime(GLANCE_TIME),
            "updated_at": (img.updated_at or img.created_at).strftime(GLANCE_TIME),
            "self": f"/v2/images/{img.id}",
            "file": f"/v2/images/{img.id}/file",
            "schema": "/v2/schemas/image",
        }
    )
    return view


@router.get("/v2/images")
def list_images(
    request: Request, ctx: RequestContext = Ctx, glance: GlanceService = Glance
) -> dict[str, Any]:
    params = dict(request.query_params)
    page, more = glance.list_images(ctx, params)
    out: dict[str, Any] = {
        "images": [image_view(i) for i in page],
        "first": "/v2/images" + (f"?{request.url.query}" if request.url.query else ""),
        "schema": "/v2/schemas/images",
    }
    if more and page:
        rest = {k: v for k, v in params.items() if k != "marker"}
        query = "&".join(f"{k}={v}" for k, v in {**rest, "marker": page[-1].id}.items())
        out["next"] = f"/v2/images?{query}"
    return out


@router.post("/v2/images", status_code=201)
async def create_image(
    request: Request, ctx: RequestContext = Ctx, glance: GlanceService = Glance
) -> dict[str, Any]:
    return image_view(glance.create(ctx, await json_body(request)))


@router.get("/v2/images/{image_id}")
def show_image(image_id: str, ctx: RequestContext = Ctx, glance: GlanceService = Glance) -> dict[str, Any]:
    return image_view(glance.get(ctx, image_id))


WRONG_TYPE: dict[int | str, dict[str, Any]] = {
    415: {"description": "The body's Content-Type is not the one taken"}
}


@router.patch("/v2/images/{image_id}", responses=WRONG_TYPE)
async def update_image(
    request: Request, image_id: str, ctx: RequestContext = Ctx, glance: GlanceService = Glance
) -> dict[str, Any]:
    ctype = request.headers.get("content-type", "").split(";")[0].strip()
    if ctype not in PATCH_TYPES:
        raise UnsupportedMediaType(f"Unsupported Content-Type {ctype!r}: use {PATCH_TYPES[0]}.")
    return image_view(glance.patch(ctx, image_id, _patch_ops(await request.body())))


def _patch_ops(raw: bytes) -> list[tuple[str, str, Any]]:
    """JSON-patch operations (Glance's v2.1 form `{"op", "path", "value"}` or the v2.0 draft's
    `{"replace": path, "value"}`) as (op, top-level field, value)."""
    try:
        ops = json.loads(raw or b"null")
        json.dumps(ops, ensure_ascii=False).encode()
    except (ValueError, UnicodeError, RecursionError):
        raise BadRequest("Malformed JSON-patch body.") from None
    if not isinstance(ops, list):
        raise BadRequest("A JSON-patch body is a list of operations.")
    out = []
    for op in ops:
        if not isinstance(op, dict):
            raise BadRequest("Each JSON-patch operation is an object.")
        if "op" in op:
            name, path = op["op"], op.get("path")
        else:
            name = next((k for k in ("add", "replace", "remove") if k in op), None)
            path = op.get(name) if name else None
        if name not in ("add", "replace", "remove"):
            raise BadRequest(f"Invalid operation: {name!r} (use add, replace or remove).")
        if not isinstance(path, str) or not path.startswith("/") or path.count("/") != 1 or len(path) < 2:
            raise BadRequest(f"Invalid JSON pointer for this resource: {path!r}")
        if name != "remove" and "value" not in op:
            raise BadRequest(f"Operation {name} needs a value.")
        out.append((name, path[1:].replace("~1", "/").replace("~0", "~"), op.get("value")))
    return out


@router.delete("/v2/images/{image_id}", status_code=204)
def delete_image(image_id: str, ctx: RequestContext = Ctx, glance: GlanceService = Glance) -> Response:
    glance.delete(ctx, image_id)
    return Response(status_code=204)


@router.post("/v2/images/{image_id}/actions/deactivate", status_code=204)
def deactivate(image_id: str, ctx: RequestContext = Ctx, glance: GlanceService = Glance) -> Response:
    glance.set_active(ctx, image_id, False)
    return Response(status_code=204)


@router.post("/v2/images/{image_id}/actions/reactivate", status_code=204)
def reactivate(image_id: str, ctx: RequestContext = Ctx, glance: GlanceService = Glance) -> Response:
    glance.set_active(ctx, image_id, True)
    return Response(status_code=204)


@router.put("/v2/images/{image_id}/tags/{tag}", status_code=204)
def add_tag(image_id: str, tag: str, ctx: RequestContext = Ctx, glance: GlanceService = Glance) -> Response:
    tags = list(glance.get(ctx, image_id).tags or [])
    glance.patch(ctx, image_id, [("replace", "tags", [*tags, tag])])
    return Response(status_code=204)


@router.delete("/v2/images/{image_id}/tags/{tag}", status_code=204)
def delete_tag(
    image_id: str, tag: str, ctx: RequestContext = Ctx, glance: GlanceService = Glance
) -> Response:
    tags = list(glance.get(ctx, image_id).tags or [])
    if tag not in tags:
        raise NotFound(f"Tag {tag} not found.")
    glance.patch(ctx, image_id, [("replace", "tags", [t for t in tags if t != tag])])
    return Response(status_code=204)


@router.put("/v2/images/{image_id}/file", status_code=204, responses=WRONG_TYPE)
async def upload(
    request: Request, image_id: str, ctx: RequestContext = Ctx, data: ImageData = Data
) -> Response:
    ctype = request.headers.get("content-type", "").split(";")[0].strip()
    if ctype != "application/octet-stream":
        raise UnsupportedMediaType("Image data is uploaded as application/octet-stream.")
    await data.upload(ctx, image_id, request.stream())
    return Response(status_code=204)


@router.get(
    "/v2/images/{image_id}/file",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"application/octet-stream": {}}, "description": "The image's data"},
        204: {"description": "The image has no data yet"},
    },
)
def download(image_id: str, ctx: RequestContext = Ctx, data: ImageData = Data) -> Response:
    found = data.download(ctx, image_id)
    if found.path is None:
        return Response(status_code=204)
    try:
        f = open(found.path, "rb")  # noqa: SIM115 (closed by the stream below)
    except OSError:
        raise BadRequest(f"The data of image {image_id} is missing.") from None

    async def chunks() -> AsyncIterator[bytes]:
        with f:
            while block := f.read(CHUNK):
                yield block

    headers = {"Content-Length": str(found.size)}
    if found.checksum:
        headers["Content-MD5"] = found.checksum
    return StreamingResponse(chunks(), media_type="application/octet-stream", headers=headers)


SCHEMA_PROPERTIES = (
    "id", "name", "status", "visibility", "protected", "os_hidden", "owner", "checksum", "os_hash_algo",
    "os_hash_value", "size", "virtual_size", "min_disk", "min_ram", "disk_format", "container_format",
    "tags", "created_at", "updated_at", "self", "file", "schema", "kernel_id", "ramdisk_id",
)  # fmt: skip


def _schema() -> dict[str, Any]:
    return {
        "name": "image",
        "properties": {p: {"type": ["null", "string"]} for p in SCHEMA_PROPERTIES},
        "additionalProperties": {"type": "string"},
        "links": [
            {"rel": "self", "href": "{self}"},
            {"rel": "enclosure", "href": "{file}"},
            {"rel": "describedby", "href": "{schema}"},
        ],
    }


@router.get("/v2/schemas/image")
def image_schema(ctx: RequestContext = Ctx) -> dict[str, Any]:
    return _schema()


@router.get("/v2/schemas/images")
def images_schema(ctx: RequestContext = Ctx) -> dict[str, Any]:
    return {"name": "images", "properties": {"images": {"type": "array", "items": _schema()}}}
