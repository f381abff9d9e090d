"""server live migrations: Nova's migration records for moving a running server between hosts

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-11 10:00:00

`server_live_migrations` holds one row per live migration (its step, progress and conductor
lease); `server_live_migration_events` its step log. `servers.task_state` may now be
`migrating`. States are written out here, not imported (see 0002).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

STATUSES = ("queued", "preparing", "running", "post-migrating", "completed", "error", "cancelled", "failed")
STEPS = ("queued", "prepare", "verify", "migrate", "switchover", "commit", "cleanup", "done")
TASKS = ("spawning", "powering-off", "powering-on", "rebooting", "deleting")


def _check(name: str, column: str, values: tuple[str, ...]) -> sa.CheckConstraint:
    return sa.CheckConstraint(f"{column} IN (" + ", ".join(f"'{v}'" for v in values) + ")", name=name)


def _tasks(values: tuple[str, ...]) -> None:
    with op.batch_alter_table("servers") as batch:
        batch.drop_constraint("ck_servers_task_state", type_="check")
        allowed = ", ".join(f"'{v}'" for v in values)
        batch.create_check_constraint("ck_servers_task_state", f"task_state IN ({allowed})")


def upgrade() -> None:
    op.create_table(
        "server_live_migrations",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("number", sa.Integer(), nullable=False, unique=True),
        sa.Column("server_id", sa.String(36), sa.ForeignKey("servers.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("project_id", sa.String(36), nullable=False),
        sa.Column("user_id", sa.String(36), nullable=False),
        sa.Column("source_host", sa.String(64), nullable=False),
        sa.Column("dest_host", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), _check("ck_server_live_migrations_status", "status", STATUSES),
                  nullable=False),
        sa.Column("step", sa.String(16), _check("ck_server_live_migrations_step", "step", STEPS),
                  nullable=False),
        sa.Column("uri", sa.String(255), nullable=True),
        sa.Column("bandwidth", sa.BigInteger(), nullable=False),
        sa.Column("downtime_limit_ms", sa.Integer(), nullable=False),
        sa.Column("memory_total", sa.BigInteger(), nullable=False),
        sa.Column("memory_processed", sa.BigInteger(), nullable=False),
        sa.Column("memory_remaining", sa.BigInteger(), nullable=False),
        sa.Column("dirty_rate", sa.BigInteger(), nullable=False),
        sa.Column("expected_downtime_ms", sa.Integer(), nullable=False),
        sa.Column("downtime_ms", sa.Integer(), nullable=True),
        sa.Column("serials_checked", sa.Integer(), nullable=False),
        sa.Column("abort_requested", sa.Boolean(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.Column("conductor", sa.String(96), nullable=True),
        sa.Column("lease_until", sa.DateTime(), nullable=True),
    )  # fmt: skip
    op.create_index("ix_server_live_migrations_server_id", "server_live_migrations", ["server_id"])
    op.create_index("ix_server_live_migrations_status", "server_live_migrations", ["status"])
    op.create_table(
        "server_live_migration_events",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "migration_id", sa.String(36),
            sa.ForeignKey("server_live_migrations.id", ondelete="CASCADE"), nullable=False,
        ),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("step", sa.String(16), _check("ck_server_live_migration_events_step", "step", STEPS),
                  nullable=False),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
    )  # fmt: skip
    op.create_index(
        "ix_server_live_migration_events_migration_id", "server_live_migration_events", ["migration_id"]
    )
    _tasks((*TASKS, "migrating"))


def downgrade() -> None:
    _tasks(TASKS)
    op.drop_table("server_live_migration_events")
    op.drop_table("server_live_migrations")
