"""``mailer bounces import``: DSNs from an mbox or a maildir suppress the address, once."""

from __future__ import annotations

import mailbox
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

from sqlalchemy import select

from mailer.app import App
from mailer.errors import ImportFileError
from mailer.store.engine import transaction
from mailer.store.models import BounceReport, Contact, Message, MessageStatus, Suppression, SuppressionLift
from tests import bounce_fixtures as fixtures
from tests.cli_run import run_cli
from tests.factories import queue_invitations

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


def test_bounces_import_from_mbox_and_maildir(app: App, tmp_path: Path) -> None:
    queue_invitations(app, "gone@example.org", "full@example.org", "fine@example.org")
    with transaction(app.factory) as db:
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
    result = run_cli(app, "bounces", "import", str(tmp_path / "bounces.mbox"))
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
    again = run_cli(app, "bounces", "import", str(tmp_path / "Maildir"))
    assert "suppressed      1" in again.output and "already         1" in again.output
    with transaction(app.factory) as db:
        assert db.get(Suppression, "fine@example.org") is not None


def test_bounces_import_refuses_a_folder_that_is_no_maildir(app: App, tmp_path: Path) -> None:
    result = run_cli(app, "bounces", "import", str(tmp_path), catch_exceptions=True)
    assert result.exit_code != 0 and "no maildir" in str(result.exception or result.output)


def _sent(app: App, *addresses: str) -> dict[str, str]:
    """Contacts on the africa list, each with a sent invitation; address -> that message's Message-ID."""
    queue_invitations(app, *addresses)
    ids: dict[str, str] = {}
    with transaction(app.factory) as db:
        for message in db.scalars(select(Message)):
            message.status = MessageStatus.SENT
            message.sent_at = datetime(2021, 6, 1, 13, 5, tzinfo=UTC)
            ids[message.recipient] = message.message_id
    return ids


def _mbox(path: Path, *reports: bytes) -> Path:
    box = mailbox.mbox(path)
    for raw in reports:
        box.add(raw)
    box.flush()
    return path


def _state(app: App, address: str) -> tuple[str, str | None, list[str]]:
    """(contact status, suppression reason or None, statuses of the contact's messages)."""
    with transaction(app.factory) as db:
        contact = db.scalar(select(Contact).where(Contact.email == address))
        assert contact is not None
        suppression = db.get(Suppression, contact.email_key)
        statuses = list(db.scalars(select(Message.status).where(Message.contact_id == contact.id)))
        return contact.status, suppression.reason if suppression else None, statuses


def test_a_report_from_a_forwarding_address_suppresses_the_contact_who_was_mailed(
    app: App, tmp_path: Path
) -> None:
    ids = _sent(app, "rosa.alias@example.org", "other@example.org")
    path = _mbox(
        tmp_path / "bounces.mbox",
        fixtures.dsn("rosa.personal@mail.example.net", message_id=ids["rosa.alias@example.org"]),
    )
    result = run_cli(app, "bounces", "import", str(path))
    assert result.exit_code == 0, result.output
    assert "suppressed      1" in result.output and "rosa.alias@example.org  (hard-bounce)" in result.output
    assert _state(app, "rosa.alias@example.org") == ("bounced", "hard-bounce", ["bounced"])
    assert _state(app, "other@example.org") == ("active", None, ["sent"])
    with transaction(app.factory) as db:
        assert db.get(Suppression, "rosa.personal@mail.example.net") is None
        row = db.scalar(select(BounceReport))
        assert row is not None and row.matched_by == "message-id"
        assert row.named_address == "rosa.personal@mail.example.net"
        assert "not ours, not suppressed: rosa.personal@mail.example.net" in row.outcome


def test_internationalised_reports_suppress_the_contact(app: App, tmp_path: Path) -> None:
    _sent(app, "josé.núñez@example.org", "zoë@example.org")
    global_report = _mbox(tmp_path / "global.mbox", fixtures.global_dsn("josé.núñez@example.org"))
    result = run_cli(app, "bounces", "import", str(global_report))
    assert "1 messages read, 1 recognised as bounces" in result.output
    assert _state(app, "josé.núñez@example.org") == ("bounced", "hard-bounce", ["bounced"])

    classic = _mbox(tmp_path / "classic.mbox", fixtures.dsn("ZOË@example.org"))
    result = run_cli(app, "bounces", "import", str(classic))
    assert "1 messages read, 1 recognised as bounces" in result.output
    assert _state(app, "zoë@example.org") == ("bounced", "hard-bounce", ["bounced"])


def test_a_report_naming_the_a_label_matches_a_contact_listed_with_the_u_label(
    app: App, tmp_path: Path
) -> None:
    _sent(app, "ana@bücher.example", "ana@example.org")
    path = _mbox(tmp_path / "idn.mbox", fixtures.dsn("Ana@XN--BCHER-KVA.example"))
    result = run_cli(app, "bounces", "import", str(path))
    assert "suppressed      1" in result.output
    assert _state(app, "ana@bücher.example") == ("bounced", "hard-bounce", ["bounced"])
    assert _state(app, "ana@example.org") == ("active", None, ["sent"])
    with transaction(app.factory) as db:
        assert db.get(Suppression, "ana@xn--bcher-kva.example") is None


def test_a_message_that_breaks_a_parser_is_kept_and_counted_and_the_others_applied(
    app: App, tmp_path: Path
) -> None:
    _sent(app, "gone@example.org")
    path = tmp_path / "mixed.mbox"
    path.write_bytes(
        fixtures.NO_FROM_LINE
        + b"\n"
        + b"From MAILER-DAEMON Wed Jun  2 10:00:00 2021\n"
        + fixtures.dsn("gone@example.org")
    )
    before = path.read_bytes()
    result = run_cli(app, "bounces", "import", str(path))
    assert result.exit_code == 0, result.output
    assert "2 messages read, 1 recognised as bounces" in result.output
    assert "unparsed        1" in result.output and "IndexError" in result.output
    assert _state(app, "gone@example.org") == ("bounced", "hard-bounce", ["bounced"])
    assert path.read_bytes() == before
    with transaction(app.factory) as db:
        kinds = sorted(db.scalars(select(BounceReport.kind)))
        assert kinds == ["hard", "unparsed"]


def test_a_maildir_entry_that_cannot_be_read_is_counted_and_the_others_applied(
    app: App, tmp_path: Path
) -> None:
    _sent(app, "gone@example.org", "lost@example.org")
    box = mailbox.Maildir(tmp_path / "bounces", create=True)
    box.add(fixtures.dsn("gone@example.org"))
    (tmp_path / "bounces" / "new" / "1622620800.M1P1.mx").symlink_to(tmp_path / "moved-away")
    box.add(fixtures.dsn("lost@example.org"))
    result = run_cli(app, "bounces", "import", str(tmp_path / "bounces"))
    assert result.exit_code == 0, result.output
    assert "3 messages read, 2 recognised as bounces" in result.output
    assert "unparsed: 1622620800.M1P1.mx: cannot read: No such file or directory" in result.output
    assert _state(app, "gone@example.org") == ("bounced", "hard-bounce", ["bounced"])
    assert _state(app, "lost@example.org") == ("bounced", "hard-bounce", ["bounced"])


def test_bounces_import_says_when_a_file_is_no_mbox(app: App) -> None:
    readme = ROOT / "README.md"
    result = run_cli(app, "bounces", "import", str(readme), catch_exceptions=True)
    assert result.exit_code != 0
    assert isinstance(result.exception, ImportFileError)
    assert str(result.exception).startswith(f"{readme}: not an mbox")


def test_staff_see_the_suppression_and_its_report_and_can_lift_it(app: App, tmp_path: Path) -> None:
    _sent(app, "gone@example.org", "fine@example.org")
    run_cli(app, "bounces", "import", str(_mbox(tmp_path / "b.mbox", fixtures.dsn("gone@example.org"))))
    shown = run_cli(app, "contacts", "show", "GONE@example.org").output
    assert "status          bounced" in shown
    assert "suppressed      hard-bounce since " in shown
    assert (
        "last report     hard 5.1.1 smtp; 550 5.1.1 <gone@example.org>: Recipient address rejected: User unknown "
        "(relay.example.net, 2021-06-02 07:59 UTC)"
    ) in shown
    listed = run_cli(app, "suppressions", "list", "--reason", "hard-bounce").output
    assert listed.splitlines()[0].startswith("gone@example.org                         hard-bounce  ")
    assert listed.splitlines()[-1] == "1 suppressed (hard-bounce)"

    lifted = run_cli(
        app, "suppressions", "remove", "gone@example.org", "--by", "olga", "--note", "new mailbox"
    )
    assert (
        lifted.stdout
        == "gone@example.org: hard-bounce suppression lifted by olga; the contact is active again\n"
    )
    assert lifted.stderr == (  # the lift is logged, for the operator's log
        "WARNING mailer.cli.suppressions: suppression of gone@example.org (hard-bounce) lifted by olga: new mailbox\n"
    )
    assert _state(app, "gone@example.org") == ("active", None, ["bounced"])
    with transaction(app.factory) as db:
        lift = db.scalar(select(SuppressionLift))
        assert lift is not None and (lift.email_key, lift.reason, lift.lifted_by, lift.note) == (
            "gone@example.org",
            "hard-bounce",
            "olga",
            "new mailbox",
        )
    again = run_cli(app, "suppressions", "remove", "fine@example.org")
    assert again.exit_code == 1 and "fine@example.org is not on the suppression list" in again.output
