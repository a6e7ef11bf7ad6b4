"""count lease expiries per message, so a message reclaimed twice is held for staff review

Revision ID: 0009_lease_expiries
Revises: 0008_leased_index
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_lease_expiries"
down_revision = "0008_leased_index"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("expiries", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("handed_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_column("handed_at")
        batch_op.drop_column("expiries")
