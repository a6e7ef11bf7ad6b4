"""Message-IDs looked up in a table of their own, not through a unique index on messages

Revision ID: 0014_message_id_lookup
Revises: 0013_rate_slots
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014_message_id_lookup"
down_revision = "0013_rate_slots"
branch_labels = None
depends_on = None

# The unnamed UNIQUE (message_id) of 0001: PostgreSQL named it so; SQLite's batch mode finds it by this name.
_UNIQUE_NAMES = {"postgresql": "messages_message_id_key"}
_NAMING = {"uq": "uq_%(table_name)s_%(column_0_name)s"}


def upgrade() -> None:
    op.create_table(
        "message_ids",
        sa.Column("message_id", sa.String(length=255), nullable=False),
        sa.Column("message_pk", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("message_id"),
        sqlite_with_rowid=False,
    )
    op.execute(
        "INSERT INTO message_ids (message_id, message_pk) SELECT message_id, id FROM messages ORDER BY message_id"
    )
    with op.batch_alter_table("messages", naming_convention=_NAMING) as batch:
        batch.drop_constraint(_unique_name(), type_="unique")


def downgrade() -> None:
    with op.batch_alter_table("messages", naming_convention=_NAMING) as batch:
        batch.create_unique_constraint(_unique_name(), ["message_id"])
    op.drop_table("message_ids")


def _unique_name() -> str:
    return _UNIQUE_NAMES.get(op.get_bind().dialect.name, "uq_messages_message_id")
