"""identity: Keystone users, projects, unscoped tokens and application credentials

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02 14:30:00

Projects gain a description and an enabled flag; users an email, a description and a default
project; tokens may be unscoped (no project), record the auth methods that made them and the
application credential they came from. `application_credentials` holds each credential's
argon2 hash of its secret (never the secret) and the roles it delegates; `system_role_assignments`
records Keystone's system grants (Ferry issues no system-scoped token: they grant nothing).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None
ROLES = ("reader", "member", "admin", "service")
"""`domain.roles.Role`, written out (see 0002)."""


def upgrade() -> None:
    with op.batch_alter_table("projects") as batch:
        batch.add_column(sa.Column("description", sa.Text(), nullable=True))
        batch.add_column(sa.Column("enabled", sa.Boolean(), nullable=False, server_default=sa.true()))
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("email", sa.String(255), nullable=True))
        batch.add_column(sa.Column("description", sa.Text(), nullable=True))
        batch.add_column(sa.Column("default_project_id", sa.String(64), nullable=True))
        batch.add_column(sa.Column("extra", sa.JSON(), nullable=True))
    op.create_table(
        "application_credentials",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("user_id", sa.String(36), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column(
            "project_id", sa.String(36), sa.ForeignKey("projects.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("secret_hash", sa.String(255), nullable=False),
        sa.Column("roles", sa.JSON(), nullable=False),
        sa.Column("unrestricted", sa.Boolean(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("user_id", "name", name="uq_application_credentials_user_id"),
    )
    op.create_table(
        "system_role_assignments",
        sa.Column("user_id", sa.String(36), sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
        sa.Column(
            "role",
            sa.String(32),
            sa.CheckConstraint(
                "role IN (" + ", ".join(f"'{r}'" for r in ROLES) + ")", name="ck_system_role_assignments_role"
            ),
            primary_key=True,
        ),
    )
    with op.batch_alter_table("tokens") as batch:
        batch.alter_column("project_id", existing_type=sa.String(36), nullable=True)
        batch.add_column(sa.Column("methods", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("system_scope", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(
            sa.Column(
                "app_credential_id",
                sa.String(36),
                sa.ForeignKey(
                    "application_credentials.id",
                    ondelete="CASCADE",
                    name="fk_tokens_app_credential_id_application_credentials",
                ),
                nullable=True,
            )
        )


def downgrade() -> None:
    op.execute("DELETE FROM tokens WHERE project_id IS NULL OR app_credential_id IS NOT NULL")
    with op.batch_alter_table("tokens") as batch:
        batch.drop_constraint("fk_tokens_app_credential_id_application_credentials", type_="foreignkey")
        batch.drop_column("app_credential_id")
        batch.drop_column("system_scope")
        batch.drop_column("methods")
        batch.alter_column("project_id", existing_type=sa.String(36), nullable=False)
    op.drop_table("system_role_assignments")
    op.drop_table("application_credentials")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("extra")
        batch.drop_column("default_project_id")
        batch.drop_column("description")
        batch.drop_column("email")
    with op.batch_alter_table("projects") as batch:
        batch.drop_column("enabled")
        batch.drop_column("description")
