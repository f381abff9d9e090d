"""glance images: the images table as Glance's images

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02 06:30:00

`images` gains Glance's fields (owner, status, visibility, the declared disk and container
formats, the data file with its size and hashes, min_disk/min_ram, protected, extra properties,
tags); rows registered before are public and active. What a volume made from an image keeps of it
is `volumes.image_meta` (0011). States are written out here, not imported (see 0002).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

STATUSES = ("queued", "saving", "active", "killed", "deactivated")
VISIBILITIES = ("public", "private", "shared", "community")


def _check(name: str, column: str, values: tuple[str, ...]) -> sa.CheckConstraint:
    return sa.CheckConstraint(f"{column} IN (" + ", ".join(f"'{v}'" for v in values) + ")", name=name)


def upgrade() -> None:
    with op.batch_alter_table("images") as batch:
        # Glance's images may be unnamed (NULLs never collide in the unique index).
        batch.alter_column("name", existing_type=sa.String(255), nullable=True)
        batch.add_column(sa.Column("owner", sa.String(36), nullable=True))
        batch.add_column(sa.Column("status", sa.String(16), nullable=False, server_default="active"))
        batch.add_column(sa.Column("visibility", sa.String(16), nullable=False, server_default="public"))
        batch.add_column(sa.Column("declared_format", sa.String(16), nullable=True))
        batch.add_column(sa.Column("container_format", sa.String(16), nullable=True))
        batch.add_column(sa.Column("data", sa.Text(), nullable=True))
        batch.add_column(sa.Column("size", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("virtual_size", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("checksum", sa.String(32), nullable=True))
        batch.add_column(sa.Column("os_hash_algo", sa.String(64), nullable=True))
        batch.add_column(sa.Column("os_hash_value", sa.String(128), nullable=True))
        batch.add_column(sa.Column("min_disk", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("min_ram", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("protected", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("properties", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("tags", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("updated_at", sa.DateTime(), nullable=True))
        batch.create_index("ix_images_owner", ["owner"])
        batch.create_check_constraint(
            "ck_images_status", "status IN (" + ", ".join(f"'{v}'" for v in STATUSES) + ")"
        )
        batch.create_check_constraint(
            "ck_images_visibility", "visibility IN (" + ", ".join(f"'{v}'" for v in VISIBILITIES) + ")"
        )
    op.execute(
        "UPDATE images SET declared_format = COALESCE(disk_format, 'ami'), "
        "container_format = CASE WHEN disk IS NULL THEN 'ami' ELSE 'bare' END, "
        "data = COALESCE(disk, initrd), updated_at = created_at"
    )


def downgrade() -> None:
    with op.batch_alter_table("images") as batch:
        batch.drop_constraint("ck_images_visibility", type_="check")
        batch.drop_constraint("ck_images_status", type_="check")
        batch.drop_index("ix_images_owner")
        for column in (
            "updated_at", "tags", "properties", "protected", "min_ram", "min_disk", "os_hash_value",
            "os_hash_algo", "checksum", "virtual_size", "size", "data", "container_format",
            "declared_format", "visibility", "status", "owner",
        ):  # fmt: skip
            batch.drop_column(column)
