"""Keystone application credentials: a user delegates (some of) the roles their token holds on
its project to a secret, which logs in with `methods: ["application_credential"]`.

The secret is generated when none is given, returned once, and only its argon2 hash is stored.
Only the user may create one, with a token that did not itself come from an application
credential (Keystone's rule: a restricted credential cannot make others); the user or an admin
may list, show and delete them. Deleting one revokes its tokens (their foreign key cascades).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from ferry.db.models import AppCredential, RoleAssignment, User
from ferry.domain.clock import utcnow
from ferry.domain.errors import BadRequest, Conflict, Forbidden, NotFound
from ferry.domain.ids import new_id
from ferry.domain.roles import Role, with_implied
from ferry.services import policy
from ferry.services.context import RequestContext
from ferry.services.passwords import Passwords


@dataclass(frozen=True)
class NameOrId:
    value: str
    by_id: bool


@dataclass(frozen=True)
class AppCredentialRecord:
    id: str
    name: str
    description: str | None
    user_id: str
    project_id: str
    roles: tuple[str, ...]
    unrestricted: bool
    expires_at: datetime | None
    secret: str | None = None
    """Only in the answer to its creation."""


def _record(c: AppCredential, secret: str | None = None) -> AppCredentialRecord:
    return AppCredentialRecord(
        c.id,
        c.name,
        c.description,
        c.user_id,
        c.project_id,
        tuple(c.roles),
        c.unrestricted,
        c.expires_at,
        secret,
    )


def credential_for_login(
    db: sessionmaker[Session], cred: NameOrId, user: NameOrId | None
) -> AppCredential | None:
    """The unexpired credential a login names (by id, or by name and its user), or None."""
    with db() as s:
        if cred.by_id:
            row = s.get(AppCredential, cred.value)
        elif user is None:
            return None
        else:
            by = User.id == user.value if user.by_id else User.name == user.value
            row = s.scalar(
                select(AppCredential)
                .join(User, User.id == AppCredential.user_id)
                .where(by, AppCredential.name == cred.value)
            )
        if row is None or (row.expires_at is not None and row.expires_at <= utcnow()):
            return None
        s.expunge(row)
        return row


class AppCredentialService:
    def __init__(self, db: sessionmaker[Session], passwords: Passwords) -> None:
        self.db = db
        self.passwords = passwords

    async def create(
        self,
        ctx: RequestContext,
        user_id: str,
        *,
        via_credential: bool,
        name: str,
        secret: str | None,
        description: str | None,
        expires_at: datetime | None,
        roles: list[NameOrId] | None,
        unrestricted: bool,
    ) -> AppCredentialRecord:
        policy.enforce_self(ctx, "identity:application_credentials", user_id)
        if ctx.user_id != user_id:
            raise Forbidden("Only a user may create their own application credentials.")
        if via_credential:
            raise Forbidden("A token from an application credential cannot create application credentials.")
        if not ctx.project_id:
            raise Forbidden("Creating an application credential needs a project-scoped token.")
        if expires_at is not None and expires_at <= utcnow():
            raise BadRequest("Invalid input: expires_at is in the past.")
        with self.db() as s:
            held = with_implied(
                s.scalars(
                    select(RoleAssignment.role).where(
                        RoleAssignment.user_id == user_id, RoleAssignment.project_id == ctx.project_id
                    )
                )
            )
        chosen = held if not roles else frozenset(_role(r, held) for r in roles)
        secret = secret or secrets.token_urlsafe(64)
        row = AppCredential(
            id=new_id().replace("-", ""),
            user_id=user_id,
            project_id=ctx.project_id,
            name=name,
            description=description,
            secret_hash=await self.passwords.hash(secret),
            roles=sorted(with_implied(chosen)),
            unrestricted=unrestricted,
            expires_at=expires_at,
            created_at=utcnow(),
        )
        try:
            with self.db.begin() as s:
                s.add(row)
        except IntegrityError:
            raise Conflict(
                f"An application credential named {name!r} already exists for this user."
            ) from None
        return _record(row, secret)

    def find(self, ctx: RequestContext, user_id: str, name: str | None = None) -> list[AppCredentialRecord]:
        policy.enforce_self(ctx, "identity:application_credentials", user_id)
        stmt = select(AppCredential).where(AppCredential.user_id == user_id).order_by(AppCredential.name)
        if name is not None:
            stmt = stmt.where(AppCredential.name == name)
        with self.db() as s:
            if s.get(User, user_id) is None:
                raise NotFound(f"Could not find user: {user_id}.")
            return [_record(c) for c in s.scalars(stmt)]

    def get(self, ctx: RequestContext, user_id: str, cred_id: str) -> AppCredentialRecord:
        policy.enforce_self(ctx, "identity:application_credentials", user_id)
        with self.db() as s:
            return _record(self._load(s, user_id, cred_id))

    def delete(self, ctx: RequestContext, user_id: str, cred_id: str, *, via_credential: bool) -> None:
        policy.enforce_self(ctx, "identity:application_credentials", user_id)
        if via_credential:
            raise Forbidden("A token from an application credential cannot delete application credentials.")
        with self.db.begin() as s:
            s.delete(self._load(s, user_id, cred_id))

    @staticmethod
    def _load(s: Session, user_id: str, cred_id: str) -> AppCredential:
        row = s.get(AppCredential, cred_id)
        if row is None or row.user_id != user_id:
            raise NotFound(f"Could not find Application Credential: {cred_id}.")
        return row


def _role(ref: NameOrId, held: frozenset[Role]) -> Role:
    """A role the credential asks for: one the creator holds (role ids are their names)."""
    for role in held:
        if role.value == ref.value:
            return role
    raise BadRequest(f"Invalid input: the creator does not hold role {ref.value!r} on the project.")
