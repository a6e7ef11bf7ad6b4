"""The web side under attack and behind the documented proxy: only POST acts, the origin check uses the public
origin, sessions end when they should, throttling cannot lock staff out, ids of any size answer 4xx, and
the SQLite store is private to its owner."""

from __future__ import annotations

import dataclasses
import os
import stat
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from sqlalchemy import select

from mailer.app import App, open_app
from mailer.compose.links import rsvp_url, unsubscribe_url
from mailer.config import load_settings
from mailer.store.engine import transaction
from mailer.store.models import Base, Contact, Message, StaffRole, StaffSession, Wave
from mailer.store.outbox import queue_wave
from mailer.timeline.clock import VirtualClock
from mailer.web.app import create_app
from mailer.web.proxy import forwarded_client, networks, public_origin
from mailer.web.server import ThreadedServer
from mailer.web.throttle import LoginThrottle
from mailer.web.users import change_user, remove_user, set_password
from tests.conftest import ROOT
from tests.factories import add_contact
from tests.test_web_support import INVITATION_AT, PASSWORD, client, csrf_of, signed_in, signing_secret

__all__ = ["signing_secret"]

ALL_METHODS = ("GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE")
VOLATILE = {"staff_sessions", "staff_users"}  # sign-in writes these; no page may change anything else


def _store(app: App) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table but the sign-in ones, to compare before and after."""
    with app.engine.connect() as connection:
        return {
            table.name: sorted(map(tuple, connection.execute(select(table)).all()), key=repr)
            for table in Base.metadata.sorted_tables
            if table.name not in VOLATILE
        }


def _path(url: str) -> str:
    return "/" + url.split("://", 1)[1].split("/", 1)[1]


@pytest.fixture
def queued(app: App) -> dict[str, int]:
    """One contact with an invitation queued: its message and wave ids."""
    with transaction(app.factory) as db:
        add_contact(db, "ana@example.org", language="en")
        series = app.settings.series
        queue_wave(db, app.settings, series.session("africa-2021"), series.step("invitation"), INVITATION_AT)
        pk = db.scalar(select(Message.id))
        wave = db.scalar(select(Wave.id))
    assert pk is not None and wave is not None
    return {"pk": pk, "wave": wave}


def _concrete_paths(app: App, ids: dict[str, int]) -> list[tuple[str, frozenset[str]]]:
    """Every route of the app with real values in its path, and the methods it declares."""
    settings = app.settings
    tokens = {
        "/u/{token}": [_path(unsubscribe_url(settings, ids["pk"], "ana@example.org"))],
        "/rsvp/{token}": [
            _path(rsvp_url(settings, ids["pk"], answer, "ana@example.org")) for answer in ("yes", "no")
        ],
    }
    found: list[tuple[str, frozenset[str]]] = []
    for route in create_app(app).routes:
        path = getattr(route, "path", "")
        if path in tokens:
            found.extend((p, frozenset(route.methods or ())) for p in tokens[path])  # type: ignore[attr-defined]
        elif path and path != "/static" and hasattr(route, "methods"):
            concrete = (
                path.replace("{pk:int}", str(ids["pk"]))
                .replace("{wave_id:int}", str(ids["wave"]))
                .replace("{action}", "pause")
            )
            if path in ("/organise/preview", "/organise/preview/html", "/organise/waves/new"):
                concrete += "?session=africa-2021&step=invitation"
            found.append((concrete, frozenset(route.methods or ())))
    return found


def test_no_method_but_post_changes_anything_on_any_route(
    app: App, web: ThreadedServer, accounts: dict[str, str], queued: dict[str, int]
) -> None:
    routes = _concrete_paths(app, queued)
    assert len(routes) >= 22 and sum(path.startswith(("/u/", "/rsvp/")) for path, _ in routes) == 3
    before = _store(app)
    for signed in (False, True):
        with signed_in(web, "olga") if signed else client(web) as session:
            for path, _ in routes:
                for method in ALL_METHODS:
                    if method == "POST" and path.startswith(("/u/", "/rsvp/")):
                        continue  # the one acting method (tested in test_web_pages)
                    if path == "/logout" and method == "POST":
                        continue
                    response = session.request(method, path)
                    assert response.status_code < 500, (method, path, response.status_code)
                    assert _store(app) == before, (method, path)
    with client(web) as http:
        unsubscribe = _path(unsubscribe_url(app.settings, queued["pk"], "ana@example.org"))
        head = http.head(unsubscribe)
        assert head.status_code == 200 and head.headers["referrer-policy"] == "no-referrer"
        assert head.headers["cache-control"] == "no-store"
        one_click = http.post(
            unsubscribe,
            content=b"List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert one_click.status_code == 200
    with transaction(app.factory) as db:
        assert db.scalar(select(Contact.status)) == "unsubscribed"


def test_every_page_sends_the_security_headers(
    app: App, web: ThreadedServer, accounts: dict[str, str], queued: dict[str, int]
) -> None:
    with signed_in(web, "olga") as http:
        for path, methods in _concrete_paths(app, queued):
            if "GET" not in methods:
                continue
            response = http.get(path)
            headers = response.headers
            csp = headers["content-security-policy"]
            assert headers["x-content-type-options"] == "nosniff", path
            assert headers["referrer-policy"] == "no-referrer", path
            assert headers["cache-control"] == "no-store", path
            if path.split("?")[0].endswith(
                "/html"
            ):  # the message frame: shown by our own pages only, sandboxed
                assert "frame-ancestors 'self'" in csp and "sandbox" in csp, path
            else:
                assert "frame-ancestors 'none'" in csp and "script-src 'none'" in csp, path


def _with_web(app: App, **web: Any) -> App:
    settings = dataclasses.replace(app.settings, web=dataclasses.replace(app.settings.web, **web))
    return App(settings, app.engine, app.factory)


def test_sign_in_with_the_public_https_origin_of_the_base_url(
    app: App, clock: VirtualClock, accounts: dict[str, str]
) -> None:
    with (
        ThreadedServer(_with_web(app, base_url="https://mailer.example.org"), clock=clock) as server,
        client(server) as http,
    ):
        token = csrf_of(http.get("/login").text)
        cookie = f"mailer_session={http.cookies['mailer_session']}"  # Secure: the proxy's https carries it
        form = {"username": "olga", "password": PASSWORD, "csrf_token": token}
        evil = http.post("/login", data=form, headers={"Origin": "https://evil.example", "Cookie": cookie})
        assert evil.status_code == 403
        signed = http.post(
            "/login", data=form, headers={"Origin": "https://mailer.example.org", "Cookie": cookie}
        )
        assert signed.status_code == 303 and signed.headers["location"] == "/staff/"


def test_public_origin_and_forwarded_client() -> None:
    assert public_origin("https://Mailer.Example.org/") == "https://mailer.example.org"
    assert public_origin("https://mailer.example.org:443/x") == "https://mailer.example.org"
    assert public_origin("http://127.0.0.1:8080") == "http://127.0.0.1:8080"
    trusted = networks(["127.0.0.1", "10.0.0.0/8"])
    chain = "198.51.100.9, 203.0.113.5, 10.1.2.3"
    assert forwarded_client("127.0.0.1", chain, trusted) == "203.0.113.5"
    assert forwarded_client("192.0.2.1", chain, trusted) == "192.0.2.1"  # not a proxy: its claims ignored
    assert forwarded_client("127.0.0.1", "", trusted) == "127.0.0.1"
    with pytest.raises(ValueError, match=r"not an IP address or network: 'proxy\.example'"):
        networks(["proxy.example"])


def _cookie_of(http: httpx.Client) -> dict[str, str]:
    return {"mailer_session": http.cookies["mailer_session"]}


def _opens(web: ThreadedServer, cookies: dict[str, str], path: str = "/organise/sessions") -> int:
    with httpx.Client(base_url=web.url, cookies=cookies, follow_redirects=False, timeout=30) as other:
        return other.get(path).status_code


def test_signing_out_ends_the_session_for_a_saved_cookie(
    app: App, web: ThreadedServer, accounts: dict[str, str]
) -> None:
    with signed_in(web, "olga") as http:
        saved = _cookie_of(http)
        assert _opens(web, saved) == 200
        token = csrf_of(http.get("/staff/").text)
        assert http.post("/logout", data={"csrf_token": token}).status_code == 303
    assert _opens(web, saved) == 303
    with transaction(app.factory) as db:
        assert db.scalar(select(StaffSession.id)) is None


@pytest.mark.parametrize("change", ["password", "role", "disabled", "removed"])
def test_account_changes_end_its_sessions(
    app: App, web: ThreadedServer, accounts: dict[str, str], change: str
) -> None:
    with signed_in(web, "olga") as http, signed_in(web, "sam") as other:
        saved = _cookie_of(http)
        with transaction(app.factory) as db:
            if change == "password":
                set_password(db, "olga", "another long password")
            elif change == "role":
                change_user(db, "olga", role=StaffRole.STAFF)
            elif change == "disabled":
                change_user(db, "olga", active=False)
            else:
                remove_user(db, "olga")
        assert _opens(web, saved, "/staff/log") == 303
        assert other.get("/staff/log").status_code == 200  # another account's session is untouched


def test_sessions_end_when_idle_and_after_the_longest_time(
    app: App, web: ThreadedServer, accounts: dict[str, str], clock: VirtualClock
) -> None:
    with signed_in(web, "olga") as http:
        clock.advance(timedelta(hours=1, minutes=59))
        assert http.get("/staff/log").status_code == 200
        clock.advance(timedelta(hours=2, minutes=1))
        assert http.get("/staff/log").status_code == 303
    with signed_in(web, "olga") as http:
        for _ in range(11):
            clock.advance(timedelta(hours=1))
            assert http.get("/staff/log").status_code == 200
        clock.advance(timedelta(hours=1, minutes=1))
        assert http.get("/staff/log").status_code == 303


def test_users_sessions_lists_and_ends_them(app: App, web: ThreadedServer, accounts: dict[str, str]) -> None:
    from mailer.cli import cli

    base = [
        "--config",
        str(ROOT / "config"),
        "--database-url",
        app.settings.database_url,
        "users",
        "sessions",
    ]
    runner = CliRunner()
    with signed_in(web, "olga") as olga, signed_in(web, "sam") as sam:
        listed = runner.invoke(cli, base, env={"COLUMNS": "200"})
        assert listed.exit_code == 0, listed.output
        assert "olga" in listed.output and "sam" in listed.output and "127.0.0.1" in listed.output
        with transaction(app.factory) as db:
            olga_ref = db.scalar(
                select(StaffSession.id)
                .join_from(StaffSession, Base.metadata.tables["staff_users"])
                .where(Base.metadata.tables["staff_users"].c.username == "olga")
            )
        assert olga_ref is not None
        ended = runner.invoke(cli, [*base, "--end", olga_ref[:12]])
        assert ended.exit_code == 0 and f"session {olga_ref[:12]} ended" in ended.output
        assert olga.get("/staff/log").status_code == 303
        assert sam.get("/staff/log").status_code == 200
        every = runner.invoke(cli, [*base, "sam", "--end-all"])
        assert every.exit_code == 0 and "1 session(s) ended" in every.output
        assert sam.get("/staff/log").status_code == 303
        assert "No open sessions." in runner.invoke(cli, base).output


def _login(http: httpx.Client, username: str, password: str, **headers: str) -> httpx.Response:
    token = csrf_of(http.get("/login").text)
    form = {"username": username, "password": password, "csrf_token": token}
    return http.post("/login", data=form, headers=headers)


def test_wrong_passwords_for_one_account_do_not_keep_out_another(
    app: App, web: ThreadedServer, accounts: dict[str, str]
) -> None:
    with client(web) as http:
        for _ in range(5):
            assert _login(http, "sam", "wrong password").status_code == 401
        assert _login(http, "sam", PASSWORD).status_code == 429
    with client(web) as http:
        assert _login(http, "olga", PASSWORD).status_code == 303


def test_behind_a_trusted_proxy_each_client_is_throttled_on_its_own(
    app: App, clock: VirtualClock, accounts: dict[str, str]
) -> None:
    proxied = _with_web(app, trusted_proxies=("127.0.0.1",))
    with ThreadedServer(proxied, clock=clock) as server:
        with client(server) as attacker:
            for _ in range(5):
                wrong = _login(attacker, "olga", "wrong", **{"X-Forwarded-For": "203.0.113.5"})
                assert wrong.status_code == 401
            refused = _login(attacker, "olga", PASSWORD, **{"X-Forwarded-For": "203.0.113.5"})
            assert refused.status_code == 429 and refused.headers["retry-after"] == "2"
        with client(server) as owner:
            assert _login(owner, "olga", PASSWORD, **{"X-Forwarded-For": "198.51.100.7"}).status_code == 303
        with transaction(app.factory) as db:
            assert db.scalar(select(StaffSession.client)) == "198.51.100.7"


def test_throttle_delays_grow_and_never_keep_an_account_out_long() -> None:
    now = [1000.0]
    throttle = LoginThrottle(clock=lambda: now[0])
    for _ in range(4):
        throttle.failed("olga", "203.0.113.5")
    assert throttle.wait("olga", "203.0.113.5") == 0.0
    waits = []
    for _ in range(4):
        throttle.failed("olga", "203.0.113.5")
        waits.append(throttle.wait("olga", "203.0.113.5"))
    assert waits == [2.0, 4.0, 8.0, 16.0]
    assert throttle.wait("sam", "203.0.113.5") == 0.0  # another account from the same place
    for attempt in range(20):  # many places guessing at one account: its owner waits a minute at most
        throttle.failed("olga", f"192.0.2.{attempt}")
    assert throttle.wait("olga", "198.51.100.7") == 60.0
    now[0] += 901  # failures are forgotten after the window
    assert throttle.wait("olga", "203.0.113.5") == 0.0


HUGE = "99999999999999999999"


@pytest.mark.parametrize(
    "path",
    [
        f"/staff/messages/{HUGE}",
        f"/staff/messages/{HUGE}/html",
        f"/staff/waves/{HUGE}",
        "/staff/messages/2147483648",
        "/staff/messages/0",
    ],
)
def test_ids_beyond_any_row_answer_404(
    app: App, web: ThreadedServer, accounts: dict[str, str], path: str
) -> None:
    with signed_in(web, "olga") as http:
        assert http.get(path).status_code == 404
        token = csrf_of(http.get("/staff/").text)
        assert http.post(f"/staff/messages/{HUGE}/resend", data={"csrf_token": token}).status_code == 404
        assert http.post(f"/organise/waves/{HUGE}/pause", data={"csrf_token": token}).status_code == 404


def test_a_huge_wave_filter_lists_nothing_and_the_csv_is_complete(
    app: App, web: ThreadedServer, accounts: dict[str, str], queued: dict[str, int]
) -> None:
    with signed_in(web, "sam") as http:
        page = http.get("/staff/log", params={"wave": HUGE})
        assert page.status_code == 200 and "0 messages" in page.text
        exported = http.get("/staff/log.csv", params={"wave": HUGE})
        assert exported.status_code == 200
        assert exported.text == "\ufeff" + ",".join(_csv_columns()) + "\r\n"
        assert http.get("/staff/log", params={"page": "²"}).status_code == 200
        assert http.get("/staff/log", params={"q": "a\x00b"}).status_code == 400


def _csv_columns() -> tuple[str, ...]:
    from mailer.web.staff import CSV_COLUMNS

    return CSV_COLUMNS


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_the_sqlite_store_and_its_journal_files_are_private(tmp_path: Path, umask_022: None) -> None:
    path = tmp_path / "var" / "mailer.db"
    settings = load_settings(ROOT / "config", database_url=f"sqlite:///{path}")
    opened = open_app(settings)
    try:
        with transaction(opened.factory) as db:
            add_contact(db, "ana@example.org")
        files = {p.name: stat.S_IMODE(p.stat().st_mode) for p in path.parent.iterdir()}
    finally:
        opened.close()
    assert files == {"mailer.db": 0o600, "mailer.db-wal": 0o600, "mailer.db-shm": 0o600}
    path.chmod(0o644)  # made by an older version: tightened on the next start
    open_app(settings).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_an_in_memory_store_leaves_no_file_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    """`sqlite://` (SQLAlchemy's own in-memory URL) used to leave an empty file named "sqlite:" in the current
    folder: the file's path was read as what follows "sqlite:///", and that URL has none."""
    from mailer.store.engine import make_engine

    monkeypatch.chdir(tmp_path)
    engine = make_engine(url)
    with engine.connect() as connection:
        connection.exec_driver_sql("SELECT 1")
    engine.dispose()
    assert list(tmp_path.iterdir()) == []
