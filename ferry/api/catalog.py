"""The service catalog Ferry offers, as a token carries it and as Keystone's `/services` and
`/endpoints` list it (same ids). The catalog is fixed: creating or changing services and endpoints
is refused (403)."""

from __future__ import annotations

import hashlib
from typing import Any

from fastapi import APIRouter, Request

from ferry.api import deps
from ferry.api.schemas import QueryText
from ferry.api.versions import base_url
from ferry.domain.errors import Forbidden, NotFound
from ferry.services import policy

router = APIRouter(prefix="/identity/v3")
PROJECT = "%(project_id)s"
"""Keystone's placeholder in an endpoint's URL for the token's project."""
INTERFACES = ("public", "internal", "admin")


def _services(request: Request, project_id: str) -> list[tuple[str, str, str, str]]:
    """(id, type, name, url) of each service."""
    base = base_url(request)
    services = [
        ("identity", "keystone", f"{base}/identity"),
        ("block-storage", "cinder", f"{base}/volume/v3/{project_id}"),
        ("volumev3", "cinderv3", f"{base}/volume/v3/{project_id}"),
        ("compute", "nova", f"{base}/compute/v2.1"),
        ("image", "glance", f"{base}/image"),
    ]
    return [(hashlib.sha1(t.encode()).hexdigest()[:32], t, n, u) for t, n, u in services]


def _endpoints(sid: str, url: str) -> list[dict[str, Any]]:
    return [
        {
            "id": f"{sid[:24]}{i:08x}",
            "interface": iface,
            "region": "RegionOne",
            "region_id": "RegionOne",
            "url": url,
        }
        for i, iface in enumerate(INTERFACES)
    ]


def catalog_for(request: Request, project_id: str) -> list[dict[str, Any]]:
    return [
        {"id": sid, "type": stype, "name": name, "endpoints": _endpoints(sid, url)}
        for sid, stype, name, url in _services(request, project_id)
    ]


def _service(request: Request, sid: str, stype: str, name: str) -> dict[str, Any]:
    link = f"{base_url(request)}/identity/v3/services/{sid}"
    return {
        "id": sid,
        "type": stype,
        "name": name,
        "enabled": True,
        "description": "",
        "links": {"self": link},
    }


def _endpoint(request: Request, sid: str, e: dict[str, Any]) -> dict[str, Any]:
    link = f"{base_url(request)}/identity/v3/endpoints/{e['id']}"
    return {**e, "service_id": sid, "enabled": True, "links": {"self": link}}


def _all_endpoints(request: Request) -> list[dict[str, Any]]:
    return [
        _endpoint(request, sid, e)
        for sid, _, _, url in _services(request, PROJECT)
        for e in _endpoints(sid, url)
    ]


def _links(request: Request, what: str) -> dict[str, Any]:
    return {"self": f"{base_url(request)}/identity/v3/{what}", "previous": None, "next": None}


@router.get("/services")
def list_services(request: Request, type: QueryText = None) -> dict[str, Any]:
    policy.enforce(deps.context(request), "identity:list_catalog")
    found = [
        _service(request, sid, t, n) for sid, t, n, _ in _services(request, PROJECT) if type in (None, t)
    ]
    return {"services": found, "links": _links(request, "services")}


@router.get("/services/{service_id}")
def show_service(request: Request, service_id: str) -> dict[str, Any]:
    policy.enforce(deps.context(request), "identity:list_catalog")
    for sid, t, n, _ in _services(request, PROJECT):
        if sid == service_id:
            return {"service": _service(request, sid, t, n)}
    raise NotFound(f"Could not find service: {service_id}.")


@router.get("/endpoints")
def list_endpoints(
    request: Request, interface: QueryText = None, service_id: QueryText = None
) -> dict[str, Any]:
    policy.enforce(deps.context(request), "identity:list_catalog")
    found = [
        e
        for e in _all_endpoints(request)
        if interface in (None, e["interface"]) and service_id in (None, e["service_id"])
    ]
    return {"endpoints": found, "links": _links(request, "endpoints")}


@router.get("/endpoints/{endpoint_id}")
def show_endpoint(request: Request, endpoint_id: str) -> dict[str, Any]:
    policy.enforce(deps.context(request), "identity:list_catalog")
    for e in _all_endpoints(request):
        if e["id"] == endpoint_id:
            return {"endpoint": e}
    raise NotFound(f"Could not find endpoint: {endpoint_id}.")


@router.post("/services")
@router.post("/endpoints")
def refuse_catalog_change(request: Request) -> None:
    deps.context(request)
    raise Forbidden("Ferry's service catalog is fixed: services and endpoints cannot be created.")
