"""Reports as the field writes them, built by hand with example.org data: one builder per shape.

Each returns the raw bytes a bounce mailbox would hold (CRLF-free, as mbox and Maildir store them).
"""

from __future__ import annotations

OUR_SENDER = "webinars@example.org"


def _headers_part(message_id: str, recipient: str, return_path: str = OUR_SENDER) -> str:
    return (
        f"Return-Path: <{return_path}>\n"
        f"From: Budapest Convention webinars <{OUR_SENDER}>\n"
        f"To: {recipient}\n"
        "Subject: Invitation: parliamentary webinar on cybercrime\n"
        f"Message-ID: {message_id}\n"
    )


def _to_us(sender: str, subject: str, date: str) -> str:
    """The From, To (our return path), Subject and Date header lines of a report sent to us."""
    return f"From: {sender}\nTo: {OUR_SENDER}\nSubject: {subject}\nDate: {date}\n"


def dsn(
    recipient: str,
    *,
    action: str = "failed",
    status: str = "5.1.1",
    diagnostic: str = "smtp; 550 5.1.1 <{r}>: Recipient address rejected: User unknown",
    message_id: str | None = None,
    to: str = OUR_SENDER,
    original_recipient: str = "",
    mta: str = "relay.example.net",
) -> bytes:
    """RFC 3464 delivery status notification as Postfix writes it; the original headers returned when
    ``message_id`` is given. ``recipient`` goes into Final-Recipient as ``rfc822;`` (raw UTF-8 if non-ASCII)."""
    original = f"Original-Recipient: rfc822;{original_recipient}\n" if original_recipient else ""
    returned = (
        f"--b1\nContent-Description: Undelivered Message Headers\nContent-Type: text/rfc822-headers\n\n"
        f"{_headers_part(message_id, original_recipient or recipient)}\n"
        if message_id
        else ""
    )
    return (
        f"From: MAILER-DAEMON@{mta} (Mail Delivery System)\n"
        f"To: {to}\n"
        "Subject: Undelivered Mail Returned to Sender\n"
        "Date: Wed, 02 Jun 2021 10:00:00 +0200\n"
        "Auto-Submitted: auto-replied\n"
        "MIME-Version: 1.0\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b1"\n'
        "\n"
        "--b1\nContent-Description: Notification\nContent-Type: text/plain; charset=utf-8\n\n"
        f"This is the mail system at host {mta}.\n\n"
        "I'm sorry to have to inform you that your message could not\n"
        "be delivered to one or more recipients.\n\n"
        "--b1\nContent-Description: Delivery report\nContent-Type: message/delivery-status\n\n"
        f"Reporting-MTA: dns; {mta}\n"
        "Arrival-Date: Wed,  2 Jun 2021 09:59:58 +0200 (CEST)\n\n"
        f"Final-Recipient: rfc822; {recipient}\n"
        f"{original}"
        f"Action: {action}\n"
        f"Status: {status}\n"
        f"Diagnostic-Code: {diagnostic.format(r=recipient)}\n\n"
        f"{returned}"
        "--b1--\n"
    ).encode()


def global_dsn(recipient: str, *, message_id: str | None = None, to: str = OUR_SENDER) -> bytes:
    """RFC 6533 internationalised delivery status: ``utf-8;`` Final-Recipient, message/global-headers."""
    returned = (
        f"--g1\nContent-Type: message/global-headers\n\n{_headers_part(message_id, recipient)}\n"
        if message_id
        else ""
    )
    return (
        "From: MAILER-DAEMON@mx.example.net\n"
        f"To: {to}\n"
        "Subject: Delivery Status Notification (Failure)\n"
        "Date: Thu, 03 Jun 2021 08:00:00 +0000\n"
        "MIME-Version: 1.0\n"
        'Content-Type: multipart/report; report-type=global-delivery-status; boundary="g1"\n'
        "\n"
        "--g1\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n"
        f"Delivery to {recipient} failed permanently.\n\n"
        "--g1\nContent-Type: message/global-delivery-status\nContent-Transfer-Encoding: 8bit\n\n"
        "Reporting-MTA: dns; mx.example.net\n\n"
        f"Final-Recipient: utf-8; {recipient}\n"
        "Action: failed\n"
        "Status: 5.1.1\n"
        "Diagnostic-Code: smtp; 550 5.1.1 mailbox unavailable\n\n"
        f"{returned}"
        "--g1--\n"
    ).encode()


def exchange_ndr(recipient: str, *, message_id: str) -> bytes:
    """An Exchange/Outlook non-delivery report without a machine-readable part (older servers)."""
    return (
        _to_us(
            "postmaster@exchange.example.net",
            "Undeliverable: Invitation: parliamentary webinar on cybercrime",
            "Fri, 04 Jun 2021 12:00:00 +0000",
        )
        + "MIME-Version: 1.0\n"
        'Content-Type: multipart/mixed; boundary="x1"\n'
        "\n"
        "--x1\nContent-Type: text/plain; charset=us-ascii\n\n"
        "Your message did not reach some or all of the intended recipients.\n\n"
        "      Subject:  Invitation: parliamentary webinar on cybercrime\n"
        "      Sent:     6/4/2021 11:58 AM\n\n"
        "The following recipient(s) could not be reached:\n\n"
        f"      {recipient} on 6/4/2021 11:59 AM\n"
        "            The e-mail address you entered couldn't be found.\n"
        "            <exchange.example.net #5.1.1 smtp;550 5.1.1 RESOLVER.ADR.RecipNotFound; not found>\n\n"
        "--x1\nContent-Type: message/rfc822\n\n"
        f"{_headers_part(message_id, recipient)}\nHello.\n\n"
        "--x1--\n"
    ).encode()


def exim_bounce(recipient: str) -> bytes:
    """Exim's plain-text bounce (no DSN part)."""
    return (
        _to_us(
            "Mail Delivery System <Mailer-Daemon@mx.example.net>",
            "Mail delivery failed: returning message to sender",
            "Fri, 04 Jun 2021 13:00:00 +0000",
        )
        + "Auto-Submitted: auto-replied\n"
        "\n"
        "This message was created automatically by mail delivery software.\n\n"
        "A message that you sent could not be delivered to one or more of its\n"
        "recipients. This is a permanent error. The following address(es) failed:\n\n"
        f"  {recipient}\n"
        "    host mx.example.net [192.0.2.10]\n"
        f"    SMTP error from remote mail server after RCPT TO:<{recipient}>:\n"
        "    550 5.1.1 User unknown\n"
    ).encode()


def qmail_bounce(recipient: str, *, message_id: str) -> bytes:
    """qmail-send's plain-text bounce, the original quoted below a marker line."""
    return (
        _to_us("MAILER-DAEMON@qmail.example.net", "failure notice", "Fri, 04 Jun 2021 14:00:00 +0000") + "\n"
        "Hi. This is the qmail-send program at qmail.example.net.\n"
        "I'm afraid I wasn't able to deliver your message to the following addresses.\n"
        "This is a permanent error; I've given up. Sorry it didn't work out.\n\n"
        f"<{recipient}>:\n"
        "192.0.2.20 does not like recipient.\n"
        "Remote host said: 550 5.1.1 no mailbox here by that name\n"
        "Giving up on 192.0.2.20.\n\n"
        "--- Below this line is a copy of the message.\n\n"
        f"{_headers_part(message_id, recipient)}\nHello.\n"
    ).encode()


def arf(*, original_rcpt: str = "", original_mail_from: str = OUR_SENDER, message_id: str = "") -> bytes:
    """An ARF feedback report (RFC 5965) as a mailbox provider's feedback loop sends it."""
    rcpt = f"Original-Rcpt-To: {original_rcpt}\n" if original_rcpt else ""
    return (
        _to_us("feedback-loop@fbl.example.net", "Abuse report", "Sat, 05 Jun 2021 09:00:00 +0000")
        + "MIME-Version: 1.0\n"
        'Content-Type: multipart/report; report-type=feedback-report; boundary="f1"\n'
        "\n"
        "--f1\nContent-Type: text/plain\n\nThis is an email abuse report.\n\n"
        "--f1\nContent-Type: message/feedback-report\n\n"
        "Feedback-Type: abuse\n"
        "User-Agent: ExampleFBL/1.0\n"
        "Version: 1\n"
        f"Original-Mail-From: <{original_mail_from}>\n"
        f"{rcpt}"
        "Arrival-Date: Sat, 05 Jun 2021 08:55:00 +0000\n"
        "Reporting-MTA: dns; fbl.example.net\n"
        "Source-IP: 192.0.2.30\n\n"
        "--f1\nContent-Type: text/rfc822-headers\n\n"
        f"{_headers_part(message_id or '<unknown@example.net>', original_rcpt or 'redacted@example.net')}\n"
        "--f1--\n"
    ).encode()


def out_of_office(sender: str) -> bytes:
    """An RFC 3834 automatic reply."""
    return (
        f"From: {sender}\n"
        f"To: {OUR_SENDER}\n"
        "Subject: Automatic reply: Invitation: parliamentary webinar on cybercrime\n"
        "Auto-Submitted: auto-replied\n"
        "Date: Sat, 05 Jun 2021 10:00:00 +0000\n"
        "\n"
        "I am out of the office until 14 June 2021 with no access to email.\n"
    ).encode()


def personal_reply(sender: str) -> bytes:
    """A person answering the invitation (not a report)."""
    return (
        f"From: {sender}\nTo: {OUR_SENDER}\nSubject: Re: invitation\n\nThank you, I will attend.\n"
    ).encode()


NO_FROM_LINE = b"From x\nSubject: hi\n\nbody\n"  # the message that made a flufl.bounce detector raise
