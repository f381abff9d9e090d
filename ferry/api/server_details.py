"""Nova's server update (`PUT /servers/{id}`: name, description from 2.19, access IPs), server
metadata (`/servers/{id}/metadata[/{key}]`) and tags (`/servers/{id}/tags[/{tag}]`, from 2.26).

HTTP only: parse, call `ServerDetailService`, render the views.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import TypeAdapter, ValidationError

from ferry.api import deps
from ferry.api.compute import render_servers
from ferry.api.compute_views import updated_server_view
from ferry.api.errors import json_body
from ferry.api.openapi import body
from ferry.api.schemas import Key, Tag, Value
from ferry.api.versions import at_least
from ferry.domain.errors import BadRequest, NotFound
from ferry.services.compute import ComputeService
from ferry.services.context import RequestContext
from ferry.services.server_details import UNSET, ServerDetailService

router = APIRouter(prefix="/compute/v2.1")
Ctx = Depends(deps.context)
Details = Depends(deps.server_details)
Compute = Depends(deps.compute)

METADATA = TypeAdapter(dict[Key, Value])
TAGS = TypeAdapter(list[Tag])
TAG = TypeAdapter(Tag)


def _valid(adapter: TypeAdapter[Any], value: object, where: str) -> Any:
    try:
        return adapter.validate_python(value, strict=True)
    except ValidationError as e:
        problem = e.errors()[0]["msg"]
        raise BadRequest(f"Invalid input for field/attribute {where}. Value: {value!r}. {problem}") from None


async def _part(request: Request, key: str) -> Any:
    b = await json_body(request)
    if key not in b:
        raise BadRequest(f"Invalid input for field/attribute {key}. Value: missing.")
    return b[key]


# -- PUT /servers/{id} -----------------------------------------------------------------------------
def _address(value: object, kind: type[IPv4Address] | type[IPv6Address], where: str) -> str | None:
    if value is None or value == "":
        return None
    try:
        return str(kind(value))
    except ValueError:
        raise BadRequest(
            f"Invalid input for field/attribute {where}. Value: {value!r}. Not an IP address."
        ) from None


@router.put("/servers/{server_id}", openapi_extra=body("server", {"type": "object"}))
async def update_server(
    request: Request,
    server_id: str,
    ctx: RequestContext = Ctx,
    details: ServerDetailService = Details,
    compute: ComputeService = Compute,
) -> dict[str, Any]:
    b = await _part(request, "server")
    allowed = {"name", "accessIPv4", "accessIPv6"} | ({"description"} if at_least(request, "2.19") else set())
    if not isinstance(b, dict) or set(b) - allowed:
        extra = sorted(set(b) - allowed) if isinstance(b, dict) else b
        raise BadRequest(
            f"Invalid input for field/attribute server. Additional properties are not allowed ({extra})"
        )
    name = b.get("name")
    if name is not None and (
        not isinstance(name, str) or not 1 <= len(name.strip()) <= 255 or len(name) > 255
    ):
        raise BadRequest(f"Invalid input for field/attribute name. Value: {name!r}.")
    description = b.get("description", UNSET)
    bad_description = not isinstance(description, str) or len(description) > 255
    if description is not UNSET and description is not None and bad_description:
        raise BadRequest("Invalid input for field/attribute description: a string of at most 255 or null.")
    v4 = _address(b["accessIPv4"], IPv4Address, "accessIPv4") if "accessIPv4" in b else UNSET
    v6 = _address(b["accessIPv6"], IPv6Address, "accessIPv6") if "accessIPv6" in b else UNSET
    server = details.update(ctx, server_id, name, description, v4, v6)
    return {"server": updated_server_view(render_servers(request, ctx, compute, [server])[0])}


# -- metadata --------------------------------------------------------------------------------------
@router.get("/servers/{server_id}/metadata")
def list_metadata(
    server_id: str, ctx: RequestContext = Ctx, details: ServerDetailService = Details
) -> dict[str, Any]:
    return {"metadata": details.metadata(ctx, server_id)}


@router.post("/servers/{server_id}/metadata", openapi_extra=body("metadata", {"type": "object"}))
async def merge_metadata(
    request: Request, server_id: str, ctx: RequestContext = Ctx, details: ServerDetailService = Details
) -> dict[str, Any]:
    items = _valid(METADATA, await _part(request, "metadata"), "metadata")
    return {"metadata": details.set_metadata(ctx, server_id, items, replace=False)}


@router.put("/servers/{server_id}/metadata", openapi_extra=body("metadata", {"type": "object"}))
async def replace_metadata(
    request: Request, server_id: str, ctx: RequestContext = Ctx, details: ServerDetailService = Details
) -> dict[str, Any]:
    items = _valid(METADATA, await _part(request, "metadata"), "metadata")
    return {"metadata": details.set_metadata(ctx, server_id, items, replace=True)}


@router.get("/servers/{server_id}/metadata/{key}")
def show_metadata_item(
    server_id: str, key: str, ctx: RequestContext = Ctx, details: ServerDetailService = Details
) -> dict[str, Any]:
    items = details.metadata(ctx, server_id)
    if key not in items:
        raise NotFound("Metadata item was not found")
    return {"meta": {key: items[key]}}


@router.put("/servers/{server_id}/metadata/{key}", openapi_extra=body("meta", {"type": "object"}))
async def set_metadata_item(
    request: Request,
    server_id: str,
    key: str,
    ctx: RequestContext = Ctx,
    details: ServerDetailService = Details,
) -> dict[str, Any]:
    meta = _valid(METADATA, await _part(request, "meta"), "meta")
    if set(meta) != {key}:
        raise BadRequest(
            "Request body and URI mismatch" if len(meta) == 1 else "Request body contains too many items"
        )
    details.set_metadata(ctx, server_id, meta, replace=False)
    return {"meta": meta}


@router.delete("/servers/{server_id}/metadata/{key}", status_code=204)
def delete_metadata_item(
    server_id: str, key: str, ctx: RequestContext = Ctx, details: ServerDetailService = Details
) -> Response:
    details.delete_metadata(ctx, server_id, key)
    return Response(status_code=204)


# -- tags (2.26) -----------------------------------------------------------------------------------
def _tags_served(request: Request) -> None:
    if not at_least(request, "2.26"):
        raise NotFound("Server tags need microversion 2.26 or later.")


@router.get("/servers/{server_id}/tags")
def list_tags(
    request: Request, server_id: str, ctx: RequestContext = Ctx, details: ServerDetailService = Details
) -> dict[str, Any]:
    _tags_served(request)
    return {"tags": details.tags(ctx, server_id)}


@router.put("/servers/{server_id}/tags", openapi_extra=body("tags", {"type": "array"}))
async def replace_tags(
    request: Request, server_id: str, ctx: RequestContext = Ctx, details: ServerDetailService = Details
) -> dict[str, Any]:
    tags = _valid(TAGS, await _part(request, "tags"), "tags")  # a malformed body is a 400 first
    _tags_served(request)
    return {"tags": details.set_tags(ctx, server_id, tags)}


@router.delete("/servers/{server_id}/tags", status_code=204)
def delete_tags(
    request: Request, server_id: str, ctx: RequestContext = Ctx, details: ServerDetailService = Details
) -> Response:
    _tags_served(request)
    details.delete_tag(ctx, server_id, None)
    return Response(status_code=204)


@router.get("/servers/{server_id}/tags/{tag}", status_code=204)
def check_tag(
    request: Request,
    server_id: str,
    tag: str,
    ctx: RequestContext = Ctx,
    details: ServerDetailService = Details,
) -> Response:
    _tags_served(request)
    if tag not in details.tags(ctx, server_id):
        raise NotFound(f"Tag {tag} was not found on server {server_id}")
    return Response(status_code=204)


@router.put(
    "/servers/{server_id}/tags/{tag}", status_code=201, responses={204: {"description": "The tag was there"}}
)
def add_tag(
    request: Request,
    server_id: str,
    tag: str,
    ctx: RequestContext = Ctx,
    details: ServerDetailService = Details,
) -> Response:
    _tags_served(request)
    added = details.add_tag(ctx, server_id, _valid(TAG, tag, "tag"))
    if not added:
        return Response(status_code=204)
    return Response(status_code=201, headers={"Location": str(request.url)})


@router.delete("/servers/{server_id}/tags/{tag}", status_code=204)
def delete_tag(
    request: Request,
    server_id: str,
    tag: str,
    ctx: RequestContext = Ctx,
    details: ServerDetailService = Details,
) -> Response:
    _tags_served(request)
    details.delete_tag(ctx, server_id, tag)
    return Response(status_code=204)
