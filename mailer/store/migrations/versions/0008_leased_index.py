"""index the leased (sending) messages by lease end, for reaping expired leases

Revision ID: 0008_leased_index
Revises: 0007_webhooks_api_tokens
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_leased_index"
down_revision = "0007_webhooks_api_tokens"
branch_labels = None
depends_on = None

SENDING = sa.text("status = 'sending'")


def upgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.create_index(
            "ix_messages_leased",
            ["lease_until"],
            unique=False,
            postgresql_where=SENDING,
            sqlite_where=SENDING,
        )


def downgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_index("ix_messages_leased")
