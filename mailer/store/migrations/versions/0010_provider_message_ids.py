"""the sending provider's message id, from the relay's 250 reply, for matching its webhook events

Revision ID: 0010_provider_message_ids
Revises: 0009_lease_expiries
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_provider_message_ids"
down_revision = "0009_lease_expiries"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("provider_id", sa.String(length=255), nullable=True))
    op.create_index("ix_messages_provider_id", "messages", ["provider_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_messages_provider_id", table_name="messages")
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("provider_id")
