"""``./run serve`` with a bounce mailbox: the service sends with signed return paths, reads the Dovecot
mailbox on its interval and suppresses the contact a bounce is about."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from mailer.app import App
from mailer.store.engine import transaction
from mailer.store.models import Message, Suppression
from tests import bounce_fixtures as fixtures
from tests.conftest import RunningServer
from tests.dovecot import Dovecot, running_dovecot
from tests.service_processes import ServiceProcess, add_contacts, pending_count, wait_until, write_live_config
from tests.test_bounce_mailbox import _deliver, _folder


@pytest.fixture
def dovecot() -> Iterator[Dovecot]:
    with running_dovecot() as server:
        yield server


def test_the_service_polls_the_bounce_mailbox(
    app: App,
    dovecot: Dovecot,
    smtp_server: RunningServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = write_live_config(tmp_path)
    head, _, imap = (config / "mailer.toml").read_text().partition("[bounces.imap]")
    head = head.replace('return_path = ""', 'return_path = "bounces@bounce.example.org"')
    for old, new in (
        ('host = ""', 'host = "127.0.0.1"'),
        ("port = 993", f"port = {dovecot.tls_port}"),
        ('username = ""', f'username = "{dovecot.user}"'),
        ('interval = "5m"', 'interval = "1s"'),
        ('ca_file = ""', f'ca_file = "{dovecot.ca_file}"'),
    ):
        assert old in imap
        imap = imap.replace(old, new, 1)
    main = head + "[bounces.imap]" + imap
    (config / "mailer.toml").write_text(main)
    monkeypatch.setenv("BOUNCE_IMAP_PASSWORD", dovecot.password)
    monkeypatch.setenv("MAILER_SECRET_KEY", "a-test-signing-key-of-at-least-32-characters")
    add_contacts(app, 3)
    service = ServiceProcess(config, app.settings.database_url, smtp_server.port, tmp_path / "service.log")
    try:
        sent = wait_until(lambda: len(smtp_server.messages) == 3 and pending_count(app) == 0, 90)
        assert sent, (tmp_path / "service.log").read_text()
        senders = {m.rcpt_tos[0]: m.mail_from for m in smtp_server.messages}
        assert all(s.startswith("bounces+") and s.endswith("@bounce.example.org") for s in senders.values())
        _deliver(dovecot, fixtures.dsn("forwarded@mail.example.net", to=senders["person00001@example.org"]))

        def suppressed() -> bool:
            with transaction(app.factory) as db:
                return db.get(Suppression, "person00001@example.org") is not None

        assert wait_until(suppressed, 30), (tmp_path / "service.log").read_text()
        assert wait_until(lambda: _folder(dovecot, "INBOX") == [], 10)
    finally:
        assert service.terminate() == 0
    log = (tmp_path / "service.log").read_text()
    assert f"bounce mailbox imap://bounces@127.0.0.1:{dovecot.tls_port}/INBOX: read every 0:00:01" in log
    assert "bounce mailbox: 1 read (1 hard), 1 suppressed" in log
    with transaction(app.factory) as db:
        statuses = dict(db.execute(select(Message.recipient, Message.status)).all())
        assert db.get(Suppression, "forwarded@mail.example.net") is None
    assert statuses == {
        "person00000@example.org": "sent",
        "person00001@example.org": "bounced",
        "person00002@example.org": "sent",
    }
