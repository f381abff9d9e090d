"""Nova v2.1 flavors at /compute/v2.1/flavors: list and show what the caller sees; an admin's
create, description update (2.55), delete, os-flavor-access (list, addTenantAccess,
removeTenantAccess) and os-extra_specs.

HTTP only: parse (Nova's schema: integers or strings of digits, names without edge spaces), call
`FlavorService`, render the views.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from ferry.api import deps
from ferry.api.actions import ACTION_ANSWERS, Handler, perform
from ferry.api.compute_views import flavor_view
from ferry.api.errors import json_body
from ferry.api.openapi import ANY, actions, body, flat
from ferry.api.versions import at_least
from ferry.domain.errors import BadRequest, NotFound
from ferry.services.context import RequestContext
from ferry.services.flavors import FlavorFilter, FlavorPage, FlavorService, FlavorSpec

router = APIRouter(prefix="/compute/v2.1")
Ctx = Depends(deps.context)
Flavors = Depends(deps.flavors)

INT32_MAX = 2**31 - 1
FLAVOR_ID = re.compile(r"[a-zA-Z0-9. _-]{1,255}")
SPEC_KEY = re.compile(r"[a-zA-Z0-9-_:. /]{1,255}")
FLAVOR_BODY = {"type": "object", "required": ["name", "ram", "vcpus", "disk"]}


def _field(where: str, detail: str) -> BadRequest:
    return BadRequest(f"Invalid input for field/attribute {where}. {detail}")


def _int(b: dict[str, Any], key: str, minimum: int, default: int | None = None) -> int:
    value = b.get(key, default)
    if value is None and default is None:
        raise _field("flavor", f"'{key}' is a required property")
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= INT32_MAX:
        raise _field(key, f"Value: {value!r}. Must be an integer from {minimum} to {INT32_MAX}.")
    return value


def _text(value: object, key: str, pattern: re.Pattern[str] | None = None, size: int = 255) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= size or value.strip() != value:
        raise _field(key, f"Value: {value!r}. Must be 1 to {size} characters, without edge spaces.")
    if pattern is not None and not pattern.fullmatch(value):
        raise _field(key, f"Value: {value!r}. Does not match {pattern.pattern}.")
    return value


def _description(request: Request, b: dict[str, Any]) -> str | None:
    if "description" not in b:
        return None
    if not at_least(request, "2.55"):
        raise _field("flavor", "Additional properties are not allowed ('description' was unexpected)")
    value = b["description"]
    if value is not None and (not isinstance(value, str) or len(value) > 65535):
        raise _field("description", "Must be a string of at most 65535 characters, or null.")
    return value


TRUE = ("true", "1", "on", "yes")
FALSE = ("false", "0", "off", "no")


def _boolean(value: object, where: str) -> bool:
    """Nova's `parameter_types.boolean`: a JSON boolean or one of its strings."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in TRUE + FALSE:
        return value.lower() in TRUE
    raise _field(where, f"Value: {value!r}. Must be a boolean.")


def _spec(request: Request, b: dict[str, Any]) -> FlavorSpec:
    fid = b.get("id")
    if isinstance(fid, int) and not isinstance(fid, bool):
        fid = str(fid)  # Nova takes a number as its text
    is_public = _boolean(b.get("os-flavor-access:is_public", True), "os-flavor-access:is_public")
    rxtx = b.get("rxtx_factor", 1.0)
    if isinstance(rxtx, bool) or not isinstance(rxtx, int | float) or not 0 < rxtx <= 3.4e38:
        raise _field("rxtx_factor", f"Value: {rxtx!r}. Must be a number above 0.")
    return FlavorSpec(
        name=_text(b.get("name"), "name"),
        ram_mb=_int(b, "ram", 1),
        vcpus=_int(b, "vcpus", 1),
        disk_gib=_int(b, "disk", 0),
        flavor_id=None if fid is None else _text(fid, "id", FLAVOR_ID),
        ephemeral_gib=_int(b, "OS-FLV-EXT-DATA:ephemeral", 0, 0),
        swap_mb=_int(b, "swap", 0, 0),
        rxtx_factor=float(rxtx),
        is_public=is_public,
        description=_description(request, b),
    )


async def _object(request: Request, key: str) -> dict[str, Any]:
    b = await json_body(request)
    if not isinstance(b.get(key), dict):
        raise _field(key, f"'{key}' is a required object")
    return dict(b[key])


def _is_public(value: str | None) -> bool | None:
    """Nova's `is_public` filter: true by default, `none` for every flavor (admins)."""
    if value is None:
        return True
    if value.lower() == "none":
        return None
    if value.lower() in ("1", "t", "true", "on", "y", "yes"):
        return True
    if value.lower() in ("0", "f", "false", "off", "n", "no"):
        return False
    raise BadRequest(f"Invalid is_public filter [{value[:40]}]")


def _count(request: Request, name: str) -> int | None:
    value = request.query_params.get(name)
    if value is None:
        return None
    if not value.isdigit() or len(value) > 10:
        raise BadRequest(f"Invalid {name} filter [{value[:40]}]")
    return int(value)


def _listed(request: Request, ctx: RequestContext, flavors: FlavorService) -> FlavorPage:
    q = request.query_params
    where = FlavorFilter(
        min_ram=_count(request, "minRam"),
        min_disk=_count(request, "minDisk"),
        limit=_count(request, "limit"),
        marker=q.get("marker"),
    )
    return flavors.list_flavors(ctx, _is_public(q.get("is_public")), where)


def _links(request: Request, page: FlavorPage) -> dict[str, Any]:
    if not page.more:
        return {}
    url = request.url.include_query_params(marker=page.flavors[-1].id)
    return {"flavors_links": [{"rel": "next", "href": str(url)}]}


@router.get("/flavors")
def list_flavors(
    request: Request, ctx: RequestContext = Ctx, flavors: FlavorService = Flavors
) -> dict[str, Any]:
    page = _listed(request, ctx, flavors)
    described = at_least(request, "2.55")  # Nova's list shows the description from 2.55 too
    summaries = [
        {"id": f.id, "name": f.name, "links": flavor_view(request, f)["links"]}
        | ({"description": f.description} if described else {})
        for f in page.flavors
    ]
    return {"flavors": summaries, **_links(request, page)}


@router.get("/flavors/detail")
def list_flavors_detail(
    request: Request, ctx: RequestContext = Ctx, flavors: FlavorService = Flavors
) -> dict[str, Any]:
    page = _listed(request, ctx, flavors)
    return {"flavors": [flavor_view(request, f) for f in page.flavors], **_links(request, page)}


@router.post("/flavors", openapi_extra=body("flavor", FLAVOR_BODY))
async def create_flavor(
    request: Request, ctx: RequestContext = Ctx, flavors: FlavorService = Flavors
) -> dict[str, Any]:
    spec = _spec(request, await _object(request, "flavor"))
    return {"flavor": flavor_view(request, flavors.create(ctx, spec))}


@router.get("/flavors/{flavor_id}")
def show_flavor(
    request: Request, flavor_id: str, ctx: RequestContext = Ctx, flavors: FlavorService = Flavors
) -> dict[str, Any]:
    return {"flavor": flavor_view(request, flavors.get(ctx, flavor_id))}


@router.put("/flavors/{flavor_id}", openapi_extra=body("flavor", {"type": "object"}))
async def update_flavor(
    request: Request, flavor_id: str, ctx: RequestContext = Ctx, flavors: FlavorService = Flavors
) -> dict[str, Any]:
    b = await _object(request, "flavor")
    if not at_least(request, "2.55"):
        raise BadRequest("Updating a flavor needs microversion 2.55 or later.")  # Nova: 405
    if set(b) != {"description"}:
        raise _field("flavor", "'description' is the one property an update takes")
    return {"flavor": flavor_view(request, flavors.describe(ctx, flavor_id, _description(request, b)))}


@router.delete("/flavors/{flavor_id}", status_code=202)
def delete_flavor(flavor_id: str, ctx: RequestContext = Ctx, flavors: FlavorService = Flavors) -> Response:
    flavors.delete(ctx, flavor_id)
    return Response(status_code=202)


# -- os-flavor-access ------------------------------------------------------------------------------
def _access(flavor_id: str, projects: list[str]) -> dict[str, Any]:
    return {"flavor_access": [{"flavor_id": flavor_id, "tenant_id": p} for p in projects]}


@router.get("/flavors/{flavor_id}/os-flavor-access")
def list_flavor_access(
    flavor_id: str, ctx: RequestContext = Ctx, flavors: FlavorService = Flavors
) -> dict[str, Any]:
    return _access(flavor_id, flavors.access(ctx, flavor_id))


def _tenant(args: Any, action: str) -> str:
    if not isinstance(args, dict) or set(args) != {"tenant"}:
        raise _field(action, "'tenant' is the one required property")
    return _text(args["tenant"], "tenant")


async def _add_access(on: FlavorService, ctx: RequestContext, flavor_id: str, args: Any) -> dict[str, Any]:
    return _access(flavor_id, on.grant(ctx, flavor_id, _tenant(args, "addTenantAccess")))


async def _remove_access(on: FlavorService, ctx: RequestContext, flavor_id: str, args: Any) -> dict[str, Any]:
    return _access(flavor_id, on.revoke(ctx, flavor_id, _tenant(args, "removeTenantAccess")))


FLAVOR_ACTIONS: dict[str, Handler[FlavorService]] = {
    "addTenantAccess": _add_access,
    "removeTenantAccess": _remove_access,
}


@router.post(
    "/flavors/{flavor_id}/action",
    responses=ACTION_ANSWERS,
    openapi_extra=actions(dict.fromkeys(FLAVOR_ACTIONS, ANY)),
)
async def flavor_action(
    request: Request, flavor_id: str, ctx: RequestContext = Ctx, flavors: FlavorService = Flavors
) -> Response:
    return await perform(request, "flavor", FLAVOR_ACTIONS, flavors, ctx, flavor_id)


# -- os-extra_specs --------------------------------------------------------------------------------
def _specs(value: object) -> dict[str, str]:
    """Nova's extra specs: keys of [a-zA-Z0-9-_:. /], values strings (numbers and booleans are
    taken as their text) of at most 255 characters."""
    if not isinstance(value, dict) or not value:
        raise _field("extra_specs", "Must be a non-empty object.")
    out = {}
    for key, v in value.items():
        _text(key, "extra_specs key", SPEC_KEY)
        if isinstance(v, bool | int | float):
            v = str(v)
        if not isinstance(v, str) or len(v) > 255:
            raise _field(f"extra_specs.{key}", "Must be a string of at most 255 characters.")
        out[key] = v
    return out


@router.get("/flavors/{flavor_id}/os-extra_specs")
def list_extra_specs(
    flavor_id: str, ctx: RequestContext = Ctx, flavors: FlavorService = Flavors
) -> dict[str, Any]:
    return {"extra_specs": flavors.extra_specs(ctx, flavor_id)}


@router.post("/flavors/{flavor_id}/os-extra_specs", openapi_extra=body("extra_specs", {"type": "object"}))
async def create_extra_specs(
    request: Request, flavor_id: str, ctx: RequestContext = Ctx, flavors: FlavorService = Flavors
) -> dict[str, Any]:
    specs = _specs((await json_body(request)).get("extra_specs"))
    return {"extra_specs": flavors.set_extra_specs(ctx, flavor_id, specs)}


@router.get("/flavors/{flavor_id}/os-extra_specs/{key}")
def show_extra_spec(
    flavor_id: str, key: str, ctx: RequestContext = Ctx, flavors: FlavorService = Flavors
) -> dict[str, Any]:
    specs = flavors.extra_specs(ctx, flavor_id)
    if key not in specs:
        raise NotFound(f"Flavor {flavor_id} has no extra specs with key {key}.")
    return {key: specs[key]}


@router.put("/flavors/{flavor_id}/os-extra_specs/{key}", openapi_extra=flat({"type": "object"}))
async def update_extra_spec(
    request: Request, flavor_id: str, key: str, ctx: RequestContext = Ctx, flavors: FlavorService = Flavors
) -> dict[str, Any]:
    b = await json_body(request)
    if set(b) != {key}:
        raise BadRequest("Request body and URI mismatch")
    return flavors.set_extra_specs(ctx, flavor_id, _specs(b))


@router.delete("/flavors/{flavor_id}/os-extra_specs/{key}")
def delete_extra_spec(
    flavor_id: str, key: str, ctx: RequestContext = Ctx, flavors: FlavorService = Flavors
) -> Response:
    flavors.unset_extra_spec(ctx, flavor_id, key)
    return Response(status_code=200)
