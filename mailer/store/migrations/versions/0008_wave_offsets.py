"""organiser waves keep their time as an offset from the session start; holds carry their reason

Revision ID: 0008_wave_offsets
Revises: 0007_webhooks_api_tokens
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_wave_offsets"
down_revision = "0007_webhooks_api_tokens"
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
