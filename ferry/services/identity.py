"""Identity: users, projects, role assignments, password authentication and tokens.

Tokens are random strings; only their SHA-256 is stored, with the roles it grants (each held role
and the weaker ones it implies, `domain/roles.py`).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from ferry.db.models import Project, RoleAssignment, Token, User
from ferry.domain.clock import utcnow
from ferry.domain.errors import Unauthorized
from ferry.domain.ids import new_id
from ferry.domain.roles import Role, with_implied
from ferry.services.context import RequestContext

_hasher = PasswordHasher()


@dataclass(frozen=True)
class IssuedToken:
    token: str
    context: RequestContext
    issued_at: datetime
    expires_at: datetime


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class IdentityService:
    def __init__(self, db: sessionmaker[Session], token_lifetime_s: int) -> None:
        self.db = db
        self.lifetime = timedelta(seconds=token_lifetime_s)

    # -- bootstrap ---------------------------------------------------------------------
    def ensure_project(self, s: Session, name: str) -> Project:
        project = s.scalar(select(Project).where(Project.name == name))
        if project is None:
            project = Project(id=new_id().replace("-", ""), name=name)
            s.add(project)
        return project

    def ensure_user(self, s: Session, name: str, password: str, project: Project, role: Role) -> User:
        user = s.scalar(select(User).where(User.name == name))
        if user is None:
            user = User(id=new_id().replace("-", ""), name=name, password_hash=_hasher.hash(password))
            s.add(user)
        else:
            user.password_hash = _hasher.hash(password)
        s.flush()
        if s.get(RoleAssignment, (user.id, project.id, role)) is None:
            s.add(RoleAssignment(user_id=user.id, project_id=project.id, role=role))
        return user

    # -- tokens ------------------------------------------------------------------------
    def authenticate(self, user_name: str, password: str, project_ref: str, by_id: bool) -> IssuedToken:
        with self.db.begin() as s:
            user = s.scalar(select(User).where(User.name == user_name))
            if user is None or not user.enabled or not _verify(user.password_hash, password):
                raise Unauthorized("The request you have made requires authentication.")
            cond = Project.id == project_ref if by_id else Project.name == project_ref
            project = s.scalar(select(Project).where(cond))
            if project is None:
                raise Unauthorized(f"Could not find project {project_ref!r} for user {user_name!r}.")
            roles = set(
                s.scalars(
                    select(RoleAssignment.role).where(
                        RoleAssignment.user_id == user.id, RoleAssignment.project_id == project.id
                    )
                )
            )
            if not roles:
                raise Unauthorized(f"User {user_name!r} has no role on project {project.name!r}.")
            token = secrets.token_urlsafe(32)
            now = utcnow()
            all_roles = with_implied(roles)
            s.add(
                Token(
                    id_hash=_digest(token),
                    user_id=user.id,
                    project_id=project.id,
                    roles=sorted(all_roles),
                    issued_at=now,
                    expires_at=now + self.lifetime,
                )
            )
            s.execute(delete(Token).where(Token.expires_at < now))
            ctx = RequestContext(user.id, project.id, all_roles, user.name, project.name)
            return IssuedToken(token, ctx, now, now + self.lifetime)

    def validate(self, token: str) -> IssuedToken:
        if not token or len(token) > 256:
            raise Unauthorized("The request you have made requires authentication.")
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

    def revoke(self, token: str) -> None:
        with self.db.begin() as s:
            s.execute(delete(Token).where(Token.id_hash == _digest(token)))

    def project_exists(self, project_id: str) -> bool:
        with self.db() as s:
            return s.get(Project, project_id) is not None


def _verify(hashed: str, password: str) -> bool:
    try:
        return _hasher.verify(hashed, password)
    except (VerificationError, InvalidHashError):
        return False
