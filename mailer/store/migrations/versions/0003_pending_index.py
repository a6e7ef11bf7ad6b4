"""index only pending messages for the claim query

Revision ID: 0003_pending_index
Revises: 0002_staff_users
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_pending_index"
down_revision = "0002_staff_users"
branch_labels = None
depends_on = None

PENDING = sa.text("status IN ('queued', 'deferred')")


def upgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_index("ix_messages_due")
        batch_op.create_index(
            "ix_messages_pending",
            ["due_at", "id"],
            unique=False,
            postgresql_where=PENDING,
            sqlite_where=PENDING,
        )


def downgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_index("ix_messages_pending")
        batch_op.create_index("ix_messages_due", ["status", "due_at"], unique=False)
