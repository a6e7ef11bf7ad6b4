"""the import journal's rows name their import without a foreign key: the check ran once per row written

Revision ID: 0015_journal_rows_unchecked
Revises: 0014_message_id_lookup
"""

from __future__ import annotations

from alembic import op

revision = "0015_journal_rows_unchecked"
down_revision = "0014_message_id_lookup"
branch_labels = None
depends_on = None

_POSTGRESQL_NAME = "import_changes_import_id_fkey"  # PostgreSQL's name for the constraint of 0011_imports
_SQLITE_NAMES = {
    "fk": "fk_%(table_name)s_%(column_0_name)s"
}  # SQLite's constraint has no name: one for batch
_SQLITE_NAME = "fk_import_changes_import_id"


def upgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.drop_constraint(_POSTGRESQL_NAME, "import_changes", type_="foreignkey")
        return
    with op.batch_alter_table("import_changes", naming_convention=_SQLITE_NAMES) as batch_op:
        batch_op.drop_constraint(_SQLITE_NAME, type_="foreignkey")


def downgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.create_foreign_key(
            _POSTGRESQL_NAME, "import_changes", "imports", ["import_id"], ["id"], ondelete="CASCADE"
        )
        return
    with op.batch_alter_table("import_changes", naming_convention=_SQLITE_NAMES) as batch_op:
        batch_op.create_foreign_key(_SQLITE_NAME, "imports", ["import_id"], ["id"], ondelete="CASCADE")
