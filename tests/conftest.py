"""Shared fixtures: the store on SQLite and (when TEST_DATABASE_URL is set) PostgreSQL, and a real SMTP server.

PostgreSQL: set ``TEST_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test``; each pytest process
creates its own database (``<name>_<pid>``) so parallel runs never meet, and every test starts on an empty schema.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, Envelope
from aiosmtpd.smtp import Session as SmtpSession
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from mailer.app import App, open_app
from mailer.config import Settings, load_settings
from mailer.delivery.capture import SmtpServer

ROOT = Path(__file__).resolve().parent.parent
CONTACTS_DIR = Path(os.environ.get("MAILER_CONTACTS_DIR", ROOT.parent / "shared" / "data" / "contacts"))
PG_URL = os.environ.get("TEST_DATABASE_URL", "")


def _postgres_database() -> Iterator[str]:
    base = make_url(PG_URL)
    name = f"{base.database or 'test'}_mailer_{os.getpid()}"
    admin = create_engine(base.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A private PostgreSQL database for this test process (skips when TEST_DATABASE_URL is unset)."""
    if not PG_URL:
        pytest.skip("TEST_DATABASE_URL not set: PostgreSQL store tests skipped")
    yield from _postgres_database()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty store: a fresh SQLite file, or the PostgreSQL test database with an empty schema."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'mailer.db'}"
    url: str = request.getfixturevalue("postgres_url")
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text("DROP SCHEMA public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    return url


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    """The shipped config, pointed at the test store and a temporary capture folder."""
    loaded = load_settings(ROOT / "config", database_url=database_url)
    return dataclasses.replace(loaded, capture_dir=tmp_path / "capture")


@pytest.fixture
def app(settings: Settings) -> Iterator[App]:
    """An opened, migrated store with the shipped config."""
    opened = open_app(settings)
    yield opened
    opened.close()


@dataclass
class Received:
    """One message as the SMTP server received it."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    mail_options: list[str] = field(default_factory=list)

    def parsed(self) -> EmailMessage:
        message = BytesParser(policy=policy.default).parsebytes(self.data)
        assert isinstance(message, EmailMessage)
        return message


class RecordingHandler:
    """aiosmtpd handler keeping every accepted message in memory (thread-safe)."""

    def __init__(self) -> None:
        self.messages: list[Received] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server: SMTP, session: SmtpSession, envelope: Envelope) -> str:
        with self.lock:
            self.messages.append(
                Received(
                    mail_from=str(envelope.mail_from),
                    rcpt_tos=list(envelope.rcpt_tos),
                    data=bytes(envelope.original_content or b""),
                    mail_options=list(envelope.mail_options),
                )
            )
        return "250 2.0.0 OK"


@dataclass
class RunningServer:
    """A running recording server: ``host``, ``port`` and what it received."""

    server: SmtpServer
    handler: RecordingHandler

    @property
    def host(self) -> str:
        return self.server.host

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def messages(self) -> list[Received]:
        with self.handler.lock:
            return list(self.handler.messages)


@pytest.fixture
def smtp_server() -> Iterator[RunningServer]:
    """aiosmtpd on 127.0.0.1, port 0, offering SMTPUTF8, recording every message."""
    handler = RecordingHandler()
    server = SmtpServer(handler)
    with server:
        yield RunningServer(server, handler)


def with_smtp(settings: Settings, server: RunningServer, **changes: Any) -> Settings:
    """``settings`` sending to ``server`` over plain SMTP."""
    from mailer.config import Security

    smtp = dataclasses.replace(
        settings.smtp, host=server.host, port=server.port, security=Security.NONE, **changes
    )
    return dataclasses.replace(settings, smtp=smtp)
