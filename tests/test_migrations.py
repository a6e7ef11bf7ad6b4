"""The Alembic migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from mailer.store.engine import make_engine, upgrade
from mailer.store.models import Base


def test_migrated_schema_matches_the_models(database_url: str) -> None:
    engine = make_engine(database_url)
    upgrade(engine)
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    engine.dispose()
    assert differences == []


def test_the_claim_query_uses_the_pending_index(database_url: str) -> None:
    from sqlalchemy import text

    engine = make_engine(database_url)
    upgrade(engine)
    query = (
        "SELECT id FROM messages WHERE status IN ('queued', 'deferred') AND due_at <= CURRENT_TIMESTAMP "
        "ORDER BY due_at, id LIMIT 500"
    )
    explain = "EXPLAIN " if engine.dialect.name == "postgresql" else "EXPLAIN QUERY PLAN "
    with engine.connect() as connection:
        plan = " ".join(str(row) for row in connection.execute(text(explain + query)))
    engine.dispose()
    assert "ix_messages_pending" in plan
