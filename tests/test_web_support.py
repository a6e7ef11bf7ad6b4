"""Fixtures and helpers of the web tests (imported by tests/test_web_*.py; holds no tests itself).

The web app is served by uvicorn on 127.0.0.1, port 0, in a thread; pages are driven by Debian's
Chromium (/usr/bin/chromium) through Playwright, never a downloaded browser.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from mailer.app import App
from mailer.config import Settings
from mailer.delivery.pool import SmtpPool
from mailer.service import Service
from mailer.store.engine import transaction
from mailer.store.models import StaffRole
from mailer.timeline.clock import VirtualClock
from mailer.web.server import ThreadedServer
from mailer.web.users import add_user
from tests.chromium import headless_chromium
from tests.conftest import ROOT, RunningServer, with_smtp

INVITATION_AT = datetime(2021, 6, 1, 13, 0, tzinfo=UTC)  # africa-2021 invitation: -6w from 13 Jul 10:00 GMT-3
REMINDER_1W_AT = datetime(2021, 7, 6, 13, 0, tzinfo=UTC)
ARTIFACTS = ROOT / "test-artifacts"
PASSWORD = "correct horse battery staple"
PHONE = {"width": 390, "height": 844}


@pytest.fixture(autouse=True)
def signing_secret(monkeypatch: pytest.MonkeyPatch) -> str:
    """A fixed signing key from the environment, so no key file is written under the project's var/."""
    secret = "test-signing-key-0123456789abcdefghijklmnopqrstuvwxyz"
    monkeypatch.setenv("MAILER_SECRET_KEY", secret)
    return secret


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


def sending_app(app: App, server: RunningServer, base_url: str) -> App:
    """``app`` sending to the test SMTP server, with message links pointing at ``base_url``."""
    settings: Settings = with_smtp(app.settings, server)
    settings = dataclasses.replace(settings, web=dataclasses.replace(settings.web, base_url=base_url))
    return App(settings, app.engine, app.factory)


def run_service(app: App, clock: VirtualClock) -> Any:
    """One tick of the real service at the clock's time: materialise due steps, then send what is due."""
    service = Service(app, clock)

    async def tick() -> Any:
        service.materialise()
        async with SmtpPool(app.settings.smtp) as pool:
            return await service.dispatch(pool)

    # In a thread of its own: Playwright's sync API keeps an event loop running in the test's thread.
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, tick()).result(timeout=120)


def client(server: ThreadedServer) -> httpx.Client:
    return httpx.Client(base_url=server.url, follow_redirects=False, timeout=30)


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF field on the page"
    return match.group(1)


@contextmanager
def signed_in(server: ThreadedServer, username: str) -> Iterator[httpx.Client]:
    """An httpx client signed in as ``username`` (through the real form, CSRF token included)."""
    with client(server) as http:
        token = csrf_of(http.get("/login").text)
        response = http.post(
            "/login",
            data={"username": username, "password": PASSWORD, "csrf_token": token, "next": "/staff/"},
        )
        assert response.status_code == 303, response.text
        yield http


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


def screenshot(page: Any, name: str, request: pytest.FixtureRequest) -> None:
    """Save a full-page PNG under test-artifacts/ (the SQLite run only, to keep one of each)."""
    if "postgresql" in request.node.name:
        return
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def sign_in_browser(page: Any, server: ThreadedServer, username: str, target: str = "/staff/") -> None:
    page.goto(f"{server.url}{target}")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_load_state()
