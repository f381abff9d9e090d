"""Keystone roles and their assignments on projects.

The roles are Ferry's fixed ones (`domain/roles.py`: admin, member, reader, service); a role's id
is its name, so it is stable across installations. An admin grants, revokes and checks them;
`GET /role_assignments` lists them with Keystone's filters, and with `effective` also the roles
each assignment implies (admin ⇒ member ⇒ reader), as Keystone lists implied roles. System
grants (`/system/users/{u}/roles/{r}`) are recorded and listed, but grant nothing: Ferry issues
no system-scoped token.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from ferry.db.models import Project, RoleAssignment, SystemRoleAssignment, Token, User
from ferry.domain.errors import Forbidden, NotFound
from ferry.domain.roles import IMPLIED, Role
from ferry.services import policy
from ferry.services.context import RequestContext


@dataclass(frozen=True)
class Assignment:
    user_id: str
    user_name: str
    project_id: str
    """"" for a system grant."""
    project_name: str
    role: Role
    prior_role: Role | None = None
    """For an effective listing: the assigned role this one is implied by."""

    @property
    def on_system(self) -> bool:
        return not self.project_id


@dataclass(frozen=True)
class AssignmentFilter:
    user_id: str | None = None
    project_id: str | None = None
    role_id: str | None = None
    effective: bool = False
    system: bool | None = None
    """True: system grants only; False: project grants only; None: both."""


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
        rows: list[tuple[str, str, str, str, Role]] = []
        with self.db() as s:
            if f.system is not True:
                rows += [(a.user_id, un, a.project_id, pn, a.role) for a, un, pn in s.execute(stmt)]
            if f.system is not False and f.project_id is None:
                system = select(SystemRoleAssignment, User.name).join(
                    User, User.id == SystemRoleAssignment.user_id
                )
                if f.user_id is not None:
                    system = system.where(SystemRoleAssignment.user_id == f.user_id)
                rows += [(a.user_id, un, "", "", a.role) for a, un in s.execute(system)]
        out: list[Assignment] = []
        for user_id, user_name, project_id, project_name, role in rows:
            out.append(Assignment(user_id, user_name, project_id, project_name, role))
            if f.effective:
                out += [
                    Assignment(user_id, user_name, project_id, project_name, implied, role)
                    for implied in sorted(IMPLIED.get(role, frozenset()))
                ]
        if f.role_id is not None:
            out = [a for a in out if a.role.value == f.role_id]
        return out

    # -- system grants: recorded and listed; Ferry issues no system-scoped token ---------------
    def system_grant(self, ctx: RequestContext, user_id: str, role_id: str) -> None:
        policy.enforce(ctx, "identity:manage_grants")
        role = role_named(role_id)
        with self.db.begin() as s:
            _user(s, user_id)
            if s.get(SystemRoleAssignment, (user_id, role)) is None:
                s.add(SystemRoleAssignment(user_id=user_id, role=role))

    def system_revoke(self, ctx: RequestContext, user_id: str, role_id: str) -> None:
        policy.enforce(ctx, "identity:manage_grants")
        role = role_named(role_id)
        with self.db.begin() as s:
            _user(s, user_id)
            row = s.get(SystemRoleAssignment, (user_id, role))
            if row is None:
                raise NotFound(f"Could not find system role assignment of {role_id} to user {user_id}.")
            s.delete(row)

    def system_check(self, ctx: RequestContext, user_id: str, role_id: str) -> None:
        policy.enforce(ctx, "identity:check_grant")
        role = role_named(role_id)
        with self.db() as s:
            _user(s, user_id)
            if s.get(SystemRoleAssignment, (user_id, role)) is None:
                raise NotFound(f"Could not find system role assignment of {role_id} to user {user_id}.")

    def system_roles(self, ctx: RequestContext, user_id: str) -> list[Role]:
        policy.enforce(ctx, "identity:check_grant")
        with self.db() as s:
            _user(s, user_id)
            stmt = select(SystemRoleAssignment.role).where(SystemRoleAssignment.user_id == user_id)
            return sorted(s.scalars(stmt))

    @staticmethod
    def _targets(s: Session, project_id: str, user_id: str) -> None:
        if s.get(Project, project_id) is None:
            raise NotFound(f"Could not find project: {project_id}.")
        if s.get(User, user_id) is None:
            raise NotFound(f"Could not find user: {user_id}.")


def _user(s: Session, user_id: str) -> None:
    if s.get(User, user_id) is None:
        raise NotFound(f"Could not find user: {user_id}.")


def _revoke_project_tokens(s: Session, user_id: str, project_id: str) -> None:
    s.execute(delete(Token).where(Token.user_id == user_id, Token.project_id == project_id))
