"""Engine, sessions and schema migrations (Alembic) for SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import Session as DbSession
from sqlalchemy.orm import sessionmaker

from mailer.errors import NotFoundError

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_REVISION_LINE = re.compile(r"""^(revision|down_revision)\s*=\s*(?:["']([^"']+)["']|None)""", re.MULTILINE)


SQLITE_BUSY_TIMEOUT = 30.0  # seconds a SQLite writer waits for another's transaction: "database is locked"


def make_engine(url: str, *, busy_timeout: float = SQLITE_BUSY_TIMEOUT, **options: Any) -> Engine:
    """Create an engine for ``url``.

    SQLite files get their folder created, the file itself made readable by its owner only (0600; SQLite
    gives its -wal and -shm files the same mode), WAL journaling (readers never wait for the writer), a busy
    timeout of ``busy_timeout`` seconds for writers and foreign keys on; they suit one sending process, every
    writer holding the store briefly (imports commit chunk by chunk). PostgreSQL (``postgresql+psycopg://...``) suits several.
    Raises sqlalchemy's ArgumentError for a URL it cannot read or a database of another kind.
    """
    if url.startswith("sqlite"):
        path = sqlite_path(url)  # None in memory ("sqlite://", "sqlite:///:memory:")
        if path is not None and not str(path).startswith("file:"):
            private_file(path)
        engine = create_engine(url, connect_args={"timeout": busy_timeout}, **options)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    backend = make_url(url).get_backend_name()
    if backend != "postgresql":  # another dialect would fail on its driver's import, with a traceback
        raise ArgumentError(
            f"{backend!r} is not a store the mailer keeps: use SQLite (sqlite:///...) or PostgreSQL"
            " (postgresql+psycopg://...)"
        )
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


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite ``url``; None for another database or an in-memory one."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database)


def require_store(url: str) -> None:
    """Refuse a store that was never made, for commands that only read: they must not create an empty one
    and report "0 messages" about a mistyped path. A SQLite file must exist (checked before connecting, which
    would create it); another database must hold the mailer's tables.

    Raises NotFoundError naming the path or URL and the fix; SQLAlchemy's OperationalError when the
    database server cannot be reached.
    """
    fix = "check --database-url or DATABASE_URL; commands that write, such as `mailer contacts import`, make one"
    path = sqlite_path(url)
    if path is not None:
        if not path.is_file():
            raise NotFoundError(f"no store at {path} (the file does not exist): {fix}")
        return
    if make_url(url).get_backend_name() == "sqlite":
        return
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            found = inspect(connection).has_table("alembic_version")
    finally:
        engine.dispose()
    if not found:
        shown = make_url(url).render_as_string(hide_password=True)
        raise NotFoundError(f"no store at {shown} (the database holds no mailer tables): {fix}")


def upgrade(engine: Engine) -> None:
    """Bring the schema to the newest Alembic revision (idempotent; safe from several processes on PostgreSQL).

    A store already at the newest revision is left alone without importing Alembic (about a third of a
    second of start-up for every command).
    """
    with engine.begin() as connection:
        if _at_head(connection):
            return
    from alembic import command
    from alembic.config import Config as AlembicConfig

    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            # SQLite changes a table by rebuilding it (Alembic's batch mode): with foreign keys on, dropping
            # the old table would delete the rows referencing it (ON DELETE CASCADE). Off outside any
            # transaction, as SQLite requires (https://www.sqlite.org/lang_altertable.html#otheralter).
            connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
            connection.commit()
        try:
            with connection.begin():
                if not sqlite:
                    # One migrator at a time when several processes start together.
                    connection.exec_driver_sql("SELECT pg_advisory_xact_lock(727272)")
                config.attributes["connection"] = connection
                command.upgrade(config, "head")
        finally:
            if sqlite:
                connection.exec_driver_sql("PRAGMA foreign_keys=ON")
                connection.commit()


def schema_revisions(engine: Engine) -> tuple[str | None, str | None]:
    """(the store's current Alembic revision, the newest one this code ships); equal when migrations are current.

    Read from the ``alembic_version`` table and the migration files' own lines, without starting Alembic
    (which logs its set-up at INFO on every call: a readiness probe would fill the log).
    Raises SQLAlchemy's OperationalError when the store cannot be reached.
    """
    head = head_revision()
    if head is None:  # the files do not form one line of revisions: Alembic decides
        from alembic.config import Config as AlembicConfig
        from alembic.script import ScriptDirectory

        config = AlembicConfig()
        config.set_main_option("script_location", str(MIGRATIONS_DIR))
        head = ScriptDirectory.from_config(config).get_current_head()
    with engine.connect() as connection:
        if not inspect(connection).has_table("alembic_version"):
            return None, head
        current = connection.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    return (current[0] if len(current) == 1 else None), head


@cache
def head_revision() -> str | None:
    """The newest revision id of ``migrations/versions/``, read from the files' ``revision`` and
    ``down_revision`` lines; None when they do not form one line of revisions (Alembic then decides)."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (MIGRATIONS_DIR / "versions").glob("*.py"):
        found = dict((key, value) for key, value in _REVISION_LINE.findall(path.read_text(encoding="utf-8")))
        if "revision" not in found:
            return None
        revisions.add(found["revision"])
        if found.get("down_revision"):
            parents.add(found["down_revision"])
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def _at_head(connection: Connection) -> bool:
    head = head_revision()
    if head is None or not inspect(connection).has_table("alembic_version"):
        return False
    current = connection.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    return current == [head]


def session_factory(engine: Engine) -> sessionmaker[DbSession]:
    """A session factory whose objects stay readable after commit."""
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[DbSession], *, bind: Connection | None = None) -> Iterator[DbSession]:
    """One unit of work: commit on success, roll back on any error; on ``bind`` (a connection not in a
    transaction, which stays open) when given, else on a connection of the factory's pool."""
    with factory() if bind is None else factory(bind=bind) as session, session.begin():
        yield session


def is_postgres(engine: Engine) -> bool:
    """True when the engine talks to PostgreSQL (several processes may share the work)."""
    return engine.dialect.name == "postgresql"
