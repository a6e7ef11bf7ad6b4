"""The Alembic migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

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


def test_message_ids_move_to_their_own_table_with_every_message(database_url: str) -> None:
    """0014 on a store holding messages: each Message-ID is entered in ``message_ids`` for its message, the
    unique index on ``messages.message_id`` is gone, and no message or delivery event is lost with it (SQLite
    rebuilds the table)."""
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import func, insert, inspect, select

    from mailer.message_ids import make_message_id
    from mailer.store.engine import MIGRATIONS_DIR
    from mailer.store.models import Contact, DeliveryEvent, Message, MessageIdLookup, Wave

    engine = make_engine(database_url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0013_rate_slots")
    now = datetime(2021, 6, 1, 13, 0, tzinfo=UTC)
    ids = [make_message_id(f"s/africa-2021/invitation/{n}", "example.org") for n in range(1, 6)]
    with engine.begin() as connection:
        connection.execute(
            insert(Contact.__table__),  # type: ignore[arg-type]
            [
                {
                    "email": f"c{n}@example.org",
                    "email_key": f"c{n}@example.org",
                    "created_at": now,
                    "updated_at": now,
                }
                for n in range(1, 6)
            ],
        )
        wave = connection.execute(
            insert(Wave.__table__).returning(Wave.__table__.c.id),  # type: ignore[arg-type]
            {
                "session_id": "africa-2021",
                "step": "invitation",
                "audience": "africa",
                "scheduled_at": now,
                "created_at": now,
            },
        ).scalar_one()
        connection.execute(
            insert(Message.__table__),  # type: ignore[arg-type]
            [
                {
                    "id": n,
                    "message_id": ids[n - 1],
                    "contact_id": n,
                    "session_id": "africa-2021",
                    "step": "invitation",
                    "wave_id": wave,
                    "recipient": f"c{n}@example.org",
                    "due_at": now,
                    "deadline_at": now,
                    "created_at": now,
                    "updated_at": now,
                }
                for n in range(1, 6)
            ],
        )
        connection.execute(
            insert(DeliveryEvent.__table__),  # type: ignore[arg-type]
            [{"message_pk": n, "at": now, "kind": "queued"} for n in range(1, 6)],
        )
    upgrade(engine)
    with engine.connect() as connection:
        entered = connection.execute(select(MessageIdLookup.message_id, MessageIdLookup.message_pk)).all()
        messages = connection.scalar(select(func.count()).select_from(Message))
        events = connection.scalar(select(func.count()).select_from(DeliveryEvent))
        unique = inspect(connection).get_unique_constraints("messages")
        indexes = inspect(connection).get_indexes("messages")
    engine.dispose()
    assert sorted(entered) == sorted(zip(ids, range(1, 6), strict=True))
    assert (messages, events) == (5, 5)
    assert [c["column_names"] for c in unique] == [["contact_id", "session_id", "step"]]
    assert not [index for index in indexes if "message_id" in index["column_names"]]
