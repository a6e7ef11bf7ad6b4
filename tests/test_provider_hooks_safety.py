"""The provider webhooks' edges: the SNS subscription handshake (through the injected fetcher), certificate
and subscription URLs only from SNS's hosts, topics, tampering, oversized bodies, providers not enabled,
configuration, and the provider's message id taken from the relay's 250 reply when the service sends."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, Envelope
from aiosmtpd.smtp import Session as SmtpSession
from sqlalchemy import select

from mailer.app import App
from mailer.config import load_settings
from mailer.delivery.capture import SmtpServer
from mailer.delivery.providers.ses import sns_host
from mailer.delivery.replies import provider_message_id
from mailer.errors import ConfigError
from mailer.store.engine import transaction
from mailer.store.models import BounceReport, Message, MessageStatus, Suppression
from mailer.timeline.clock import VirtualClock
from mailer.web.provider_hooks import MAX_BODY
from mailer.web.server import ThreadedServer
from tests import provider_posts as posts
from tests.conftest import ROOT, RecordingHandler, RunningServer
from tests.factories import add_contact
from tests.test_provider_webhooks import NOW, _reports, _sent, _state, fetcher, hooked, senders, web
from tests.test_web_support import client, run_service, sending_app, signing_secret

__all__ = ["fetcher", "hooked", "senders", "signing_secret", "web"]


def test_an_sns_subscription_is_confirmed_by_getting_its_subscribe_url(
    web: ThreadedServer, senders: dict[str, Any], fetcher: posts.Fetcher
) -> None:
    ses = senders["ses"]
    document = ses.document(
        "SubscriptionConfirmation",
        "You have chosen to subscribe to the topic. To confirm the subscription, visit the SubscribeURL.",
        sns_id="165545c9-2a5c-472c-8df2-7ff2be2b3b1b",
        signed_at=NOW,
        Token="2336412f37fb687f5d51e6e2425c464d",
        SubscribeURL=posts.SUBSCRIBE_URL,
    )
    with client(web) as http:
        answer = ses.post(http, document)
    assert (answer.status_code, answer.text) == (200, "subscription confirmed")
    assert fetcher.asked == [posts.CERT_URL, posts.SUBSCRIBE_URL]


def test_sns_urls_off_amazons_hosts_are_never_fetched(
    hooked: App, web: ThreadedServer, senders: dict[str, Any], fetcher: posts.Fetcher
) -> None:
    ses = senders["ses"]
    evil = "https://sns.eu-west-1.amazonaws.com.evil.example/?Action=ConfirmSubscription&Token=1"
    foreign = ses.document(
        "SubscriptionConfirmation", "confirm", sns_id="1", signed_at=NOW, Token="1", SubscribeURL=evil
    )
    foreign_cert = ses.document("Notification", "{}", sns_id="2", signed_at=NOW)
    answers = []
    with client(web) as http:
        answers.append(ses.post(http, foreign).status_code)
        for url in (
            "https://sns.eu-west-1.amazonaws.com.evil.example/cert.pem",
            "http://sns.eu-west-1.amazonaws.com/cert.pem",
            "https://user@sns.eu-west-1.amazonaws.com/cert.pem",
            "https://sns.eu-west-1.amazonaws.com:8443/cert.pem",
            "https://evil.example/sns.eu-west-1.amazonaws.com/cert.pem",
        ):
            answers.append(ses.post(http, {**foreign_cert, "SigningCertURL": url}).status_code)  # noqa: PERF401
    assert answers == [403] * 6
    assert fetcher.asked == [posts.CERT_URL]  # only the genuine certificate, for the first post's signature


def test_sns_host_accepts_only_amazon_sns() -> None:
    accepted = ["sns.amazonaws.com", "sns.eu-west-1.amazonaws.com", "sns.cn-north-1.amazonaws.com.cn"]
    refused = [
        "sns.eu-west-1.amazonaws.com.evil.example",
        "evil-sns.amazonaws.com",
        "s3.amazonaws.com",
        "sns.a.b.amazonaws.com",
        "sns..amazonaws.com",
        "amazonaws.com",
        "sns.example.org",
    ]
    assert [sns_host(h) for h in accepted] == [True] * 3
    assert [sns_host(h) for h in refused] == [False] * 7


def test_a_tampered_unknown_topic_or_foreign_certificate_sns_message_is_refused(
    hooked: App, web: ThreadedServer, senders: dict[str, Any], fetcher: posts.Fetcher
) -> None:
    sent = _sent(hooked, "gone@example.org")
    ses = senders["ses"]
    other = posts.Ses(ses.forger, ses.key)
    fetcher.documents[posts.CERT_URL.replace("0000.pem", "1111.pem")] = posts.sns_certificate(
        ses.forger, "attacker.example"
    )
    with client(web) as http:
        good = ses.bounce(http, "gone@example.org", ids=sent["gone@example.org"], event_id="1", at=NOW)
        document = json.loads(good.request.content)
        tampered = {**document, "Message": document["Message"].replace("gone@", "other@")}
        topic = ses.document(
            "Notification", "{}", sns_id="3", signed_at=NOW, TopicArn="arn:aws:sns:eu-west-1:1:x"
        )
        foreign = other.document("Notification", "{}", sns_id="4", signed_at=NOW)
        foreign["SigningCertURL"] = posts.CERT_URL.replace("0000.pem", "1111.pem")
        answers = [ses.post(http, doc).status_code for doc in (tampered, topic, foreign)]
    assert good.status_code == 200
    assert answers == [403, 403, 403]
    assert len(_reports(hooked)) == 1


def test_an_oversized_body_and_a_provider_not_enabled_are_refused(
    hooked: App, web: ThreadedServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="mailer.web.provider_hooks")
    with client(web) as http:
        huge = http.post("/webhooks/sendgrid", content=b"[" + b" " * MAX_BODY + b"]")
        unknown = http.post("/webhooks/sparkpost", json=[])
        anonymous_get = http.get("/webhooks/sendgrid")
    assert (huge.status_code, unknown.status_code, anonymous_get.status_code) == (413, 404, 405)
    messages = [r.getMessage() for r in caplog.records]
    assert any("webhook sendgrid from 127.0.0.1 refused (413)" in m for m in messages)
    assert any("webhook sparkpost from 127.0.0.1 refused (404)" in m for m in messages)
    assert _reports(hooked) == []


def test_a_provider_whose_secret_is_not_set_refuses_every_post(
    hooked: App, web: ThreadedServer, senders: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    sent = _sent(hooked, "gone@example.org")
    monkeypatch.delenv("TEST_MAILGUN_KEY")
    with client(web) as http:
        answer = senders["mailgun"].bounce(
            http, "gone@example.org", ids=sent["gone@example.org"], event_id="1", at=NOW
        )
    assert answer.status_code == 503
    assert _state(hooked, "gone@example.org") == ("sent", None, "active")


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (
            "Ok 0100017a2b3c4d5e-1a2b3c4d-5e6f-7a8b-9c0d-1e2f3a4b5c6d-000000",
            "0100017a2b3c4d5e-1a2b3c4d-5e6f-7a8b-9c0d-1e2f3a4b5c6d-000000",
        ),
        ("Ok <0100017a2b3c4d5e-000000>", "0100017a2b3c4d5e-000000"),
        ("Ok: queued as 9Oqjh3IZSuynjc_Z7FPBaQ", "9Oqjh3IZSuynjc_Z7FPBaQ"),
        ("2.0.0 Ok: queued as 4F1A2B3C", "4F1A2B3C"),
        ("2.0.0 OK", ""),
        ("OK", ""),
        ("Great success", ""),
        ("", ""),
    ],
)
def test_the_providers_id_is_read_from_its_250_reply(reply: str, expected: str) -> None:
    assert provider_message_id(reply) == expected


class SesLikeHandler(RecordingHandler):
    """Accepts like Amazon SES: ``250 Ok <message id>``, one id per message."""

    async def handle_DATA(self, server: SMTP, session: SmtpSession, envelope: Envelope) -> str:
        await super().handle_DATA(server, session, envelope)
        return f"250 Ok 0100017a{len(self.messages):08x}-5e6f7a8b-9c0d-1e2f-3a4b-5c6d7e8f9a0b-000000"


@pytest.fixture
def ses_relay() -> Iterator[RunningServer]:
    handler = SesLikeHandler()
    with SmtpServer(handler) as server:
        yield RunningServer(server, handler)


def test_the_id_from_the_relays_250_is_kept_at_send_time_and_matches_the_providers_bounce(
    hooked: App,
    ses_relay: RunningServer,
    clock: VirtualClock,
    fetcher: posts.Fetcher,
    senders: dict[str, Any],
) -> None:
    with transaction(hooked.factory) as db:
        add_contact(db, "gone@example.org")
    sending = sending_app(hooked, ses_relay, "http://127.0.0.1:8080")
    run_service(sending, clock)
    assert len(ses_relay.messages) == 1
    provider_id = "0100017a00000001-5e6f7a8b-9c0d-1e2f-3a4b-5c6d7e8f9a0b-000000"
    with transaction(hooked.factory) as db:
        message = db.scalar(select(Message))
        assert message is not None and message.status == MessageStatus.SENT
        assert message.provider_id == provider_id
    with ThreadedServer(hooked, clock=clock, fetch=fetcher) as server, client(server) as http:
        answer = senders["ses"].bounce(
            http, "gone@example.org", ids=posts.Ids(provider_id=provider_id), event_id="1", at=clock.now()
        )
    assert answer.text == "ok: hard 1"
    assert _state(hooked, "gone@example.org") == ("bounced", "hard-bounce", "bounced")
    with transaction(hooked.factory) as db:
        assert db.scalar(select(BounceReport.matched_by)) == "provider-id"
        assert db.get(Suppression, "gone@example.org") is not None


def _config(folder: Path, old: str, new: str) -> Path:
    """The shipped config in ``folder/config`` with ``old`` replaced by ``new`` in mailer.toml."""
    (folder / "config").mkdir(parents=True)
    text = (ROOT / "config" / "mailer.toml").read_text(encoding="utf-8")
    assert old in text
    (folder / "config" / "mailer.toml").write_text(text.replace(old, new, 1), encoding="utf-8")
    (folder / "config" / "series.toml").write_text(
        (ROOT / "config" / "series.toml").read_text(encoding="utf-8")
    )
    (folder / "templates").symlink_to(ROOT / "templates")
    return folder / "config"


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        (
            "[bounces.webhooks.ses]\nenabled = false",
            "[bounces.webhooks.ses]\nenabled = true",
            "bounces.webhooks.ses.topic_arns",
        ),
        (
            "[bounces.webhooks.postmark]\nenabled = false",
            "[bounces.webhooks.postmark]\nenabled = true",
            "bounces.webhooks.postmark.username",
        ),
        (
            "[bounces.webhooks.mailgun]",
            "[bounces.webhooks.sparkpost]\nenabled = true\n[bounces.webhooks.mailgun]",
            "bounces.webhooks.sparkpost",
        ),
    ],
)
def test_a_webhook_config_that_cannot_work_is_refused(tmp_path: Path, old: str, new: str, key: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_settings(_config(tmp_path, old, new))
    assert error.value.key == key


def test_an_enabled_provider_takes_its_documented_defaults(tmp_path: Path) -> None:
    config = _config(
        tmp_path, "[bounces.webhooks.mailgun]\nenabled = false", "[bounces.webhooks.mailgun]\nenabled = true"
    )
    settings = load_settings(config)
    assert settings.bounces.webhooks.get("ses") is None
    hook = settings.bounces.webhooks.get("mailgun")
    assert hook is not None
    assert (hook.secret_env, hook.max_age) == ("MAILGUN_WEBHOOK_SIGNING_KEY", timedelta(minutes=10))


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        (
            "reason",
            "550 5.1.1 user\x00unknown",
            "the body's JSON holds a NUL character (\\u0000) in [0].reason: remove it",
        ),
        ("attempt", 10**30, "the body's JSON holds a number of 31 digits: at most 20 are taken"),
    ],
    ids=["nul", "long-number"],
)
def test_a_signed_event_no_store_could_keep_is_refused_as_the_api_refuses_it(
    hooked: App,
    web: ThreadedServer,
    senders: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
    field: str,
    value: object,
    error: str,
) -> None:
    """A provider's post goes through the same JSON rules as the API's: a NUL character (PostgreSQL's text
    cannot hold one) or a number of hundreds of digits is a 400, its reason logged, never a 500."""
    caplog.set_level(logging.WARNING, logger="mailer.web.provider_hooks")
    sent = _sent(hooked, "gone@example.org")
    sendgrid = senders["sendgrid"]
    event = sendgrid.event("bounce", "gone@example.org", ids=sent["gone@example.org"], event_id="n1", at=NOW)
    with client(web) as http:
        answer = sendgrid.post(http, [{**event, field: value}], signed_at=NOW)
    assert (answer.status_code, answer.text) == (400, "400: Refused")
    assert f"webhook sendgrid from 127.0.0.1 refused (400): {error}" in caplog.messages
    assert _reports(hooked) == []
    assert _state(hooked, "gone@example.org") == ("sent", None, "active")
