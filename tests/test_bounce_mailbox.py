"""The bounce mailbox poller against a real IMAP server: Debian's Dovecot, started by the test on 127.0.0.1."""

from __future__ import annotations

import imaplib
import ssl
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import sessionmaker

from mailer.app import App
from mailer.config import ImapSettings, Security
from mailer.delivery.handling import Policy
from mailer.delivery.mailbox import poll_mailbox
from mailer.store.engine import transaction
from mailer.store.models import BounceReport, Contact, Message, Suppression
from tests import bounce_fixtures as fixtures
from tests.dovecot import Dovecot, running_dovecot
from tests.test_bounces import _sent

NOW = datetime(2021, 6, 10, 12, tzinfo=UTC)


@pytest.fixture
def dovecot() -> Iterator[Dovecot]:
    with running_dovecot() as server:
        yield server


def _client(server: Dovecot) -> imaplib.IMAP4_SSL:
    client = imaplib.IMAP4_SSL(
        server.host, server.tls_port, ssl_context=ssl.create_default_context(cafile=str(server.ca_file))
    )
    client.login(server.user, server.password)
    return client


def _deliver(server: Dovecot, *messages: bytes) -> None:
    client = _client(server)
    for raw in messages:
        client.append("INBOX", None, None, raw)
    client.logout()


def _folder(server: Dovecot, folder: str) -> list[bytes]:
    client = _client(server)
    client.select(f'"{folder}"', readonly=True)
    _, data = client.uid("SEARCH", "ALL")
    found = []
    for uid in data[0].split():
        _, fetched = client.uid("FETCH", uid.decode(), "(BODY.PEEK[])")
        found.append(next(item[1] for item in fetched if isinstance(item, tuple)))
    client.logout()
    return found


def _settings(server: Dovecot, monkeypatch: pytest.MonkeyPatch, security: Security) -> ImapSettings:
    monkeypatch.setenv("TEST_BOUNCE_IMAP_PASSWORD", server.password)
    return ImapSettings(
        host=server.host,
        port=server.tls_port if security is Security.TLS else server.port,
        security=security,
        username=server.user,
        password_env="TEST_BOUNCE_IMAP_PASSWORD",
        ca_file=str(server.ca_file),
    )


@pytest.mark.parametrize("security", [Security.STARTTLS, Security.TLS])
def test_the_poller_applies_reports_and_files_them_keeping_what_it_cannot_read(
    app: App, dovecot: Dovecot, monkeypatch: pytest.MonkeyPatch, security: Security
) -> None:
    ids = _sent(app, "gone@example.org", "away@example.org")
    _deliver(
        dovecot,
        fixtures.dsn("gone@example.org", message_id=ids["gone@example.org"]),
        fixtures.NO_FROM_LINE,
        fixtures.out_of_office("away@example.org"),
    )
    imap = _settings(dovecot, monkeypatch, security)
    tally = poll_mailbox(imap, app.factory, lambda: NOW, policy=Policy())
    assert tally.read == 3
    assert dict(tally.kinds) == {"hard": 1, "unparsed": 1, "auto-reply": 1}
    assert tally.suppressed == [("gone@example.org", "hard-bounce")]
    assert len(tally.unparsed) == 1 and "IndexError" in tally.unparsed[0]
    with transaction(app.factory) as db:
        assert db.get(Suppression, "gone@example.org") is not None
        assert db.get(Suppression, "away@example.org") is None
        assert (
            db.scalar(select(Message.status).where(Message.message_id == ids["gone@example.org"]))
            == "bounced"
        )
        assert db.scalar(select(Contact.status).where(Contact.email == "gone@example.org")) == "bounced"
        sources = set(db.scalars(select(BounceReport.source)))
        assert sources == {f"imap://bounces@127.0.0.1:{imap.port}/INBOX"}
    assert _folder(dovecot, "INBOX") == []
    assert len(_folder(dovecot, "Processed")) == 2
    unparsed = _folder(dovecot, "Unparsed")
    assert [raw.replace(b"\r\n", b"\n") for raw in unparsed] == [fixtures.NO_FROM_LINE]

    again = poll_mailbox(imap, app.factory, lambda: NOW, policy=Policy())
    assert again.read == 0


def test_a_report_seen_again_after_a_failed_move_is_applied_once(
    app: App, dovecot: Dovecot, monkeypatch: pytest.MonkeyPatch
) -> None:
    _sent(app, "gone@example.org")
    raw = fixtures.dsn("gone@example.org")
    _deliver(dovecot, raw, raw)  # the same bytes twice: as if a poll had died before moving it
    tally = poll_mailbox(
        _settings(dovecot, monkeypatch, Security.TLS), app.factory, lambda: NOW, policy=Policy()
    )
    assert (tally.read, dict(tally.kinds), tally.duplicates) == (2, {"hard": 1}, 1)
    assert len(_folder(dovecot, "Processed")) == 2


def test_an_untrusted_certificate_or_a_wrong_password_touches_nothing(
    app: App, dovecot: Dovecot, monkeypatch: pytest.MonkeyPatch
) -> None:
    _deliver(dovecot, fixtures.dsn("gone@example.org"))
    imap = _settings(dovecot, monkeypatch, Security.TLS)
    untrusted = ImapSettings(**{**imap.__dict__, "ca_file": ""})
    with pytest.raises(ssl.SSLCertVerificationError):
        poll_mailbox(untrusted, app.factory, lambda: NOW, policy=Policy())
    monkeypatch.setenv("TEST_BOUNCE_IMAP_PASSWORD", "wrong")
    with pytest.raises(imaplib.IMAP4.error):
        poll_mailbox(imap, app.factory, lambda: NOW, policy=Policy())
    assert len(_folder(dovecot, "INBOX")) == 1


def test_a_store_error_leaves_the_report_in_the_mailbox_unrecorded(
    dovecot: Dovecot, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _deliver(dovecot, fixtures.dsn("gone@example.org"))
    empty = sessionmaker(create_engine(f"sqlite:///{tmp_path / 'no-tables.db'}"), expire_on_commit=False)
    with pytest.raises(SQLAlchemyError):
        poll_mailbox(_settings(dovecot, monkeypatch, Security.TLS), empty, lambda: NOW, policy=Policy())
    assert len(_folder(dovecot, "INBOX")) == 1
    assert _folder(dovecot, "Unparsed") == [] and _folder(dovecot, "Processed") == []
