"""conductor leases: which conductor drives a migration, and until when

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 23:10:00

A conductor drives a migration only while it holds the lease (`conductor`, `lease_until`), renewed
while it runs; another conductor takes over a migration whose lease expired (its conductor died).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("migrations") as batch:
        batch.add_column(sa.Column("conductor", sa.String(length=96), nullable=True))
        batch.add_column(sa.Column("lease_until", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("migrations") as batch:
        batch.drop_column("lease_until")
        batch.drop_column("conductor")
