"""compute basics: key pairs, flavor admin fields and access, server fields

Revision ID: 0015
Revises: 0013
Create Date: 2026-12-02 14:30:00

Nova's key pairs (per user), the flavor fields an admin sets (public or not, description, extra
specs, ephemeral, swap, rxtx) with the projects a private flavor is granted to, and what a server
keeps of its create and update requests (key name, description, access IPs, metadata, tags).
Compute quota limits share `quota_limits` (0009): no schema change.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("flavors") as batch:
        batch.add_column(sa.Column("ephemeral_gib", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("swap_mb", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("rxtx_factor", sa.Float(), nullable=False, server_default="1.0"))
        batch.add_column(sa.Column("is_public", sa.Boolean(), nullable=False, server_default=sa.true()))
        batch.add_column(sa.Column("description", sa.Text(), nullable=True))
        batch.add_column(sa.Column("extra_specs", sa.JSON(), nullable=False, server_default="{}"))
    op.create_table(
        "flavor_projects",
        sa.Column(
            "flavor_id", sa.String(64), sa.ForeignKey("flavors.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("project_id", sa.String(255), primary_key=True),
    )
    op.create_table(
        "key_pairs",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("user_id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("key_type", sa.String(8), nullable=False),
        sa.Column("public_key", sa.Text(), nullable=False),
        sa.Column("fingerprint", sa.String(128), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("user_id", "name"),
    )
    with op.batch_alter_table("servers") as batch:
        batch.add_column(sa.Column("key_name", sa.String(255), nullable=True))
        batch.add_column(sa.Column("description", sa.Text(), nullable=True))
        batch.add_column(sa.Column("access_ipv4", sa.String(64), nullable=True))
        batch.add_column(sa.Column("access_ipv6", sa.String(64), nullable=True))
        batch.add_column(sa.Column("metadata", sa.JSON(), nullable=False, server_default="{}"))
        batch.add_column(sa.Column("tags", sa.JSON(), nullable=False, server_default="[]"))


def downgrade() -> None:
    with op.batch_alter_table("servers") as batch:
        for column in ("tags", "metadata", "access_ipv6", "access_ipv4", "description", "key_name"):
            batch.drop_column(column)
    op.drop_table("key_pairs")
    op.drop_table("flavor_projects")
    with op.batch_alter_table("flavors") as batch:
        for column in ("extra_specs", "description", "is_public", "rxtx_factor", "swap_mb", "ephemeral_gib"):
            batch.drop_column(column)
