"""Registrations pushed by webhook, against the real uvicorn server: signed, forged, replayed and
out-of-order events, Zoom's shape and URL validation, and a late registrant's reminders."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from mailer.app import App
from mailer.store.engine import transaction
from mailer.store.models import (
    Contact,
    DeliveryEvent,
    Message,
    MessageStatus,
    Registration,
    RegistrationStatus,
    WebhookEvent,
)
from mailer.timeline.clock import VirtualClock
from mailer.web.server import ThreadedServer
from mailer.web.signatures import sign, zoom_validation_token
from tests.conftest import RunningServer
from tests.factories import add_contact, register
from tests.test_web_support import run_service, sending_app, signing_secret

SECRET = "generic-webhook-secret-0123456789"
ZOOM_SECRET = "zoom-secret-token-abcdefghij"
WEBINAR = "81234567890"
REMINDER_1D_AT = datetime(2021, 7, 12, 13, 0, tzinfo=UTC)  # africa-2021 starts 13 Jul 13:00 UTC


@pytest.fixture
def hook_clock() -> VirtualClock:
    return VirtualClock(datetime(2021, 6, 20, 12, 0, tzinfo=UTC))


@pytest.fixture
def hook_app(app: App, monkeypatch: pytest.MonkeyPatch) -> App:
    monkeypatch.setenv("MAILER_WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("ZOOM_WEBHOOK_SECRET_TOKEN", ZOOM_SECRET)
    hooks = dataclasses.replace(app.settings.webhooks, zoom_webinars={WEBINAR: "africa-2021"})
    return App(dataclasses.replace(app.settings, webhooks=hooks), app.engine, app.factory)


@pytest.fixture
def hook_web(hook_app: App, hook_clock: VirtualClock) -> Iterator[ThreadedServer]:
    with ThreadedServer(hook_app, clock=hook_clock) as server:
        yield server


def event(event_id: str, kind: str, email: str, at: datetime, **person: str) -> dict[str, Any]:
    return {
        "id": event_id,
        "type": f"registration.{kind}",
        "occurred_at": at.isoformat(),
        "session": "africa-2021",
        "registrant": {"email": email, **person},
    }


def post(
    url: str,
    body: dict[str, Any] | bytes,
    clock: VirtualClock,
    *,
    secret: str = SECRET,
    zoom: bool = False,
    age: timedelta = timedelta(0),
) -> httpx.Response:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    stamp = str(int((clock.now() - age).timestamp()))
    names = (
        ("x-zm-request-timestamp", "x-zm-signature") if zoom else ("X-Mailer-Timestamp", "X-Mailer-Signature")
    )
    headers = {names[0]: stamp, names[1]: sign(secret, stamp, raw), "content-type": "application/json"}
    path = "/hooks/zoom" if zoom else "/hooks/registrations"
    return httpx.post(url + path, content=raw, headers=headers, timeout=30)


def registration(app: App, email: str) -> tuple[str, str] | None:
    with transaction(app.factory) as db:
        row = db.execute(
            select(Registration.status, Registration.source)
            .join(Contact, Contact.id == Registration.contact_id)
            .where(Contact.email_key == email, Registration.session_id == "africa-2021")
        ).first()
    return (row[0], row[1]) if row else None


def test_a_signed_event_registers_an_unknown_person_as_a_new_contact(
    hook_app: App, hook_web: ThreadedServer, hook_clock: VirtualClock
) -> None:
    body = event(
        "evt-1",
        "created",
        "Ama.Mensah@Parliament.example",
        hook_clock.now(),
        first_name="Ama",
        last_name="Mensah",
        country="Ghana",
    )
    response = post(hook_web.url, body, hook_clock)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "outcome": "applied",
        "event_id": "evt-1",
        "session": "africa-2021",
        "status": "registered",
        "new_contact": True,
        "queued": 0,
    }
    assert registration(hook_app, "ama.mensah@parliament.example") == ("registered", "generic:evt-1")
    with transaction(hook_app.factory) as db:
        contact = db.scalars(
            select(Contact).where(Contact.email_key == "ama.mensah@parliament.example")
        ).one()
        assert (contact.name, contact.country, contact.language, contact.time_zone) == (
            "Ama Mensah",
            "GH",
            "en",
            "Africa/Accra",
        )
        assert contact.memberships == []  # as the file import: a contact, not on the region's list


def test_the_same_event_twice_is_a_duplicate_and_changes_nothing(
    hook_app: App, hook_web: ThreadedServer, hook_clock: VirtualClock
) -> None:
    body = event("evt-1", "created", "ama@parliament.example", hook_clock.now())
    assert post(hook_web.url, body, hook_clock).json()["outcome"] == "applied"
    again = post(hook_web.url, body, hook_clock)
    assert again.status_code == 200
    assert again.json() == {"outcome": "duplicate", "event_id": "evt-1"}
    with transaction(hook_app.factory) as db:
        assert len(db.scalars(select(WebhookEvent)).all()) == 1


def test_forged_unsigned_and_replayed_requests_are_refused(
    hook_app: App, hook_web: ThreadedServer, hook_clock: VirtualClock
) -> None:
    body = event("evt-1", "created", "ama@parliament.example", hook_clock.now())
    forged = post(hook_web.url, body, hook_clock, secret="not-the-secret")
    assert (forged.status_code, forged.json()) == (401, {"error": "signature does not match"})
    unsigned = httpx.post(hook_web.url + "/hooks/registrations", json=body)
    assert unsigned.status_code == 401
    assert unsigned.json() == {"error": "missing signature or timestamp header"}
    replayed = post(hook_web.url, body, hook_clock, age=timedelta(minutes=6))
    assert replayed.status_code == 401
    assert "refused as a replay" in replayed.json()["error"]
    raw = json.dumps(body).encode()
    stamp = str(int(hook_clock.now().timestamp()))
    tampered = httpx.post(
        hook_web.url + "/hooks/registrations",
        content=raw.replace(b"ama@", b"eve@"),
        headers={"X-Mailer-Timestamp": stamp, "X-Mailer-Signature": sign(SECRET, stamp, raw)},
    )
    assert tampered.status_code == 401
    assert registration(hook_app, "ama@parliament.example") is None
    assert registration(hook_app, "eve@parliament.example") is None


def test_bad_bodies_get_a_4xx_with_a_json_error_never_a_500(
    hook_web: ThreadedServer, hook_clock: VirtualClock
) -> None:
    now = hook_clock.now()
    cases: list[tuple[dict[str, Any] | bytes, int, str]] = [
        (
            b"{not json",
            400,
            "the body is not JSON: Expecting property name enclosed in double quotes at line 1 column 2",
        ),
        (b"\xff\xfe", 400, "the body is not UTF-8"),
        (b"[1, 2]", 422, "body: expected a JSON object"),
        (
            {**event("e", "created", "a@b.example", now), "type": "registration.exploded"},
            422,
            "type: unknown event 'registration.exploded' (registration.created, .approved, .denied or .cancelled)",
        ),
        (
            {**event("e", "created", "a@b.example", now), "session": "mars-2099"},
            422,
            "no session 'mars-2099'",
        ),
        (event("e", "created", "not-an-address", now), 422, "An email address must have an @-sign."),
        (
            {**event("e", "created", "a@b.example", now), "occurred_at": "yesterday"},
            422,
            "occurred_at: not an ISO 8601 time ('yesterday')",
        ),
        (
            {**event("e", "created", "a@b.example", now), "registrant": {"email": ["x"]}},
            422,
            "registrant.email: expected a string, got list",
        ),
    ]
    for body, status, message in cases:
        response = post(hook_web.url, body, hook_clock)
        assert (response.status_code, response.json()) == (status, {"error": message}), body
    big = post(hook_web.url, b"{" + b" " * 70_000 + b"}", hook_clock)
    assert big.status_code == 413
    assert httpx.get(hook_web.url + "/hooks/registrations").status_code == 405


def test_events_out_of_order_end_in_the_latest_state(
    hook_app: App, hook_web: ThreadedServer, hook_clock: VirtualClock
) -> None:
    registered_at = hook_clock.now() - timedelta(hours=2)
    cancelled_at = hook_clock.now() - timedelta(hours=1)
    cancelled = post(
        hook_web.url, event("evt-2", "cancelled", "kofi@parliament.example", cancelled_at), hook_clock
    )
    assert cancelled.json()["status"] == "declined"
    created = post(
        hook_web.url, event("evt-1", "created", "kofi@parliament.example", registered_at), hook_clock
    )
    assert created.json() == {"outcome": "stale", "event_id": "evt-1"}
    assert registration(hook_app, "kofi@parliament.example") == ("declined", "generic:evt-2")
    approved = post(
        hook_web.url, event("evt-3", "approved", "kofi@parliament.example", hook_clock.now()), hook_clock
    )
    assert approved.json()["status"] == "registered"
    assert registration(hook_app, "kofi@parliament.example") == ("registered", "generic:evt-3")


def zoom_body(event_name: str, email: str, at: datetime, status: str = "approved") -> dict[str, Any]:
    return {
        "event": event_name,
        "event_ts": int(at.timestamp() * 1000),
        "payload": {
            "account_id": "acct",
            "object": {
                "id": int(WEBINAR),
                "topic": "Budapest Convention webinar (Africa)",
                "registrant": {
                    "id": "reg-42",
                    "email": email,
                    "first_name": "Nadia",
                    "last_name": "Haddad",
                    "org": "Parliament of Tunisia",
                    "country": "TN",
                    "status": status,
                },
            },
        },
    }


def test_zoom_url_validation_answers_only_a_signed_challenge(
    hook_web: ThreadedServer, hook_clock: VirtualClock
) -> None:
    body = {
        "event": "endpoint.url_validation",
        "payload": {"plainToken": "qgg8vlvZRS6UYooatFL8Aw"},
        "event_ts": 1654503849680,
    }
    answer = post(hook_web.url, body, hook_clock, secret=ZOOM_SECRET, zoom=True)
    assert answer.status_code == 200
    assert answer.json() == {
        "plainToken": "qgg8vlvZRS6UYooatFL8Aw",
        "encryptedToken": zoom_validation_token(ZOOM_SECRET, "qgg8vlvZRS6UYooatFL8Aw"),
    }
    assert len(answer.json()["encryptedToken"]) == 64
    unsigned = httpx.post(hook_web.url + "/hooks/zoom", json=body)
    assert unsigned.status_code == 401


def test_zoom_registration_events_register_then_cancel(
    hook_app: App, hook_web: ThreadedServer, hook_clock: VirtualClock
) -> None:
    now = hook_clock.now()
    email = "nadia.haddad@parliament.example"

    def zoom_post(body: dict[str, Any]) -> httpx.Response:
        return post(hook_web.url, body, hook_clock, secret=ZOOM_SECRET, zoom=True)

    pending = zoom_post(
        zoom_body("webinar.registration_created", email, now - timedelta(minutes=3), status="pending")
    )
    assert pending.json()["outcome"] == "ignored"
    assert registration(hook_app, email) is None
    approved = zoom_post(zoom_body("webinar.registration_approved", email, now - timedelta(minutes=2)))
    assert approved.status_code == 200, approved.text
    event_id = f"webinar.registration_approved:{WEBINAR}:reg-42:{int((now - timedelta(minutes=2)).timestamp() * 1000)}"
    assert approved.json()["event_id"] == event_id
    assert registration(hook_app, email) == ("registered", f"zoom:{event_id}")
    retried = zoom_post(zoom_body("webinar.registration_approved", email, now - timedelta(minutes=2)))
    assert retried.json()["outcome"] == "duplicate"
    cancelled = zoom_post(zoom_body("webinar.registration_cancelled", email, now - timedelta(minutes=1)))
    assert cancelled.json()["status"] == "declined"
    assert registration(hook_app, email)[0] == "declined"  # type: ignore[index]
    other = zoom_body("webinar.registration_created", email, now)
    other["payload"]["object"]["id"] = 99
    unknown = zoom_post(other)
    assert unknown.json() == {"error": "payload.object.id: webinar 99 is not in [webhooks.zoom_webinars]"}
    assert unknown.status_code == 422
    meeting = zoom_post({"event": "meeting.started", "payload": {}})
    assert meeting.status_code == 422


def test_an_endpoint_without_its_secret_is_off(
    app: App, hook_clock: VirtualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MAILER_WEBHOOK_SECRET", raising=False)
    with ThreadedServer(app, clock=hook_clock) as server:
        response = post(server.url, event("e", "created", "a@b.example", hook_clock.now()), hook_clock)
    assert response.status_code == 404
    assert response.json() == {
        "error": "this endpoint is off: set $MAILER_WEBHOOK_SECRET in the service's environment (generic)"
    }


def test_a_late_registrant_gets_the_latest_reminder_that_is_due_and_no_earlier_one(
    hook_app: App, hook_clock: VirtualClock, smtp_server: RunningServer
) -> None:
    """Registered 4 hours after the one-day reminder went out: that reminder still goes (its deadline is
    12 h later), the one-week reminder (superseded) does not; a cancellation before sending stops it."""
    with transaction(hook_app.factory) as db:
        early = add_contact(db, "early@parliament.example")
        register(db, early, "africa-2021")
    base = "http://127.0.0.1:9"
    sending = sending_app(hook_app, smtp_server, base)
    for moment in (datetime(2021, 7, 6, 13, 0, tzinfo=UTC), REMINDER_1D_AT):
        hook_clock.set(moment)
        run_service(sending, hook_clock)
    assert len(smtp_server.messages) == 2  # early: reminder-1w and reminder-1d
    hook_clock.set(REMINDER_1D_AT + timedelta(hours=4))
    with ThreadedServer(sending, clock=hook_clock) as server:
        late = post(
            server.url, event("evt-late", "created", "late@parliament.example", hook_clock.now()), hook_clock
        )
        assert late.json()["queued"] == 1
        doubtful = post(
            server.url, event("evt-d1", "created", "doubt@parliament.example", hook_clock.now()), hook_clock
        )
        assert doubtful.json()["queued"] == 1
        hook_clock.advance(timedelta(minutes=1))
        gone = post(
            server.url, event("evt-d2", "cancelled", "doubt@parliament.example", hook_clock.now()), hook_clock
        )
        assert gone.json()["status"] == "declined"
    with transaction(hook_app.factory) as db:
        rows = db.execute(
            select(Message.recipient, Message.step, Message.status)
            .where(Message.recipient.in_(["late@parliament.example", "doubt@parliament.example"]))
            .order_by(Message.recipient, Message.step)
        ).all()
    assert [tuple(row) for row in rows] == [
        ("doubt@parliament.example", "reminder-1d", MessageStatus.QUEUED),
        ("late@parliament.example", "reminder-1d", MessageStatus.QUEUED),
    ]
    run_service(sending, hook_clock)
    sent = [m for m in smtp_server.messages[2:]]
    assert [m.rcpt_tos for m in sent] == [["late@parliament.example"]]
    with transaction(hook_app.factory) as db:
        statuses = dict(
            db.execute(select(Message.recipient, Message.status).where(Message.step == "reminder-1d")).all()
        )
        reason = db.scalars(
            select(DeliveryEvent.detail)
            .join(Message, Message.id == DeliveryEvent.message_pk)
            .where(Message.recipient == "doubt@parliament.example")
            .order_by(DeliveryEvent.id.desc())
        ).first()
    assert statuses == {
        "early@parliament.example": MessageStatus.SENT,
        "late@parliament.example": MessageStatus.SENT,
        "doubt@parliament.example": MessageStatus.SKIPPED,
    }
    assert registration(hook_app, "late@parliament.example") == ("registered", "generic:evt-late")
    assert reason == "not registered"  # the send-time check saw the cancellation


def test_registration_after_the_last_reminder_deadline_queues_nothing(
    hook_app: App, hook_clock: VirtualClock
) -> None:
    hook_clock.set(REMINDER_1D_AT + timedelta(hours=13))  # past reminder-1d's deadline, before reminder-1h
    with ThreadedServer(hook_app, clock=hook_clock) as server:
        late = post(
            server.url, event("evt-x", "created", "x@parliament.example", hook_clock.now()), hook_clock
        )
    assert late.json()["status"] == "registered"
    assert late.json()["queued"] == 0
