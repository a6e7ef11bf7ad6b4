"""The documented deployment for real: Debian's nginx terminating TLS (a certificate made here) on 127.0.0.1
in front of the web pages, ``web.trusted_proxies`` naming it, and Chromium signing in, queuing a wave and
answering an invitation through it as ``https://mailer.example.org:<port>`` (mapped to 127.0.0.1).

The nginx configuration is the README's (section "Deployment"), with temporary paths and ports.
"""

from __future__ import annotations

import dataclasses
import getpass
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from mailer.app import App
from mailer.store.engine import transaction
from mailer.store.models import Contact, Registration, RegistrationStatus, StaffSession, Wave, WaveStatus
from mailer.timeline.clock import VirtualClock
from mailer.web.server import ThreadedServer
from tests.certificates import self_signed_certificate
from tests.chromium import headless_chromium
from tests.conftest import RunningServer, with_smtp
from tests.factories import add_contact
from tests.test_web_support import INVITATION_AT, PASSWORD, run_service, signing_secret

__all__ = ["signing_secret"]

HOST = "mailer.example.org"
NGINX_SERVER = """\
server {{
    listen 127.0.0.1:{port} ssl;
    server_name {host};
    ssl_certificate     {cert};
    ssl_certificate_key {key};
    client_max_body_size 20m;

    location / {{
        proxy_pass http://127.0.0.1:{app_port};
        proxy_set_header Host $http_host;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $scheme;
    }}
}}
"""
NGINX_MAIN = """\
user {user};
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log {tmp}/access.log;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
{server}}}
"""


def _nginx() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else "")
    if not found:
        pytest.fail("nginx missing: apt-get install -y nginx-light (.ci/run installs it)")
    return found


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def nginx_in_front(port: int, app_port: int, folder: Path) -> Iterator[None]:
    """nginx in the foreground with its own config under ``folder``: TLS on ``port`` to ``app_port``."""
    cert, key = self_signed_certificate(folder, HOST)
    server = NGINX_SERVER.format(port=port, host=HOST, cert=cert, key=key, app_port=app_port)
    config = folder / "nginx.conf"
    config.write_text(NGINX_MAIN.format(user=getpass.getuser(), tmp=folder, server=server))
    process = subprocess.Popen(
        [_nginx(), "-c", str(config), "-p", str(folder), "-e", str(folder / "error.log")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(200):
            if process.poll() is not None:
                raise AssertionError("nginx stopped: " + (folder / "error.log").read_text(errors="replace"))
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        else:
            raise AssertionError("nginx did not listen within 10 seconds")
        yield
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def proxied(
    app: App, clock: VirtualClock, smtp_server: RunningServer, tmp_path: Path
) -> Iterator[tuple[App, str]]:
    """The web pages behind nginx, sending to ``smtp_server``: the app (links and origin
    ``https://mailer.example.org:<port>``, 127.0.0.1 trusted as the proxy) and that public base URL."""
    port = _free_port()
    public = f"https://{HOST}:{port}"
    settings = with_smtp(app.settings, smtp_server)
    web = dataclasses.replace(settings.web, base_url=public, trusted_proxies=("127.0.0.1",))
    behind = App(dataclasses.replace(settings, web=web), app.engine, app.factory)
    folder = tmp_path / "nginx"
    folder.mkdir()
    with ThreadedServer(behind, clock=clock) as server, nginx_in_front(port, server.server.port, folder):
        yield behind, public


@pytest.fixture
def proxy_page(proxied: tuple[App, str]) -> Iterator[Any]:
    """Chromium resolving mailer.example.org to 127.0.0.1 and accepting the test's certificate."""
    port = proxied[1].rsplit(":", 1)[1]
    with headless_chromium(f"--host-resolver-rules=MAP {HOST}:{port} 127.0.0.1:{port}") as browser:
        context = browser.new_context(ignore_https_errors=True, locale="en-GB")
        context.set_default_timeout(15000)
        yield context.new_page()


def test_sign_in_queue_a_wave_and_answer_through_the_tls_proxy(
    proxied: tuple[App, str],
    proxy_page: Any,
    accounts: dict[str, str],
    clock: VirtualClock,
    smtp_server: RunningServer,
) -> None:
    behind, public = proxied
    page = proxy_page
    with transaction(behind.factory) as db:
        add_contact(db, "ana@example.org", language="en")
    page.goto(f"{public}/organise/waves/new")
    assert page.url.startswith(f"{public}/login?next=")
    page.fill("input[name=username]", "olga")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{public}/organise/waves/new")
    cookie = next(c for c in page.context.cookies() if c["name"] == "mailer_session")
    assert cookie["secure"] and cookie["httpOnly"] and cookie["domain"] == HOST
    page.select_option("select[name=session]", "africa-2021")
    page.select_option("select[name=step]", "invitation")
    page.click("text=Show recipients")
    page.wait_for_load_state()
    page.click("text=Queue 1 message")
    page.wait_for_load_state()
    assert re.fullmatch(rf"{re.escape(public)}/staff/waves/\d+", page.url)
    with transaction(behind.factory) as db:
        wave = db.scalars(select(Wave)).one()
        assert wave.status == WaveStatus.ACTIVE and wave.created_by == "web:olga"
        assert db.scalar(select(StaffSession.client)) == "127.0.0.1"

    clock.set(INVITATION_AT + timedelta(hours=1))
    run_service(behind, clock)
    (received,) = smtp_server.messages
    html = received.parsed().get_body(("html",)).get_content()  # type: ignore[union-attr]
    links = re.findall(rf'href="({re.escape(public)}/rsvp/[^"]+)"', html)
    assert links, "no RSVP link through the proxy in the invitation"
    with httpx.Client(verify=False, timeout=30) as http:
        url = links[0].replace(f"https://{HOST}:", "https://127.0.0.1:")
        assert http.head(url, headers={"Host": public.split("//")[1]}).status_code == 200
    page.goto(links[0])
    assert "Register for this webinar?" in page.inner_text("main")
    page.click("button[type=submit]")
    page.wait_for_load_state()
    assert page.inner_text("h1") == "You are registered"
    with transaction(behind.factory) as db:
        answer = db.execute(
            select(Contact.email, Registration.status).join(
                Registration, Registration.contact_id == Contact.id
            )
        ).one()
    assert tuple(answer) == ("ana@example.org", RegistrationStatus.REGISTERED)
