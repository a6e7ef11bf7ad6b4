"""Dialect-aware batch statements: INSERT ignoring conflicts (rows, or a SELECT run by the store), ``IN`` as
one array parameter on PostgreSQL, the msg-id digest computed by the store."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, cast

import psycopg
from sqlalchemy import ColumnElement, String, Table, any_, bindparam, func, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session as DbSession
from sqlalchemy.sql.expression import Selectable

from mailer.message_ids import message_id_digest

INSERT_CHUNK = 500


def insert_ignoring_conflicts(db: DbSession, table: type, rows: list[dict[str, object]]) -> list[int]:
    """INSERT rows, skipping those that violate a unique constraint; returns the new rows' ids."""
    if not rows:
        return []
    dialect = db.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    primary = next(iter(table.__table__.primary_key.columns))  # type: ignore[attr-defined]
    new_ids: list[int] = []
    for start in range(0, len(rows), INSERT_CHUNK):
        statement = insert(table).on_conflict_do_nothing().returning(primary)
        new_ids.extend(db.scalars(statement, rows[start : start + INSERT_CHUNK]))
    return new_ids


def insert_selected(db: DbSession, table: type, columns: Sequence[str], rows: Selectable) -> int:
    """``INSERT INTO table (columns) SELECT ... ON CONFLICT DO NOTHING``: the store copies the rows of
    ``rows`` (one per ``columns`` entry, in order) without a round trip per row and without their count in
    bound values; rows violating a unique constraint are skipped. Returns how many were inserted."""
    insert = postgresql.insert if is_postgresql(db) else sqlite.insert
    target = cast(Table, table.__table__)  # type: ignore[attr-defined]
    statement = insert(target).from_select(list(columns), rows).on_conflict_do_nothing()
    statement = statement.execution_options(preserve_rowcount=True)
    return db.connection().execute(statement).rowcount


def message_digest_sql(db: DbSession, key: ColumnElement[str]) -> ColumnElement[str]:
    """SQL for :func:`mailer.message_ids.message_id_digest` of the text ``key``: PostgreSQL's sha256();
    on SQLite the Python function, registered on this session's connection."""
    if is_postgresql(db):
        digest = func.encode(func.sha256(func.convert_to(key, "UTF8")), "hex")
        return func.substr(digest, 1, 32, type_=String)
    raw = db.connection().connection.dbapi_connection
    raw.create_function(_SQLITE_DIGEST, 1, message_id_digest, deterministic=True)  # type: ignore[union-attr]
    return getattr(func, _SQLITE_DIGEST)(key, type_=String)  # type: ignore[no-any-return]


_SQLITE_DIGEST = "mailer_message_id_digest"


ANALYZE_AFTER = 10_000
"""Rows added to a table in one statement from which :func:`refresh_statistics` has PostgreSQL re-sample it."""


def refresh_statistics(db: DbSession, table: type, added: int) -> bool:
    """PostgreSQL: ``ANALYZE`` ``table`` when ``added`` (rows just inserted by this transaction) is at least
    :data:`ANALYZE_AFTER`; returns whether it did. Caller commits: the sample counts this transaction's own
    rows, and the new statistics become visible with them.

    Why: the planner estimates how many rows a condition matches from the last sample. Right after a wave of
    N messages is queued, that sample predates it (autovacuum re-samples only a minute or so after the
    commit), so the claim query ``status IN ('queued', 'deferred') AND due_at <= now ORDER BY due_at, id LIMIT
    500`` is estimated at a few dozen rows and planned as "fetch all the matches, sort, keep 500": O(N) per
    batch (1.8 s a claim at N = 200,000 instead of 5 ms through ``ix_messages_pending`` in order). ANALYZE
    reads a fixed-size sample (300 x the statistics target rows), so it costs the same at any N; its SHARE
    UPDATE EXCLUSIVE lock, held to the commit, blocks no read or write of the table, only another ANALYZE,
    VACUUM or schema change of it (a second large wave queued at the same time waits for this commit). On
    SQLite the claim goes through the partial index as it is: nothing is done there.
    """
    if added < ANALYZE_AFTER or not is_postgresql(db):
        return False
    name = cast(Table, table.__table__).name  # type: ignore[attr-defined]
    db.execute(text(f'ANALYZE "{name}"'))
    return True


def is_postgresql(db: DbSession) -> bool:
    """True when ``db`` is bound to PostgreSQL (otherwise SQLite)."""
    return db.get_bind().dialect.name == "postgresql"


def among(db: DbSession, column: Any, values: Iterable[object], element_type: Any) -> Any:
    """``column IN (values)``; on PostgreSQL ``column = ANY(array)``: one parameter for a whole batch, so
    neither SQLAlchemy nor psycopg handles a bind per value."""
    values = list(values)
    if is_postgresql(db):
        return column == any_(bindparam(None, values, type_=postgresql.ARRAY(element_type)))
    return column.in_(values)


def driver_connection(db: DbSession) -> psycopg.Connection[Any]:
    """The psycopg connection under ``db``'s connection (PostgreSQL only), in the session's transaction: for a
    statement that skips SQLAlchemy's per-statement work (see :func:`mailer.store.outbox.outcomes.record_sent`).
    Raises TypeError when ``db`` is not bound to PostgreSQL through psycopg."""
    raw = db.connection().connection.dbapi_connection
    if not isinstance(raw, psycopg.Connection):
        raise TypeError(f"not a psycopg connection: {type(raw).__name__}")
    return raw
