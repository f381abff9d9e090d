"""durable volume operations: an extend's target size and an error's reason

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-09 10:00:00

`volumes.target_size_gib` is written in the transaction that moves a volume to `extending`,
before its file grows, so that a restarted control plane settles the extend from the file's
real size (complete or roll back) and the database and the file never disagree.
`volumes.status_reason` says why recovery (or a failed step) left a volume in an error status.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("volumes") as batch:
        batch.add_column(sa.Column("target_size_gib", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("status_reason", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("volumes") as batch:
        batch.drop_column("status_reason")
        batch.drop_column("target_size_gib")
