"""The guard before every web route (mailer/web/auth.py): sign-in and role on staff paths, the CSRF token and the
Origin on every unsafe request, the body limits, exact statuses and texts; on a small app over ASGI."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from mailer.app import App
from mailer.store.engine import transaction
from mailer.store.models import StaffRole
from mailer.timeline.clock import VirtualClock
from mailer.web.auth import MAX_FORM_BYTES, GuardMiddleware, csrf_token, session_token, sign_in
from mailer.web.sessions import SessionPolicy, end_session, start_session
from mailer.web.users import add_user, get_user

NOW = datetime(2021, 7, 1, 12, 0, tzinfo=UTC)
PUBLIC = "https://webinars.example.org"
SIGN_IN_FIRST = "Forbidden: sign in first."
BAD_TOKEN = (
    "Forbidden: the form's security token is missing or out of date. Go back, reload the page and try again."
)


async def _echo(request: Request) -> Response:
    user = request.scope["state"]["user"]
    body = await request.body()
    return PlainTextResponse(f"{user.username if user else '-'} {len(body)} {body[:40].decode('latin-1')}")


async def _whoami(request: Request) -> Response:
    user = request.scope["state"]["user"]
    return PlainTextResponse(f"{user.id} {user.username} {user.email} {user.role} {user.is_organiser}")


async def _csrf(request: Request) -> Response:
    return PlainTextResponse(csrf_token(request.session))


async def _sign_in(request: Request) -> Response:
    sign_in(request.session, request.path_params["token"])
    return PlainTextResponse(request.session["csrf"])


def _site(app: App, clock: VirtualClock) -> Starlette:
    routes = [
        Route("/csrf", _csrf),
        Route("/whoami", _whoami),
        Route("/sign-in/{token}", _sign_in),
        *(
            Route(path, _echo, methods=["GET", "POST", "DELETE"])
            for path in ("/form", "/staff/log", "/organise/waves")
        ),
        Route("/organise/imports/check", _echo, methods=["POST"]),
        Route("/u/{token}", _echo, methods=["POST"]),
    ]
    middleware = [
        Middleware(SessionMiddleware, secret_key="test-only-session-key"),
        Middleware(
            GuardMiddleware, factory=app.factory, clock=clock, policy=SessionPolicy(), public_origin=PUBLIC
        ),
    ]
    return Starlette(routes=routes, middleware=middleware)


def _account(app: App, username: str, role: StaffRole) -> str:
    with transaction(app.factory) as db:
        user = add_user(db, username, "correct horse battery staple", NOW, role=role)
        db.flush()
        return start_session(db, user, NOW)


def _run(app: App, steps: Any) -> Any:
    async def go() -> Any:
        transport = httpx.ASGITransport(app=_site(app, VirtualClock(NOW + timedelta(minutes=5))))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            return await steps(http)

    return asyncio.run(go())


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_anonymous_staff_pages_redirect_to_sign_in_and_unsafe_requests_are_refused(app: App) -> None:
    async def steps(http: httpx.AsyncClient) -> list[tuple[int, str]]:
        got = []
        for method, path in (("GET", "/staff/log?q=a b"), ("GET", "/organise/waves"), ("POST", "/staff/log")):
            response = await http.request(method, path)
            got.append((response.status_code, response.headers.get("location", response.text)))
        return got

    assert _run(app, steps) == [
        (303, "/login?next=%2Fstaff%2Flog%3Fq%3Da%2520b"),
        (303, "/login?next=%2Forganise%2Fwaves"),
        (403, SIGN_IN_FIRST),
    ]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_organiser_pages_need_the_organiser_role(app: App) -> None:
    staff = _account(app, "sam", StaffRole.STAFF)
    organiser = _account(app, "olga", StaffRole.ORGANISER)

    async def steps(http: httpx.AsyncClient) -> list[tuple[int, str]]:
        got = []
        for token in (staff, organiser):
            await http.get(f"/sign-in/{token}")
            for path in ("/staff/log", "/organise/waves"):
                response = await http.get(path)
                got.append((response.status_code, response.text))
        return got

    assert _run(app, steps) == [
        (200, "sam 0 "),
        (403, "Forbidden: organisers only."),
        (200, "olga 0 "),
        (200, "olga 0 "),
    ]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_an_ended_session_signs_the_browser_out(app: App) -> None:
    token = _account(app, "sam", StaffRole.STAFF)

    async def steps(http: httpx.AsyncClient) -> list[int]:
        await http.get(f"/sign-in/{token}")
        first = (await http.get("/staff/log")).status_code
        with transaction(app.factory) as db:
            end_session(db, token)
        second = (await http.get("/staff/log")).status_code
        return [first, second]

    assert _run(app, steps) == [200, 303]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_unsafe_requests_carry_the_sessions_csrf_token_by_field_or_header(app: App) -> None:
    async def steps(http: httpx.AsyncClient) -> list[tuple[int, str]]:
        responses = [await http.post("/form", data={"csrf_token": "x" * 43})]  # no session token yet
        token = (await http.get("/csrf")).text
        responses += [
            await http.post("/form", data={"a": "1"}),
            await http.post("/form", data={"csrf_token": token[:-1] + "_"}),
            await http.post("/form", data={"csrf_token": token, "a": "1"}),
            await http.post("/form", headers={"X-CSRF-Token": token}, content=b"raw"),
            await http.post("/form", data={"csrf_token": token}, files={"f": ("a.csv", b"x,y\n")}),
            await http.post("/form", files={"f": ("a.csv", b"csrf_token")}),
            await http.request("DELETE", "/form", headers={"X-CSRF-Token": "wrong"}),
            await http.post("/u/abc", content=b"List-Unsubscribe=One-Click"),  # the signed link is the token
        ]
        return [(r.status_code, r.text[:10] if r.status_code == 200 else r.text) for r in responses]

    got = _run(app, steps)
    assert [status for status, _ in got] == [403, 403, 403, 200, 200, 200, 403, 403, 200]
    assert got[0][1] == got[1][1] == got[2][1] == got[6][1] == got[7][1] == BAD_TOKEN
    assert got[4][1] == "- 3 raw"
    assert got[8][1] == "- 26 List-"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_foreign_origin_is_refused_even_with_the_token(app: App) -> None:
    async def steps(http: httpx.AsyncClient) -> list[int]:
        token = (await http.get("/csrf")).text
        statuses = []
        for origin in (
            PUBLIC,
            "http://testserver",
            "null",
            "https://evil.example",
            "http://webinars.example.org",
        ):
            response = await http.post("/form", data={"csrf_token": token}, headers={"Origin": origin})
            statuses.append(response.status_code)
        foreign = await http.post(
            "/form", data={"csrf_token": token}, headers={"Origin": "https://evil.example"}
        )
        stale = await http.post("/form", data={"csrf_token": "old"}, headers={"Origin": PUBLIC})
        assert foreign.text == (  # what is wrong is where the form came from, not its token
            f"Forbidden: this form was sent from another site (https://evil.example), not from {PUBLIC}. Open the"
            f" page on {PUBLIC} and send the form from there."
        )
        assert stale.text == (
            "Forbidden: the form's security token is missing or out of date. Go back, reload the page and try again."
        )
        return statuses

    assert _run(app, steps) == [200, 200, 200, 403, 403]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_bodies_over_the_limit_are_refused_and_uploads_have_a_larger_one(app: App) -> None:
    organiser = _account(app, "olga", StaffRole.ORGANISER)

    async def steps(http: httpx.AsyncClient) -> list[tuple[int, str]]:
        headers = {"X-CSRF-Token": (await http.get(f"/sign-in/{organiser}")).text}
        over = b"a" * (MAX_FORM_BYTES + 1)
        responses = [
            await http.post("/form", headers=headers, content=b"a" * MAX_FORM_BYTES),
            await http.post("/form", headers=headers, content=over),
            await http.post("/organise/imports/check", headers=headers, content=over),
        ]
        return [(r.status_code, r.text) for r in responses]

    assert _run(app, steps) == [
        (200, f"olga {MAX_FORM_BYTES} " + "a" * 40),
        (413, "Request too large."),
        (200, f"olga {MAX_FORM_BYTES + 1} " + "a" * 40),
    ]


def test_csrf_tokens_are_made_once_and_renewed_at_sign_in() -> None:
    session: dict[str, Any] = {"csrf": "short"}
    token = csrf_token(session)
    assert len(token) == 43 and session["csrf"] == token and csrf_token(session) == token
    session["csrf"] = 12345
    assert csrf_token(session) != token
    sign_in(session, "server-session")
    assert set(session) == {"sid", "csrf"} and session["sid"] == "server-session"
    assert len(session["csrf"]) == 43 and session["csrf"] != token
    assert session_token(session) == "server-session"
    assert session_token({}) == "" and session_token({"sid": 7}) == ""


FORM = "application/x-www-form-urlencoded"
MULTIPART = "multipart/form-data; boundary=b"


def _part(name: str, value: bytes) -> bytes:
    return b'--b\r\nContent-Disposition: form-data; name="' + name.encode() + b'"\r\n\r\n' + value + b"\r\n"


@pytest.mark.parametrize(
    ("body", "content_type", "token"),
    [
        (b"a=1&csrf_token=tok", FORM, "tok"),
        (b"a=1", FORM, ""),
        (b"csrf_token=&csrf_token=tok", FORM, ""),  # the first value, even blank
        (b"csrf_token=t%C3%A9k&x=\xff", FORM, "t\u00e9k"),  # bytes that are not UTF-8 do not stop the read
        (b"csrf_token=tok", "text/plain", ""),
        (
            _part("a", b"A") + _part("csrf_token", b"tok") + _part("csrf_token", b"second") + b"--b--\r\n",
            MULTIPART,
            "tok",
        ),
        (_part("csrf_token", b"") + _part("a", b"A") + b"--b--\r\n", MULTIPART, ""),
        (_part("csrf_token", b"t\xc3\xa9k") + b"--b--\r\n", MULTIPART, "t\ufffd\ufffdk"),
        (b'name="csrf_token"\r\n\r\ntok\r\n', MULTIPART, "tok"),  # the marker at the very start
        (b'name="csrf_token"\r\nno blank line\r\nafter', MULTIPART, ""),
        (b"csrf_token=tok", MULTIPART, ""),
    ],
)
def test_the_form_token_is_the_first_csrf_field_of_the_body(
    body: bytes, content_type: str, token: str
) -> None:
    from mailer.web.auth import _form_token

    assert _form_token(body, content_type) == token


def _scope(headers: list[tuple[bytes, bytes]], **extra: Any) -> dict[str, Any]:
    return {"type": "http", "headers": headers, **extra}


def test_the_same_origin_is_the_public_one_or_the_one_addressed() -> None:
    from mailer.web.auth import _same_origin

    host = [(b"host", b"Intranet.Example:8080")]
    assert _same_origin(_scope([]), PUBLIC, PUBLIC) is True
    assert _same_origin(_scope(host, scheme="http"), "http://intranet.example:8080", PUBLIC) is True
    assert _same_origin(_scope(host, scheme="https"), "https://intranet.example:8080", PUBLIC) is True
    assert _same_origin(_scope(host, scheme="https"), "http://intranet.example:8080", PUBLIC) is False
    assert _same_origin(_scope(host), "http://intranet.example:8080", PUBLIC) is True  # no scheme: http
    assert _same_origin(_scope([]), "http://xxxx", PUBLIC) is False  # no Host header: no second origin
    assert _same_origin(_scope([]), "http://", PUBLIC) is True


def test_a_request_without_a_query_string_redirects_to_sign_in_with_its_path() -> None:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        sent.append(message)

    async def downstream(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("an anonymous request must not reach the route")

    guard = GuardMiddleware(
        downstream, factory=None, clock=VirtualClock(NOW), policy=SessionPolicy(), public_origin=PUBLIC
    )
    scope = {"type": "http", "path": "/staff/log", "method": "GET", "headers": [], "session": {}}
    asyncio.run(guard(scope, receive, send))
    assert sent[0]["status"] == 303
    assert dict(sent[0]["headers"])[b"location"] == b"/login?next=%2Fstaff%2Flog"


def test_csrf_tokens_of_32_characters_are_kept() -> None:
    session: dict[str, Any] = {"csrf": "k" * 32}
    assert csrf_token(session) == "k" * 32
    session["csrf"] = "k" * 31
    assert len(csrf_token(session)) == 43


def _messages(*messages: dict[str, Any]) -> Any:
    queue = list(messages)

    async def receive() -> dict[str, Any]:
        return queue.pop(0)

    return receive


@pytest.mark.parametrize(
    ("messages", "limit", "body"),
    [
        (
            [
                {"type": "http.request", "body": b"ab", "more_body": True},
                {"type": "http.request", "body": b"cd"},
            ],
            4,
            b"abcd",
        ),
        ([{"type": "http.request", "body": b"ab"}, {"type": "http.request", "body": b"cd"}], 4, b"ab"),
        ([{"type": "http.request"}], 4, b""),
        ([{"type": "http.disconnect"}], 4, b""),
        (
            [
                {"type": "http.request", "body": b"abc", "more_body": True},
                {"type": "http.request", "body": b"def"},
            ],
            5,
            None,
        ),
        ([{"type": "http.request", "body": b"abcdef"}], 5, None),
    ],
)
def test_a_body_is_read_to_its_end_or_refused_past_the_limit(
    messages: list[dict[str, Any]], limit: int, body: bytes | None
) -> None:
    from mailer.web.auth import _read_body

    assert asyncio.run(_read_body(_messages(*messages), limit)) == body


def test_the_read_body_is_given_once_then_the_real_receive() -> None:
    from mailer.web.auth import _replay

    replay = _replay(b"csrf_token=tok", _messages({"type": "http.disconnect"}))

    async def twice() -> list[Any]:
        return [await replay(), await replay()]

    assert asyncio.run(twice()) == [
        {"type": "http.request", "body": b"csrf_token=tok", "more_body": False},
        {"type": "http.disconnect"},
    ]


def test_a_blank_or_missing_session_token_never_matches() -> None:
    headers = [(b"content-type", FORM.encode())]

    def refused(scope: Any, session: dict[str, Any], body: bytes) -> bool:
        return GuardMiddleware._csrf_problem(scope, session, body, PUBLIC) is not None

    assert refused(_scope(headers), {"csrf": "tok"}, b"csrf_token=tok") is False
    assert refused(_scope(headers), {"csrf": ""}, b"csrf_token=") is True
    assert refused(_scope(headers), {"csrf": 7}, b"csrf_token=7") is True
    assert refused(_scope(headers), {}, b"csrf_token=") is True
    # Without a Content-Type the body is no form: no token in it.
    assert refused(_scope([]), {"csrf": "tok"}, b"csrf_token=tok") is True


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_signed_in_account_is_given_to_the_route(app: App) -> None:
    with transaction(app.factory) as db:
        add_user(db, "first", "correct horse battery staple", NOW)
        user = add_user(
            db,
            "olga",
            "correct horse battery staple",
            NOW,
            role=StaffRole.ORGANISER,
            email="olga@example.org",
        )
        db.flush()
        token = start_session(db, user, NOW)
        user_id = user.id

    async def steps(http: httpx.AsyncClient) -> str:
        await http.get(f"/sign-in/{token}")
        return (await http.get("/whoami")).text

    assert user_id == 2
    assert _run(app, steps) == "2 olga olga@example.org organiser True"


def test_other_than_http_passes_through_untouched() -> None:
    seen: list[tuple[Any, Any, Any]] = []

    async def downstream(scope: Any, receive: Any, send: Any) -> None:
        seen.append((scope, receive, send))

    async def receive() -> dict[str, Any]:
        return {"type": "lifespan.startup"}

    async def send(message: Any) -> None:
        pass

    guard = GuardMiddleware(
        downstream, factory=None, clock=VirtualClock(NOW), policy=SessionPolicy(), public_origin=PUBLIC
    )
    scope = {"type": "lifespan"}
    asyncio.run(guard(scope, receive, send))
    assert seen == [(scope, receive, send)]


def test_after_the_checked_body_the_route_hears_the_clients_disconnect() -> None:
    heard: list[Any] = []

    async def downstream(scope: Any, receive: Any, send: Any) -> None:
        heard.extend([await receive(), await receive()])

    async def send(message: Any) -> None:
        pass

    guard = GuardMiddleware(
        downstream, factory=None, clock=VirtualClock(NOW), policy=SessionPolicy(), public_origin=PUBLIC
    )
    scope = {
        "type": "http",
        "path": "/form",
        "method": "POST",
        "headers": [(b"x-csrf-token", b"tok")],
        "session": {"csrf": "tok"},
    }
    receive = _messages(
        {"type": "http.request", "body": b"a=1", "more_body": False}, {"type": "http.disconnect"}
    )
    asyncio.run(guard(scope, receive, send))
    assert heard == [
        {"type": "http.request", "body": b"a=1", "more_body": False},
        {"type": "http.disconnect"},
    ]


def test_an_account_address_that_is_not_one_is_refused_by_the_command_line(app: App) -> None:
    """`users add --email 'carl at example'` used to create the account: the address failed only later, when
    the organiser sent a test to themselves ("not sent: not an email address")."""
    from tests.cli_run import run_cli

    PASSWORD = "correct horse battery staple\n"

    added = run_cli(
        app, "users", "add", "carl", "--email", "carl at example", "--password-stdin", input=PASSWORD
    )
    assert added.exit_code == 1, added.output
    assert "Error: email 'carl at example' is not an email address: " in added.output
    ok = run_cli(
        app, "users", "add", "carl", "--email", " Carl@Example.org ", "--password-stdin", input=PASSWORD
    )
    assert ok.exit_code == 0, ok.output
    changed = run_cli(app, "users", "set", "carl", "--email", "x y")
    assert changed.exit_code == 1 and "Error: email 'x y' is not an email address: " in changed.output
    with transaction(app.factory) as db:
        assert get_user(db, "carl").email == "Carl@example.org"
