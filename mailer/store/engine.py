"""Engine, sessions and schema migrations (Alembic) for SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session as DbSession
from sqlalchemy.orm import sessionmaker

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


SQLITE_BUSY_TIMEOUT = 30.0  # seconds a SQLite writer waits for another's transaction: "database is locked"


def make_engine(url: str, *, busy_timeout: float = SQLITE_BUSY_TIMEOUT, **options: Any) -> Engine:
    """Create an engine for ``url``.

    SQLite files get their folder created, the file itself made readable by its owner only (0600; SQLite
    gives its -wal and -shm files the same mode), WAL journaling (readers never wait for the writer), a busy
    timeout of ``busy_timeout`` seconds for writers and foreign keys on; they suit one sending process, every
    writer holding the store briefly (imports commit chunk by chunk). PostgreSQL (``postgresql+psycopg://...``) suits several.
    """
    if url.startswith("sqlite"):
        path = url.split("sqlite:///", 1)[-1]
        if path and path != ":memory:" and not path.startswith("file:"):
            private_file(Path(path))
        engine = create_engine(url, connect_args={"timeout": busy_timeout}, **options)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True, **options)


def private_file(path: Path) -> None:
    """Make ``path`` (and its folder) exist with mode 0600: created so, or tightened when group or others
    could read it. The store holds password hashes and every contact."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    for name in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        with contextlib.suppress(FileNotFoundError):
            if name.stat().st_mode & 0o077:
                name.chmod(0o600)


def upgrade(engine: Engine) -> None:
    """Bring the schema to the newest Alembic revision (idempotent; safe from several processes on PostgreSQL)."""
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # One migrator at a time when several processes start together.
            connection.exec_driver_sql("SELECT pg_advisory_xact_lock(727272)")
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def schema_revisions(engine: Engine) -> tuple[str | None, str | None]:
    """(the store's current Alembic revision, the newest one this code ships); equal when migrations are current.

    Raises SQLAlchemy's OperationalError when the store cannot be reached.
    """
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    head = ScriptDirectory.from_config(config).get_current_head()
    with engine.connect() as connection:
        current = MigrationContext.configure(connection).get_current_revision()
    return current, head


def session_factory(engine: Engine) -> sessionmaker[DbSession]:
    """A session factory whose objects stay readable after commit."""
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[DbSession]) -> Iterator[DbSession]:
    """One unit of work: commit on success, roll back on any error."""
    with factory() as session, session.begin():
        yield session


def is_postgres(engine: Engine) -> bool:
    """True when the engine talks to PostgreSQL (several processes may share the work)."""
    return engine.dialect.name == "postgresql"
