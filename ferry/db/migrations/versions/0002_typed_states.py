"""typed states: a CHECK constraint on every state column

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02 10:00:00

The columns keep their VARCHAR type and their stored strings (so rows from 0001 stay as they are);
each one now accepts only the values of its enum in `ferry.domain`. The values are written out
here, not imported: a migration describes the schema at its revision, and a member added later
comes with a migration of its own that replaces the constraint. On SQLite, batch mode rebuilds
each table to add the constraint (env.py turns foreign keys off for that).
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

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
}
"""table -> column -> the values it may hold (NULL stays allowed where the column allows it)."""


def upgrade() -> None:
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
