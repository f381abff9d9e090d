"""Keystone v3 application credentials at /identity/v3/users/{user}/application_credentials:
create (the secret is returned once), list (by `name`), show and delete. HTTP only:
`AppCredentialService` decides."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from pydantic import Field, StrictBool, field_validator

from ferry.api import deps
from ferry.api.errors import body_part
from ferry.api.identity import MAX_PASSWORD
from ferry.api.openapi import body
from ferry.api.schemas import Body, QueryText
from ferry.api.versions import base_url
from ferry.domain.clock import iso
from ferry.domain.errors import BadRequest
from ferry.services.app_credentials import AppCredentialRecord, AppCredentialService, NameOrId
from ferry.services.identity import IdentityService, Method

router = APIRouter(prefix="/identity/v3")
Credentials = Depends(deps.app_credentials)
Identity = Depends(deps.identity)


RoleRef = dict[str, Annotated[str, Field(min_length=1, max_length=255)]]
"""`{"id": …}` or `{"name": …}` (a role's id is its name)."""


class AppCredentialBody(Body):
    name: str = Field(min_length=1, max_length=255)
    secret: str | None = Field(default=None, min_length=1, max_length=MAX_PASSWORD)
    description: str | None = Field(default=None, max_length=255)
    expires_at: datetime | None = None
    roles: list[RoleRef] | None = Field(default=None, max_length=16)
    unrestricted: StrictBool = False
    access_rules: list[Any] | None = Field(default=None, max_length=0)
    """Ferry has no access rules: only an empty list is accepted."""

    @field_validator("expires_at")
    @classmethod
    def _utc(cls, v: datetime | None) -> datetime | None:
        return v.astimezone(UTC).replace(tzinfo=None) if v is not None and v.tzinfo else v


def _role_ref(r: RoleRef) -> NameOrId:
    if "id" in r:
        return NameOrId(r["id"], True)
    if "name" in r:
        return NameOrId(r["name"], False)
    raise BadRequest("Invalid input: each of application_credential.roles needs an id or a name.")


def _view(request: Request, c: AppCredentialRecord) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": c.id,
        "name": c.name,
        "description": c.description,
        "user_id": c.user_id,
        "project_id": c.project_id,
        "roles": [{"id": r, "name": r, "domain_id": None} for r in c.roles],
        "expires_at": iso(c.expires_at),
        "unrestricted": c.unrestricted,
        "access_rules": [],
        "links": {
            "self": f"{base_url(request)}/identity/v3/users/{c.user_id}/application_credentials/{c.id}"
        },
    }
    if c.secret is not None:
        out["secret"] = c.secret
    return out


def _via_credential(request: Request, identity: IdentityService) -> bool:
    token = request.headers.get("X-Auth-Token", "")
    return Method.APP_CREDENTIAL in identity.validate(token).methods


@router.post(
    "/users/{user_id}/application_credentials",
    status_code=201,
    openapi_extra=body("application_credential", AppCredentialBody),
)
async def create_credential(
    request: Request,
    user_id: str,
    creds: AppCredentialService = Credentials,
    identity: IdentityService = Identity,
) -> JSONResponse:
    ctx = deps.context(request)
    b = await body_part(request, "application_credential", AppCredentialBody)
    roles = None if b.roles is None else [_role_ref(r) for r in b.roles]
    c = await creds.create(
        ctx,
        user_id,
        via_credential=_via_credential(request, identity),
        name=b.name,
        secret=b.secret,
        description=b.description,
        expires_at=b.expires_at,
        roles=roles,
        unrestricted=b.unrestricted,
    )
    return JSONResponse({"application_credential": _view(request, c)}, status_code=201)


@router.get("/users/{user_id}/application_credentials")
def list_credentials(
    request: Request, user_id: str, name: QueryText = None, creds: AppCredentialService = Credentials
) -> dict[str, Any]:
    found = creds.find(deps.context(request), user_id, name)
    links = {
        "self": f"{base_url(request)}/identity/v3/users/{user_id}/application_credentials",
        "previous": None,
        "next": None,
    }
    return {"application_credentials": [_view(request, c) for c in found], "links": links}


@router.get("/users/{user_id}/application_credentials/{cred_id}")
def show_credential(
    request: Request, user_id: str, cred_id: str, creds: AppCredentialService = Credentials
) -> dict[str, Any]:
    return {"application_credential": _view(request, creds.get(deps.context(request), user_id, cred_id))}


@router.delete("/users/{user_id}/application_credentials/{cred_id}", status_code=204)
def delete_credential(
    request: Request,
    user_id: str,
    cred_id: str,
    creds: AppCredentialService = Credentials,
    identity: IdentityService = Identity,
) -> Response:
    ctx = deps.context(request)
    creds.delete(ctx, user_id, cred_id, via_credential=_via_credential(request, identity))
    return Response(status_code=204)
