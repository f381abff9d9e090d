"""hypervisor hosts, and the host of each server

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-12 10:00:00

`hosts`: one row per hypervisor host (registered by its agent, or by the all-in-one `ferry serve`
for its own host), with its capacity, whether an admin disabled it and its last heartbeat.
`servers.host`: where each server runs. Servers that exist already ran on the one host of the
all-in-one control plane: they get its name (`ferry.host_name`, set by `ferry.db.engine.upgrade`
from the configuration; "ferry", the configuration's default, otherwise) as the column's default,
which stays: a row written around Ferry (an import, a script) lands on that host too. Ferry itself
always names the host it chose.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "hosts",
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("address", sa.String(255), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("disabled_reason", sa.Text(), nullable=True),
        sa.Column("vcpus", sa.Integer(), nullable=False),
        sa.Column("ram_mb", sa.Integer(), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(), nullable=True),
        sa.Column("started_at", sa.DateTime(), nullable=True),
    )
    host = context.config.get_main_option("ferry.host_name") or "ferry"
    with op.batch_alter_table("servers") as batch:
        batch.add_column(sa.Column("host", sa.String(255), nullable=False, server_default=host))
        batch.create_index("ix_servers_host", ["host"])


def downgrade() -> None:
    with op.batch_alter_table("servers") as batch:
        batch.drop_index("ix_servers_host")
        batch.drop_column("host")
    op.drop_table("hosts")
