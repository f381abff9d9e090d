"""Keystone users in the one domain: an admin creates, lists, updates and deletes them; a user
may read themselves, list their projects and change their own password.

Names are unique (409 on a clash). Changing a password or disabling a user revokes their tokens,
as Keystone does; deleting a user removes their role assignments, tokens and application
credentials (their foreign keys cascade, and are deleted here as well for clarity).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from ferry.db.models import AppCredential, Project, RoleAssignment, Token, User
from ferry.domain.errors import BadRequest, Conflict, NotFound, Unauthorized
from ferry.domain.ids import new_id
from ferry.services import policy
from ferry.services.context import RequestContext
from ferry.services.passwords import Passwords
from ferry.services.projects import DEFAULT_DOMAIN_ID, ProjectRecord, project_record

NO_PASSWORD = "!"
"""The stored hash of a user created without a password: no password verifies against it."""


@dataclass(frozen=True)
class UserRecord:
    id: str
    name: str
    domain_id: str
    enabled: bool
    email: str | None
    description: str | None
    default_project_id: str | None
    extra: dict[str, Any]


@dataclass(frozen=True)
class UserChanges:
    """What a create or an update sets: None leaves a field (an update) or its default alone."""

    name: str | None = None
    password: str | None = None
    enabled: bool | None = None
    email: str | None = None
    description: str | None = None
    default_project_id: str | None = None
    extra: dict[str, Any] | None = None
    """Keystone's extra attributes: an update merges them into those held."""


def _record(u: User) -> UserRecord:
    return UserRecord(
        u.id,
        u.name,
        u.domain_id,
        u.enabled,
        u.email,
        u.description,
        u.default_project_id,
        dict(u.extra or {}),
    )


def revoke_tokens(s: Session, user_id: str) -> None:
    s.execute(delete(Token).where(Token.user_id == user_id))


class UserService:
    def __init__(self, db: sessionmaker[Session], passwords: Passwords) -> None:
        self.db = db
        self.passwords = passwords

    def find(
        self, ctx: RequestContext, name: str | None, domain_id: str | None, enabled: bool | None
    ) -> list[UserRecord]:
        policy.enforce(ctx, "identity:list_users")
        stmt = select(User).order_by(User.name)
        if name is not None:
            stmt = stmt.where(User.name == name)
        if domain_id is not None:
            stmt = stmt.where(User.domain_id == domain_id)
        if enabled is not None:
            stmt = stmt.where(User.enabled.is_(enabled))
        with self.db() as s:
            return [_record(u) for u in s.scalars(stmt)]

    def get(self, ctx: RequestContext, user_id: str) -> UserRecord:
        policy.enforce_self(ctx, "identity:get_user", user_id)
        with self.db() as s:
            return _record(self._load(s, user_id))

    async def create(self, ctx: RequestContext, domain_id: str | None, c: UserChanges) -> UserRecord:
        policy.enforce(ctx, "identity:create_user")
        if domain_id not in (None, DEFAULT_DOMAIN_ID):
            raise NotFound(f"Could not find domain: {domain_id} (Ferry has the one domain 'default').")
        assert c.name is not None
        hashed = await self.passwords.hash(c.password) if c.password else NO_PASSWORD
        user = User(
            id=new_id().replace("-", ""),
            name=c.name,
            password_hash=hashed,
            domain_id=DEFAULT_DOMAIN_ID,
            enabled=True if c.enabled is None else c.enabled,
            email=c.email,
            description=c.description,
            default_project_id=c.default_project_id,
            extra=c.extra or None,
        )
        try:
            with self.db.begin() as s:
                self._check_project(s, c.default_project_id)
                s.add(user)
        except IntegrityError:
            raise Conflict(f"Duplicate entry: a user named {c.name!r} already exists.") from None
        return _record(user)

    async def update(self, ctx: RequestContext, user_id: str, c: UserChanges) -> UserRecord:
        policy.enforce(ctx, "identity:update_user")
        hashed = await self.passwords.hash(c.password) if c.password else None
        try:
            with self.db.begin() as s:
                user = self._load(s, user_id)
                self._check_project(s, c.default_project_id)
                changes: dict[str, Any] = {
                    f.name: getattr(c, f.name) for f in fields(c) if getattr(c, f.name) is not None
                }
                changes.pop("password", None)
                if c.extra:
                    changes["extra"] = {**(user.extra or {}), **c.extra}
                for key, value in changes.items():
                    setattr(user, key, value)
                if hashed is not None:
                    user.password_hash = hashed
                if hashed is not None or c.enabled is False:
                    revoke_tokens(s, user_id)
                s.flush()
                return _record(user)
        except IntegrityError:
            raise Conflict(f"Duplicate entry: a user named {c.name!r} already exists.") from None

    def delete(self, ctx: RequestContext, user_id: str) -> None:
        policy.enforce(ctx, "identity:delete_user")
        with self.db.begin() as s:
            self._load(s, user_id)
            revoke_tokens(s, user_id)
            s.execute(delete(AppCredential).where(AppCredential.user_id == user_id))
            s.execute(delete(RoleAssignment).where(RoleAssignment.user_id == user_id))
            s.execute(delete(User).where(User.id == user_id))

    async def change_password(self, ctx: RequestContext, user_id: str, original: str, new: str) -> None:
        """A password change by the user (or an admin) who knows the original password: it must
        verify (else 401); the user's tokens are revoked, the one making the call included."""
        policy.enforce_self(ctx, "identity:change_password", user_id)
        with self.db() as s:
            current = self._load(s, user_id).password_hash
        if not await self.passwords.verify(None if current == NO_PASSWORD else current, original):
            raise Unauthorized("Invalid authentication: the original password is not correct.")
        hashed = await self.passwords.hash(new)
        with self.db.begin() as s:
            self._load(s, user_id).password_hash = hashed
            revoke_tokens(s, user_id)

    def projects(self, ctx: RequestContext, user_id: str) -> list[ProjectRecord]:
        """The projects a user holds a role on (what `GET /auth/projects` lists for the caller)."""
        policy.enforce_self(ctx, "identity:list_user_projects", user_id)
        stmt = (
            select(Project)
            .join(RoleAssignment, RoleAssignment.project_id == Project.id)
            .where(RoleAssignment.user_id == user_id)
            .distinct()
            .order_by(Project.name)
        )
        with self.db() as s:
            self._load(s, user_id)
            return [project_record(p) for p in s.scalars(stmt)]

    @staticmethod
    def _load(s: Session, user_id: str) -> User:
        user = s.get(User, user_id)
        if user is None:
            raise NotFound(f"Could not find user: {user_id}.")
        return user

    @staticmethod
    def _check_project(s: Session, project_id: str | None) -> None:
        if project_id is not None and s.get(Project, project_id) is None:
            raise BadRequest(f"Invalid input: default project {project_id} does not exist.")
