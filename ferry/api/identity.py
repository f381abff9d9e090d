"""Keystone v3 tokens: password, token (rescoping) and application-credential methods, project
scoped (with the service catalog) or unscoped.

HTTP only: the login, its throttling and who may see or revoke a token are the identity service's
(`services/identity.py`); this router reads the request and renders the token.
"""

from __future__ import annotations

import hashlib
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from ferry.api import deps
from ferry.api.catalog import PROJECT, catalog_for
from ferry.api.errors import json_body
from ferry.api.openapi import body
from ferry.api.schemas import MAX_TEXT
from ferry.domain.clock import iso_z
from ferry.domain.errors import BadRequest, Forbidden, Unauthorized
from ferry.services.identity import IdentityService, IssuedToken, Login, Method, Ref

router = APIRouter(prefix="/identity/v3")
Identity = Depends(deps.identity)
DOMAIN = {"id": "default", "name": "Default"}


def _token_body(request: Request, issued: IssuedToken) -> dict[str, Any]:
    ctx = issued.context
    token: dict[str, Any] = {
        "methods": list(issued.methods),
        "user": {"id": ctx.user_id, "name": ctx.user_name, "domain": DOMAIN, "password_expires_at": None},
        "is_domain": False,
        "audit_ids": [hashlib.sha256(issued.token.encode()).hexdigest()[:22]],
        "issued_at": iso_z(issued.issued_at),
        "expires_at": iso_z(issued.expires_at),
    }
    if issued.scoped:  # an unscoped token has no project, no roles and no catalog (as Keystone's)
        token["project"] = {"id": ctx.project_id, "name": ctx.project_name, "domain": DOMAIN}
        token["roles"] = [{"id": r, "name": r} for r in sorted(ctx.roles)]
        token["catalog"] = catalog_for(request, ctx.project_id)
    if issued.system_roles is not None:  # shown, but they give no authority in Ferry
        token["system"] = {"all": True}
        token["roles"] = [{"id": r, "name": r} for r in issued.system_roles]
        token["catalog"] = catalog_for(request, PROJECT)
    if issued.app_credential is not None:
        cred_id, cred_name = issued.app_credential
        token["application_credential"] = {"id": cred_id, "name": cred_name, "restricted": True}
    return {"token": token}


MAX_PASSWORD = 4096
"""Keystone's default `max_password_length`; names and ids are at most `MAX_TEXT` (255)."""
_NAMED: dict[str, Any] = {
    "type": "object",
    "properties": {"id": {"type": "string"}, "name": {"type": "string"}},
}
AUTH_BODY = {
    "type": "object",
    "required": ["identity"],
    "properties": {
        "identity": {
            "type": "object",
            "required": ["methods"],
            "properties": {
                "methods": {
                    "type": "array",
                    "items": {"enum": ["password", "token", "application_credential"]},
                },
                "token": {"type": "object", "properties": {"id": {"type": "string"}}},
                "application_credential": {
                    "type": "object",
                    "properties": {**_NAMED["properties"], "secret": {"type": "string"}, "user": _NAMED},
                },
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
"""The body of `POST auth/tokens`, for the OpenAPI."""


def _str(value: Any, what: str, limit: int = MAX_TEXT) -> str:
    if not isinstance(value, str) or not value:
        raise BadRequest(f"Invalid input: {what} must be a non-empty string.")
    if len(value) > limit:
        raise BadRequest(f"Invalid input: {what} is longer than {limit} characters.")
    return value


def _ref(obj: Any, what: str) -> Ref:
    """An `{"id": …}` or `{"name": …}` object (an id wins, as in Keystone)."""
    if not isinstance(obj, dict):
        raise BadRequest(f"Invalid input: {what} must be an object.")
    if obj.get("id") is not None:
        return Ref(_str(obj["id"], f"{what} id"), True)
    return Ref(_str(obj.get("name"), f"{what} name"), False)


def _domain_ok(obj: dict[str, Any]) -> None:
    """A user or project named in a domain: only Default exists."""
    domain = obj.get("domain")
    if domain is None:
        return
    ref = _ref(domain, "domain")
    if ref.value != (DOMAIN["id"] if ref.by_id else DOMAIN["name"]):
        raise Unauthorized(f"Could not find domain: {ref.value}.")


def _user(obj: Any, what: str) -> Ref:
    ref = _ref(obj, what)
    _domain_ok(obj)
    return ref


SYSTEM = Ref("system", True)
"""What `_scope` returns for `{"system": {"all": true}}`."""


def _scope(auth: dict[str, Any]) -> Ref | None:
    scope = auth.get("scope")
    if scope is None or scope == "unscoped":
        return None
    if isinstance(scope, dict) and scope.get("system") == {"all": True}:
        return SYSTEM
    if not isinstance(scope, dict) or not isinstance(scope.get("project"), dict):
        raise BadRequest(
            "Invalid input: Ferry issues project-scoped, system-scoped or unscoped tokens only; "
            "give auth.scope.project or auth.scope.system."
        )
    ref = _ref(scope["project"], "project")
    if not ref.by_id:
        _domain_ok(scope["project"])
    return ref


def _credentials(body: dict[str, Any], address: str) -> Login:
    auth = body.get("auth")
    if not isinstance(auth, dict):
        raise BadRequest("Invalid input: missing 'auth' object.")
    identity = auth.get("identity")
    methods = identity.get("methods") if isinstance(identity, dict) else None
    if not isinstance(identity, dict) or not isinstance(methods, list) or not methods:
        raise BadRequest("Invalid input: auth.identity.methods must be a non-empty list.")
    if len(set(map(str, methods))) != 1 or methods[0] not in set(Method):
        raise BadRequest("Invalid input: give one method of password, token or application_credential.")
    method = Method(methods[0])
    part = identity.get(method.value)
    if not isinstance(part, dict):
        raise BadRequest(f"Invalid input: missing auth.identity.{method.value}.")
    scope = _scope(auth)
    system = scope is SYSTEM
    scope = None if system else scope
    if method is Method.TOKEN:
        token = _str(part.get("id"), "token id", 256)
        return Login(method, address, token=token, scope=scope, system=system)
    if method is Method.APP_CREDENTIAL:
        if auth.get("scope") is not None:
            raise Unauthorized("An application credential login may not ask for a scope.")
        secret = _str(part.get("secret"), "application credential secret", MAX_PASSWORD)
        cred = _ref(part, "application credential")
        user = None if cred.by_id else _user(part.get("user"), "application credential user")
        return Login(method, address, user=user, secret=secret, credential=cred)
    user = _user(part.get("user"), "user")
    password = _str(part["user"].get("password"), "password", MAX_PASSWORD)
    return Login(method, address, user=user, secret=password, scope=scope, system=system)


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
    if not ctx.project_id:
        raise Forbidden("An unscoped token has no catalog.")
    return {"catalog": catalog_for(request, ctx.project_id)}
