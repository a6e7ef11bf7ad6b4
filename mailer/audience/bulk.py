"""Bulk SQL for imports: one executemany INSERT that skips clashing rows, an IN list written as literals, and
a temporary staging table filled in one go (COPY on PostgreSQL, multi-row INSERTs on SQLite).

All work on SQLite and PostgreSQL, the two stores the service runs on.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
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


#: The merge after a chunk is staged probes unique keys once per staged row: nested loops over indexes,
#: whatever the statistics say of tables that grow during an import (never analysed yet, a big table looks
#: empty, and a hash join or a sequential scan would then read every contact for each chunk: quadratic).
#: The sequential scan of the staging table itself then looks dear, so JIT compilation is turned off too.
INDEX_PROBES = "; ".join(
    [
        *(f"SET LOCAL enable_{plan} = off" for plan in ("hashjoin", "mergejoin", "seqscan", "material")),
        "SET LOCAL jit = off",
    ]
)


#: PostgreSQL: a transaction that stages a chunk commits without waiting for its WAL to reach the disk (the WAL
#: writer flushes it within a few hundred milliseconds): one fsync less per chunk. The import's last transaction
#: waits (:func:`mailer.audience.seen.close_seen` sets the default back), and as the WAL is flushed in order,
#: that makes every chunk before it durable too; only a server crash in the middle of an import, within that
#: moment, could take back its last chunks, which importing the file again restores, as after any failure.
LAZY_COMMIT = "SET LOCAL synchronous_commit = off"


def sqlite_write_lock(driver: Any, cursor: Any) -> None:
    """Start a transaction holding SQLite's write lock (``BEGIN IMMEDIATE``, waiting the busy timeout) on the
    DB-API connection ``driver``, unless one is open: a merge reads the store, and a transaction that has
    read cannot start writing once another writer has committed."""
    if not driver.in_transaction:
        cursor.execute("BEGIN IMMEDIATE")


#: SQLite: rows per multi-row INSERT (each statement one ``sqlite3_step``: the driver's per-row binding, stepping
#: and releasing and taking back the GIL are paid once per batch rather than once per row).
_VALUES_ROWS = 256


def _insert_values(driver: Any, cursor: Any, insert: str, width: int, rows: Iterable[Sequence[Any]]) -> None:
    """SQLite: ``insert`` (a statement ending ``VALUES``) of ``rows`` of ``width`` values each, as multi-row
    ``VALUES`` lists of up to ``_VALUES_ROWS`` rows (fewer when the library binds fewer parameters)."""
    per = max(1, min(_VALUES_ROWS, driver.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // width))
    group = "(" + ", ".join("?" * width) + ")"
    full = insert + ", ".join([group] * per)
    batch: list[Any] = []
    batches: list[list[Any]] = []
    count = 0
    for row in rows:
        batch.extend(row)
        count += 1
        if count == per:
            batches.append(batch)
            batch, count = [], 0
    if batches:
        cursor.executemany(full, batches)
    if count:
        cursor.execute(insert + ", ".join([group] * count), batch)


def fill_stage(
    db: DbSession,
    name: str,
    columns: Sequence[tuple[str, str]],
    filled: int,
    rows: Iterable[Sequence[Any]],
    *,
    key: str = "",
) -> None:
    """Empty the session's temporary table ``name`` (created if missing, with ``columns``: (name, SQL type)
    pairs, types that both stores know) and load ``rows`` into it, bypassing SQLAlchemy's per-row work:
    each row holds the values of the first ``filled`` columns; the others take their defaults.

    PostgreSQL: one ``COPY ... FROM STDIN`` (psycopg's ``cursor.copy``), the table's rows dropped at commit,
    the rest of the transaction planned with nested loops (the merge probes indexes row by row) and its
    commit not waiting for the disk (``LAZY_COMMIT``);
    SQLite: multi-row INSERTs of a few hundred rows each (one executemany), in a transaction that holds the
    write lock from its start (``BEGIN IMMEDIATE``, unless one is open). The table lives as long as the connection, so each
    transaction of an import reuses it. ``name`` and ``columns`` are the caller's constants, never user
    input. ``key``, when given, names a column PostgreSQL indexes (a later statement finds rows by it).
    Raises ValueError on any other store.
    """
    dialect = db.get_bind().dialect.name
    ddl = ", ".join(f"{column} {kind}" for column, kind in columns)
    names = ", ".join(column for column, _ in columns[:filled])
    driver = db.connection().connection.driver_connection
    if dialect == "postgresql":
        with driver.cursor() as cursor:  # type: ignore[union-attr]
            cursor.execute(  # one round trip; DELETE: a dry run's chunks share one transaction
                f"CREATE TEMPORARY TABLE IF NOT EXISTS {name} ({ddl}) ON COMMIT DELETE ROWS;"
                + (f" CREATE INDEX IF NOT EXISTS {name}_{key} ON {name} ({key});" if key else "")
                + f" DELETE FROM {name}; {INDEX_PROBES}; {LAZY_COMMIT}"
            )
            with cursor.copy(f"COPY {name} ({names}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
    elif dialect == "sqlite":
        cursor = driver.cursor()  # type: ignore[union-attr]
        try:
            sqlite_write_lock(driver, cursor)
            cursor.execute(f"CREATE TEMPORARY TABLE IF NOT EXISTS {name} ({ddl})")
            cursor.execute(f"DELETE FROM {name}")
            _insert_values(driver, cursor, f"INSERT INTO {name} ({names}) VALUES ", filled, rows)
        finally:
            cursor.close()
    else:
        raise ValueError(f"bulk import supports SQLite and PostgreSQL, not {dialect}")


__all__ = [
    "INDEX_PROBES",
    "LAZY_COMMIT",
    "fill_stage",
    "insert_ignoring_conflicts",
    "literal_in",
    "sqlite_write_lock",
]
