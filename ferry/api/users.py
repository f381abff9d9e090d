"""Keystone v3 users at /identity/v3: create, list (by `name`, `domain_id`, `enabled`), show,
update, delete, a user's own password change, and the projects a user holds roles on (also
`GET /auth/projects` for the caller). HTTP only: `UserService` decides."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ConfigDict, Field, StrictBool

from ferry.api import deps
from ferry.api.errors import body_part
from ferry.api.identity import MAX_PASSWORD
from ferry.api.openapi import body
from ferry.api.projects import project_view
from ferry.api.schemas import Body, QueryText
from ferry.api.versions import base_url
from ferry.domain.errors import BadRequest
from ferry.services.users import UserChanges, UserRecord, UserService

router = APIRouter(prefix="/identity/v3")
Users = Depends(deps.users)
Name = Field(default=None, min_length=1, max_length=255)
Text = Field(default=None, max_length=255)
Id = Field(default=None, min_length=1, max_length=64)
Password = Field(default=None, max_length=MAX_PASSWORD)


MAX_EXTRA = 16
"""Extra attributes a user may carry (Keystone keeps any; Ferry bounds them)."""


class UserUpdateBody(Body):
    model_config = ConfigDict(extra="allow")  # Keystone keeps attributes it does not know
    name: str | None = Name
    password: str | None = Password
    enabled: StrictBool | None = None
    email: str | None = Text
    description: str | None = Text
    default_project_id: str | None = Id


class UserCreateBody(UserUpdateBody):
    name: str = Field(min_length=1, max_length=255)
    domain_id: str | None = Id


class PasswordChangeBody(Body):
    password: str = Field(min_length=1, max_length=MAX_PASSWORD)
    original_password: str = Field(min_length=1, max_length=MAX_PASSWORD)


def user_view(request: Request, u: UserRecord) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": u.id,
        "name": u.name,
        "domain_id": u.domain_id,
        "enabled": u.enabled,
        "password_expires_at": None,
        "options": {},
        "links": {"self": f"{base_url(request)}/identity/v3/users/{u.id}"},
    }
    out = {**u.extra, **out}
    for key in ("email", "description", "default_project_id"):
        if getattr(u, key) is not None:  # Keystone shows these only when set
            out[key] = getattr(u, key)
    return out


def _changes(b: UserUpdateBody) -> UserChanges:
    extra = {k: v for k, v in (b.model_extra or {}).items() if k not in IGNORED}
    if len(extra) > MAX_EXTRA:
        raise BadRequest(f"Invalid input: a user holds at most {MAX_EXTRA} extra attributes.")
    for key, value in extra.items():
        if len(key) > 64 or not (value is None or isinstance(value, (bool, int)) or _short(value)):
            raise BadRequest(
                f"Invalid input: extra attribute {key[:64]!r}: a name of at most 64 characters and a "
                "string of at most 255, a number, a boolean or null."
            )
    return UserChanges(b.name, b.password, b.enabled, b.email, b.description, b.default_project_id, extra)


IGNORED = frozenset({"id", "links", "domain_id", "options", "password_expires_at"})
"""Attributes a client may echo back that are Keystone's own, never extras."""


def _short(value: object) -> bool:
    return isinstance(value, str) and len(value) <= 255


def _links(request: Request, path: str) -> dict[str, Any]:
    return {"self": f"{base_url(request)}/identity/v3/{path}", "previous": None, "next": None}


def _enabled(value: str | None) -> bool | None:
    return None if value is None else value.lower() not in ("0", "false", "no", "off")


@router.post("/users", status_code=201, openapi_extra=body("user", UserCreateBody))
async def create_user(request: Request, users: UserService = Users) -> JSONResponse:
    ctx = deps.context(request)
    b = await body_part(request, "user", UserCreateBody)
    u = await users.create(ctx, b.domain_id, _changes(b))
    return JSONResponse({"user": user_view(request, u)}, status_code=201)


@router.get("/users")
def list_users(
    request: Request,
    name: QueryText = None,
    domain_id: QueryText = None,
    enabled: QueryText = None,
    users: UserService = Users,
) -> dict[str, Any]:
    found = users.find(deps.context(request), name, domain_id, _enabled(enabled))
    return {"users": [user_view(request, u) for u in found], "links": _links(request, "users")}


@router.get("/users/{user_id}")
def show_user(request: Request, user_id: str, users: UserService = Users) -> dict[str, Any]:
    return {"user": user_view(request, users.get(deps.context(request), user_id))}


@router.patch("/users/{user_id}", openapi_extra=body("user", UserUpdateBody))
async def update_user(request: Request, user_id: str, users: UserService = Users) -> dict[str, Any]:
    ctx = deps.context(request)
    b = await body_part(request, "user", UserUpdateBody)
    return {"user": user_view(request, await users.update(ctx, user_id, _changes(b)))}


@router.delete("/users/{user_id}", status_code=204)
def delete_user(request: Request, user_id: str, users: UserService = Users) -> Response:
    users.delete(deps.context(request), user_id)
    return Response(status_code=204)


@router.post("/users/{user_id}/password", status_code=204, openapi_extra=body("user", PasswordChangeBody))
async def change_password(request: Request, user_id: str, users: UserService = Users) -> Response:
    ctx = deps.context(request)
    b = await body_part(request, "user", PasswordChangeBody)
    await users.change_password(ctx, user_id, b.original_password, b.password)
    return Response(status_code=204)


@router.get("/users/{user_id}/projects")
def user_projects(request: Request, user_id: str, users: UserService = Users) -> dict[str, Any]:
    found = users.projects(deps.context(request), user_id)
    return {
        "projects": [project_view(request, p) for p in found],
        "links": _links(request, f"users/{user_id}/projects"),
    }


@router.get("/auth/projects")
def auth_projects(request: Request, users: UserService = Users) -> dict[str, Any]:
    ctx = deps.context(request)
    found = users.projects(ctx, ctx.user_id)
    return {"projects": [project_view(request, p) for p in found], "links": _links(request, "auth/projects")}
