"""Bulk SQL for imports: one executemany INSERT that skips clashing rows, and an IN list written as literals.

Both work on SQLite and PostgreSQL, the two stores the service runs on.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import bindparam
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session as DbSession


def insert_ignoring_conflicts(
    db: DbSession, table: Any, rows: list[dict[str, Any]], keys: Sequence[str]
) -> None:
    """Bulk INSERT ``rows`` (one executemany), skipping those that clash on the unique ``keys``.

    SQLite and PostgreSQL (``ON CONFLICT DO NOTHING``); raises ValueError on any other store. No RETURNING:
    SQLAlchemy would then build multi-row statements, which costs more here than the driver's executemany.
    """
    if not rows:
        return
    dialect = db.get_bind().dialect.name
    if dialect == "postgresql":
        stmt: Any = postgresql.insert(table).on_conflict_do_nothing(index_elements=list(keys))
    elif dialect == "sqlite":
        stmt = sqlite.insert(table).on_conflict_do_nothing(index_elements=list(keys))
    else:
        raise ValueError(f"bulk import supports SQLite and PostgreSQL, not {dialect}")
    db.execute(stmt, rows)


def literal_in(column: Any, values: Sequence[Any]) -> Any:
    """``column IN (...)`` with the values written into the SQL text (quoted by the dialect) at execution.

    Each chunk's statement text then differs, so psycopg never turns it into a prepared statement whose
    generic plan, made while the table was nearly empty, PostgreSQL would keep using: a sequential scan per
    lookup, quadratic over a big file. Constants also let PostgreSQL hash the list.
    """
    return column.in_(bindparam(None, list(values), expanding=True, literal_execute=True))


__all__ = ["insert_ignoring_conflicts", "literal_in"]
