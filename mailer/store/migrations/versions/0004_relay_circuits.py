"""relay reachability shared by the sending processes

Revision ID: 0004_relay_circuits
Revises: 0003_pending_index
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_relay_circuits"
down_revision = "0003_pending_index"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "relay_circuits",
        sa.Column("relay", sa.String(length=300), nullable=False),
        sa.Column("server", sa.String(length=100), nullable=False),
        sa.Column("open", sa.Boolean(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("next_probe_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("relay"),
    )


def downgrade() -> None:
    op.drop_table("relay_circuits")
