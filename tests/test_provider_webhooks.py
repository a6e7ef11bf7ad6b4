"""Bounces, complaints and deliveries posted by SES (through SNS), SendGrid, Postmark and Mailgun to
/webhooks/<provider> over HTTP (httpx against the real uvicorn server): good, forged, replayed, duplicated,
out of order and unknown-message posts for each provider, the SNS handshake, and the provider's id recorded
from the relay's 250 reply at send time."""

from __future__ import annotations

import dataclasses
import html
import logging
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from sqlalchemy import func, select

from mailer.app import App
from mailer.config import ProviderWebhook, ProviderWebhooks
from mailer.store.engine import transaction
from mailer.store.models import (
    BounceReport,
    Contact,
    DeliveryEvent,
    EventKind,
    Message,
    MessageStatus,
    Suppression,
)
from mailer.store.outbox import queue_wave
from mailer.timeline.clock import VirtualClock
from mailer.web.server import ThreadedServer
from tests import provider_posts as posts
from tests.factories import add_contact, logged
from tests.test_web_support import INVITATION_AT, client, signed_in, signing_secret

__all__ = ["signing_secret"]

NOW = INVITATION_AT + timedelta(hours=1)  # the clock fixture's time
MAILGUN_KEY = "key-3ax6xnjp29jd6fds4gc373sgvjxteol0"
POSTMARK_PASSWORD = "correct horse battery staple, webhook edition"
PROVIDERS = ["ses", "sendgrid", "postmark", "mailgun"]


@pytest.fixture(scope="module")
def senders() -> dict[str, Any]:
    """One poster per provider, with keys made here, and the SNS certificate the fetcher serves."""
    sns_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return {
        "ses": posts.Ses(sns_key, forger),
        "sendgrid": posts.SendGrid(
            ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
        ),
        "postmark": posts.Postmark(POSTMARK_PASSWORD),
        "mailgun": posts.Mailgun(MAILGUN_KEY),
        "certificate": posts.sns_certificate(sns_key),
    }


@pytest.fixture
def fetcher(senders: dict[str, Any]) -> posts.Fetcher:
    return posts.Fetcher(
        {posts.CERT_URL: senders["certificate"], posts.SUBSCRIBE_URL: b"<ConfirmSubscriptionResponse/>"}
    )


@pytest.fixture
def hooked(app: App, senders: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> App:
    """``app`` with the four providers' webhooks enabled, their secrets in the environment."""
    monkeypatch.setenv("TEST_SENDGRID_KEY", senders["sendgrid"].verification_key())
    monkeypatch.setenv("TEST_POSTMARK_PASSWORD", POSTMARK_PASSWORD)
    monkeypatch.setenv("TEST_MAILGUN_KEY", MAILGUN_KEY)
    webhooks = ProviderWebhooks(
        (
            ProviderWebhook("ses", max_age=posts.AGES["ses"], topic_arns=(posts.TOPIC,)),
            ProviderWebhook("sendgrid", "TEST_SENDGRID_KEY", posts.AGES["sendgrid"]),
            ProviderWebhook(
                "postmark", "TEST_POSTMARK_PASSWORD", posts.AGES["postmark"], username=posts.POSTMARK_USER
            ),
            ProviderWebhook("mailgun", "TEST_MAILGUN_KEY", posts.AGES["mailgun"]),
        )
    )
    bounces = dataclasses.replace(app.settings.bounces, webhooks=webhooks)
    return App(dataclasses.replace(app.settings, bounces=bounces), app.engine, app.factory)


@pytest.fixture
def web(hooked: App, clock: VirtualClock, fetcher: posts.Fetcher) -> Iterator[ThreadedServer]:
    with ThreadedServer(hooked, clock=clock, fetch=fetcher) as server:
        yield server


def _sent(app: App, *emails: str) -> dict[str, posts.Ids]:
    """Each of ``emails`` a contact with a sent invitation; their Message-IDs and provider ids."""
    series = app.settings.series
    with transaction(app.factory) as db:
        for email in emails:
            add_contact(db, email)
        add_contact(db, "never.mailed@example.org", region="europe")
    with transaction(app.factory) as db:
        queue_wave(db, app.settings, series.session("africa-2021"), series.step("invitation"), INVITATION_AT)
        found: dict[str, posts.Ids] = {}
        for number, message in enumerate(db.scalars(select(Message).order_by(Message.id)), start=1):
            message.status, message.sent_at = MessageStatus.SENT, INVITATION_AT
            message.provider_id = f"0100017a{number:08x}-5e6f7a8b-9c0d-1e2f-3a4b-5c6d7e8f9a0b-000000"
            found[message.recipient] = posts.Ids(message.message_id, message.provider_id)
    return found


def _state(app: App, email: str) -> tuple[str, str | None, str]:
    """(the message's status, the suppression reason or None, the contact's status)."""
    with transaction(app.factory) as db:
        message = db.scalar(select(Message).where(Message.recipient == email))
        suppression = db.get(Suppression, email)
        contact = db.scalar(select(Contact).where(Contact.email_key == email))
        assert message is not None and contact is not None
        return message.status, suppression.reason if suppression else None, contact.status


def _reports(app: App) -> list[tuple[str, str, str | None]]:
    """(kind, matched_by, contact email) of every recorded report, oldest first."""
    with transaction(app.factory) as db:
        rows = db.scalars(select(BounceReport).order_by(BounceReport.id)).all()
        emails = {c.id: c.email for c in db.scalars(select(Contact))}
        return [(row.kind, row.matched_by, emails.get(row.contact_id or 0)) for row in rows]


def _events(app: App, email: str) -> list[str]:
    return logged(app, DeliveryEvent.kind, email)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_bounce_and_a_complaint_suppress_the_contact_mailed_and_a_delivery_is_logged(
    hooked: App, web: ThreadedServer, senders: dict[str, Any], provider: str
) -> None:
    sent = _sent(hooked, "gone@example.org", "annoyed@example.org", "fine@example.org")
    poster = senders[provider]
    ids = {email: posts.ids_for(provider, i.message_id, i.provider_id) for email, i in sent.items()}
    at = NOW - timedelta(minutes=2)
    with client(web) as http:
        answer = poster.bounce(http, "gone@example.org", ids=ids["gone@example.org"], event_id="101", at=at)
        assert (answer.status_code, answer.text) == (200, "ok: hard 1")
        answer = poster.complaint(
            http, "annoyed@example.org", ids=ids["annoyed@example.org"], event_id="102", at=at
        )
        assert (answer.status_code, answer.text) == (200, "ok: complaint 1")
        answer = poster.delivered(
            http, "fine@example.org", ids=ids["fine@example.org"], event_id="103", at=at
        )
        assert (answer.status_code, answer.text) == (200, "ok: delivered 1")
    assert _state(hooked, "gone@example.org") == ("bounced", "hard-bounce", "bounced")
    assert _state(hooked, "annoyed@example.org") == ("sent", "complaint", "unsubscribed")
    assert _state(hooked, "fine@example.org") == ("sent", None, "active")
    assert _events(hooked, "gone@example.org")[-1] == EventKind.BOUNCED
    assert _events(hooked, "annoyed@example.org")[-1] == EventKind.REPORTED
    assert _events(hooked, "fine@example.org")[-1] == EventKind.DELIVERED
    matched = "message-id" if provider in ("ses", "sendgrid", "mailgun") else "provider-id"
    assert _reports(hooked) == [
        ("hard", matched, "gone@example.org"),
        ("complaint", matched, "annoyed@example.org"),
        ("delivered", matched, "fine@example.org"),
    ]
    with transaction(hooked.factory) as db:
        message = db.scalar(select(Message).where(Message.recipient == "gone@example.org"))
        assert message is not None and message.reply_code == 550
        assert "5.1.1" in message.reply_text and "user unknown" in message.reply_text
        row = db.scalar(select(BounceReport).where(BounceReport.kind == "hard"))
        assert row is not None and row.status == "5.1.1" and row.source == f"webhook:{provider}"


@pytest.mark.parametrize("feedback_type", ["not-spam", "auth-failure"])
def test_an_ses_feedback_that_is_no_complaint_is_recorded_and_suppresses_nobody(
    hooked: App, web: ThreadedServer, senders: dict[str, Any], feedback_type: str
) -> None:
    # RFC 6430 not-spam: the recipient said the message is wanted; RFC 6591 auth-failure: our DKIM or SPF failed.
    sent = _sent(hooked, "pleased@example.org")
    ids = posts.ids_for(
        "ses", sent["pleased@example.org"].message_id, sent["pleased@example.org"].provider_id
    )
    with client(web) as http:
        answer = senders["ses"].complaint(
            http, "pleased@example.org", ids=ids, event_id="301", at=NOW, feedback_type=feedback_type
        )
    assert (answer.status_code, answer.text) == (200, "ok: other 1")
    assert _state(hooked, "pleased@example.org") == ("sent", None, "active")
    assert _reports(hooked) == [("other", "", None)]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_forged_and_replayed_posts_are_refused_logged_and_never_acted_on(
    hooked: App, web: ThreadedServer, senders: dict[str, Any], provider: str, caplog: pytest.LogCaptureFixture
) -> None:
    sent = _sent(hooked, "gone@example.org")
    ids = posts.ids_for(provider, sent["gone@example.org"].message_id, sent["gone@example.org"].provider_id)
    poster = senders[provider]
    caplog.set_level(logging.WARNING, logger="mailer.web.provider_hooks")
    with client(web) as http:
        forged = poster.bounce(http, "gone@example.org", ids=ids, event_id="201", at=NOW, forged=True)
        old = NOW - posts.AGES[provider] - timedelta(minutes=1)
        replayed = poster.bounce(http, "gone@example.org", ids=ids, event_id="202", at=old, signed_at=old)
        unsigned = http.post(f"/webhooks/{provider}", json={"event": "bounce"})
    assert forged.status_code == (401 if provider == "postmark" else 403)
    assert replayed.status_code == 403
    assert unsigned.status_code in (400, 401, 403)
    assert _state(hooked, "gone@example.org") == ("sent", None, "active")
    assert _reports(hooked) == []
    refusals = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(refusals) == 3 and all(f"webhook {provider} from 127.0.0.1 refused" in r for r in refusals)
    assert "replay" in refusals[1]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_the_same_event_twice_changes_nothing_the_second_time(
    hooked: App, web: ThreadedServer, senders: dict[str, Any], provider: str
) -> None:
    sent = _sent(hooked, "gone@example.org")
    ids = posts.ids_for(provider, sent["gone@example.org"].message_id, sent["gone@example.org"].provider_id)
    with client(web) as http:
        first = senders[provider].bounce(http, "gone@example.org", ids=ids, event_id="301", at=NOW)
        again = senders[provider].bounce(http, "gone@example.org", ids=ids, event_id="301", at=NOW)
    assert (first.text, again.text) == ("ok: hard 1", "ok: duplicate 1")
    assert len(_reports(hooked)) == 1
    assert _events(hooked, "gone@example.org").count(EventKind.BOUNCED) == 1


@pytest.mark.parametrize("provider", PROVIDERS)
def test_events_in_any_order_end_the_same(
    hooked: App, web: ThreadedServer, clock: VirtualClock, senders: dict[str, Any], provider: str
) -> None:
    sent = _sent(hooked, "gone@example.org", "full@example.org")
    gone = posts.ids_for(provider, sent["gone@example.org"].message_id, sent["gone@example.org"].provider_id)
    full = posts.ids_for(provider, sent["full@example.org"].message_id, sent["full@example.org"].provider_id)
    poster = senders[provider]
    minutes = timedelta(minutes=1)
    with client(web) as http:
        # the bounce arrives before the delivery report that preceded it: the message stays bounced
        poster.bounce(http, "gone@example.org", ids=gone, event_id="401", at=NOW - 1 * minutes)
        late = poster.delivered(http, "gone@example.org", ids=gone, event_id="402", at=NOW - 3 * minutes)
        assert late.text == "ok: delivered 1"
        # soft bounces counted by when they happened: one now, two 8 days later posted newest first
        first = poster.bounce(
            http, "full@example.org", ids=full, event_id="403", at=NOW - minutes, hard=False
        )
        later = clock.advance(timedelta(days=8))
        second = poster.bounce(
            http, "full@example.org", ids=full, event_id="404", at=later - minutes, hard=False
        )
        assert _state(hooked, "full@example.org")[1] is None
        third = poster.bounce(
            http, "full@example.org", ids=full, event_id="405", at=later - 4 * minutes, hard=False
        )
    assert [first.text, second.text, third.text] == ["ok: soft 1"] * 3
    assert _state(hooked, "gone@example.org") == ("bounced", "hard-bounce", "bounced")
    assert _events(hooked, "gone@example.org")[-2:] == [EventKind.BOUNCED, EventKind.DELIVERED]
    assert _state(hooked, "full@example.org") == ("sent", "soft-bounce", "bounced")


@pytest.mark.parametrize("provider", PROVIDERS)
def test_an_event_for_no_message_of_ours_is_recorded_and_matched_by_address_only_when_the_address_is_ours(
    hooked: App, web: ThreadedServer, senders: dict[str, Any], provider: str
) -> None:
    _sent(hooked, "gone@example.org")
    unknown = posts.Ids("<0f1e2d3c@elsewhere.example>", "0100017aFFFFFFFF-unknown-000000")
    with client(web) as http:
        stranger = senders[provider].bounce(http, "stranger@example.net", ids=unknown, event_id="501", at=NOW)
        ours = senders[provider].bounce(http, "Never.Mailed@EXAMPLE.org", ids=unknown, event_id="502", at=NOW)
    assert (stranger.status_code, ours.status_code) == (200, 200)
    assert _reports(hooked) == [("hard", "", None), ("hard", "address", "never.mailed@example.org")]
    with transaction(hooked.factory) as db:
        assert db.get(Suppression, "stranger@example.net") is None
        suppression = db.get(Suppression, "never.mailed@example.org")
        assert suppression is not None and suppression.reason == "hard-bounce"
        assert db.scalar(select(func.count()).select_from(Suppression)) == 1
    assert _state(hooked, "gone@example.org") == ("sent", None, "active")


def test_staff_see_the_providers_event_on_the_message_page(
    hooked: App, web: ThreadedServer, senders: dict[str, Any], accounts: dict[str, str]
) -> None:
    sent = _sent(hooked, "gone@example.org")
    ids = posts.ids_for("sendgrid", sent["gone@example.org"].message_id, sent["gone@example.org"].provider_id)
    with client(web) as http:
        senders["sendgrid"].bounce(
            http, "gone@example.org", ids=ids, event_id="601", at=NOW - timedelta(minutes=1)
        )
    with transaction(hooked.factory) as db:
        pk = db.scalar(select(Message.id).where(Message.recipient == "gone@example.org"))
    with signed_in(web, accounts["staff"]) as http:
        page = http.get(f"/staff/messages/{pk}").text
    assert '<span class="status bounced">bounced</span>' in page
    expected = (
        f"5.1.1 bounce: 550 5.1.1 user unknown (SendGrid, {NOW - timedelta(minutes=1):%Y-%m-%d %H:%M} UTC) "
        f"via message-id in webhook:sendgrid for {html.escape(ids.message_id)}"
    )
    assert expected in page
