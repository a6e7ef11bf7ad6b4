"""organiser waves keep their time as an offset from the session start; holds carry their reason

Revision ID: 0012_wave_offsets
Revises: 0011_imports
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012_wave_offsets"
down_revision = "0011_imports"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("waves", schema=None) as batch_op:
        batch_op.add_column(sa.Column("offset_seconds", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("hold_reason", sa.Text(), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("waves", schema=None) as batch_op:
        batch_op.drop_column("hold_reason")
        batch_op.drop_column("offset_seconds")
