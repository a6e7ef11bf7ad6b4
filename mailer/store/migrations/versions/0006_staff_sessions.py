"""server-side sessions of dashboard accounts

Revision ID: 0006_staff_sessions
Revises: 0005_bounce_reports
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import mailer.store.models

revision = "0006_staff_sessions"
down_revision = "0005_bounce_reports"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "staff_sessions",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("created_at", mailer.store.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", mailer.store.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("client", sa.String(length=64), nullable=False),
        sa.Column("agent", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["staff_users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_staff_sessions_user_id", "staff_sessions", ["user_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_staff_sessions_user_id", table_name="staff_sessions")
    op.drop_table("staff_sessions")
