"""Nova's os-keypairs at /compute/v2.1: create (import or make), list (paged from 2.35), show and
delete; `type` from 2.2, `user_id` (admins) from 2.10.

HTTP only: parse, call `KeyPairs`, shape Nova's views.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import Field

from ferry.api import deps
from ferry.api.errors import body_part
from ferry.api.openapi import body
from ferry.api.schemas import Body, QueryText
from ferry.api.versions import at_least
from ferry.domain.clock import iso
from ferry.domain.errors import BadRequest
from ferry.domain.keypairs import KeyType
from ferry.services.context import RequestContext
from ferry.services.keypairs import KeyPairs
from ferry.services.records import KeyPairRecord

router = APIRouter(prefix="/compute/v2.1")
Ctx = Depends(deps.context)
Pairs = Depends(deps.keypairs)


class KeyPairBody(Body):
    name: str = Field(min_length=1, max_length=255)
    public_key: str | None = Field(default=None, max_length=16384)
    type: Literal["ssh", "x509"] | None = None
    user_id: str | None = Field(default=None, min_length=1, max_length=255)


def _summary(request: Request, k: KeyPairRecord) -> dict[str, Any]:
    out = {"name": k.name, "public_key": k.public_key, "fingerprint": k.fingerprint}
    if at_least(request, "2.2"):
        out["type"] = k.key_type
    return out


def _user(request: Request, user_id: str | None) -> str | None:
    return user_id if at_least(request, "2.10") else None


@router.post(
    "/os-keypairs",
    responses={201: {"description": "Created (from microversion 2.2)"}},
    openapi_extra=body("keypair", KeyPairBody),
)
async def create_keypair(request: Request, ctx: RequestContext = Ctx, pairs: KeyPairs = Pairs) -> Response:
    b = await body_part(request, "keypair", KeyPairBody)
    if b.type is not None and not at_least(request, "2.2"):
        raise BadRequest(
            "Invalid input for field/attribute keypair: 'type' is allowed from microversion 2.2."
        )
    made = pairs.create(ctx, b.name, KeyType(b.type or "ssh"), b.public_key, _user(request, b.user_id))
    view = {**_summary(request, made.pair), "user_id": made.pair.user_id}
    if made.private_key is not None:
        view["private_key"] = made.private_key
    return JSONResponse({"keypair": view}, status_code=201 if at_least(request, "2.2") else 200)


@router.get("/os-keypairs")
def list_keypairs(
    request: Request,
    ctx: RequestContext = Ctx,
    pairs: KeyPairs = Pairs,
    user_id: QueryText = None,
    limit: int | None = Query(default=None, ge=0, le=2**31 - 1),
    marker: QueryText = None,
) -> dict[str, Any]:
    paged = at_least(request, "2.35")
    owner = _user(request, user_id)
    found = pairs.list_pairs(ctx, owner, limit if paged else None, marker if paged else None)
    out: dict[str, Any] = {"keypairs": [{"keypair": _summary(request, k)} for k in found]}
    if paged and limit is not None and found and len(found) == limit:
        url = request.url.include_query_params(marker=found[-1].name)
        out["keypairs_links"] = [{"rel": "next", "href": str(url)}]
    return out


@router.get("/os-keypairs/{name}")
def show_keypair(
    request: Request, name: str, ctx: RequestContext = Ctx, pairs: KeyPairs = Pairs, user_id: QueryText = None
) -> dict[str, Any]:
    k = pairs.get(ctx, name, _user(request, user_id))
    return {
        "keypair": {
            **_summary(request, k),
            "user_id": k.user_id,
            "id": k.id,
            "created_at": iso(k.created_at),
            "updated_at": None,
            "deleted_at": None,
            "deleted": False,
        }
    }


@router.delete(
    "/os-keypairs/{name}",
    status_code=204,
    responses={202: {"description": "Deleted (below microversion 2.2)"}},
)
def delete_keypair(
    request: Request, name: str, ctx: RequestContext = Ctx, pairs: KeyPairs = Pairs, user_id: QueryText = None
) -> Response:
    pairs.delete(ctx, name, _user(request, user_id))
    return Response(status_code=204 if at_least(request, "2.2") else 202)
