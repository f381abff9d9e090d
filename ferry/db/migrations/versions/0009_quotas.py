"""quotas: limits set per project and per quota class, and the per-project claim lock

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 06:00:00

`quota_limits` holds the limits an admin set (a project's or a class's; the rest come from
`[quotas]`); `quota_claim_locks` one row per project, bumped first by every quota claim so that
concurrent claims of one project are serialized. Usage is counted from the volume and snapshot rows.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "quota_limits",
        sa.Column("is_class", sa.Boolean(), primary_key=True),
        sa.Column("scope", sa.String(255), primary_key=True),
        sa.Column("resource", sa.String(300), primary_key=True),
        sa.Column("hard_limit", sa.Integer(), nullable=False),
    )
    op.create_table(
        "quota_claim_locks",
        sa.Column("project_id", sa.String(36), primary_key=True),
        sa.Column("claims", sa.BigInteger(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("quota_claim_locks")
    op.drop_table("quota_limits")
