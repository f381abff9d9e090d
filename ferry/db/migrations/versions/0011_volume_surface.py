"""volume surface: Cinder's bootable and read-only flags, a volume's image metadata, a snapshot's
progress, and the `maintenance` status an administrator may reset a volume to

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 06:15:00

`volumes.bootable` and `volumes.readonly` are the flags `os-set_bootable` and
`os-update_readonly_flag` set (`readonly` None: never set, so not in the volume's metadata);
`volumes.image_meta` is Cinder's `volume_image_metadata` (None: the volume has none);
`snapshots.progress` is what `os-update_snapshot_status` records (None: Ferry's own, from the
status). `volume_services` holds what an administrator set on a Cinder service
(`os-services` disable, enable, freeze, thaw), by `host@backend` (or host) and binary; a service
without a row is enabled and not frozen. States are written out here, not imported (see 0002).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

VOLUME_STATUSES = (
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
)


def _statuses(values: tuple[str, ...]) -> None:
    with op.batch_alter_table("volumes") as batch:
        batch.drop_constraint("ck_volumes_status", type_="check")
        allowed = ", ".join(f"'{v}'" for v in values)
        batch.create_check_constraint("ck_volumes_status", f"status IN ({allowed})")


def upgrade() -> None:
    with op.batch_alter_table("volumes") as batch:
        batch.add_column(sa.Column("bootable", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("readonly", sa.Boolean(), nullable=True))
        batch.add_column(sa.Column("image_meta", sa.JSON(), nullable=True))
    with op.batch_alter_table("snapshots") as batch:
        batch.add_column(sa.Column("progress", sa.String(8), nullable=True))
    _statuses((*VOLUME_STATUSES, "maintenance"))
    op.create_table(
        "volume_services",
        sa.Column("host", sa.String(255), primary_key=True),
        sa.Column("binary", sa.String(64), primary_key=True),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("disabled_reason", sa.Text(), nullable=True),
        sa.Column("frozen", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("volume_services")
    op.execute("UPDATE volumes SET status = 'error' WHERE status = 'maintenance'")
    _statuses(VOLUME_STATUSES)
    with op.batch_alter_table("snapshots") as batch:
        batch.drop_column("progress")
    with op.batch_alter_table("volumes") as batch:
        batch.drop_column("image_meta")
        batch.drop_column("readonly")
        batch.drop_column("bootable")
