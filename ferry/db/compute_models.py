"""Nova's tables: flavors and their access, key pairs, servers and their instance actions."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from ferry.db.base import ID, Base
from ferry.db.columns import enum_type
from ferry.domain.instance_actions import EventResult, InstanceAction
from ferry.domain.servers import ServerStatus, ServerTaskState


class Flavor(Base):
    __tablename__ = "flavors"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    vcpus: Mapped[int] = mapped_column(Integer)
    ram_mb: Mapped[int] = mapped_column(Integer)
    disk_gib: Mapped[int] = mapped_column(Integer, default=0)
    ephemeral_gib: Mapped[int] = mapped_column(Integer, default=0)
    swap_mb: Mapped[int] = mapped_column(Integer, default=0)
    rxtx_factor: Mapped[float] = mapped_column(Float, default=1.0)
    is_public: Mapped[bool] = mapped_column(Boolean, default=True)
    """A private flavor is seen (and booted) only by the projects in `flavor_projects` and admins."""
    description: Mapped[str | None] = mapped_column(Text)
    extra_specs: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class FlavorProject(Base):
    """A project granted a private flavor (Nova's os-flavor-access)."""

    __tablename__ = "flavor_projects"
    flavor_id: Mapped[str] = mapped_column(ForeignKey("flavors.id", ondelete="CASCADE"), primary_key=True)
    project_id: Mapped[str] = mapped_column(String(255), primary_key=True)


class KeyPair(Base):
    """Nova's key pair: a public key a user registered (or had made) under a name of theirs."""

    __tablename__ = "key_pairs"
    __table_args__ = (UniqueConstraint("user_id", "name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(ID)
    name: Mapped[str] = mapped_column(String(255))
    key_type: Mapped[str] = mapped_column(String(8))
    public_key: Mapped[str] = mapped_column(Text)
    fingerprint: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(DateTime)


class Server(Base):
    __tablename__ = "servers"
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    project_id: Mapped[str] = mapped_column(ID, index=True)
    user_id: Mapped[str] = mapped_column(ID)
    name: Mapped[str] = mapped_column(String(255))
    status: Mapped[ServerStatus] = mapped_column(enum_type(ServerStatus, 16), index=True)
    task_state: Mapped[ServerTaskState | None] = mapped_column(enum_type(ServerTaskState, 32))
    image_id: Mapped[str] = mapped_column(ForeignKey("images.id"))
    flavor_id: Mapped[str] = mapped_column(ForeignKey("flavors.id"))
    host: Mapped[str] = mapped_column(String(255), index=True)
    """The hypervisor host the server runs on (`hosts.name`; no foreign key: a server's row
    outlives a host that has not registered again yet)."""
    fault: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime, index=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime)
    key_name: Mapped[str | None] = mapped_column(String(255))
    """The key pair named at create (shown; the guest ignores it: it has no metadata service)."""
    description: Mapped[str | None] = mapped_column(Text)
    access_ipv4: Mapped[str | None] = mapped_column(String(64))
    access_ipv6: Mapped[str | None] = mapped_column(String(64))
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    tags: Mapped[list[Any]] = mapped_column(JSON, default=list)


class InstanceActionRow(Base):
    """Nova's instance action: one server action a request started. No foreign key to the server:
    a deleted server's actions stay readable (Nova's 2.21)."""

    __tablename__ = "instance_actions"
    __table_args__ = (Index("ix_instance_actions_server_start", "server_id", "start_time", "id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    server_id: Mapped[str] = mapped_column(ID)
    project_id: Mapped[str] = mapped_column(ID)
    """The server's project (who may read the record, even once the server is gone)."""
    user_id: Mapped[str] = mapped_column(String(64))
    request_id: Mapped[str] = mapped_column(String(64), index=True)
    action: Mapped[InstanceAction] = mapped_column(enum_type(InstanceAction, 32))
    message: Mapped[str | None] = mapped_column(Text)
    start_time: Mapped[datetime] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime)


class InstanceActionEvent(Base):
    """One step of an instance action, with its outcome once it is done."""

    __tablename__ = "instance_action_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    action_id: Mapped[int] = mapped_column(ForeignKey("instance_actions.id", ondelete="CASCADE"), index=True)
    event: Mapped[str] = mapped_column(String(64))
    host: Mapped[str | None] = mapped_column(String(255))
    start_time: Mapped[datetime] = mapped_column(DateTime)
    finish_time: Mapped[datetime | None] = mapped_column(DateTime)
    result: Mapped[EventResult | None] = mapped_column(enum_type(EventResult, 16))
    traceback: Mapped[str | None] = mapped_column(Text)
    """Why it failed (admins only; a short reason, never a Python traceback)."""
