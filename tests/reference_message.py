"""The straightforward standard-library build of a message: the oracle tests/test_wire.py holds the one
builder (:class:`mailer.compose.wire.Composer`) to. Headers composed by :mod:`mailer.compose.mime`, stored raw
with :meth:`EmailMessage.set_raw` and written by the standard generator."""

from __future__ import annotations

import base64
import binascii
import hashlib
from datetime import datetime
from email.message import EmailMessage, MIMEPart
from email.parser import BytesParser, Parser
from email.policy import EmailPolicy
from email.utils import format_datetime

from mailer.compose.ics import CalendarPart
from mailer.compose.mime import (
    AUTO_SUBMITTED_KINDS,
    BOUNDARY_MARK,
    calendar_encoding,
    calendar_headers,
    config_address,
    encode_address,
    mailbox,
    mailto_uri,
    unstructured,
    url_list,
)
from mailer.compose.render import Rendered
from mailer.config import Sender
from mailer.store.recipient import Recipient

#: Headers stored raw and never refolded; CRLF line ends for SMTP; UTF-8 headers (RFC 6532) when asked.
POLICY = EmailPolicy(linesep="\r\n", refold_source="none", cte_type="7bit", max_line_length=78)
_ASCII_BYTES = bytes(range(128))


def reference_bytes(
    rendered: Rendered,
    recipient: Recipient,
    *,
    sender: Sender,
    message_id: str,
    date: datetime,
    list_id: str,
    unsubscribe_mailto: str,
    unsubscribe_url: str | None = None,
    auto_submitted: bool | None = None,
    calendar: CalendarPart | None = None,
) -> tuple[bytes, bool]:
    """The message's bytes as the standard generator writes them, and whether it needs SMTPUTF8."""
    to_spec, to_utf8 = encode_address(recipient.email)
    from_spec, from_utf8 = config_address(sender.address, "sender address")
    reply = config_address(sender.reply_to, "reply_to") if sender.reply_to else None
    unsubscribe = [f"<{mailto_uri(unsubscribe_mailto)}>"]
    if unsubscribe_url is not None:
        unsubscribe.append(f"<{unsubscribe_url}>")
    if auto_submitted is None:
        auto_submitted = rendered.kind in AUTO_SUBMITTED_KINDS
    utf8 = to_utf8 or from_utf8 or bool(reply and reply[1])
    message = EmailMessage(policy=POLICY.clone(utf8=utf8))
    message.set_raw("Date", format_datetime(date))
    message.set_raw("From", mailbox("From", sender.name, from_spec))
    if reply is not None:
        message.set_raw("Reply-To", mailbox("Reply-To", "", reply[0]))
    message.set_raw("To", mailbox("To", recipient.display_name, to_spec))
    message.set_raw("Subject", unstructured("Subject", rendered.subject))
    message.set_raw("Message-ID", message_id)
    message.set_raw("MIME-Version", "1.0")
    message.set_raw("Content-Language", rendered.language)
    message.set_raw("List-Id", mailbox("List-Id", "", list_id))
    message.set_raw("List-Unsubscribe", url_list("List-Unsubscribe", unsubscribe))
    if unsubscribe_url is not None and unsubscribe_url.startswith("https://"):
        message.set_raw("List-Unsubscribe-Post", "List-Unsubscribe=One-Click")
    if auto_submitted:
        message.set_raw("Auto-Submitted", "auto-generated")
    boundary = "=_" + hashlib.blake2b(message_id.encode("ascii"), digest_size=12).hexdigest()
    parts = [_text_part(rendered.text, "plain"), _text_part(rendered.html, "html")]
    if calendar is None:
        message.set_raw("Content-Type", f'multipart/alternative; boundary="{boundary}"')
        message.set_payload(parts)
    else:
        parts.append(_calendar_part(calendar, attachment=False))
        alternative = MIMEPart(policy=POLICY)
        alternative.set_raw("Content-Type", f'multipart/alternative; boundary="{boundary}"')
        alternative.set_payload(parts)
        message.set_raw("Content-Type", f'multipart/mixed; boundary="=_m{boundary[2:]}"')
        message.set_payload([alternative, _calendar_part(calendar, attachment=True)])
    return message.as_bytes(policy=message.policy), utf8


def regenerate(raw: bytes) -> tuple[EmailMessage, bytes]:
    """``raw`` parsed and written again by the standard library (headers never refolded, CRLF)."""
    utf8 = not raw.isascii()
    parser = Parser(policy=POLICY.clone(utf8=True)) if utf8 else BytesParser(policy=POLICY)
    message = parser.parsestr(raw.decode("utf-8")) if utf8 else parser.parsebytes(raw)  # type: ignore[union-attr]
    assert isinstance(message, EmailMessage)
    return message, message.as_bytes(policy=message.policy)


def _text_part(text: str, subtype: str) -> MIMEPart:
    body = text.replace("\r\n", "\n").replace("\r", "\n")
    if not body.endswith("\n"):
        body += "\n"
    data = body.encode("utf-8")
    if body.isascii() and BOUNDARY_MARK not in body and max(map(len, body.split("\n"))) <= 998:
        cte, payload = "7bit", body
    elif len(data.translate(None, _ASCII_BYTES)) * 6 > len(
        data
    ):  # qp triples 8-bit bytes; base64 adds a third
        cte, payload = "base64", base64.encodebytes(data).decode("ascii")
    else:
        cte, payload = "quoted-printable", binascii.b2a_qp(data, istext=True).decode("ascii")
    part = MIMEPart(policy=POLICY)
    part.set_raw("Content-Type", f'text/{subtype}; charset="utf-8"')
    part.set_raw("Content-Transfer-Encoding", cte)
    part.set_payload(payload)
    return part


def _calendar_part(calendar: CalendarPart, *, attachment: bool) -> MIMEPart:
    part = MIMEPart(policy=POLICY)
    for name, value in calendar_headers(calendar, attachment=attachment):
        part.set_raw(name, value)
    cte = calendar_encoding(calendar.data)
    if cte == "7bit":
        text = calendar.data.decode("ascii").replace("\r\n", "\n")
        payload = text if text.endswith("\n") else text + "\n"
    else:
        payload = base64.encodebytes(calendar.data).decode("ascii")
    part.set_raw("Content-Transfer-Encoding", cte)
    part.set_payload(payload)
    return part
