"""Keystone v3 roles and project role assignments at /identity/v3: the fixed roles (list, show),
grants on projects (`PUT/HEAD/DELETE /projects/{p}/users/{u}/roles/{r}`, `GET …/roles`) and
`GET /role_assignments` with Keystone's filters. HTTP only: `RoleAssignmentService` decides."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from ferry.api import deps
from ferry.api.schemas import QueryText
from ferry.api.versions import base_url
from ferry.domain.errors import Forbidden
from ferry.domain.roles import Role
from ferry.services.role_assignments import Assignment, AssignmentFilter, RoleAssignmentService

router = APIRouter(prefix="/identity/v3")
Roles = Depends(deps.role_assignments)
DOMAIN = {"id": "default", "name": "Default"}
DESCRIPTIONS = {
    Role.ADMIN: "Manages everything.",
    Role.MEMBER: "Manages the project's resources.",
    Role.READER: "Reads the project's resources.",
    Role.SERVICE: "Ferry's own services calling each other.",
}


def _v3(request: Request, path: str) -> str:
    return f"{base_url(request)}/identity/v3/{path}"


def role_view(request: Request, r: Role) -> dict[str, Any]:
    return {
        "id": r.value,
        "name": r.value,
        "domain_id": None,
        "description": DESCRIPTIONS[r],
        "options": {"immutable": True},
        "links": {"self": _v3(request, f"roles/{r.value}")},
    }


@router.get("/roles")
def list_roles(
    request: Request, name: QueryText = None, roles: RoleAssignmentService = Roles
) -> dict[str, Any]:
    found = roles.roles(deps.context(request), name)
    links = {"self": _v3(request, "roles"), "previous": None, "next": None}
    return {"roles": [role_view(request, r) for r in found], "links": links}


@router.get("/roles/{role_id}")
def show_role(request: Request, role_id: str, roles: RoleAssignmentService = Roles) -> dict[str, Any]:
    return {"role": role_view(request, roles.role(deps.context(request), role_id))}


@router.post("/roles")
def create_role(request: Request) -> None:
    deps.context(request)
    raise Forbidden("Ferry's roles are fixed (admin, member, reader, service): roles cannot be created.")


@router.put("/projects/{project}/users/{user_id}/roles/{role_id}", status_code=204)
def grant(
    request: Request, project: str, user_id: str, role_id: str, roles: RoleAssignmentService = Roles
) -> Response:
    roles.grant(deps.context(request), project, user_id, role_id)
    return Response(status_code=204)


@router.head("/projects/{project}/users/{user_id}/roles/{role_id}", status_code=204)
def check(
    request: Request, project: str, user_id: str, role_id: str, roles: RoleAssignmentService = Roles
) -> Response:
    roles.check(deps.context(request), project, user_id, role_id)
    return Response(status_code=204)


@router.delete("/projects/{project}/users/{user_id}/roles/{role_id}", status_code=204)
def revoke(
    request: Request, project: str, user_id: str, role_id: str, roles: RoleAssignmentService = Roles
) -> Response:
    roles.revoke(deps.context(request), project, user_id, role_id)
    return Response(status_code=204)


@router.get("/projects/{project}/users/{user_id}/roles")
def user_roles(
    request: Request, project: str, user_id: str, roles: RoleAssignmentService = Roles
) -> dict[str, Any]:
    found = roles.user_roles(deps.context(request), project, user_id)
    path = f"projects/{project}/users/{user_id}/roles"
    return {"roles": [role_view(request, r) for r in found], "links": {"self": _v3(request, path)}}


@router.put("/system/users/{user_id}/roles/{role_id}", status_code=204)
def system_grant(
    request: Request, user_id: str, role_id: str, roles: RoleAssignmentService = Roles
) -> Response:
    """Recorded and listed; Ferry issues no system-scoped token, so it grants nothing."""
    roles.system_grant(deps.context(request), user_id, role_id)
    return Response(status_code=204)


@router.head("/system/users/{user_id}/roles/{role_id}", status_code=204)
def system_check(
    request: Request, user_id: str, role_id: str, roles: RoleAssignmentService = Roles
) -> Response:
    roles.system_check(deps.context(request), user_id, role_id)
    return Response(status_code=204)


@router.delete("/system/users/{user_id}/roles/{role_id}", status_code=204)
def system_revoke(
    request: Request, user_id: str, role_id: str, roles: RoleAssignmentService = Roles
) -> Response:
    roles.system_revoke(deps.context(request), user_id, role_id)
    return Response(status_code=204)


@router.get("/system/users/{user_id}/roles")
def system_roles(request: Request, user_id: str, roles: RoleAssignmentService = Roles) -> dict[str, Any]:
    found = roles.system_roles(deps.context(request), user_id)
    return {
        "roles": [role_view(request, r) for r in found],
        "links": {"self": _v3(request, f"system/users/{user_id}/roles")},
    }


def _present(request: Request, key: str) -> bool:
    """A Keystone flag parameter: present (`?effective`, `?effective=true`) unless `0`/false."""
    value = request.query_params.get(key)
    return value is not None and value.lower() not in ("0", "false", "no", "off")


def _assignment(request: Request, a: Assignment, names: bool) -> dict[str, Any]:
    role: dict[str, Any] = {"id": a.role.value}
    user: dict[str, Any] = {"id": a.user_id}
    project: dict[str, Any] = {"id": a.project_id}
    if names:
        role["name"] = a.role.value
        user |= {"name": a.user_name, "domain": DOMAIN}
        project |= {"name": a.project_name, "domain": DOMAIN}
    assigned = a.prior_role or a.role
    target = "system" if a.on_system else f"projects/{a.project_id}"
    links = {"assignment": _v3(request, f"{target}/users/{a.user_id}/roles/{assigned.value}")}
    if a.prior_role is not None:
        links["prior_role"] = _v3(request, f"roles/{a.prior_role.value}")
    scope: dict[str, Any] = {"system": {"all": True}} if a.on_system else {"project": project}
    return {"role": role, "user": user, "scope": scope, "links": links}


@router.get("/role_assignments")
def role_assignments(request: Request, roles: RoleAssignmentService = Roles) -> dict[str, Any]:
    ctx = deps.context(request)
    q = request.query_params
    for key in ("group.id", "scope.domain.id", "scope.OS-INHERIT:inherited_to"):
        if key in q:  # Ferry has no groups, domain or system grants, nor inheritance: none match
            return {"role_assignments": [], "links": {"self": str(request.url)}}
    f = AssignmentFilter(
        user_id=q.get("user.id"),
        project_id=q.get("scope.project.id"),
        role_id=q.get("role.id"),
        effective=_present(request, "effective"),
        system=True if "scope.system" in q else (False if "scope.project.id" in q else None),
    )
    found = roles.assignments(ctx, f)
    names = _present(request, "include_names")
    return {
        "role_assignments": [_assignment(request, a, names) for a in found],
        "links": {"self": _v3(request, "role_assignments"), "previous": None, "next": None},
    }
