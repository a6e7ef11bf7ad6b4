"""No input makes a page fail: every route with hypothesis-made path and query values (huge and negative
numbers, unicode, control characters, empty, overlong; as forms for POST routes) answers below 500, and a CSV
export is complete."""

from __future__ import annotations

import csv
import io
import re
from typing import Any
from urllib.parse import quote, urlencode

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from starlette.routing import Route

from mailer.app import App
from mailer.store.engine import transaction
from mailer.store.models import Message
from mailer.store.outbox import queue_wave
from mailer.timeline.clock import VirtualClock
from mailer.web.app import create_app
from mailer.web.server import ThreadedServer
from mailer.web.staff import CSV_COLUMNS
from tests.factories import add_contact
from tests.test_web_support import INVITATION_AT, csrf_of, signed_in, signing_secret

__all__ = ["signing_secret"]

QUERY_KEYS = (
    "session",
    "step",
    "status",
    "language",
    "region",
    "address",
    "q",
    "wave",
    "page",
    "contact",
    "list",
    "at",
    "next",
    "done",
    "sent",
)
NUMBERS = st.one_of(
    st.integers(min_value=-(10**40), max_value=10**40),
    st.sampled_from([0, 1, -1, 2**31 - 1, 2**31, 2**63, 2**64, 10**20]),
).map(str)
VALUES = st.one_of(
    NUMBERS,
    st.text(max_size=40),
    st.just(""),
    st.text(alphabet="0123456789²³٣൧", min_size=1, max_size=12),
    st.text(min_size=300, max_size=600),
    st.sampled_from(["africa-2021", "invitation", "failed", "ar", "x" * 9000, "a\x00b", "%", "_"]),
)


def _routes(app: App) -> list[tuple[str, str]]:
    """(method, path template) of every route; signing in and out are left to their own tests."""
    return [
        (method, route.path)
        for route in create_app(app).routes
        if isinstance(route, Route)
        for method in sorted(route.methods or ())
        if (method, route.path) not in {("POST", "/login"), ("POST", "/logout")}
    ]


def _check(response: Any, where: str) -> None:
    assert response.status_code < 500, (where, response.status_code, response.text[:300])
    csv_body = response.headers.get("content-type", "").startswith("text/csv")
    if response.status_code == 200 and csv_body and response.request.method == "GET":
        body = response.text
        assert body.startswith("\ufeff") and body.endswith("\r\n"), where
        rows = list(csv.reader(io.StringIO(body[1:])))
        assert rows[0] == list(CSV_COLUMNS) and all(len(row) == len(CSV_COLUMNS) for row in rows), where


def test_no_path_or_query_value_gives_a_server_error(
    app: App, clock: VirtualClock, accounts: dict[str, str]
) -> None:
    with transaction(app.factory) as db:
        add_contact(db, "ana@example.org", language="es")
        series = app.settings.series
        queue_wave(db, app.settings, series.session("africa-2021"), series.step("invitation"), INVITATION_AT)
        assert db.scalar(select(Message.id)) is not None
    routes = _routes(app)
    assert {
        ("GET", "/staff/messages/{pk:int}"),
        ("HEAD", "/staff/log.csv"),
        ("POST", "/u/{token}"),
        ("POST", "/organise/waves/{wave_id:int}/{action}"),
    } <= set(routes)
    with ThreadedServer(app, clock=clock) as server, signed_in(server, "olga") as http:
        token = csrf_of(http.get("/staff/").text)

        @settings(
            max_examples=250,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        @given(
            route=st.sampled_from(routes),
            part=VALUES,
            query=st.dictionaries(st.sampled_from(QUERY_KEYS), VALUES, max_size=4),
        )
        def walk(route: tuple[str, str], part: str, query: dict[str, str]) -> None:
            method, template = route
            path = re.sub(r"\{\w+(:\w+)?\}", quote(part, safe=""), template)
            if method == "POST":  # the values as a form, with the session's CSRF token
                response = http.post(path, data={**query, "csrf_token": token})
            else:
                response = http.request(method, path + ("?" + urlencode(query) if query else ""))
            _check(response, f"{method} {path[:200]} {query!r:.200}")

        walk()
