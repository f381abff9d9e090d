"""Version discovery documents and microversion headers for identity, block storage and compute."""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ferry.api.errors import error_response

VOLUME_MIN, VOLUME_MAX = "3.0", "3.49"
"""3.42 extends attached volumes; 3.49 is the last before 3.50 ("capable of multiattach", which
Ferry is not). Each change up to it is honoured where Ferry serves the resource, or answered as
Cinder answers when the feature is not configured: docs/conformance.md's "Microversions" table."""
COMPUTE_MIN, COMPUTE_MAX = "2.1", "2.80"
"""2.80: what the stock client's live migration, migration list/show/abort/force complete need
(2.22 force complete, 2.24 abort, 2.25 block_migration "auto", 2.30 host + force, 2.59 uuids,
2.80 owners). Each change up to it is honoured where Ferry serves the resource (`at_least`)."""
UPDATED = "2026-11-01T00:00:00Z"

router = APIRouter()


def base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _identity_version(request: Request) -> dict[str, Any]:
    return {
        "id": "v3.14",
        "status": "stable",
        "updated": UPDATED,
        "links": [{"rel": "self", "href": f"{base_url(request)}/identity/v3/"}],
        "media-types": [{"base": "application/json", "type": "application/vnd.openstack.identity-v3+json"}],
    }


def _volume_version(request: Request) -> dict[str, Any]:
    return {
        "id": "v3.0",
        "status": "CURRENT",
        "version": VOLUME_MAX,
        "min_version": VOLUME_MIN,
        "updated": UPDATED,
        "links": [{"rel": "self", "href": f"{base_url(request)}/volume/v3/"}],
        "media-types": [
            {"base": "application/json", "type": "application/vnd.openstack.volume+json;version=3"}
        ],
    }


def _compute_version(request: Request) -> dict[str, Any]:
    return {
        "id": "v2.1",
        "status": "CURRENT",
        "version": COMPUTE_MAX,
        "min_version": COMPUTE_MIN,
        "updated": UPDATED,
        "links": [{"rel": "self", "href": f"{base_url(request)}/compute/v2.1/"}],
        "media-types": [
            {"base": "application/json", "type": "application/vnd.openstack.compute+json;version=2.1"}
        ],
    }


@router.get("/identity", include_in_schema=False)
@router.get("/identity/", include_in_schema=False)
def identity_versions(request: Request) -> JSONResponse:
    """300 Multiple Choices, as Keystone answers its root (tempest checks the code)."""
    return JSONResponse({"versions": {"values": [_identity_version(request)]}}, status_code=300)


@router.get("/identity/v3", include_in_schema=False)
@router.get("/identity/v3/", include_in_schema=False)
def identity_v3(request: Request) -> dict[str, Any]:
    return {"version": _identity_version(request)}


@router.get("/volume", include_in_schema=False)
@router.get("/volume/", include_in_schema=False)
def volume_root(request: Request) -> JSONResponse:
    """Cinder's root answers 300 Multiple Choices with its versions (keystoneauth's discovery
    takes it as it takes Nova's); the version's own document answers 200."""
    return JSONResponse({"versions": [_volume_version(request)]}, status_code=300)


@router.get("/volume/v3", include_in_schema=False)
@router.get("/volume/v3/", include_in_schema=False)
def volume_versions(request: Request) -> dict[str, Any]:
    return {"versions": [_volume_version(request)]}


@router.get("/compute", include_in_schema=False)
@router.get("/compute/", include_in_schema=False)
def compute_versions(request: Request) -> dict[str, Any]:
    return {"versions": [_compute_version(request)]}


@router.get("/compute/v2.1", include_in_schema=False)
@router.get("/compute/v2.1/", include_in_schema=False)
def compute_v21(request: Request) -> dict[str, Any]:
    return {"version": _compute_version(request)}


MAX_VERSION_HEADER = 256
"""The longest microversion header taken ("volume 3.49, compute 2.1" is 24 characters)."""


def at_least(request: Request, version: str, service: str = "compute") -> bool:
    """Whether the request's negotiated microversion is `version` or later."""
    served = request.scope.get("state", {}).get(f"{service}_version") or (2, 1)
    return bool(served >= (_parse(version) or (0, 0)))


def _parse(v: str) -> tuple[int, int] | None:
    # Bounded digits: int() of a 5,000-digit minor version raises (Python's 4,300-digit limit).
    m = re.fullmatch(r"(\d{1,9})\.(\d{1,9})", v.strip())
    return (int(m.group(1)), int(m.group(2))) if m else None


def _negotiate(requested: str | None, lo: str, hi: str) -> str | None:
    """The version to serve, or None when the request asks for one we do not have."""
    if not requested:
        return lo
    if requested.strip() == "latest":
        return hi
    want = _parse(requested)
    if want is None or not (_parse(lo) or (0, 0)) <= want <= (_parse(hi) or (0, 0)):
        return None
    return f"{want[0]}.{want[1]}"


def _requested(headers: Headers, service: str, legacy: str | None) -> str | None:
    header = headers.get("OpenStack-API-Version", "")
    for part in header.split(","):
        name, _, ver = part.strip().partition(" ")
        if name.lower() == service:
            return ver
    return headers.get(legacy) if legacy else None


class Microversions:
    """Pure ASGI middleware: negotiates the microversion of /volume/v3 and /compute/v2.1 requests,
    refuses unknown ones with 406 and names the served version in the response headers. (Not a
    BaseHTTPMiddleware: that one re-streams every response body through a task and a queue.)"""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if path.startswith("/volume/v3/"):
            service, lo, hi, legacy = "volume", VOLUME_MIN, VOLUME_MAX, None
        elif path.startswith("/compute/v2.1/"):
            service, lo, hi, legacy = "compute", COMPUTE_MIN, COMPUTE_MAX, "X-OpenStack-Nova-API-Version"
        else:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        named = ("OpenStack-API-Version", legacy) if legacy else ("OpenStack-API-Version",)
        if any(len(headers.get(h, "")) > MAX_VERSION_HEADER for h in named):
            refusal = error_response(400, f"Microversion header longer than {MAX_VERSION_HEADER} characters.")
            await refusal(scope, receive, send)
            return
        asked = _requested(headers, service, legacy)
        version = _negotiate(asked, lo, hi)
        if version is None:
            refusal = error_response(
                406, f"Version {asked} is not supported by the API. Minimum is {lo} and maximum is {hi}."
            )
            await refusal(scope, receive, send)
            return
        extra = [
            (b"openstack-api-version", f"{service} {version}".encode()),
            (b"vary", b"OpenStack-API-Version"),
        ]
        if legacy:
            extra.append((legacy.lower().encode(), version.encode()))

        scope.setdefault("state", {})[f"{service}_version"] = _parse(version)

        async def send_with_version(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_version)
