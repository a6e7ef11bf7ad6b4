"""staff users of the web dashboard

Revision ID: 0002_staff_users
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import mailer.store.models

revision = "0002_staff_users"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "staff_users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(length=100), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", mailer.store.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_login_at", mailer.store.models.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("username"),
    )


def downgrade() -> None:
    op.drop_table("staff_users")
