"""``mailer bounces import``: DSNs from an mbox or a maildir suppress the address, once."""

from __future__ import annotations

import mailbox
from datetime import UTC, datetime, timezone
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from sqlalchemy import select

from mailer.app import App
from mailer.cli import _register, cli
from mailer.store.engine import transaction
from mailer.store.models import Contact, Message, MessageStatus, Suppression
from mailer.store.outbox import queue_wave
from tests.factories import add_contact

ROOT = Path(__file__).resolve().parent.parent
ORIGINAL_ID = "<0f1e2d3c4b5a69788796a5b4c3d2e1f0@example.org>"


def _dsn(recipient: str, action: str, status: str, original_id: str | None = None) -> bytes:
    """An RFC 3464 delivery status notification as Postfix writes it."""
    return f"""From: MAILER-DAEMON@relay.example.net (Mail Delivery System)
To: webinars@example.org
Subject: Undelivered Mail Returned to Sender
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="b1"

--b1
Content-Type: text/plain

I'm sorry to have to inform you that your message could not be delivered to {recipient}.

--b1
Content-Type: message/delivery-status

Reporting-MTA: dns; relay.example.net

Final-Recipient: rfc822; {recipient}
Original-Recipient: rfc822;{recipient}
Action: {action}
Status: {status}
Diagnostic-Code: smtp; 550 5.1.1 user unknown

--b1
Content-Type: text/rfc822-headers

From: webinars@example.org
To: {recipient}
Message-ID: {original_id or "<x@y>"}

--b1--
""".encode()


def run(app: App, *args: str) -> Any:
    _register()
    base = ["--config", str(ROOT / "config"), "--database-url", app.settings.database_url]
    return CliRunner().invoke(cli, [*base, *args], catch_exceptions=False)


def test_bounces_import_from_mbox_and_maildir(app: App, tmp_path: Path) -> None:
    series = app.settings.series
    with transaction(app.factory) as db:
        add_contact(db, "gone@example.org")
        add_contact(db, "full@example.org")
        add_contact(db, "fine@example.org")
    with transaction(app.factory) as db:
        queue_wave(
            db,
            app.settings,
            series.session("africa-2021"),
            series.step("invitation"),
            datetime(2021, 6, 1, 13, tzinfo=UTC),
        )
        message = db.scalar(select(Message).where(Message.recipient == "gone@example.org"))
        assert message is not None
        message.status, message.message_id = MessageStatus.SENT, ORIGINAL_ID

    box = mailbox.mbox(tmp_path / "bounces.mbox")
    box.add(_dsn("gone@example.org", "failed", "5.1.1", ORIGINAL_ID))
    box.add(_dsn("full@example.org", "delayed", "4.2.2"))
    plain = EmailMessage()
    plain["From"], plain["Subject"] = "someone@example.org", "Re: invitation"
    plain.set_content("Thank you, I will attend.\n")
    box.add(plain)
    box.flush()
    result = run(app, "bounces", "import", str(tmp_path / "bounces.mbox"))
    assert result.exit_code == 0, result.output
    assert "3 messages read, 2 recognised as bounces" in result.output
    assert "suppressed      1" in result.output and "gone@example.org" in result.output
    assert "messages        1" in result.output
    with transaction(app.factory) as db:
        suppression = db.get(Suppression, "gone@example.org")
        assert (
            suppression is not None
            and suppression.reason == "hard-bounce"
            and ORIGINAL_ID in suppression.detail
        )
        assert db.get(Suppression, "full@example.org") is None
        assert db.scalar(select(Contact.status).where(Contact.email == "gone@example.org")) == "bounced"
        assert db.scalar(select(Message.status).where(Message.message_id == ORIGINAL_ID)) == "bounced"

    maildir = mailbox.Maildir(tmp_path / "Maildir", create=True)
    maildir.add(_dsn("gone@example.org", "failed", "5.1.1"))
    maildir.add(_dsn("fine@example.org", "failed", "5.2.1"))
    again = run(app, "bounces", "import", str(tmp_path / "Maildir"))
    assert "suppressed      1" in again.output and "already         1" in again.output
    with transaction(app.factory) as db:
        assert db.get(Suppression, "fine@example.org") is not None


def test_bounces_import_refuses_a_folder_that_is_no_maildir(app: App, tmp_path: Path) -> None:
    _register()
    result = CliRunner().invoke(
        cli,
        [
            "--config",
            str(ROOT / "config"),
            "--database-url",
            app.settings.database_url,
            "bounces",
            "import",
            str(tmp_path),
        ],
    )
    assert result.exit_code != 0 and "no maildir" in str(result.exception or result.output)
