"""Cinder v3 metadata of volumes and snapshots at /volume/v3/{project_id}/{volumes,snapshots}/{id}/
metadata[/{key}]: show, merge (POST), replace (PUT), and one item's show, set and delete.

HTTP only: parse (Cinder's bodies: `{"metadata": {…}}`, and `{"meta": {key: value}}` with exactly the
URL's key), call `MetadataService`, render.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import JSONResponse, Response

from ferry.api import deps
from ferry.api.errors import json_body, parse
from ferry.api.openapi import body
from ferry.api.schemas import Pairs, VolumeUpdateBody
from ferry.api.versions import at_least
from ferry.api.views import stored
from ferry.api.volume_gates import metadata_etag
from ferry.domain.errors import BadRequest
from ferry.services.context import RequestContext
from ferry.services.metadata import MetadataService, Owner

router = APIRouter(prefix="/volume/v3/{project_id}")
Ctx = Depends(deps.project_context)
Meta = Depends(deps.metadata)
COLLECTIONS = {"volumes": Owner.VOLUME, "snapshots": Owner.SNAPSHOT}


async def _pairs(request: Request, key: str) -> dict[str, str]:
    """The object of strings under `key` in the body (`metadata` or `meta`), or a 400."""
    b = await json_body(request)
    if key not in b:
        raise BadRequest(f"Invalid input: missing '{key}' in request body.")
    if not isinstance(b[key], dict):
        raise BadRequest(f"Invalid input: '{key}' must be an object.")
    return parse(VolumeUpdateBody, {"metadata": b[key]}, key).metadata or {}


def _routes(collection: str, owner: Owner) -> None:
    name = owner.name.lower()
    path = f"/{collection}/{{{name}_id}}/metadata"
    ident_param = Path(alias=f"{name}_id")  # each collection names its id as the table does

    @router.get(path, name=f"show_{owner.name.lower()}_metadata")
    def show(
        request: Request,
        project_id: str,
        ident: str = ident_param,
        ctx: RequestContext = Ctx,
        meta: MetadataService = Meta,
    ) -> Any:
        shown = {"metadata": stored(meta.get(ctx, owner, ident))}
        if owner is not Owner.VOLUME or not at_least(request, "3.15", "volume"):
            return shown
        # 3.15: an Etag of the body, which a replacing PUT's If-Match names (the lost update problem).
        return JSONResponse(shown, headers={"ETag": metadata_etag(shown)})

    @router.post(path, name=f"merge_{owner.name.lower()}_metadata", openapi_extra=body("metadata", Pairs))
    async def merge(
        request: Request,
        project_id: str,
        ident: str = ident_param,
        ctx: RequestContext = Ctx,
        meta: MetadataService = Meta,
    ) -> Any:
        pairs = await _pairs(request, "metadata")
        return {"metadata": stored(meta.set(ctx, owner, ident, pairs, replace=False))}

    @router.put(path, name=f"replace_{owner.name.lower()}_metadata", openapi_extra=body("metadata", Pairs))
    async def replace(
        request: Request,
        project_id: str,
        ident: str = ident_param,
        ctx: RequestContext = Ctx,
        meta: MetadataService = Meta,
    ) -> Any:
        pairs = await _pairs(request, "metadata")
        return {"metadata": stored(meta.set(ctx, owner, ident, pairs, replace=True))}

    @router.get(f"{path}/{{key}}", name=f"show_{owner.name.lower()}_metadata_item")
    def show_item(
        key: str,
        project_id: str,
        ident: str = ident_param,
        ctx: RequestContext = Ctx,
        meta: MetadataService = Meta,
    ) -> Any:
        return {"meta": stored({key: meta.get_item(ctx, owner, ident, key)})}

    @router.put(
        f"{path}/{{key}}", name=f"set_{owner.name.lower()}_metadata_item", openapi_extra=body("meta", Pairs)
    )
    async def set_item(
        request: Request,
        key: str,
        project_id: str,
        ident: str = ident_param,
        ctx: RequestContext = Ctx,
        meta: MetadataService = Meta,
    ) -> Any:
        item = await _pairs(request, "meta")
        if key not in item:
            raise BadRequest("Request body and URI mismatch.")
        if len(item) > 1:
            raise BadRequest("Request body contains too many items.")
        meta.set(ctx, owner, ident, item, replace=False)
        return {"meta": stored(item)}

    @router.delete(f"{path}/{{key}}", name=f"delete_{owner.name.lower()}_metadata_item")
    def delete_item(
        key: str,
        project_id: str,
        ident: str = ident_param,
        ctx: RequestContext = Ctx,
        meta: MetadataService = Meta,
    ) -> Response:
        meta.delete_item(ctx, owner, ident, key)
        return Response(status_code=200)


for _collection, _owner in COLLECTIONS.items():
    _routes(_collection, _owner)
