"""host actions: driver calls addressed to a host's agent, and their outcomes

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-10 10:00:00

`host_actions` is the queue between the conductor and the agents (`ferry.coordination`): one row
per driver call, claimed by the host's agent under a lease (`SELECT … FOR UPDATE SKIP LOCKED`,
index on (host, state)), finished with its result or error in the transaction that acknowledges
it. States are written out here, not imported (see 0002).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

STATES = ("queued", "claimed", "done", "failed")


def upgrade() -> None:
    op.create_table(
        "host_actions",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("host", sa.String(64), nullable=False),
        sa.Column("call", sa.JSON(), nullable=False),
        sa.Column(
            "state",
            sa.String(16),
            sa.CheckConstraint(
                "state IN (" + ", ".join(f"'{s}'" for s in STATES) + ")", name="ck_host_actions_state"
            ),
            nullable=False,
        ),
        sa.Column("claimed_by", sa.String(255), nullable=True),
        sa.Column("lease_until", sa.DateTime(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("progress", sa.JSON(), nullable=True),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("error", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
    )
    op.create_index("ix_host_actions_host_state", "host_actions", ["host", "state"])


def downgrade() -> None:
    op.drop_index("ix_host_actions_host_state", table_name="host_actions")
    op.drop_table("host_actions")
