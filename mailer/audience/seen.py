"""The addresses an import has taken so far, kept in the store rather than in the importing process, so that
its memory does not grow with the file.

Shapes
    open_seen(db)                                   an empty set of taken keys, for one connection
    take_keys(db, [(key, line), ...]) -> {key: line}   the keys taken earlier, with the line that took them;
                                                    every other key given is taken now, by its line
    take_staged(db, stage, staged) -> {key: line}   the same for the rows of a temporary table, whose rows
                                                    with a key taken earlier are deleted
    close_seen(db)                                  the set dropped

The set is a temporary table (``import_seen``: the key, unique, and the line that took it; on SQLite one
B-tree, ``WITHOUT ROWID``): it lives as long as the connection, across the import's transactions, so every
call of one import must use the same connection. On SQLite the temporary tables' page cache is 16 MiB and the
store's 32 MiB during the import (their rollback journal stays a file: dropping the set, or a dry run's one transaction, journals
every page of it), and the connection checkpoints its WAL every 10,000 pages rather than 1,000 (fewer
copies of the same index pages and fewer fsyncs; with ``synchronous=NORMAL`` a power cut can then take back
more of the last committed chunks, which importing the file again restores). The keys given
to one call must be distinct (the caller de-duplicates a chunk in memory). SQLite and PostgreSQL; any other
store raises ValueError.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session as DbSession

from mailer.audience.bulk import INDEX_PROBES, sqlite_write_lock

_SEEN = "import_seen"
#: SQLite's page caches during an import, in KiB (negative: a size, not pages), each a fixed bound whatever
#: the file's size. The temporary tables': the set of taken keys and the staged chunk stay in memory up to
#: about 300,000 keys and spill to the temporary file beyond. The store's: each chunk inserts into the
#: contacts' address index at random places, so with SQLite's default 2 MiB most of those pages would be
#: read from the file again (about a fifth of the import's time at 200,000 contacts).
_SQLITE_TEMP_CACHE = -16384
_SQLITE_MAIN_CACHE = -32768
_SQLITE_DEFAULT_CACHE = -2000  # SQLite's default (SQLITE_DEFAULT_CACHE_SIZE), restored after the import
#: WAL pages after which a commit of the import checkpoints (SQLite's default, 1000, restored after it): each
#: chunk rewrites most pages of the contacts' address index, so at the default every chunk's commit would
#: copy them into the database file and wait for two fsyncs; about 40 MB of WAL between checkpoints instead.
_SQLITE_IMPORT_CHECKPOINT = 10000
_SQLITE_DEFAULT_CHECKPOINT = 1000
_BATCH = "import_seen_batch"  # PostgreSQL: one call's keys, copied in before they are compared


def _driver(db: DbSession) -> tuple[str, Any]:
    """(dialect name, the DB-API connection) of the session's connection; ValueError for another store."""
    dialect = db.get_bind().dialect.name
    if dialect not in ("postgresql", "sqlite"):
        raise ValueError(f"bulk import supports SQLite and PostgreSQL, not {dialect}")
    return dialect, db.connection().connection.driver_connection


def open_seen(db: DbSession) -> None:
    """Make the connection's set of taken keys, empty (dropping one a failed import may have left)."""
    dialect, driver = _driver(db)
    cursor = driver.cursor()
    try:
        if dialect == "sqlite":
            cursor.execute(f"PRAGMA temp.cache_size = {_SQLITE_TEMP_CACHE}")
            cursor.execute(f"PRAGMA main.cache_size = {_SQLITE_MAIN_CACHE}")
            cursor.execute(f"PRAGMA wal_autocheckpoint = {_SQLITE_IMPORT_CHECKPOINT}")
            sqlite_write_lock(driver, cursor)
        cursor.execute(f"DROP TABLE IF EXISTS {_SEEN}")
        cursor.execute(
            f"CREATE TEMPORARY TABLE {_SEEN} (key VARCHAR(320) PRIMARY KEY, line INTEGER NOT NULL)"
            + (" WITHOUT ROWID" if dialect == "sqlite" else "")
        )
    finally:
        cursor.close()


def close_seen(db: DbSession) -> None:
    """Drop the connection's set of taken keys (nothing happens when there is none). PostgreSQL: the
    transaction's commit waits for the disk, whatever an earlier statement of it set (the import's last
    transaction: see :data:`mailer.audience.bulk.LAZY_COMMIT`)."""
    dialect, driver = _driver(db)
    cursor = driver.cursor()
    try:
        cursor.execute(f"DROP TABLE IF EXISTS {_SEEN}")
        if dialect == "postgresql":  # this transaction's commit waits for the disk, the chunks' did not
            cursor.execute("SET LOCAL synchronous_commit TO DEFAULT")
        if dialect == "sqlite":
            cursor.execute(f"PRAGMA temp.cache_size = {_SQLITE_DEFAULT_CACHE}")
            cursor.execute(f"PRAGMA main.cache_size = {_SQLITE_DEFAULT_CACHE}")
            cursor.execute(f"PRAGMA wal_autocheckpoint = {_SQLITE_DEFAULT_CHECKPOINT}")
    finally:
        cursor.close()


def take_keys(db: DbSession, keys: Sequence[tuple[str, int]]) -> dict[str, int]:
    """Take each (key, line) of ``keys`` (distinct keys, lines in file order) unless an earlier call took its
    key; returns {key: line that took it} for those taken earlier ({} when none was: the usual case).

    PostgreSQL: the keys are copied into a temporary table, then one statement takes the new ones and
    returns the others; SQLite: one executemany of ``INSERT OR IGNORE`` (in a transaction holding the write
    lock from its start, unless one is open), and only when it inserted fewer rows than given, a lookup of
    each key. Raises ValueError on any other store.
    """
    if not keys:
        return {}
    dialect, driver = _driver(db)
    if dialect == "postgresql":
        with driver.cursor() as cursor:
            cursor.execute(
                f"CREATE TEMPORARY TABLE IF NOT EXISTS {_BATCH} (key VARCHAR(320), line INTEGER)"
                f" ON COMMIT DELETE ROWS; DELETE FROM {_BATCH}; {INDEX_PROBES}"
            )
            with cursor.copy(f"COPY {_BATCH} (key, line) FROM STDIN") as copy:
                for pair in keys:
                    copy.write_row(pair)
            cursor.execute(  # the SELECT sees the table as it was before the INSERT of its CTE
                f"WITH taken AS (INSERT INTO {_SEEN} (key, line) SELECT key, line FROM {_BATCH}"
                f" ON CONFLICT (key) DO NOTHING)"
                f" SELECT b.key, s.line FROM {_BATCH} b JOIN {_SEEN} s ON s.key = b.key"
            )
            return {key: line for key, line in cursor.fetchall()}
    cursor = driver.cursor()
    try:
        sqlite_write_lock(driver, cursor)
        cursor.executemany(f"INSERT OR IGNORE INTO {_SEEN} (key, line) VALUES (?, ?)", keys)
        if cursor.rowcount == len(keys):
            return {}
        earlier: dict[str, int] = {}
        for key, line in keys:
            cursor.execute(f"SELECT line FROM {_SEEN} WHERE key = ?", (key,))
            (taken,) = cursor.fetchone()
            if taken != line:
                earlier[key] = taken
        return earlier
    finally:
        cursor.close()


def take_staged(db: DbSession, stage: str, staged: int) -> dict[str, int]:
    """:func:`take_keys` for the ``staged`` rows of the temporary table ``stage`` (columns ``email_key`` and
    ``line``; a caller's constant name, never user input), without their keys passing through Python: the
    rows whose key an earlier call took are deleted from ``stage`` and returned as {key: line that took it}.

    One ``INSERT ... SELECT`` and, only when it inserted fewer than ``staged`` rows, the rows of keys taken
    earlier found and deleted (PostgreSQL: one ``DELETE ... RETURNING``; SQLite: a query and a ``DELETE``).
    Raises ValueError on any other store.
    """
    if not staged:
        return {}
    dialect, driver = _driver(db)
    if dialect == "postgresql":
        with driver.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {_SEEN} (key, line) SELECT email_key, line FROM {stage} ON CONFLICT (key) DO NOTHING"
            )
            if cursor.rowcount == staged:
                return {}
            cursor.execute(
                f"DELETE FROM {stage} s USING {_SEEN} t WHERE t.key = s.email_key AND t.line <> s.line"
                " RETURNING s.email_key, t.line"
            )
            return {key: line for key, line in cursor.fetchall()}
    cursor = driver.cursor()
    try:
        cursor.execute(f"INSERT OR IGNORE INTO {_SEEN} (key, line) SELECT email_key, line FROM {stage}")
        if cursor.rowcount == staged:
            return {}
        cursor.execute(
            f"SELECT s.email_key, t.line FROM {stage} s JOIN {_SEEN} t ON t.key = s.email_key"
            " WHERE t.line <> s.line"
        )
        earlier: dict[str, int] = {key: line for key, line in cursor.fetchall()}
        cursor.execute(
            f"DELETE FROM {stage} WHERE EXISTS (SELECT 1 FROM {_SEEN} t"
            f" WHERE t.key = {stage}.email_key AND t.line <> {stage}.line)"
        )
        return earlier
    finally:
        cursor.close()


__all__ = ["close_seen", "open_seen", "take_keys", "take_staged"]
