"""SQLAlchemy models. One table per concept; the schema is owned by Alembic (`migrations/`).

Every state column holds members of a domain enum (`columns.enum_type`), never free strings.
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
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, InstrumentedAttribute, Mapped, mapped_column

from ferry.db.columns import NAMING, enum_type
from ferry.domain.actions import ActionState
from ferry.domain.images import ImageStatus, Visibility
from ferry.domain.instance_actions import EventResult, InstanceAction
from ferry.domain.messages import Level, Resource
from ferry.domain.migration import CopyMode, EventKind, RunStatus, Step
from ferry.domain.model import DiskFormat
from ferry.domain.qos import QosConsumer
from ferry.domain.roles import Role
from ferry.domain.server_migration.plan import LiveStatus, LiveStep
from ferry.domain.servers import ServerStatus, ServerTaskState
from ferry.domain.volumes import AttachmentStatus, MigrationStatus, SnapshotStatus, VolumeStatus

ID = String(36)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


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
