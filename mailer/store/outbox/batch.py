"""Dialect-aware batch statements: INSERT ignoring conflicts, ``IN`` as one array parameter on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import any_, bindparam
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session as DbSession

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
