"""Cinder v3 QoS specs at /volume/v3/{project_id}/qos-specs: create, list, show, delete (`force`),
set and unset keys, and their associations with volume types (admins only, as in Cinder).

HTTP only: parse, call `QosService`, render `qos_view`.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from ferry.api import deps
from ferry.api.errors import json_body
from ferry.api.openapi import body
from ferry.api.schemas import QueryText, flag, string_pairs
from ferry.api.versions import base_url
from ferry.api.views import qos_view
from ferry.domain.errors import BadRequest
from ferry.services.context import RequestContext
from ferry.services.qos import QosService, consumer_of
from ferry.services.records import QosSpecsRecord

router = APIRouter(prefix="/volume/v3/{project_id}")
Ctx = Depends(deps.project_context)
Qos = Depends(deps.qos)
SPECS = {
    "type": "object",
    "required": ["name"],
    "properties": {"name": {"type": "string"}, "consumer": {"enum": ["front-end", "back-end", "both"]}},
    "additionalProperties": {"type": "string", "maxLength": 255},
}
KEYS = {
    "type": "object",
    "required": ["keys"],
    "properties": {"keys": {"type": "array", "items": {"type": "string"}}},
}


def _one(request: Request, project_id: str, q: QosSpecsRecord) -> dict[str, Any]:
    href = f"{base_url(request)}/volume/v3/{project_id}/qos-specs/{q.id}"
    return {
        "qos_specs": qos_view(q),
        "links": [{"href": href, "rel": "self"}, {"href": href, "rel": "bookmark"}],
    }


async def _specs_part(request: Request) -> dict[str, Any]:
    raw = await json_body(request)
    part = raw.get("qos_specs")
    if not isinstance(part, dict) or not part:
        raise BadRequest("Invalid input: the body must hold a non-empty 'qos_specs' object.")
    return dict(part)


def _pairs(value: dict[str, Any]) -> dict[str, str]:
    try:
        return string_pairs(value, "qos_specs")
    except ValueError as e:
        raise BadRequest(f"Invalid input: {e}.") from None


@router.get("/qos-specs")
def list_qos(project_id: str, ctx: RequestContext = Ctx, qos: QosService = Qos) -> dict[str, Any]:
    return {"qos_specs": [qos_view(q) for q in qos.all(ctx)]}


@router.post("/qos-specs", openapi_extra=body("qos_specs", SPECS))
async def create_qos(
    request: Request, project_id: str, ctx: RequestContext = Ctx, qos: QosService = Qos
) -> dict[str, Any]:
    part = await _specs_part(request)
    name = part.pop("name", None)
    if not isinstance(name, str):
        raise BadRequest("Invalid input: 'name' must be a string.")
    if len(name) > 255:
        raise BadRequest("Invalid input: 'name' is longer than 255 characters.")
    consumer = consumer_of(part.pop("consumer", "back-end"))
    return _one(request, project_id, qos.create(ctx, name, consumer, _pairs(part)))


@router.get("/qos-specs/{qos_id}")
def show_qos(
    request: Request, project_id: str, qos_id: str, ctx: RequestContext = Ctx, qos: QosService = Qos
) -> dict[str, Any]:
    return _one(request, project_id, qos.get(ctx, qos_id))


@router.put("/qos-specs/{qos_id}", openapi_extra=body("qos_specs", SPECS))
async def set_keys(
    request: Request, project_id: str, qos_id: str, ctx: RequestContext = Ctx, qos: QosService = Qos
) -> dict[str, Any]:
    part = await _specs_part(request)
    consumer = consumer_of(part.pop("consumer")) if "consumer" in part else None
    pairs = _pairs(part)
    qos.set_keys(ctx, qos_id, pairs, consumer)
    answer: dict[str, Any] = dict(pairs)
    if consumer is not None:
        answer["consumer"] = consumer.value
    return {"qos_specs": answer}


@router.put("/qos-specs/{qos_id}/delete_keys", status_code=202, openapi_extra=body("keys", KEYS))
async def unset_keys(
    request: Request, project_id: str, qos_id: str, ctx: RequestContext = Ctx, qos: QosService = Qos
) -> Response:
    keys = (await json_body(request)).get("keys")
    if not isinstance(keys, list) or not keys or not all(isinstance(k, str) for k in keys):
        raise BadRequest("Invalid input: 'keys' must be a non-empty list of strings.")
    qos.unset_keys(ctx, qos_id, keys)
    return Response(status_code=202)


@router.delete("/qos-specs/{qos_id}", status_code=202)
def delete_qos(
    project_id: str, qos_id: str, force: QueryText = None, ctx: RequestContext = Ctx, qos: QosService = Qos
) -> Response:
    qos.delete(ctx, qos_id, flag(force))
    return Response(status_code=202)


@router.get("/qos-specs/{qos_id}/associations")
def associations(
    project_id: str, qos_id: str, ctx: RequestContext = Ctx, qos: QosService = Qos
) -> dict[str, Any]:
    return {
        "qos_associations": [
            {"association_type": "volume_type", "id": t.id, "name": t.name}
            for t in qos.associations(ctx, qos_id)
        ]
    }


@router.get("/qos-specs/{qos_id}/associate", status_code=202)
def associate(
    project_id: str,
    qos_id: str,
    vol_type_id: QueryText = None,
    ctx: RequestContext = Ctx,
    qos: QosService = Qos,
) -> Response:
    qos.associate(ctx, qos_id, vol_type_id)
    return Response(status_code=202)


@router.get("/qos-specs/{qos_id}/disassociate", status_code=202)
def disassociate(
    project_id: str,
    qos_id: str,
    vol_type_id: QueryText = None,
    ctx: RequestContext = Ctx,
    qos: QosService = Qos,
) -> Response:
    qos.disassociate(ctx, qos_id, vol_type_id)
    return Response(status_code=202)


@router.get("/qos-specs/{qos_id}/disassociate_all", status_code=202)
def disassociate_all(
    project_id: str, qos_id: str, ctx: RequestContext = Ctx, qos: QosService = Qos
) -> Response:
    qos.disassociate_all(ctx, qos_id)
    return Response(status_code=202)
