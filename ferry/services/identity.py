"""Identity: users, projects, role assignments, password authentication and tokens.

Tokens are random strings; only their SHA-256 is stored, with the roles it grants (each held role
and the weaker ones it implies, `domain/roles.py`). A login hashes off the event loop
(`passwords.py`), takes one argon2 verify whether or not the user exists, and is refused unheard
(429) once its user name or its client address has failed too often (`domain/throttle.py`). A
token may be inspected or revoked by its own user, else as the policy says (`token:*`).
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session, sessionmaker

from ferry.config import IdentityConfig
from ferry.db.models import Project, RoleAssignment, Token, User
from ferry.domain.clock import utcnow
from ferry.domain.errors import TooManyRequests, Unauthorized
from ferry.domain.ids import new_id
from ferry.domain.roles import Role, with_implied
from ferry.domain.throttle import LoginThrottle
from ferry.services import policy
from ferry.services.context import RequestContext
from ferry.services.passwords import Passwords

UNAUTHENTICATED = "The request you have made requires authentication."


@dataclass(frozen=True)
class Login:
    """A password login as the API received it."""

    user_name: str
    password: str
    project_ref: str
    by_id: bool
    """Whether `project_ref` is the project's id (else its name)."""
    address: str
    """The client's address, for throttling (the peer's: a proxy in front is one address)."""


@dataclass(frozen=True)
class _Account:
    id: str
    name: str
    password_hash: str


@dataclass(frozen=True)
class IssuedToken:
    token: str
    context: RequestContext
    issued_at: datetime
    expires_at: datetime


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class IdentityService:
    def __init__(
        self,
        db: sessionmaker[Session],
        token_lifetime_s: int,
        config: IdentityConfig | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        config = config or IdentityConfig()
        self.db = db
        self.lifetime = timedelta(seconds=token_lifetime_s)
        self.passwords = Passwords(config)
        self.throttle = LoginThrottle(config.throttle)
        self.refusal_delay_s = config.refusal_delay_s
        self.clock = clock
        """Seconds, for the throttle's windows only (token times are wall-clock UTC)."""

    def close(self) -> None:
        self.passwords.close()

    # -- bootstrap ---------------------------------------------------------------------
    def ensure_project(self, s: Session, name: str) -> Project:
        project = s.scalar(select(Project).where(Project.name == name))
        if project is None:
            project = Project(id=new_id().replace("-", ""), name=name)
            s.add(project)
        return project

    def ensure_user(self, s: Session, name: str, password: str, project: Project, role: Role) -> User:
        user = s.scalar(select(User).where(User.name == name))
        hashed = self.passwords.hash_now(password)
        if user is None:
            user = User(id=new_id().replace("-", ""), name=name, password_hash=hashed)
            s.add(user)
        else:
            user.password_hash = hashed
        s.flush()
        if s.get(RoleAssignment, (user.id, project.id, role)) is None:
            s.add(RoleAssignment(user_id=user.id, project_id=project.id, role=role))
        return user

    # -- tokens ------------------------------------------------------------------------
    async def authenticate(self, login: Login) -> IssuedToken:
        try:
            return await self._authenticate(login)
        except TooManyRequests:
            await asyncio.sleep(self.refusal_delay_s)  # free for us, slows a client that retries at once
            raise

    async def _authenticate(self, login: Login) -> IssuedToken:
        wait = self.throttle.refusal(login.user_name, login.address, self.clock())
        if wait is not None:  # refused unheard: no lookup, no hash
            raise TooManyRequests(
                f"Too many failed logins for this user or address; retry in {wait} s.", wait
            )
        account = await asyncio.to_thread(self._account, login.user_name)
        if not await self.passwords.verify(account.password_hash if account else None, login.password):
            self.throttle.failed(login.user_name, login.address, self.clock())
            raise Unauthorized(UNAUTHENTICATED)
        assert account is not None
        self.throttle.succeeded(login.user_name)
        if self.passwords.needs_rehash(account.password_hash):
            await self._rehash(account, login.password)
        return await asyncio.to_thread(self._issue, account, login)

    def _account(self, user_name: str) -> _Account | None:
        """The user who may log in under this name, or None (unknown or disabled)."""
        with self.db() as s:
            user = s.scalar(select(User).where(User.name == user_name))
            if user is None or not user.enabled:
                return None
            return _Account(user.id, user.name, user.password_hash)

    async def _rehash(self, account: _Account, password: str) -> None:
        """Store the password hashed with the configured parameters (they changed since)."""
        try:
            new = await self.passwords.hash(password)
        except TooManyRequests:
            return  # the pool is busy: the next login will do it
        stmt = (
            update(User)
            .where(User.id == account.id, User.password_hash == account.password_hash)
            .values(password_hash=new)
        )  # unless the password changed meanwhile

        def store() -> None:
            with self.db.begin() as s:
                s.execute(stmt)

        await asyncio.to_thread(store)

    def _issue(self, account: _Account, login: Login) -> IssuedToken:
        with self.db.begin() as s:
            ref = login.project_ref
            by = Project.id == ref if login.by_id else Project.name == ref
            project = s.scalar(select(Project).where(by))
            if project is None:
                raise Unauthorized(f"Could not find project {ref!r} for user {account.name!r}.")
            roles = set(
                s.scalars(
                    select(RoleAssignment.role).where(
                        RoleAssignment.user_id == account.id, RoleAssignment.project_id == project.id
                    )
                )
            )
            if not roles:
                raise Unauthorized(f"User {account.name!r} has no role on project {project.name!r}.")
            token = secrets.token_urlsafe(32)
            now = utcnow()
            all_roles = with_implied(roles)
            s.add(
                Token(
                    id_hash=_digest(token),
                    user_id=account.id,
                    project_id=project.id,
                    roles=sorted(all_roles),
                    issued_at=now,
                    expires_at=now + self.lifetime,
                )
            )
            s.execute(delete(Token).where(Token.expires_at < now))
            ctx = RequestContext(account.id, project.id, all_roles, account.name, project.name)
            return IssuedToken(token, ctx, now, now + self.lifetime)

    def validate(self, token: str) -> IssuedToken:
        if not token or len(token) > 256:
            raise Unauthorized(UNAUTHENTICATED)
        with self.db() as s:
            row = s.get(Token, _digest(token))
            if row is None or row.expires_at <= utcnow():
                raise Unauthorized("The token is invalid or has expired.")
            user = s.get(User, row.user_id)
            project = s.get(Project, row.project_id)
            assert user is not None and project is not None
            ctx = RequestContext(
                user.id, project.id, frozenset(map(Role, row.roles)), user.name, project.name
            )
            return IssuedToken(token, ctx, row.issued_at, row.expires_at)

    def inspect(self, caller: RequestContext, subject: str, action: str) -> IssuedToken:
        """The subject token, for its own user or a caller the policy allows (`token:check`,
        `token:validate`). An invalid subject is 401 for every caller (it has no user to compare)."""
        issued = self.validate(subject)
        if issued.context.user_id != caller.user_id:
            policy.enforce(caller, action)
        return issued

    def revoke(self, caller: RequestContext, subject: str) -> None:
        """Revoke a token: its own user may, else as `token:revoke` says. An unknown token is
        already revoked."""
        with self.db.begin() as s:
            row = s.get(Token, _digest(subject))
            if row is None:
                return
            if row.user_id != caller.user_id:
                policy.enforce(caller, "token:revoke")
            s.delete(row)

    def project_exists(self, project_id: str) -> bool:
        with self.db() as s:
            return s.get(Project, project_id) is not None
