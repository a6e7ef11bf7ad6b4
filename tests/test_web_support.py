"""Helpers of the web tests (imported by tests/test_web_*.py; holds no tests itself); their fixtures (the
clock, the accounts, the served app, the browser) are in conftest.py.

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
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from mailer.app import App
from mailer.config import Settings
from mailer.delivery.pool import SmtpPool
from mailer.service import Service
from mailer.timeline.clock import VirtualClock
from mailer.web.server import ThreadedServer
from tests.conftest import INVITATION_AT, PASSWORD, ROOT, RunningServer, with_smtp

REMINDER_1W_AT = datetime(2021, 7, 6, 13, 0, tzinfo=UTC)
ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture(autouse=True)
def signing_secret(monkeypatch: pytest.MonkeyPatch) -> str:
    """A fixed signing key from the environment, so no key file is written under the project's var/."""
    secret = "test-signing-key-0123456789abcdefghijklmnopqrstuvwxyz"
    monkeypatch.setenv("MAILER_SECRET_KEY", secret)
    return secret


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


def check_upload(
    http: httpx.Client, token: str, kind: str, target: str, filename: str, content: bytes
) -> httpx.Response:
    """POST ``content`` as the file ``filename`` to the import check page (``kind`` into ``target``)."""
    return http.post(
        "/organise/imports/check",
        data={"csrf_token": token, "kind": kind, "target": target},
        files={"file": (filename, content, "text/csv")},
    )


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
