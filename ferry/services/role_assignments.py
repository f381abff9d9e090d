"""Keystone roles and their assignments on projects.

The roles are Ferry's fixed ones (`domain/roles.py`: admin, member, reader, service); a role's id
is its name, so it is stable across installations. An admin grants, revokes and checks them;
`GET /role_assignments` lists them with Keystone's filters, and with `effective` also the roles
each assignment implies (admin ⇒ member ⇒ reader), as Keystone lists implied roles.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from ferry.db.models import Project, RoleAssignment, Token, User
from ferry.domain.errors import Forbidden, NotFound
from ferry.domain.roles import IMPLIED, Role
from ferry.services import policy
from ferry.services.context import RequestContext


@dataclass(frozen=True)
class Assignment:
    user_id: str
    user_name: str
    project_id: str
    project_name: str
    role: Role
    prior_role: Role | None = None
    """For an effective listing: the assigned role this one is implied by."""


@dataclass(frozen=True)
class AssignmentFilter:
    user_id: str | None = None
    project_id: str | None = None
    role_id: str | None = None
    effective: bool = False


def role_named(role_id: str) -> Role:
    try:
        return Role(role_id)
    except ValueError:
        raise NotFound(f"Could not find role: {role_id}.") from None


class RoleAssignmentService:
    def __init__(self, db: sessionmaker[Session]) -> None:
        self.db = db

    def roles(self, ctx: RequestContext, name: str | None = None) -> list[Role]:
        policy.enforce(ctx, "identity:list_roles")
        return [r for r in sorted(Role) if name in (None, r.value)]

    def role(self, ctx: RequestContext, role_id: str) -> Role:
        policy.enforce(ctx, "identity:get_role")
        return role_named(role_id)

    def grant(self, ctx: RequestContext, project_id: str, user_id: str, role_id: str) -> None:
        policy.enforce(ctx, "identity:manage_grants")
        role = role_named(role_id)
        with self.db.begin() as s:
            self._targets(s, project_id, user_id)
            if s.get(RoleAssignment, (user_id, project_id, role)) is None:
                s.add(RoleAssignment(user_id=user_id, project_id=project_id, role=role))

    def revoke(self, ctx: RequestContext, project_id: str, user_id: str, role_id: str) -> None:
        """Remove a grant; the user's tokens on the project are revoked with it (Keystone's
        revocation events do the same)."""
        policy.enforce(ctx, "identity:manage_grants")
        role = role_named(role_id)
        with self.db.begin() as s:
            self._targets(s, project_id, user_id)
            row = s.get(RoleAssignment, (user_id, project_id, role))
            if row is None:
                raise NotFound(
                    f"Could not find role assignment of {role_id} to user {user_id} on {project_id}."
                )
            s.delete(row)
            _revoke_project_tokens(s, user_id, project_id)

    def check(self, ctx: RequestContext, project_id: str, user_id: str, role_id: str) -> None:
        """Nothing if the user holds the role directly on the project, else 404."""
        policy.enforce(ctx, "identity:check_grant")
        role = role_named(role_id)
        with self.db() as s:
            self._targets(s, project_id, user_id)
            if s.get(RoleAssignment, (user_id, project_id, role)) is None:
                raise NotFound(
                    f"Could not find role assignment of {role_id} to user {user_id} on {project_id}."
                )

    def user_roles(self, ctx: RequestContext, project_id: str, user_id: str) -> list[Role]:
        policy.enforce(ctx, "identity:check_grant")
        with self.db() as s:
            self._targets(s, project_id, user_id)
            stmt = select(RoleAssignment.role).where(
                RoleAssignment.user_id == user_id, RoleAssignment.project_id == project_id
            )
            return sorted(s.scalars(stmt))

    def assignments(self, ctx: RequestContext, f: AssignmentFilter) -> list[Assignment]:
        """Keystone's `GET /role_assignments`: an admin lists any, a user their own (`user.id`)."""
        if not ctx.is_admin and f.user_id != ctx.user_id:
            raise Forbidden("Policy does not allow identity:list_role_assignments to be performed.")
        policy.enforce_self(ctx, "identity:list_role_assignments", f.user_id or "")
        stmt = (
            select(RoleAssignment, User.name, Project.name)
            .join(User, User.id == RoleAssignment.user_id)
            .join(Project, Project.id == RoleAssignment.project_id)
            .order_by(User.name, Project.name, RoleAssignment.role)
        )
        if f.user_id is not None:
            stmt = stmt.where(RoleAssignment.user_id == f.user_id)
        if f.project_id is not None:
            stmt = stmt.where(RoleAssignment.project_id == f.project_id)
        out: list[Assignment] = []
        with self.db() as s:
            for a, user_name, project_name in s.execute(stmt):
                direct = Assignment(a.user_id, user_name, a.project_id, project_name, a.role)
                out.append(direct)
                if f.effective:
                    out += [
                        Assignment(a.user_id, user_name, a.project_id, project_name, implied, a.role)
                        for implied in sorted(IMPLIED.get(a.role, frozenset()))
                    ]
        if f.role_id is not None:
            out = [a for a in out if a.role.value == f.role_id]
        return out

    @staticmethod
    def _targets(s: Session, project_id: str, user_id: str) -> None:
        if s.get(Project, project_id) is None:
            raise NotFound(f"Could not find project: {project_id}.")
        if s.get(User, user_id) is None:
            raise NotFound(f"Could not find user: {user_id}.")


def _revoke_project_tokens(s: Session, user_id: str, project_id: str) -> None:
    s.execute(delete(Token).where(Token.user_id == user_id, Token.project_id == project_id))
