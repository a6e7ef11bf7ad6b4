"""The one message builder: writes a rendered message's bytes for the wire, fast (the sending hot path).

Shape: ``multipart/alternative`` holding ``text/plain`` then ``text/html`` (RFC 2046 §5.1.4: the richest
part last), both UTF-8, each 7bit when ASCII, else quoted-printable or base64 (whichever is smaller).
With a calendar (:mod:`mailer.compose.ics`), as Gmail and Outlook send invitations::

    multipart/mixed
    ├── multipart/alternative
    │   ├── text/plain
    │   ├── text/html
    │   └── text/calendar; method=REQUEST|CANCEL   what Outlook and Gmail show as an invitation card
    └── application/ics; name="invite.ics"         attachment, for every other client

Header fields, in this order: Date (RFC 5322 §3.3, in UTC), From, Reply-To, To, Subject, Message-ID (stable
per outbox row, DESIGN invariant 8), MIME-Version, Content-Language (RFC 3282), List-Id (RFC 2919),
List-Unsubscribe (RFC 2369: the mailto and, when given, the URL), List-Unsubscribe-Post only for an https URL
(RFC 8058 §3.1), Auto-Submitted: auto-generated (RFC 3834 §5), Content-Type. Their values follow
:mod:`mailer.compose.mime`'s rules. A caller that wants an :class:`email.message.EmailMessage` (to show the
parts) parses these bytes with the standard library's parser
(:meth:`mailer.compose.outgoing.OutgoingMessage.email`).

Building an :class:`~email.message.EmailMessage` and serialising it with ``as_bytes()`` costs about 3 ms a
message, ten times the rendering; :class:`Composer` writes the bytes directly: the header lines every
message of a sender shares (From, Reply-To, List-Id, MIME-Version, the part headers) are made once per
(language, auto-submitted, UTF-8) and kept; per message only Date, To, Subject (cached by text), Message-ID,
List-Unsubscribe and the two bodies are written, the bodies with C-speed encoders. tests/test_wire.py proves
with hypothesis that a composed message parses back with Python's email parser to exactly what a
straightforward standard-library build parses to.

The multipart boundaries are fixed and contain ``=_``, which quoted-printable and base64 output never
contain; a 7bit body is checked not to contain them (else it goes quoted-printable, or base64 for a
calendar). With a calendar the message is ``multipart/mixed`` around the alternative (see
above); the calendar's part headers and encoding come from :mod:`mailer.compose.mime`.
"""

from __future__ import annotations

import binascii
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime
from functools import lru_cache

from mailer.compose.ics import CalendarPart
from mailer.compose.mime import (
    AUTO_SUBMITTED_KINDS,
    BOUNDARY_MARK,
    DOT_ATOM,
    HEADER_URL,
    LANGUAGE_TAG,
    MESSAGE_ID,
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
from mailer.timeline.clock import require_aware

BOUNDARY = "=_mailer-alt-7f3a9c0d"
MIXED_BOUNDARY = "=_mailer-mix-7f3a9c0d"
_ASCII_BYTES = bytes(range(128))


@dataclass(frozen=True)
class Composed:
    """A composed message: ``data`` (CRLF line ends), whether it needs SMTPUTF8 (RFC 6531), and ``wire``, the
    same in DATA's transparent form (RFC 5321 sec. 4.5.2: a line starting with "." has it doubled), which is
    ``data`` itself when no line starts with a dot. Header fields put before the message (a DKIM-Signature)
    keep ``wire`` transparent: their lines start with a name or white space."""

    data: bytes
    utf8: bool
    wire: bytes


def _field(name: str, value: str) -> bytes:
    """``Name: value`` with mime's "\\n " folds as CRLF folds."""
    return f"{name}: {value}\r\n".replace("\n ", "\r\n ").encode("utf-8")


@lru_cache(maxsize=4096)
def _subject(subject: str) -> bytes:
    return _field("Subject", unstructured("Subject", subject))


@lru_cache(maxsize=1024)
def _to(display_name: str, addr_spec: str) -> bytes:
    return _field("To", mailbox("To", display_name, addr_spec))


def _part(subtype: str, text: str) -> tuple[bytes, bool]:
    """One UTF-8 text part (headers and body): 7bit when ASCII (free of :data:`BOUNDARY_MARK`, lines of at most
    998 octets), else base64 when more than a sixth of its bytes are 8-bit (quoted-printable would triple
    them), else quoted-printable; and whether a line of it starts with "." (SMTP then has to double that dot: RFC 5321 sec. 4.5.2)."""
    body = text.replace("\r\n", "\n").replace("\r", "\n") if "\r" in text else text
    if not body.endswith("\n"):
        body += "\n"
    if body.isascii() and BOUNDARY_MARK not in body and max(map(len, body.split("\n"))) <= 998:
        cte, payload = "7bit", body.replace("\n", "\r\n").encode("ascii")
    else:
        data = body.encode("utf-8")
        if len(data.translate(None, _ASCII_BYTES)) * 6 > len(data):
            cte, payload = "base64", base64_lines(data)  # no "." in the base64 alphabet
            head = f'--{BOUNDARY}\r\nContent-Type: text/{subtype}; charset="utf-8"\r\nContent-Transfer-Encoding: {cte}\r\n\r\n'
            return head.encode("ascii") + payload, False
        cte, payload = "quoted-printable", quoted_printable(body)
    head = f'--{BOUNDARY}\r\nContent-Type: text/{subtype}; charset="utf-8"\r\nContent-Transfer-Encoding: {cte}\r\n\r\n'
    return head.encode("ascii") + payload, payload.startswith(b".") or b"\n." in payload


def base64_lines(data: bytes) -> bytes:
    """``base64.encodebytes(data)`` (lines of 76 characters, RFC 2045 sec. 6.8) with CRLF line ends, byte for
    byte; encoded in one call and cut by slicing, several times faster than encodebytes' 57-byte loop."""
    encoded = binascii.b2a_base64(data, newline=False)
    if not encoded:
        return b""
    return b"\r\n".join([encoded[i : i + 76] for i in range(0, len(encoded), 76)]) + b"\r\n"


def quoted_printable(body: str) -> bytes:
    """``binascii.b2a_qp`` of ``body`` (LF line ends, the last line ended too) with CRLF line ends, byte for
    byte, made line by line: a quoted-printable line depends on its own input line only (RFC 2045 sec. 6.7),
    so the lines every message of a step and language shares are encoded once (:func:`_quoted_printable_line`)."""
    known = _QP_LINES
    return b"\r\n".join([known.get(line) or _quoted_printable_line(line) for line in body.split("\n")])


_QP_LINES: dict[str, bytes] = {}  # quoted-printable lines made lately, by their text
_QP_LINES_KEPT = 8192


def _quoted_printable_line(line: str) -> bytes:
    # With its CRLF so that soft line breaks are written "=\r\n" too; the CRLF is then cut off.
    encoded = binascii.b2a_qp(line.encode("utf-8") + b"\r\n", istext=True)[:-2]
    if len(_QP_LINES) >= _QP_LINES_KEPT:
        _QP_LINES.clear()
    _QP_LINES[line] = encoded
    return encoded


def _calendar(
    calendar: CalendarPart, boundary: str, *, attachment: bool, encoded: tuple[str, bytes]
) -> bytes:
    """One calendar part (delimiter, headers, body); ``encoded`` is ``(Content-Transfer-Encoding, payload with CRLF line ends)`` from :func:`_encode_calendar`."""
    cte, payload = encoded
    headers = "".join(
        f"{name}: {value}\r\n" for name, value in calendar_headers(calendar, attachment=attachment)
    )
    head = f"--{boundary}\r\n{headers}Content-Transfer-Encoding: {cte}\r\n\r\n"
    return head.encode("ascii") + payload


def _encode_calendar(calendar: CalendarPart) -> tuple[str, bytes]:
    cte = calendar_encoding(calendar.data)
    if cte == "base64":
        return cte, base64_lines(calendar.data)
    data = calendar.data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    return cte, data if data.endswith(b"\r\n") else data + b"\r\n"


class Composer:
    """Writes message bytes for one sender and list; build once per process, then :meth:`compose`.

    ``list_id`` a dot-atom (see :func:`mailer.message_ids.make_list_id`), ``list_name`` its optional
    description; ``unsubscribe_mailto`` an address or "mailto:address". Raises ValueError at construction for a malformed sender, list id or mailto.
    """

    def __init__(self, sender: Sender, *, list_id: str, unsubscribe_mailto: str, list_name: str = "") -> None:
        if not DOT_ATOM.match(list_id):
            raise ValueError(
                f"malformed List-Id {list_id!r}: expected a dot-atom like 'webinars.example.org'"
            )
        self.sender = sender
        from_spec, from_utf8 = config_address(sender.address, "sender address")
        reply = config_address(sender.reply_to, "reply_to") if sender.reply_to else None
        self._sender_utf8 = from_utf8 or bool(reply and reply[1])
        self._originator = _field("From", mailbox("From", sender.name, from_spec))
        if reply is not None:
            self._originator += _field("Reply-To", mailbox("Reply-To", "", reply[0]))
        self._list_id = _field("List-Id", mailbox("List-Id", list_name, list_id))
        self._mailto = f"<{mailto_uri(unsubscribe_mailto)}>"
        self._unsubscribe: dict[str | None, bytes] = {
            None: _field("List-Unsubscribe", url_list("List-Unsubscribe", [self._mailto]))
        }
        self._content_type = f'Content-Type: multipart/alternative; boundary="{BOUNDARY}"\r\n\r\n'.encode(
            "ascii"
        )
        self._mixed_type = (
            f'Content-Type: multipart/mixed; boundary="{MIXED_BOUNDARY}"\r\n\r\n--{MIXED_BOUNDARY}\r\n'
        ).encode("ascii") + self._content_type
        self._languages: dict[str, bytes] = {}

    def _language(self, language: str) -> bytes:
        block = self._languages.get(language)
        if block is None:
            if not LANGUAGE_TAG.match(language):
                raise ValueError(f"malformed language tag {language!r}")
            block = self._languages[language] = b"MIME-Version: 1.0\r\n" + _field(
                "Content-Language", language
            )
        return block

    def _list_unsubscribe(self, url: str | None) -> bytes:
        field = self._unsubscribe.get(url)
        if field is None:
            if not HEADER_URL.match(url or ""):
                raise ValueError(f"unsubscribe URL must be an ASCII http(s) URL without spaces: {url!r}")
            field = _field("List-Unsubscribe", url_list("List-Unsubscribe", [self._mailto, f"<{url}>"]))
            if len(self._unsubscribe) < 16:  # per-message URLs are not worth keeping
                self._unsubscribe[url] = field
        return field

    def compose(
        self,
        rendered: Rendered,
        recipient: Recipient,
        *,
        message_id: str,
        date: datetime,
        unsubscribe_url: str | None = None,
        auto_submitted: bool | None = None,
        calendar: CalendarPart | None = None,
    ) -> Composed:
        """The message for ``recipient`` as bytes (see the module docstring for its shape and fields).

        ``message_id`` "<id@domain>" (see :func:`mailer.message_ids.make_message_id`); ``date`` aware (written
        in UTC); ``unsubscribe_url`` an http(s) URL (One-Click only when https); ``auto_submitted`` None means:
        yes for the kinds of :data:`mailer.compose.mime.AUTO_SUBMITTED_KINDS` (``rendered.kind``);
        ``calendar`` adds the calendar parts.

        Raises :class:`mailer.errors.PermanentDeliveryError` when the recipient's address cannot be written,
        ValueError for a malformed message_id, language or URL, NaiveDatetimeError for a naive ``date``.
        """
        require_aware(date, "date")
        to_spec, to_utf8 = encode_address(recipient.email)
        if not MESSAGE_ID.match(message_id):
            raise ValueError(f"malformed Message-ID {message_id!r}: expected '<left@right>'")
        if auto_submitted is None:
            auto_submitted = rendered.kind in AUTO_SUBMITTED_KINDS
        (text, text_dot), (html, html_dot) = _part("plain", rendered.text), _part("html", rendered.html)
        parts = [
            b"Date: ",
            format_datetime(require_aware(date, "message date")).encode("ascii"),
            b"\r\n",
            self._originator,
            _to(recipient.display_name, to_spec),
            _subject(rendered.subject),
            b"Message-ID: ",
            message_id.encode("ascii"),
            b"\r\n",
            self._language(rendered.language),
            self._list_id,
            self._list_unsubscribe(unsubscribe_url),
        ]
        if unsubscribe_url is not None and unsubscribe_url.startswith("https://"):
            parts.append(b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n")
        if auto_submitted:
            parts.append(b"Auto-Submitted: auto-generated\r\n")
        parts += [
            self._content_type if calendar is None else self._mixed_type,
            text,
            b"\r\n",
            html,
            b"\r\n",
        ]
        if calendar is not None:
            encoded = _encode_calendar(calendar)  # the same bytes twice: inline and as the .ics file
            parts += [
                _calendar(calendar, BOUNDARY, attachment=False, encoded=encoded),
                b"\r\n",
                f"--{BOUNDARY}--\r\n\r\n".encode("ascii"),
                _calendar(calendar, MIXED_BOUNDARY, attachment=True, encoded=encoded),
                f"\r\n--{MIXED_BOUNDARY}--\r\n".encode("ascii"),
            ]
        else:
            parts.append(f"--{BOUNDARY}--\r\n".encode("ascii"))
        data = b"".join(parts)
        wire = data
        # Header lines start with a field name or, folded, with white space; boundaries with "--"; calendar
        # lines with a property name or a space (RFC 5545 sec. 3.1): only the text parts may hold a leading dot.
        if text_dot or html_dot:
            parts[parts.index(text)] = text.replace(b"\n.", b"\n..") if text_dot else text
            parts[parts.index(html)] = html.replace(b"\n.", b"\n..") if html_dot else html
            wire = b"".join(parts)
        return Composed(data, to_utf8 or self._sender_utf8, wire)
