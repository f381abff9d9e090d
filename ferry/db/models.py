"""SQLAlchemy models. One table per concept; the schema is owned by Alembic (`migrations/`).

Every state column holds members of a domain enum (`columns.enum_type`), never free strings.
Keystone's tables are in `identity_models.py` and Nova's in `compute_models.py`; this module
names them all, so that every model is imported (Alembic's metadata) and found in one place.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
)
from sqlalchemy.orm import InstrumentedAttribute, Mapped, mapped_column

from ferry.db.base import ID, Base
from ferry.db.columns import enum_type
from ferry.db.compute_models import (
    Flavor,
    FlavorProject,
    InstanceActionEvent,
    InstanceActionRow,
    KeyPair,
    Server,
)
from ferry.db.identity_models import AppCredential, Project, RoleAssignment, SystemRoleAssignment, Token, User
from ferry.domain.actions import ActionState
from ferry.domain.images import ImageStatus, Visibility
from ferry.domain.messages import Level, Resource
from ferry.domain.migration import CopyMode, EventKind, RunStatus, Step
from ferry.domain.model import DiskFormat
from ferry.domain.qos import QosConsumer
from ferry.domain.server_migration.plan import LiveStatus, LiveStep
from ferry.domain.volumes import AttachmentStatus, MigrationStatus, SnapshotStatus, VolumeStatus

__all__ = [  # the models defined elsewhere, named here too
    "ID", "AppCredential", "Base", "Flavor", "FlavorProject", "InstanceActionEvent", "InstanceActionRow",
    "KeyPair", "Project", "RoleAssignment", "Server", "SystemRoleAssignment", "Token", "User",
]  # fmt: skip


class QosSpecs(Base):
    __tablename__ = "qos_specs"
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    consumer: Mapped[QosConsumer] = mapped_column(enum_type(QosConsumer, 16))
    specs: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime)


class VolumeType(Base):
    __tablename__ = "volume_types"
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    is_public: Mapped[bool] = mapped_column(Boolean, default=True)
    extra_specs: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    qos_specs_id: Mapped[str | None] = mapped_column(ForeignKey("qos_specs.id"))


class VolumeTypeProject(Base):
    """A project a private volume type is shared with (Cinder's type access)."""

    __tablename__ = "volume_type_projects"
    volume_type_id: Mapped[str] = mapped_column(
        ForeignKey("volume_types.id", ondelete="CASCADE"), primary_key=True
    )
    project_id: Mapped[str] = mapped_column(ID, primary_key=True)


class Volume(Base):
    __tablename__ = "volumes"
    __table_args__ = (Index("ix_volumes_project_created", "project_id", "created_at", "id"),)
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    project_id: Mapped[str] = mapped_column(ID, index=True)
    user_id: Mapped[str] = mapped_column(ID)
    name: Mapped[str | None] = mapped_column(String(255), index=True)
    description: Mapped[str | None] = mapped_column(Text)
    size_gib: Mapped[int] = mapped_column(Integer)
    target_size_gib: Mapped[int | None] = mapped_column(Integer)
    """The size an extend in progress grows the file to, recorded before the file grows."""
    status: Mapped[VolumeStatus] = mapped_column(enum_type(VolumeStatus, 32), index=True)
    status_reason: Mapped[str | None] = mapped_column(Text)
    """Why the volume is in an error status (set when recovery or a failed step puts it there)."""
    volume_type_id: Mapped[str | None] = mapped_column(ForeignKey("volume_types.id"))
    backend: Mapped[str] = mapped_column(String(255), index=True)
    name_id: Mapped[str] = mapped_column(ID)
    active_layer_id: Mapped[str] = mapped_column(ID)
    migration_status: Mapped[MigrationStatus | None] = mapped_column(enum_type(MigrationStatus, 32))
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    snapshot_id: Mapped[str | None] = mapped_column(ID)
    source_volid: Mapped[str | None] = mapped_column(ID)
    next_layer_position: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(DateTime, index=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime)
    bootable: Mapped[bool] = mapped_column(Boolean, default=False)
    readonly: Mapped[bool | None] = mapped_column(Boolean, default=None)
    """Cinder's `readonly` admin metadata (`os-update_readonly_flag`; None: never set)."""
    image_meta: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    """Cinder's `volume_image_metadata` (None: the volume has none)."""


class VolumeRow(NamedTuple):
    """A volume read as a plain tuple: a 1000-volume page loads in half the time of ORM objects,
    and its fields read ten times faster than a Row's (no instrumented attributes, no lookups)."""

    id: str
    project_id: str
    user_id: str
    name: str | None
    description: str | None
    size_gib: int
    status: VolumeStatus
    volume_type_id: str | None
    backend: str
    name_id: str
    active_layer_id: str
    migration_status: MigrationStatus | None
    meta: dict[str, Any]
    snapshot_id: str | None
    source_volid: str | None
    next_layer_position: int
    created_at: datetime
    updated_at: datetime
    bootable: bool
    readonly: bool | None
    image_meta: dict[str, Any] | None


VOLUME_COLUMNS: tuple[InstrumentedAttribute[Any], ...] = tuple(getattr(Volume, f) for f in VolumeRow._fields)
"""Select these and build `VolumeRow._make(row)`."""


class Snapshot(Base):
    __tablename__ = "snapshots"
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    project_id: Mapped[str] = mapped_column(ID, index=True)
    user_id: Mapped[str] = mapped_column(ID)
    volume_id: Mapped[str] = mapped_column(ForeignKey("volumes.id"), index=True)
    layer_id: Mapped[str] = mapped_column(ID)
    position: Mapped[int] = mapped_column(Integer)
    name: Mapped[str | None] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(Text)
    size_gib: Mapped[int] = mapped_column(Integer)
    status: Mapped[SnapshotStatus] = mapped_column(enum_type(SnapshotStatus, 32))
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime, index=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime)
    progress: Mapped[str | None] = mapped_column(String(8))
    """What `os-update_snapshot_status` recorded (None: derived from the status)."""


class Message(Base):
    """A user message: an asynchronous failure, told to the project whose request it was."""

    __tablename__ = "messages"
    __table_args__ = (Index("ix_messages_project_created", "project_id", "created_at", "id"),)
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    project_id: Mapped[str] = mapped_column(ID)
    request_id: Mapped[str] = mapped_column(String(255))
    resource_type: Mapped[Resource] = mapped_column(enum_type(Resource, 32))
    resource_uuid: Mapped[str | None] = mapped_column(ID)
    event_id: Mapped[str] = mapped_column(String(255))
    action_id: Mapped[str] = mapped_column(String(10))
    detail_id: Mapped[str] = mapped_column(String(10))
    message_level: Mapped[Level] = mapped_column(enum_type(Level, 16))
    created_at: Mapped[datetime] = mapped_column(DateTime)
    expires_at: Mapped[datetime] = mapped_column(DateTime, index=True)
    """`guaranteed_until`: listed until then, purged after (by this indexed column)."""


class Image(Base):
    __tablename__ = "images"
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    name: Mapped[str | None] = mapped_column(String(255), unique=True)
    kernel: Mapped[str | None] = mapped_column(Text)
    initrd: Mapped[str | None] = mapped_column(Text)
    cmdline: Mapped[str] = mapped_column(Text, default="")
    disk: Mapped[str | None] = mapped_column(Text)
    disk_format: Mapped[DiskFormat | None] = mapped_column(enum_type(DiskFormat, 16))
    """The format QEMU opens `disk` in (a bootable disk image)."""
    created_at: Mapped[datetime] = mapped_column(DateTime)
    # Glance's fields (`services/glance.py`): `owner` None is an image the operator registered.
    owner: Mapped[str | None] = mapped_column(ID, index=True)
    status: Mapped[ImageStatus] = mapped_column(enum_type(ImageStatus, 16), default=ImageStatus.ACTIVE)
    visibility: Mapped[Visibility] = mapped_column(enum_type(Visibility, 16), default=Visibility.PUBLIC)
    declared_format: Mapped[str | None] = mapped_column(String(16))
    """Glance's `disk_format` (any of `DISK_FORMATS`)."""
    container_format: Mapped[str | None] = mapped_column(String(16))
    data: Mapped[str | None] = mapped_column(Text)
    """The file holding the image's bytes (what a download or a volume from the image reads)."""
    size: Mapped[int | None] = mapped_column(BigInteger)
    virtual_size: Mapped[int | None] = mapped_column(BigInteger)
    checksum: Mapped[str | None] = mapped_column(String(32))
    os_hash_algo: Mapped[str | None] = mapped_column(String(64))
    os_hash_value: Mapped[str | None] = mapped_column(String(128))
    min_disk: Mapped[int] = mapped_column(Integer, default=0)
    min_ram: Mapped[int] = mapped_column(Integer, default=0)
    protected: Mapped[bool] = mapped_column(Boolean, default=False)
    properties: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    tags: Mapped[list[Any] | None] = mapped_column(JSON)
    updated_at: Mapped[datetime | None] = mapped_column(DateTime)


class Host(Base):
    """A hypervisor host: where it is, what it offers, whether an admin took it out of scheduling,
    and when its agent last said it is alive."""

    __tablename__ = "hosts"
    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    address: Mapped[str] = mapped_column(String(255))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    vcpus: Mapped[int] = mapped_column(Integer)
    ram_mb: Mapped[int] = mapped_column(Integer)
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime)
    started_at: Mapped[datetime | None] = mapped_column(DateTime)


class VolumeServiceState(Base):
    """What an administrator set on one of Cinder's services (`os-services`): a `cinder-volume`
    (`host@backend`) or the `cinder-scheduler` (host). No row: enabled, not frozen."""

    __tablename__ = "volume_services"
    host: Mapped[str] = mapped_column(String(255), primary_key=True)
    binary: Mapped[str] = mapped_column(String(64), primary_key=True)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    frozen: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[datetime] = mapped_column(DateTime)


class Attachment(Base):
    __tablename__ = "attachments"
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    volume_id: Mapped[str] = mapped_column(ForeignKey("volumes.id"), unique=True)
    server_id: Mapped[str] = mapped_column(ForeignKey("servers.id"), index=True)
    project_id: Mapped[str] = mapped_column(ID, index=True)
    device: Mapped[str] = mapped_column(String(64))
    status: Mapped[AttachmentStatus] = mapped_column(enum_type(AttachmentStatus, 32))
    created_at: Mapped[datetime] = mapped_column(DateTime)


class Migration(Base):
    """One volume migration: its plan, where it is, and what each step created."""

    __tablename__ = "migrations"
    __table_args__ = (Index("ix_migrations_status", "status"),)
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    volume_id: Mapped[str] = mapped_column(ForeignKey("volumes.id"), index=True)
    status: Mapped[RunStatus] = mapped_column(enum_type(RunStatus, 16))
    step: Mapped[Step] = mapped_column(enum_type(Step, 32))
    server_id: Mapped[str | None] = mapped_column(ID)
    src_backend: Mapped[str] = mapped_column(String(255))
    src_name_id: Mapped[str] = mapped_column(ID)
    dst_backend: Mapped[str] = mapped_column(String(255), index=True)
    dst_name_id: Mapped[str] = mapped_column(ID)
    layers: Mapped[list[Any]] = mapped_column(JSON)
    new_type_id: Mapped[str | None] = mapped_column(ID)
    reserved_gib: Mapped[int] = mapped_column(Integer)
    speed: Mapped[int] = mapped_column(BigInteger, default=0)
    bytes_done: Mapped[int] = mapped_column(BigInteger, default=0)
    bytes_total: Mapped[int] = mapped_column(BigInteger, default=0)
    rate: Mapped[float] = mapped_column(Float, default=0.0)
    copy_mode: Mapped[CopyMode] = mapped_column(enum_type(CopyMode, 16), default=CopyMode.BACKGROUND)
    job_id: Mapped[str | None] = mapped_column(String(64))
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    pivot_ms: Mapped[float | None] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    started_at: Mapped[datetime | None] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)
    conductor: Mapped[str | None] = mapped_column(String(96))
    """The conductor that drives this migration while `lease_until` lies ahead."""
    lease_until: Mapped[datetime | None] = mapped_column(DateTime)


class MigrationEvent(Base):
    """The step log: each step's intent is written before it acts, and its outcome after."""

    __tablename__ = "migration_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    migration_id: Mapped[str] = mapped_column(ForeignKey("migrations.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(DateTime)
    step: Mapped[Step] = mapped_column(enum_type(Step, 32))
    event: Mapped[EventKind] = mapped_column(enum_type(EventKind, 32))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class HostAction(Base):
    """A driver call addressed to one host's agent (`ferry.coordination`), and its outcome.

    The caller inserts it `queued`; the host's agent claims it under a lease it renews while it
    performs, then writes `result` (done) or `error` (failed) in the transaction that finishes it.
    """

    __tablename__ = "host_actions"
    __table_args__ = (Index("ix_host_actions_host_state", "host", "state"),)
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    host: Mapped[str] = mapped_column(String(64))
    call: Mapped[dict[str, Any]] = mapped_column(JSON)
    state: Mapped[ActionState] = mapped_column(enum_type(ActionState, 16))
    claimed_by: Mapped[str | None] = mapped_column(String(255))
    lease_until: Mapped[datetime | None] = mapped_column(DateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    """How many times an agent claimed it: above 1 it was redelivered (an agent died or stopped)."""
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    progress: Mapped[list[Any] | None] = mapped_column(JSON)
    """[bytes_done, bytes_total] of a copy, updated by the agent while it performs."""
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)


class ServerLiveMigration(Base):
    """One live migration of a server between hosts (Nova's migration record, type
    `live-migration`): where it goes, its step, its progress, and its conductor's lease."""

    __tablename__ = "server_live_migrations"
    __table_args__ = (Index("ix_server_live_migrations_status", "status"),)
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    number: Mapped[int] = mapped_column(Integer, unique=True)
    """Nova's integer migration id (the uuid is `id`)."""
    server_id: Mapped[str] = mapped_column(ForeignKey("servers.id", ondelete="CASCADE"), index=True)
    project_id: Mapped[str] = mapped_column(ID)
    user_id: Mapped[str] = mapped_column(ID)
    source_host: Mapped[str] = mapped_column(String(64))
    dest_host: Mapped[str] = mapped_column(String(64))
    status: Mapped[LiveStatus] = mapped_column(enum_type(LiveStatus, 16))
    step: Mapped[LiveStep] = mapped_column(enum_type(LiveStep, 16))
    uri: Mapped[str | None] = mapped_column(String(255))
    bandwidth: Mapped[int] = mapped_column(BigInteger, default=0)
    downtime_limit_ms: Mapped[int] = mapped_column(Integer, default=300)
    memory_total: Mapped[int] = mapped_column(BigInteger, default=0)
    memory_processed: Mapped[int] = mapped_column(BigInteger, default=0)
    memory_remaining: Mapped[int] = mapped_column(BigInteger, default=0)
    dirty_rate: Mapped[int] = mapped_column(BigInteger, default=0)
    expected_downtime_ms: Mapped[int] = mapped_column(Integer, default=0)
    downtime_ms: Mapped[int | None] = mapped_column(Integer)
    serials_checked: Mapped[int] = mapped_column(Integer, default=0)
    abort_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)
    conductor: Mapped[str | None] = mapped_column(String(96))
    lease_until: Mapped[datetime | None] = mapped_column(DateTime)


class ServerLiveMigrationEvent(Base):
    """A live migration's step log: each step is written before it acts and when it is done."""

    __tablename__ = "server_live_migration_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    migration_id: Mapped[str] = mapped_column(
        ForeignKey("server_live_migrations.id", ondelete="CASCADE"), index=True
    )
    at: Mapped[datetime] = mapped_column(DateTime)
    step: Mapped[LiveStep] = mapped_column(enum_type(LiveStep, 16))
    event: Mapped[str] = mapped_column(String(32))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class QuotaLimit(Base):
    """A limit an admin set: for one project (`scope` = its id) or for a quota class (`scope` =
    the class name, `is_class`). Absent rows fall back to the class, then to `[quotas]`."""

    __tablename__ = "quota_limits"
    is_class: Mapped[bool] = mapped_column(Boolean, primary_key=True)
    scope: Mapped[str] = mapped_column(String(255), primary_key=True)
    resource: Mapped[str] = mapped_column(String(300), primary_key=True)
    hard_limit: Mapped[int] = mapped_column(Integer)


class QuotaClaimLock(Base):
    """One row per project that has claimed quota: every claim first bumps it, so that claims of
    one project are serialized (a row lock on PostgreSQL, the write lock on SQLite) and each one
    counts usage with every earlier claim committed."""

    __tablename__ = "quota_claim_locks"
    project_id: Mapped[str] = mapped_column(ID, primary_key=True)
    claims: Mapped[int] = mapped_column(BigInteger, default=0)
