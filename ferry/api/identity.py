"""Keystone v3 subset: password tokens with a service catalog.

HTTP only: the login, its throttling and who may see or revoke a token are the identity service's
(`services/identity.py`); this router reads the request and renders the token.
"""

from __future__ import annotations

import hashlib
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from ferry.api import deps
from ferry.api.errors import json_body
from ferry.api.openapi import body
from ferry.api.schemas import MAX_TEXT
from ferry.api.versions import base_url
from ferry.domain.clock import iso_z
from ferry.domain.errors import BadRequest, Unauthorized
from ferry.services.identity import IdentityService, IssuedToken, Login

router = APIRouter(prefix="/identity/v3")
Identity = Depends(deps.identity)
DOMAIN = {"id": "default", "name": "Default"}


def _catalog(request: Request, project_id: str) -> list[dict[str, Any]]:
    base = base_url(request)
    services = [
        ("identity", "keystone", f"{base}/identity"),
        ("block-storage", "cinder", f"{base}/volume/v3/{project_id}"),
        ("volumev3", "cinderv3", f"{base}/volume/v3/{project_id}"),
        ("compute", "nova", f"{base}/compute/v2.1"),
        ("image", "glance", f"{base}/image"),
    ]
    out = []
    for stype, name, url in services:
        sid = hashlib.sha1(stype.encode()).hexdigest()[:32]
        endpoints = [
            {
                "id": f"{sid[:24]}{i:08x}",
                "interface": iface,
                "region": "RegionOne",
                "region_id": "RegionOne",
                "url": url,
            }
            for i, iface in enumerate(("public", "internal", "admin"))
        ]
        out.append({"id": sid, "type": stype, "name": name, "endpoints": endpoints})
    return out


def _token_body(request: Request, issued: IssuedToken) -> dict[str, Any]:
    ctx = issued.context
    return {
        "token": {
            "methods": ["password"],
            "user": {"id": ctx.user_id, "name": ctx.user_name, "domain": DOMAIN, "password_expires_at": None},
            "project": {"id": ctx.project_id, "name": ctx.project_name, "domain": DOMAIN},
            "roles": [{"id": r, "name": r} for r in sorted(ctx.roles)],
            "is_domain": False,
            "audit_ids": [hashlib.sha256(issued.token.encode()).hexdigest()[:22]],
            "issued_at": iso_z(issued.issued_at),
            "expires_at": iso_z(issued.expires_at),
            "catalog": _catalog(request, ctx.project_id),
        }
    }


MAX_PASSWORD = 4096
"""Keystone's default `max_password_length`; names and ids are at most `MAX_TEXT` (255)."""
_NAMED: dict[str, Any] = {
    "type": "object",
    "properties": {"id": {"type": "string"}, "name": {"type": "string"}},
}
AUTH_BODY = {
    "type": "object",
    "required": ["identity", "scope"],
    "properties": {
        "identity": {
            "type": "object",
            "required": ["methods", "password"],
            "properties": {
                "methods": {"type": "array", "items": {"enum": ["password"]}},
                "password": {
                    "type": "object",
                    "required": ["user"],
                    "properties": {
                        "user": {
                            **_NAMED,
                            "required": ["password"],
                            "properties": {**_NAMED["properties"], "password": {"type": "string"}},
                        }
                    },
                },
            },
        },
        "scope": {"type": "object", "required": ["project"], "properties": {"project": _NAMED}},
    },
}
"""The password-method, project-scoped body of `POST auth/tokens`, for the OpenAPI."""


def _str(value: Any, what: str, limit: int = MAX_TEXT) -> str:
    if not isinstance(value, str) or not value:
        raise BadRequest(f"Invalid input: {what} must be a non-empty string.")
    if len(value) > limit:
        raise BadRequest(f"Invalid input: {what} is longer than {limit} characters.")
    return value


def _credentials(body: dict[str, Any], address: str) -> Login:
    auth = body.get("auth")
    if not isinstance(auth, dict):
        raise BadRequest("Invalid input: missing 'auth' object.")
    identity = auth.get("identity")
    methods = identity.get("methods") if isinstance(identity, dict) else None
    if not isinstance(identity, dict) or not isinstance(methods, list) or "password" not in methods:
        raise BadRequest("Invalid input: only the password method is supported.")
    method = identity.get("password")
    user = method.get("user") if isinstance(method, dict) else None
    if not isinstance(user, dict):
        raise BadRequest("Invalid input: missing auth.identity.password.user.")
    name = _str(user.get("name") or user.get("id"), "user name")
    password = _str(user.get("password"), "password", MAX_PASSWORD)
    scope = auth.get("scope")
    project = scope.get("project") if isinstance(scope, dict) else None
    if not isinstance(project, dict):
        raise BadRequest("Invalid input: Ferry issues project-scoped tokens only; give auth.scope.project.")
    if project.get("id"):
        return Login(name, password, _str(project["id"], "project id"), True, address)
    return Login(name, password, _str(project.get("name"), "project name"), False, address)


@router.post(
    "/auth/tokens",
    status_code=201,
    openapi_extra=body("auth", AUTH_BODY),
    responses={429: {"description": "Too many failed logins: retry after `Retry-After` seconds"}},
)
async def issue_token(request: Request, identity: IdentityService = Identity) -> JSONResponse:
    address = request.client.host if request.client else ""
    issued = await identity.authenticate(_credentials(await json_body(request), address))
    return JSONResponse(
        _token_body(request, issued), status_code=201, headers={"X-Subject-Token": issued.token}
    )


def _subject(request: Request, identity: IdentityService, action: str) -> IssuedToken:
    caller = deps.context(request)
    subject = request.headers.get("X-Subject-Token")
    if not subject:
        raise Unauthorized("Missing X-Subject-Token.")
    return identity.inspect(caller, subject, action)


@router.get("/auth/tokens")
def check_token(request: Request, identity: IdentityService = Identity) -> JSONResponse:
    issued = _subject(request, identity, "token:validate")
    return JSONResponse(_token_body(request, issued), headers={"X-Subject-Token": issued.token})


@router.head("/auth/tokens", status_code=200)
def head_token(request: Request, identity: IdentityService = Identity) -> Response:
    _subject(request, identity, "token:check")
    return Response(status_code=200)


@router.delete("/auth/tokens", status_code=204)
def revoke_token(request: Request, identity: IdentityService = Identity) -> Response:
    caller = deps.context(request)
    subject = request.headers.get("X-Subject-Token")
    if subject:
        identity.revoke(caller, subject)
    return Response(status_code=204)


@router.get("/auth/catalog")
def catalog(request: Request) -> dict[str, Any]:
    ctx = deps.context(request)
    return {"catalog": _catalog(request, ctx.project_id)}
