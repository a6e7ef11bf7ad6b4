"""the next free sending slot per relay, shared by the processes of one PostgreSQL store

Revision ID: 0013_rate_slots
Revises: 0012_wave_offsets
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013_rate_slots"
down_revision = "0012_wave_offsets"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rate_slots",
        sa.Column("relay", sa.String(length=300), nullable=False),
        sa.Column("next_free", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("relay"),
    )


def downgrade() -> None:
    op.drop_table("rate_slots")
