"""Shared fixtures: the store on SQLite and (when TEST_DATABASE_URL is set) PostgreSQL, a real SMTP server,
and the web tests' clock, accounts, served app and headless browser.

Hypothesis profiles: ``HYPOTHESIS_PROFILE=mutation`` (set by bench/mutate.py) runs each property test on at
most :data:`MUTATION_EXAMPLES` examples, derandomised and never shrunk, so a mutation run tests each mutant in seconds; the
exact-byte tests do the killing there. Other runs keep each test's own number of examples.

PostgreSQL: set ``TEST_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test``; each pytest process
creates its own database (``<name>_<pid>``) so parallel runs never meet, and every test starts on an empty schema.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, Envelope
from aiosmtpd.smtp import Session as SmtpSession
from hypothesis import HealthCheck, Phase
from hypothesis import settings as hypothesis_settings
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from mailer.app import App, open_app
from mailer.config import Settings, load_settings
from mailer.delivery.capture import SmtpServer
from mailer.store.engine import transaction
from mailer.store.models import StaffRole
from mailer.timeline.clock import VirtualClock
from mailer.web.server import ThreadedServer
from mailer.web.users import add_user
from tests.chromium import headless_chromium

ROOT = Path(__file__).resolve().parent.parent
CONTACTS_DIR = Path(os.environ.get("MAILER_CONTACTS_DIR", ROOT.parent / "shared" / "data" / "contacts"))
PG_URL = os.environ.get("TEST_DATABASE_URL", "")
HYPOTHESIS_PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "default")
MUTATION_EXAMPLES = 20
hypothesis_settings.register_profile(
    "mutation",
    max_examples=MUTATION_EXAMPLES,
    derandomize=True,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],  # a failure is enough: no shrinking
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
hypothesis_settings.load_profile(HYPOTHESIS_PROFILE)


def examples(count: int) -> int:
    """The number of examples a property test asks for: ``count``, or at most :data:`MUTATION_EXAMPLES` under
    the ``mutation`` profile (an explicit ``max_examples`` would otherwise override the profile)."""
    return min(count, MUTATION_EXAMPLES) if HYPOTHESIS_PROFILE == "mutation" else count


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
    host: str = field(init=False)
    port: int = field(init=False)

    def __post_init__(self) -> None:
        self.host, self.port = self.server.host, self.server.port  # started: its port is chosen

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


# The shipped series' timeline steps, in order (config/series.toml).
SHIPPED_STEPS = ["invitation", "invitation-2", "reminder-1w", "reminder-1d", "reminder-1h", "follow-up"]
INVITATION_AT = datetime(2021, 6, 1, 13, 0, tzinfo=UTC)  # africa-2021 invitation: -6w from 13 Jul 10:00 GMT-3
PASSWORD = "correct horse battery staple"
PHONE = {"width": 390, "height": 844}


@pytest.fixture
def clock() -> VirtualClock:
    """Shared by the web app and the service: one hour after the africa-2021 invitation time."""
    return VirtualClock(INVITATION_AT + timedelta(hours=1))


@pytest.fixture
def accounts(app: App) -> dict[str, str]:
    """An organiser ``olga`` and a staff member ``sam`` (both with PASSWORD)."""
    with transaction(app.factory) as db:
        add_user(db, "olga", PASSWORD, INVITATION_AT, role=StaffRole.ORGANISER, email="olga@example.org")
        add_user(db, "sam", PASSWORD, INVITATION_AT, role=StaffRole.STAFF, email="sam@example.org")
    return {"organiser": "olga", "staff": "sam"}


@pytest.fixture
def web(app: App, clock: VirtualClock) -> Iterator[ThreadedServer]:
    """The web app for ``app`` served on 127.0.0.1:<free port> in a thread."""
    with ThreadedServer(app, clock=clock) as server:
        yield server


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium, headless, driven by Playwright (never a downloaded browser).

    Module scope: Playwright's sync API keeps an event loop running in the main thread while it is open,
    which would break ``asyncio.run`` in test modules that run after this one.
    """
    with headless_chromium() as chromium:
        yield chromium


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser context (no cookies) and page, desktop size."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-GB")
    context.set_default_timeout(15000)
    yield context.new_page()
    context.close()


@pytest.fixture
def phone(browser: Any) -> Iterator[Any]:
    """A fresh browser context the size of a phone."""
    context = browser.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True)
    context.set_default_timeout(15000)
    yield context.new_page()
    context.close()
