"""user messages: what an asynchronous failure tells the project that asked (Cinder's messages)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 06:30:00

`messages` holds one row per message, listed per project by (project_id, created_at, id) and
purged by `expires_at`. States are written out here, not imported (see 0002).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

RESOURCES = ("VOLUME", "VOLUME_SNAPSHOT")
LEVELS = ("ERROR", "WARNING", "INFO")


def _check(name: str, column: str, values: tuple[str, ...]) -> sa.CheckConstraint:
    return sa.CheckConstraint(f"{column} IN (" + ", ".join(f"'{v}'" for v in values) + ")", name=name)


def upgrade() -> None:
    op.create_table(
        "messages",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("project_id", sa.String(36), nullable=False),
        sa.Column("request_id", sa.String(255), nullable=False),
        sa.Column("resource_type", sa.String(32),
                  _check("ck_messages_resource_type", "resource_type", RESOURCES), nullable=False),
        sa.Column("resource_uuid", sa.String(36), nullable=True),
        sa.Column("event_id", sa.String(255), nullable=False),
        sa.Column("action_id", sa.String(10), nullable=False),
        sa.Column("detail_id", sa.String(10), nullable=False),
        sa.Column("message_level", sa.String(16),
                  _check("ck_messages_message_level", "message_level", LEVELS), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
    )  # fmt: skip
    op.create_index("ix_messages_project_created", "messages", ["project_id", "created_at", "id"])
    op.create_index("ix_messages_expires_at", "messages", ["expires_at"])


def downgrade() -> None:
    op.drop_table("messages")
