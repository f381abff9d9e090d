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
from enum import StrEnum

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session, sessionmaker

from ferry.config import IdentityConfig
from ferry.db.models import AppCredential, Project, RoleAssignment, SystemRoleAssignment, Token, User
from ferry.domain.clock import utcnow
from ferry.domain.errors import Forbidden, NotFound, TooManyRequests, Unauthorized
from ferry.domain.ids import new_id
from ferry.domain.roles import Role, with_implied
from ferry.domain.throttle import LoginThrottle
from ferry.services import policy
from ferry.services.app_credentials import NameOrId, credential_for_login
from ferry.services.context import RequestContext
from ferry.services.passwords import Passwords

UNAUTHENTICATED = "The request you have made requires authentication."


class Method(StrEnum):
    PASSWORD = "password"
    TOKEN = "token"
    APP_CREDENTIAL = "application_credential"


Ref = NameOrId
"""A name or an id, as a Keystone body gives it."""


@dataclass(frozen=True)
class Login:
    """A login as the API received it: one method and what it needs, and the scope asked for
    (None: unscoped, or the user's default project for a password login)."""

    method: Method
    address: str
    """The client's address, for throttling (the peer's: a proxy in front is one address)."""
    user: Ref | None = None
    secret: str = ""
    """The password, or the application credential's secret."""
    token: str = ""
    credential: Ref | None = None
    scope: Ref | None = None
    system: bool = False
    """Asked for a system-scoped token (`scope.system.all`)."""

    @property
    def throttle_key(self) -> str:
        """Whom failures count against: the user's name or id, or the credential's."""
        if self.method is Method.APP_CREDENTIAL:
            return f"application_credential:{self.credential.value if self.credential else ''}"
        return self.user.value if self.user else ""


@dataclass(frozen=True)
class _Account:
    id: str
    name: str
    password_hash: str
    default_project_id: str | None = None


@dataclass(frozen=True)
class IssuedToken:
    token: str
    context: RequestContext
    issued_at: datetime
    expires_at: datetime
    methods: tuple[str, ...] = (Method.PASSWORD,)
    app_credential: tuple[str, str] | None = None
    """(id, name) of the application credential the token came from."""
    system_roles: tuple[str, ...] | None = None
    """For a system-scoped token: the system grants it shows (they give no authority)."""

    @property
    def scoped(self) -> bool:
        return bool(self.context.project_id)


def _refusal(scope: Ref, project: Project | None, user: str) -> str:
    if project is None:
        return f"Could not find project {scope.value!r} for user {user!r}."
    if not project.enabled:
        return f"Project {project.name!r} is disabled."
    return f"User {user!r} has no role on project {project.name!r}."


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
        if login.method is Method.TOKEN:
            return await asyncio.to_thread(self._rescope, login)
        key = login.throttle_key
        wait = self.throttle.refusal(key, login.address, self.clock())
        if wait is not None:  # refused unheard: no lookup, no hash
            raise TooManyRequests(
                f"Too many failed logins for this user or address; retry in {wait} s.", wait
            )
        if login.method is Method.APP_CREDENTIAL:
            assert login.credential is not None
            cred = await asyncio.to_thread(credential_for_login, self.db, login.credential, login.user)
            if not await self.passwords.verify(cred.secret_hash if cred else None, login.secret):
                self.throttle.failed(key, login.address, self.clock())
                raise Unauthorized(UNAUTHENTICATED)
            assert cred is not None
            self.throttle.succeeded(key)
            return await asyncio.to_thread(self._issue_for_credential, cred)
        assert login.user is not None
        account = await asyncio.to_thread(self._account, login.user)
        if not await self.passwords.verify(account.password_hash if account else None, login.secret):
            self.throttle.failed(key, login.address, self.clock())
            raise Unauthorized(UNAUTHENTICATED)
        assert account is not None
        self.throttle.succeeded(key)
        if self.passwords.needs_rehash(account.password_hash):
            await self._rehash(account, login.secret)
        scope, optional = login.scope, False
        if login.system:
            return await asyncio.to_thread(self._issue_system, account.id, account.name, (Method.PASSWORD,))
        if scope is None and account.default_project_id:  # Keystone scopes to it if it can
            scope, optional = Ref(account.default_project_id, True), True
        return await asyncio.to_thread(
            self._issue, account.id, account.name, scope, (Method.PASSWORD,), optional=optional
        )

    def _account(self, ref: Ref) -> _Account | None:
        """The user who may log in under this name or id, or None (unknown or disabled)."""
        with self.db() as s:
            user = (
                s.get(User, ref.value) if ref.by_id else s.scalar(select(User).where(User.name == ref.value))
            )
            if user is None or not user.enabled:
                return None
            return _Account(user.id, user.name, user.password_hash, user.default_project_id)

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

    def _rescope(self, login: Login) -> IssuedToken:
        """A new token for the user of `login.token`, scoped as asked (unscoped if no scope),
        expiring when the old one does. A token from an application credential keeps its scope."""
        old = self.validate(login.token)
        if old.app_credential is not None:
            raise Forbidden("A token from an application credential cannot be rescoped.")
        methods = tuple(dict.fromkeys((*old.methods, Method.TOKEN)))
        ctx = old.context
        if login.system:
            return self._issue_system(ctx.user_id, ctx.user_name, methods, old.expires_at)
        return self._issue(ctx.user_id, ctx.user_name, login.scope, methods, expires_at=old.expires_at)

    def _issue_for_credential(self, cred: AppCredential) -> IssuedToken:
        with self.db() as s:
            user = s.get(User, cred.user_id)
            if user is None or not user.enabled:
                raise Unauthorized(UNAUTHENTICATED)
            name = user.name
        return self._issue(
            cred.user_id, name, Ref(cred.project_id, True), (Method.APP_CREDENTIAL,), cred=cred
        )

    def _issue(
        self,
        user_id: str,
        user_name: str,
        scope: Ref | None,
        methods: tuple[str, ...],
        *,
        expires_at: datetime | None = None,
        cred: AppCredential | None = None,
        optional: bool = False,
    ) -> IssuedToken:
        """Issue a token scoped to `scope`'s project (refused if the user holds no role there,
        unless the scope is `optional`: then unscoped), or unscoped."""
        with self.db.begin() as s:
            project, roles = None, frozenset[Role]()
            if scope is not None:
                by = Project.id == scope.value if scope.by_id else Project.name == scope.value
                project = s.scalar(select(Project).where(by))
                held = self._roles(s, user_id, project.id) if project is not None else frozenset()
                if cred is not None:
                    held = held & frozenset(map(Role, cred.roles))
                if project is None or not project.enabled or not held:
                    if not optional:
                        raise Unauthorized(_refusal(scope, project, user_name))
                    project = None
                else:
                    roles = held
            token = secrets.token_urlsafe(32)
            now = utcnow()
            expires = min(expires_at or now + self.lifetime, now + self.lifetime)
            if cred is not None and cred.expires_at is not None:
                expires = min(expires, cred.expires_at)
            s.add(
                Token(
                    id_hash=_digest(token),
                    user_id=user_id,
                    project_id=project.id if project else None,
                    roles=sorted(roles),
                    issued_at=now,
                    expires_at=expires,
                    methods=list(methods),
                    app_credential_id=cred.id if cred else None,
                )
            )
            s.execute(delete(Token).where(Token.expires_at < now))
            ctx = RequestContext(
                user_id, project.id if project else "", roles, user_name, project.name if project else ""
            )
            return IssuedToken(token, ctx, now, expires, methods, (cred.id, cred.name) if cred else None)

    def _issue_system(
        self, user_id: str, user_name: str, methods: tuple[str, ...], expires_at: datetime | None = None
    ) -> IssuedToken:
        """A system-scoped token for a user with a system grant. Ferry has no system-level
        authority: the token carries no role in its requests (as an unscoped token), and shows the
        grants only in its body."""
        with self.db.begin() as s:
            held = with_implied(
                s.scalars(select(SystemRoleAssignment.role).where(SystemRoleAssignment.user_id == user_id))
            )
            if not held:
                raise Unauthorized(f"User {user_name!r} has no role on the system.")
            token, now = secrets.token_urlsafe(32), utcnow()
            expires = min(expires_at or now + self.lifetime, now + self.lifetime)
            s.add(
                Token(
                    id_hash=_digest(token),
                    user_id=user_id,
                    project_id=None,
                    roles=sorted(held),
                    issued_at=now,
                    expires_at=expires,
                    methods=list(methods),
                    system_scope=True,
                )
            )
        ctx = RequestContext(user_id, "", frozenset(), user_name, "")
        return IssuedToken(token, ctx, now, expires, methods, None, tuple(sorted(held)))

    @staticmethod
    def _roles(s: Session, user_id: str, project_id: str) -> frozenset[Role]:
        """The roles a user holds on a project, with those they imply."""
        held = s.scalars(
            select(RoleAssignment.role).where(
                RoleAssignment.user_id == user_id, RoleAssignment.project_id == project_id
            )
        )
        return with_implied(held)

    def validate(self, token: str) -> IssuedToken:
        if not token or len(token) > 256:
            raise Unauthorized(UNAUTHENTICATED)
        with self.db() as s:
            row = s.get(Token, _digest(token))
            if row is None or row.expires_at <= utcnow():
                raise Unauthorized("The token is invalid or has expired.")
            user = s.get(User, row.user_id)
            project = s.get(Project, row.project_id) if row.project_id else None
            cred = s.get(AppCredential, row.app_credential_id) if row.app_credential_id else None
            assert user is not None
            ctx = RequestContext(
                user.id,
                project.id if project else "",
                frozenset() if row.system_scope else frozenset(map(Role, row.roles)),
                user.name,
                project.name if project else "",
            )
            methods = tuple(row.methods or (Method.PASSWORD,))
            return IssuedToken(
                token,
                ctx,
                row.issued_at,
                row.expires_at,
                methods,
                (cred.id, cred.name) if cred else None,
                tuple(row.roles) if row.system_scope else None,
            )

    def inspect(self, caller: RequestContext, subject: str, action: str) -> IssuedToken:
        """The subject token, for its own user or a caller the policy allows (`token:check`,
        `token:validate`). An invalid, revoked or expired subject is 404 for every caller (it has
        no user to compare), as Keystone answers (the caller's own token was checked before)."""
        try:
            issued = self.validate(subject)
        except Unauthorized:
            raise NotFound("Could not find token: the subject token is invalid or has expired.") from None
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
