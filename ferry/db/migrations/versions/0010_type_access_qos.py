"""volume type access and QoS specs: Cinder's private types and qos-specs

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 06:10:00

`volume_type_projects` lists the projects a private type is shared with; `qos_specs` holds
QoS specs (consumer: front-end, back-end or both), which a type names by `qos_specs_id`.
States are written out here, not imported (see 0002).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

CONSUMERS = ("front-end", "back-end", "both")


def upgrade() -> None:
    op.create_table(
        "qos_specs",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("name", sa.String(255), nullable=False, unique=True),
        sa.Column(
            "consumer",
            sa.String(16),
            sa.CheckConstraint(
                "consumer IN (" + ", ".join(f"'{c}'" for c in CONSUMERS) + ")", name="ck_qos_specs_consumer"
            ),
            nullable=False,
        ),
        sa.Column("specs", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "volume_type_projects",
        sa.Column(
            "volume_type_id",
            sa.String(36),
            sa.ForeignKey("volume_types.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("project_id", sa.String(36), primary_key=True),
    )
    with op.batch_alter_table("volume_types") as batch:
        batch.add_column(sa.Column("qos_specs_id", sa.String(36), nullable=True))
        batch.create_foreign_key("fk_volume_types_qos_specs_id", "qos_specs", ["qos_specs_id"], ["id"])


def downgrade() -> None:
    with op.batch_alter_table("volume_types") as batch:
        batch.drop_constraint("fk_volume_types_qos_specs_id", type_="foreignkey")
        batch.drop_column("qos_specs_id")
    op.drop_table("volume_type_projects")
    op.drop_table("qos_specs")
