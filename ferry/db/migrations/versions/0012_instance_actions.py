"""instance actions: Nova's record of each server action and its events

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02 07:00:00

`instance_actions` holds one row per server action a request started (no foreign key to
`servers`: a deleted server's actions stay readable); `instance_action_events` its events with
their outcome. States are written out here, not imported (see 0002).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

ACTIONS = ("create", "start", "stop", "reboot", "delete", "attach_volume", "detach_volume", "live-migration",
           "extend_volume")  # fmt: skip
RESULTS = ("Success", "Error")


def _check(name: str, column: str, values: tuple[str, ...]) -> sa.CheckConstraint:
    return sa.CheckConstraint(f"{column} IN (" + ", ".join(f"'{v}'" for v in values) + ")", name=name)


def upgrade() -> None:
    op.create_table(
        "instance_actions",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("server_id", sa.String(36), nullable=False),
        sa.Column("project_id", sa.String(36), nullable=False),
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("action", sa.String(32), _check("ck_instance_actions_action", "action", ACTIONS),
                  nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("start_time", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
    )  # fmt: skip
    op.create_index("ix_instance_actions_server_start", "instance_actions", ["server_id", "start_time", "id"])
    op.create_index("ix_instance_actions_request_id", "instance_actions", ["request_id"])
    op.create_table(
        "instance_action_events",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("action_id", sa.Integer(), sa.ForeignKey("instance_actions.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("event", sa.String(64), nullable=False),
        sa.Column("host", sa.String(255), nullable=True),
        sa.Column("start_time", sa.DateTime(), nullable=False),
        sa.Column("finish_time", sa.DateTime(), nullable=True),
        sa.Column("result", sa.String(16), _check("ck_instance_action_events_result", "result", RESULTS),
                  nullable=True),
        sa.Column("traceback", sa.Text(), nullable=True),
    )  # fmt: skip
    op.create_index("ix_instance_action_events_action_id", "instance_action_events", ["action_id"])


def downgrade() -> None:
    op.drop_index("ix_instance_action_events_action_id", table_name="instance_action_events")
    op.drop_table("instance_action_events")
    op.drop_index("ix_instance_actions_request_id", table_name="instance_actions")
    op.drop_index("ix_instance_actions_server_start", table_name="instance_actions")
    op.drop_table("instance_actions")
