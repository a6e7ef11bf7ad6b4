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

from mailer.compose.ics import CalendarPart, Method
from mailer.compose.mime import (
    AUTO_SUBMITTED_KINDS,
    BOUNDARY_MARK,
    DOT_ATOM,
    HEADER_URL,
    LANGUAGE_TAG,
    MAX_LINE,
    MESSAGE_ID,
    calendar_encoding,
    calendar_headers,
    config_address,
    encode_address,
    mailbox,
    mailbox_words,
    mailto_uri,
    unstructured,
    url_list,
)
from mailer.compose.personalise import Filled, Layout
from mailer.compose.render import Rendered
from mailer.config import Sender
from mailer.store.recipient import Recipient
from mailer.timeline.clock import require_aware

BOUNDARY = "=_mailer-alt-7f3a9c0d"
MIXED_BOUNDARY = "=_mailer-mix-7f3a9c0d"
_ALTERNATIVE_END = f"--{BOUNDARY}--\r\n".encode("ascii")
_ALTERNATIVE_END_MIXED = f"\r\n--{BOUNDARY}--\r\n\r\n".encode("ascii")
_MIXED_END = f"\r\n--{MIXED_BOUNDARY}--\r\n".encode("ascii")
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


def _to(display_name: str, addr_spec: str) -> bytes:
    """The To field; a name of plain words that fits one line with the address is written at once (what
    :func:`mailer.compose.mime.mailbox` then gives), else :func:`_folded_to`."""
    words = mailbox_words(display_name)
    if words is not None:
        value = f"{words} <{addr_spec}>" if words else f"<{addr_spec}>"
        if len(value) <= MAX_LINE - len("To: "):
            return f"To: {value}\r\n".encode()
    return _folded_to(display_name, addr_spec)


@lru_cache(maxsize=1024)
def _folded_to(display_name: str, addr_spec: str) -> bytes:
    return _field("To", mailbox("To", display_name, addr_spec))


def _text_part(subtype: str, text: str, filled: Filled | None) -> tuple[bytes, bool]:
    """:func:`_part`, from the shared lines of ``filled``'s layout encoded once (:func:`_shared`) when
    ``filled`` is the part of ``text``."""
    if filled is None or filled.text is not text:
        return _part(subtype, text)
    cache = filled.layout.cache
    if subtype not in cache:
        cache[subtype] = _shared(subtype, filled.layout)
    shared = cache[subtype]
    if isinstance(shared, _Shared):
        if any("\r" in line for line in filled.lines):
            return _part(subtype, text)
        return shared.part(filled.lines)
    if isinstance(shared, tuple):  # no personal line: the whole part, made once
        return shared
    return _part(subtype, text)


_HEADS = {
    (subtype, cte): (
        f'--{BOUNDARY}\r\nContent-Type: text/{subtype}; charset="utf-8"\r\nContent-Transfer-Encoding: {cte}\r\n\r\n'
    ).encode("ascii")
    for subtype in ("plain", "html")
    for cte in ("7bit", "quoted-printable", "base64")
}


def _has_dot(data: bytes) -> bool:
    """Whether a line of ``data`` (which starts at a line's start) starts with "."."""
    return data.startswith(b".") or b"\n." in data


def _interleave(shared: list[bytes], personal: list[bytes]) -> list[bytes]:
    """``shared[0], personal[0], shared[1], ..., shared[-1]``; ValueError unless ``shared`` has one more."""
    out = [*shared, *personal]  # the right length; then in order
    out[0::2] = shared
    out[1::2] = personal
    return out


def _shared(subtype: str, layout: Layout) -> _Shared | tuple[bytes, bool] | None:
    """What every message of ``layout``'s group shares in its ``text/<subtype>`` part: the whole part when
    it holds no personal line, None when its messages take :func:`_part` (a carriage return in the shared
    text, or a part ending with a personal line), else the :class:`_Shared` lines."""
    texts = list(layout.shared)
    if not layout.lines:
        return _part(subtype, texts[0])
    if not texts[-1] or any("\r" in text for text in texts):
        return None
    if not texts[-1].endswith("\n"):
        texts[-1] += "\n"  # as _part ends the body
    # Each text's own lines: the first ends where line 0 starts, the others start after a personal line.
    runs = [texts[0][:-1].split("\n") if texts[0] else []]
    runs += [text[1:-1].split("\n") if len(text) > 1 else [] for text in texts[1:-1]]
    runs.append(texts[-1][1:].split("\n"))
    return _Shared(subtype, runs, [text.encode("utf-8") for text in texts])


class _Shared:
    """A text or HTML part of a render group (:class:`~mailer.compose.personalise.Layout`), its shared lines
    encoded once: per message only the personal lines are encoded, and the part is the join of both.

    ``runs`` are the shared lines between the personal ones (the body ended as :func:`_part` ends it),
    ``utf8`` the shared texts' octets. A quoted-printable line depends on its own input line only (soft
    breaks included), and 7bit lines are the lines themselves, so the encoded shared lines are the same in
    every message; which encoding a message's part takes (:func:`_part`'s rules) is decided from what the
    shared lines hold (ASCII, the boundary mark, the longest line, the 8-bit octets) and what the personal
    lines add. Base64 is made from the whole part's octets.
    """

    __slots__ = (
        "ascii",
        "eight",
        "longest",
        "mark",
        "octets",
        "qp",
        "qp_dot",
        "seven",
        "seven_dot",
        "subtype",
        "utf8",
    )

    def __init__(self, subtype: str, runs: list[list[str]], utf8: list[bytes]) -> None:
        lines = [line for run in runs for line in run]
        self.subtype = subtype
        self.utf8 = utf8
        self.ascii = all(line.isascii() for line in lines)
        self.mark = any(BOUNDARY_MARK in line for line in lines)
        self.longest = max(map(len, lines))
        self.octets = sum(map(len, utf8))
        self.eight = sum(len(data.translate(None, _ASCII_BYTES)) for data in utf8)
        self.qp = _joined(runs, [[_quoted_printable_line(line) for line in run] for run in runs])
        self.qp_dot = any(map(_has_dot, self.qp))
        self.seven = _joined(runs, [[line.encode("ascii", "replace") for line in run] for run in runs])
        self.seven_dot = any(map(_has_dot, self.seven))  # (used only when all is ASCII)

    def part(self, lines: tuple[str, ...]) -> tuple[bytes, bool]:
        """The part (headers and body) with the personal ``lines`` (no carriage return in them), and whether
        a line of it starts with "."."""
        if (
            self.ascii
            and not self.mark
            and all(line.isascii() and BOUNDARY_MARK not in line for line in lines)
            and max(self.longest, *(max(map(len, line.split("\n"))) for line in lines)) <= 998
        ):
            cte, chunks, dot = "7bit", self.seven, self.seven_dot
            personal = [line.replace("\n", "\r\n").encode("ascii") for line in lines]
        else:
            data = [line.encode("utf-8") for line in lines]
            octets = self.octets + sum(map(len, data))
            eight = self.eight + sum(len(line.translate(None, _ASCII_BYTES)) for line in data)
            if eight * 6 > octets:
                body = b"".join(_interleave(self.utf8, data))
                return _HEADS[self.subtype, "base64"] + base64_lines(body), False
            cte, chunks, dot = "quoted-printable", self.qp, self.qp_dot
            personal = [quoted_printable_lines(line) for line in lines]
        return b"".join([_HEADS[self.subtype, cte], *_interleave(chunks, personal)]), dot or any(
            map(_has_dot, personal)
        )


def _joined(runs: list[list[str]], encoded: list[list[bytes]]) -> list[bytes]:
    """The encoded runs of shared lines with the line ends around the personal lines between them: the first
    run ends with one (when it has lines), the others start with one, the middle ones end with one too."""
    middle = [
        b"\r\n" + b"\r\n".join(encoded[k]) + b"\r\n" if runs[k] else b"\r\n" for k in range(1, len(runs) - 1)
    ]
    first = b"\r\n".join(encoded[0]) + b"\r\n" if runs[0] else b""
    return [first, *middle, b"\r\n" + b"\r\n".join(encoded[-1])]


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


def quoted_printable_lines(text: str) -> bytes:
    """:func:`quoted_printable` of ``text`` without its last line end and without keeping its lines (for
    the lines of one message)."""
    return b"\r\n".join(
        [binascii.b2a_qp(line.encode("utf-8") + b"\r\n", istext=True)[:-2] for line in text.split("\n")]
    )


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


@lru_cache(maxsize=64)
def _calendar_head(method: Method, filename: str, boundary: str, attachment: bool, cte: str) -> bytes:
    """A calendar part's delimiter and headers, up to its body."""
    calendar = CalendarPart(b"", method, filename)
    headers = "".join(
        f"{name}: {value}\r\n" for name, value in calendar_headers(calendar, attachment=attachment)
    )
    return f"--{boundary}\r\n{headers}Content-Transfer-Encoding: {cte}\r\n\r\n".encode("ascii")


def _encode_calendar(calendar: CalendarPart) -> tuple[str, bytes]:
    """``(Content-Transfer-Encoding, payload with CRLF line ends)`` of a calendar: base64 from the lines of its
    shared head made once (:func:`_base64_head`) when the calendar starts with it."""
    data = calendar.data
    cte = calendar_encoding(data)
    if cte == "base64":
        whole, lines = _base64_head(calendar.head) if data.startswith(calendar.head) else (0, b"")
        return cte, lines + base64_lines(data[whole:])
    data = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    return cte, data if data.endswith(b"\r\n") else data + b"\r\n"


@lru_cache(maxsize=256)
def _base64_head(head: bytes) -> tuple[int, bytes]:
    """The base64 lines of ``head``'s whole 57-octet lines (76 characters each), and how many octets they
    hold: the same at the start of every calendar beginning with ``head``."""
    whole = len(head) // 57 * 57
    return whole, base64_lines(head[:whole])


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
        self._unsubscribe_room = MAX_LINE - len("List-Unsubscribe: ") - len(self._mailto) - 2
        self._dates: tuple[object, bytes] = (None, b"")  # the last Date field, by its second

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
            if url is None or not HEADER_URL.match(url):  # None is always known
                raise ValueError(f"unsubscribe URL must be an ASCII http(s) URL without spaces: {url!r}")
            if len(self._unsubscribe) < 16:  # the first URLs are kept (a sample's); per-message ones not
                field = _field("List-Unsubscribe", url_list("List-Unsubscribe", [self._mailto, f"<{url}>"]))
                self._unsubscribe[url] = field
            else:  # what url_list gives for the two: the URL on the mailto's line when it fits there
                fold = "\r\n " if len(url) + 2 > self._unsubscribe_room else " "
                field = f"List-Unsubscribe: {self._mailto},{fold}<{url}>\r\n".encode("ascii")
        return field

    def _date(self, date: datetime) -> bytes:
        """The Date field of ``date`` (aware, in UTC; to the second): the last one is kept."""
        key = date.replace(microsecond=0)
        known, field = self._dates
        if key != known:
            field = b"Date: " + format_datetime(date).encode("ascii") + b"\r\n"
            self._dates = (key, field)
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
        date = require_aware(date, "date")
        to_spec, to_utf8 = encode_address(recipient.email)
        if not MESSAGE_ID.match(message_id):
            raise ValueError(f"malformed Message-ID {message_id!r}: expected '<left@right>'")
        if auto_submitted is None:
            auto_submitted = rendered.kind in AUTO_SUBMITTED_KINDS
        filled = rendered.filled or (None, None)
        text, text_dot = _text_part("plain", rendered.text, filled[0])
        html, html_dot = _text_part("html", rendered.html, filled[1])
        parts = [
            self._date(date),
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
            cte, payload = _encode_calendar(calendar)  # the same bytes twice: inline and as the .ics file
            method, filename = calendar.method, calendar.filename
            parts += [
                _calendar_head(method, filename, BOUNDARY, False, cte),
                payload,
                _ALTERNATIVE_END_MIXED,
                _calendar_head(method, filename, MIXED_BOUNDARY, True, cte),
                payload,
                _MIXED_END,
            ]
        else:
            parts.append(_ALTERNATIVE_END)
        data = b"".join(parts)
        wire = data
        # Header lines start with a field name or, folded, with white space; boundaries with "--"; calendar
        # lines with a property name or a space (RFC 5545 sec. 3.1): only the text parts may hold a leading dot.
        if text_dot or html_dot:
            parts[parts.index(text)] = text.replace(b"\n.", b"\n..") if text_dot else text
            parts[parts.index(html)] = html.replace(b"\n.", b"\n..") if html_dot else html
            wire = b"".join(parts)
        return Composed(data, to_utf8 or self._sender_utf8, wire)
