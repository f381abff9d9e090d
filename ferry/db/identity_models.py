"""Keystone's tables: projects, users, their role grants, tokens and application credentials."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from ferry.db.base import ID, Base
from ferry.db.columns import enum_type
from ferry.domain.roles import Role


class Project(Base):
    __tablename__ = "projects"
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    domain_id: Mapped[str] = mapped_column(String(64), default="default")
    description: Mapped[str | None] = mapped_column(Text)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)


class User(Base):
    __tablename__ = "users"
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    domain_id: Mapped[str] = mapped_column(String(64), default="default")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    email: Mapped[str | None] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(Text)
    default_project_id: Mapped[str | None] = mapped_column(String(64))
    extra: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    """Attributes Keystone keeps for a user beyond its own (a client's `project_id`, say)."""


class RoleAssignment(Base):
    __tablename__ = "role_assignments"
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True)
    role: Mapped[Role] = mapped_column(enum_type(Role, 32), primary_key=True)


class SystemRoleAssignment(Base):
    """A Keystone system grant: recorded and listed, but Ferry issues no system-scoped token, so
    it grants nothing."""

    __tablename__ = "system_role_assignments"
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    role: Mapped[Role] = mapped_column(enum_type(Role, 32), primary_key=True)


class Token(Base):
    __tablename__ = "tokens"
    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    project_id: Mapped[str | None] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    """None: an unscoped token (identity calls and rescoping only)."""
    roles: Mapped[list[Any]] = mapped_column(JSON)
    issued_at: Mapped[datetime] = mapped_column(DateTime)
    expires_at: Mapped[datetime] = mapped_column(DateTime, index=True)
    methods: Mapped[list[Any] | None] = mapped_column(JSON)
    """The auth methods that made it (None: before 0014, password)."""
    system_scope: Mapped[bool] = mapped_column(Boolean, default=False)
    """A system-scoped token: `roles` are the user's system grants, which give no authority in
    Ferry (its requests are treated as an unscoped token's)."""
    app_credential_id: Mapped[str | None] = mapped_column(
        ForeignKey("application_credentials.id", ondelete="CASCADE")
    )


class AppCredential(Base):
    """A Keystone application credential: a user's delegation of (some of) their roles on one
    project to a secret, of which only the argon2 hash is kept."""

    __tablename__ = "application_credentials"
    __table_args__ = (UniqueConstraint("user_id", "name", name="uq_application_credentials_user_id"),)
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(Text)
    secret_hash: Mapped[str] = mapped_column(String(255))
    roles: Mapped[list[Any]] = mapped_column(JSON)
    unrestricted: Mapped[bool] = mapped_column(Boolean, default=False)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime)
    created_at: Mapped[datetime] = mapped_column(DateTime)
