"""The JSON API against the real server: every route in /api/v1/openapi.json answers as documented (status
and body schema), tokens and scopes are enforced, the log pages by cursor, and tokens never reach a log."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import timedelta
from typing import Any, get_args

import httpx
import pytest

from mailer.app import App
from mailer.audience.import_log import list_imports
from mailer.service import Service
from mailer.store.engine import transaction
from mailer.store.models import MessageStatus, TokenScope
from mailer.store.tokens import create_token, revoke_token
from mailer.timeline.clock import VirtualClock
from mailer.web.api import ENDPOINTS
from mailer.web.api.models import LogStatus
from mailer.web.server import ThreadedServer
from tests.factories import add_contact, register
from tests.test_web_support import INVITATION_AT, signing_secret

CSV = "Email,Name,Country\nnew.member@parliament.example,New Member,Kenya\nbad-address,Nobody,Kenya\n"
REPORT = "First Name,Last Name,Email,Approval Status\nAmina,Bello,amina.bello@parliament.example,approved\n"


@pytest.fixture
def api_clock() -> VirtualClock:
    return VirtualClock(INVITATION_AT + timedelta(hours=1))


@pytest.fixture
def tokens(app: App, api_clock: VirtualClock) -> dict[str, str]:
    with transaction(app.factory) as db:
        for n in range(5):
            contact = add_contact(db, f"member{n}@parliament.example")
            if n < 2:
                register(db, contact, "africa-2021")
        write = create_token(db, "ci-write", TokenScope.WRITE, api_clock.now())
        read = create_token(db, "ci-read", TokenScope.READ, api_clock.now())
        revoked = create_token(db, "old", TokenScope.WRITE, api_clock.now())
        revoke_token(db, "old", api_clock.now())
    Service(app, api_clock).materialise()  # the invitation wave (5 messages)
    return {"write": write, "read": read, "revoked": revoked}


@pytest.fixture
def api(app: App, api_clock: VirtualClock, tokens: dict[str, str]) -> Iterator[httpx.Client]:
    with (
        ThreadedServer(app, clock=api_clock) as server,
        httpx.Client(base_url=server.url, timeout=30) as http,
    ):
        yield http


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


BODIES: dict[str, dict[str, Any]] = {
    "queue": {"session": "africa-2021", "step": "invitation-2", "at": "2021-06-22T13:00:00+00:00"},
    "save_contact": {
        "email": "Ada.Obi@Parliament.example",
        "region": "africa",
        "name": "Ada Obi",
        "country": "NG",
    },
    "suppress_address": {"email": "member4@parliament.example", "detail": "asked by phone"},
    "import_list": {"filename": "kenya.csv", "content": CSV},
    "import_registration_report": {"filename": "zoom.csv", "content": REPORT},
}
ORDER = ["pause_wave", "resume_wave", "cancel_wave"]  # steer the wave last, cancel at the very end


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    found = [
        (path, method, operation)
        for path, methods in document["paths"].items()
        for method, operation in methods.items()
    ]
    return sorted(
        found,
        key=lambda item: (
            item[2]["operationId"] in ORDER,
            ORDER.index(item[2]["operationId"]) if item[2]["operationId"] in ORDER else 0,
            item[1] != "get",
        ),
    )


def test_every_documented_route_answers_as_documented(api: httpx.Client, tokens: dict[str, str]) -> None:
    document = api.get("/api/v1/openapi.json").json()
    assert document["openapi"] == "3.1.0"
    ops = operations(document)
    assert len(ops) == len(ENDPOINTS) == 15
    models = {spec.operation_id: spec for spec in ENDPOINTS}
    wave_id = api.get("/api/v1/waves", headers=bearer(tokens["read"])).json()["waves"][0]["id"]
    values = {"session_id": "africa-2021", "region": "africa", "wave_id": str(wave_id)}
    for path, method, operation in ops:
        url = path
        for name, value in values.items():
            url = url.replace("{" + name + "}", value)
        name = operation["operationId"]
        body = BODIES.get(name)
        success = next(code for code in operation["responses"] if code.startswith("2"))
        answer = api.request(method, url, headers=bearer(tokens["write"]), json=body)
        assert str(answer.status_code) == success, (name, answer.text)
        schema_ref = operation["responses"][success]["content"]["application/json"]["schema"]["$ref"]
        spec = models[name]
        assert schema_ref == f"#/components/schemas/{spec.response.__name__}"
        spec.response.model_validate(answer.json())  # the body has the documented shape
        assert set(answer.json()) == set(
            document["components"]["schemas"][spec.response.__name__]["properties"]
        )
        anonymous = api.request(method, url, json=body)
        assert anonymous.status_code == 401 and "401" in operation["responses"]
        assert anonymous.headers["www-authenticate"] == 'Bearer realm="mailer"'
        revoked = api.request(method, url, headers=bearer(tokens["revoked"]), json=body)
        assert revoked.json() == {"error": "unknown or revoked token"}
        if operation["x-scope"] == "write":
            refused = api.request(method, url, headers=bearer(tokens["read"]), json=body)
            assert refused.status_code == 403 and "403" in operation["responses"]
        if any(p["in"] == "query" and p["name"] == "limit" for p in operation["parameters"]):
            invalid = api.request(method, url, params={"limit": 0}, headers=bearer(tokens["read"]))
            assert invalid.status_code == 422 and "422" in operation["responses"]
            assert invalid.json()["error"] == "query.limit: Input should be greater than or equal to 1"
        if body is not None:
            broken = api.request(method, url, headers=bearer(tokens["write"]), json={**body, "surprise": 1})
            assert broken.status_code == 422, name
            assert broken.json()["error"] == "body.surprise: Extra inputs are not permitted"
            not_json = api.request(method, url, headers=bearer(tokens["write"]), content=b"{nope")
            assert not_json.status_code == 400 and "400" in operation["responses"]
        if "{session_id}" in path or "{wave_id}" in path or "{region}" in path:
            unknown = url.replace("africa-2021", "mars-2099").replace(f"/{wave_id}/", "/999999/")
            unknown = unknown.replace("/lists/africa/", "/lists/atlantis/")
            missing = api.request(method, unknown, headers=bearer(tokens["write"]), json=body)
            assert missing.status_code == 404 and "404" in operation["responses"], (name, missing.text)


def test_the_organisers_commands_through_the_api(api: httpx.Client, tokens: dict[str, str]) -> None:
    write = bearer(tokens["write"])
    queued = api.post("/api/v1/waves", headers=write, json=BODIES["queue"]).json()
    assert (queued["created"], queued["added"], queued["skipped"]) == (True, 3, 0)  # 5 members, 2 registered
    again = api.post("/api/v1/waves", headers=write, json=BODIES["queue"]).json()
    assert (again["created"], again["added"]) == (False, 0)
    paused = api.post(f"/api/v1/waves/{queued['wave']}/pause", headers=write).json()
    assert paused == {"wave": queued["wave"], "status": "paused", "touched": 3}
    cancelled = api.post(f"/api/v1/waves/{queued['wave']}/cancel", headers=write).json()
    assert cancelled == {"wave": queued["wave"], "status": "cancelled", "touched": 3}
    conflict = api.post(f"/api/v1/waves/{queued['wave']}/resume", headers=write)
    assert conflict.status_code == 409
    assert conflict.json()["error"].startswith(f"wave {queued['wave']} is cancelled and cannot be")
    imported = api.post("/api/v1/lists/africa/import", headers=write, json=BODIES["import_list"]).json()
    assert imported == {
        "rows": 2,
        "created": 1,
        "updated": 0,
        "unchanged": 0,
        "duplicates": 0,
        "rejected": [{"line": 3, "reason": "An email address must have an @-sign."}],
        "replaced": [],
    }
    saved = api.post("/api/v1/contacts", headers=write, json=BODIES["save_contact"]).json()
    assert saved["outcome"] == "created"
    assert {k: saved["contact"][k] for k in ("email", "name", "country", "language", "time_zone")} == {
        "email": "Ada.Obi@parliament.example",
        "name": "Ada Obi",
        "country": "NG",
        "language": "en",
        "time_zone": "Africa/Lagos",
    }
    same = api.post("/api/v1/contacts", headers=write, json=BODIES["save_contact"]).json()
    assert same["outcome"] == "unchanged"
    bad = api.post("/api/v1/contacts", headers=write, json={"email": "x@", "region": "africa"})
    assert (bad.status_code, bad.json()) == (409, {"error": "There must be something after the @-sign."})


def test_the_log_pages_by_cursor_with_the_dashboards_filters(
    api: httpx.Client, tokens: dict[str, str]
) -> None:
    read = bearer(tokens["read"])
    first = api.get("/api/v1/log", params={"limit": 2, "session": "africa-2021"}, headers=read).json()
    ids = [item["id"] for item in first["items"]]
    assert len(ids) == 2 and first["next_cursor"] == ids[-1]
    seen = list(ids)
    cursor = first["next_cursor"]
    while cursor:
        page = api.get("/api/v1/log", params={"limit": 2, "cursor": cursor}, headers=read).json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
    assert len(seen) == 5 and seen == sorted(seen, reverse=True)
    only = api.get("/api/v1/log", params={"address": "member3"}, headers=read).json()
    assert [item["recipient"] for item in only["items"]] == ["member3@parliament.example"]
    assert api.get("/api/v1/log", params={"status": "sent"}, headers=read).json() == {
        "items": [],
        "next_cursor": None,
    }


def test_tokens_never_reach_a_log_line(
    api: httpx.Client, tokens: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    api.get("/api/v1/report", headers=bearer(tokens["read"]))
    api.get("/api/v1/report", headers=bearer(tokens["read"] + "x"))
    logging.getLogger("mailer.test").warning("client sent token=%s", tokens["write"])
    from mailer.logformat import JsonFormatter

    lines = [JsonFormatter().format(record) for record in caplog.records]
    assert not any(tokens["read"] in line or tokens["write"] in line for line in lines)
    assert any("token=***" in line for line in lines)


def test_a_queuing_whose_messages_would_be_skipped_on_arrival_needs_queue_late(
    api: httpx.Client, tokens: dict[str, str]
) -> None:
    """The CLI's rule: a send time whose deadline has passed (a mistyped year) would skip everyone for good."""
    write = bearer(tokens["write"])
    late = {**BODIES["queue"], "at": "2021-05-01T13:00:00+00:00"}
    before = api.get("/api/v1/waves", headers=write).json()["waves"]
    refused = api.post("/api/v1/waves", headers=write, json=late)
    assert refused.status_code == 409
    assert refused.json()["error"] == (
        "3 of the 3 new messages of africa-2021 / invitation-2 would be past the step's deadline"
        " (2021-05-04 13:00 UTC) and skipped for good: nothing was queued. Check the send time and the"
        ' session\'s date; to queue them as skipped anyway, send "queue_late": true'
    )
    assert api.get("/api/v1/waves", headers=write).json()["waves"] == before
    queued = api.post("/api/v1/waves", headers=write, json={**late, "queue_late": True})
    assert queued.status_code == 201
    assert (queued.json()["added"], queued.json()["skipped"]) == (3, 3)


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"wave": "abc"}, "query.wave: String should match pattern '^[0-9]*$'"),
        ({"wave": "-1"}, "query.wave: String should match pattern '^[0-9]*$'"),
        ({"status": "snet"}, "query.status: Input should be "),
    ],
)
def test_a_log_filter_the_api_cannot_apply_is_refused(
    api: httpx.Client, tokens: dict[str, str], params: dict[str, str], error: str
) -> None:
    """A wave that is not a number used to be dropped (the whole log came back as that wave's) and an unknown
    status matched nothing (an empty page, as if no message had it): both are a 422 naming the parameter."""
    answer = api.get("/api/v1/log", params=params, headers=bearer(tokens["read"]))
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"].startswith(error)
    wave_id = api.get("/api/v1/waves", headers=bearer(tokens["read"])).json()["waves"][0]["id"]
    found = api.get(
        "/api/v1/log", params={"wave": str(wave_id), "status": "queued"}, headers=bearer(tokens["read"])
    )
    assert len(found.json()["items"]) == 5
    assert set(get_args(LogStatus)) == {""} | {str(status) for status in MessageStatus}


def test_a_cell_the_import_replaced_is_reported_and_the_import_names_its_token(
    app: App, api: httpx.Client, tokens: dict[str, str]
) -> None:
    """The file import reports every cell it could not use ("language 'Klingon' not recognised; en used"): the
    API said nothing of it, so a client was told "created" while the language it sent was dropped. And its
    imports were recorded with nobody as their author."""
    write = bearer(tokens["write"])
    person = {
        "email": "kai@parliament.example",
        "region": "africa",
        "language": "Klingon",
        "time_zone": "Mars/Base",
    }
    saved = api.post("/api/v1/contacts", headers=write, json=person).json()
    assert saved["outcome"] == "created"
    assert saved["replaced"] == [
        {"line": 2, "column": "language", "value": "Klingon", "used": "en", "problem": "not recognised"},
        {
            "line": 2,
            "column": "time zone",
            "value": "Mars/Base",
            "used": "Africa/Lagos",
            "problem": "not recognised",
        },
    ]
    upload = {
        "filename": "kenya.csv",
        "content": "Email,Country,Language\nwanjiru@parliament.example,Kenya,Elvish\n",
    }
    imported = api.post("/api/v1/lists/africa/import", headers=write, json=upload).json()
    assert imported["replaced"] == [
        {"line": 2, "column": "language", "value": "Elvish", "used": "en", "problem": "not recognised"}
    ]
    assert {view.imported_by for view in list_imports(app.factory)} == {"api:ci-write"}


def test_a_send_time_without_an_offset_is_a_validation_error(
    api: httpx.Client, tokens: dict[str, str]
) -> None:
    """README: 409 is a change the state refuses, 422 a request not valid; a naive time was answered 409."""
    naive = {**BODIES["queue"], "at": "2021-06-22T13:00:00"}
    answer = api.post("/api/v1/waves", headers=bearer(tokens["write"]), json=naive)
    assert (answer.status_code, answer.json()) == (
        422,
        {"error": "at: give an offset, e.g. 2021-06-01T09:00-03:00"},
    )
