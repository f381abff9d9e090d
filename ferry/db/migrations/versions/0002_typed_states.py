"""typed states: a CHECK constraint on every state column

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02 10:00:00

The step log's entries get their kinds (0001 told most of them apart only by message text), and
`migrations.prev_volume_status`, never read, goes. The columns keep their VARCHAR type and their
stored strings (so rows from 0001 stay as they are); each one now accepts only the values of its
enum in `ferry.domain`. The values are written out here, not imported: a migration describes the
schema at its revision, and a member added later comes with a migration of its own that replaces
the constraint. On SQLite, batch mode rebuilds each table to add the constraint (env.py turns
foreign keys off for that).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

STEPS = (
    "queued",
    "reserve",
    "copy-layers",
    "open-target",
    "mirror",
    "verify-target",
    "pivot",
    "commit",
    "cleanup",
    "done",
    "rollback",
)
EVENT_KINDS = (
    "start",
    "done",
    "layer-copied",
    "copy-mode-switched",
    "pivot-completed",
    "serial-checked",
    "speed-changed",
    "cancel-requested",
    "restarted",
    "rollback-done",
    "note",
)
OLD_MESSAGES = (
    ("mirror job completed", "pivot-completed"),
    ("serial checked", "serial-checked"),
    ("copy mode switched", "copy-mode-switched"),
    ("copied and compared", "layer-copied"),
    ("speed changed", "speed-changed"),
    ("cancel requested", "cancel-requested"),
    ("control plane restarted", "restarted"),
)
"""0001's step log wrote `info` entries told apart only by their message: each becomes a kind."""

STATES: dict[str, dict[str, tuple[str, ...]]] = {
    "volumes": {
        "status": (
            "creating",
            "available",
            "in-use",
            "attaching",
            "detaching",
            "deleting",
            "extending",
            "error",
            "error_deleting",
            "error_extending",
        ),
        "migration_status": ("starting", "migrating", "success", "error"),
    },
    "snapshots": {"status": ("creating", "available", "deleting", "error", "error_deleting")},
    "attachments": {"status": ("attaching", "attached")},
    "servers": {
        "status": ("BUILD", "ACTIVE", "SHUTOFF", "HARD_REBOOT", "ERROR", "DELETED"),
        "task_state": ("spawning", "powering-off", "powering-on", "rebooting", "deleting"),
    },
    "role_assignments": {"role": ("reader", "member", "admin", "service")},
    "images": {"disk_format": ("qcow2", "raw")},
    "migrations": {
        "status": ("queued", "running", "success", "error", "cancelled"),
        "step": STEPS,
        "copy_mode": ("background", "write-blocking"),
    },
    "migration_events": {"step": STEPS, "event": EVENT_KINDS},
}
"""table -> column -> the values it may hold (NULL stays allowed where the column allows it)."""


def _event_kind(step: str, event: str, detail: object) -> str:
    if step == "rollback" and event == "done":
        return "rollback-done"
    if event != "info":
        return event
    message = str(detail.get("message", "")) if isinstance(detail, dict) else ""
    return next((kind for text, kind in OLD_MESSAGES if text in message), "note")


def _type_the_step_log() -> None:
    """Give every old step-log entry its kind, widen the column for the longer names, and drop
    `migrations.prev_volume_status` (written, never read)."""
    events = sa.table(
        "migration_events",
        sa.column("id", sa.Integer),
        sa.column("step"),
        sa.column("event"),
        sa.column("detail", sa.JSON),
    )
    conn = op.get_bind()
    rows = conn.execute(sa.select(events.c.id, events.c.step, events.c.event, events.c.detail)).all()
    for row in rows:
        kind = _event_kind(row.step, row.event, row.detail)
        if kind != row.event:
            conn.execute(sa.update(events).where(events.c.id == row.id).values(event=kind))
    with op.batch_alter_table("migration_events") as batch:
        batch.alter_column("event", type_=sa.String(32), existing_type=sa.String(16))
    with op.batch_alter_table("migrations") as batch:
        batch.drop_column("prev_volume_status")


def upgrade() -> None:
    _type_the_step_log()
    for table, columns in STATES.items():
        with op.batch_alter_table(table) as batch:
            for column, values in columns.items():
                allowed = ", ".join(f"'{v}'" for v in values)
                batch.create_check_constraint(f"ck_{table}_{column}", f"{column} IN ({allowed})")


def downgrade() -> None:
    for table, columns in STATES.items():
        with op.batch_alter_table(table) as batch:
            for column in columns:
                batch.drop_constraint(f"ck_{table}_{column}", type_="check")
    with op.batch_alter_table("migrations") as batch:
        batch.add_column(
            sa.Column("prev_volume_status", sa.String(32), nullable=False, server_default="available")
        )
    with op.batch_alter_table("migration_events") as batch:
        batch.alter_column("event", type_=sa.String(16), existing_type=sa.String(32))
