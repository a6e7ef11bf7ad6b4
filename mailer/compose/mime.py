"""Build the RFC 5322 message for one rendered email, and the bytes to give SMTP DATA.

Shape: ``multipart/alternative`` holding ``text/plain`` then ``text/html`` (RFC 2046 §5.1.4: the richest
part last), both UTF-8, each 7bit when ASCII, else quoted-printable or base64 (whichever is smaller).
With a calendar (:mod:`mailer.compose.ics`), as Gmail and Outlook send invitations::

    multipart/mixed
    ├── multipart/alternative
    │   ├── text/plain
    │   ├── text/html
    │   └── text/calendar; method=REQUEST|CANCEL   what Outlook and Gmail show as an invitation card
    └── application/ics; name="invite.ics"         attachment, for every other client

The calendar parts are 7bit when ASCII, else base64 of their UTF-8 bytes (CRLF kept, as RFC 5545 asks).

Headers are composed here, not by :mod:`email.headerregistry` (whose folding RFC 2047-encodes long URLs and
splits display names badly), and stored raw with :meth:`EmailMessage.set_raw`; the policy never refolds them.

- Every header value made from data goes through :func:`clean_header_text`: CR, LF and every other C0/C1
  control, DEL and U+2028/U+2029 become a space, runs of whitespace one space. No line break from data can
  reach a header, so a name cell holding "\\r\\nBcc: ..." stays inside the display name.
- Non-ASCII display names and subjects become RFC 2047 encoded-words (Q or B, whichever is shorter), folded so
  no line exceeds 76 characters (RFC 2047 §2; RFC 5322 §2.1.1 asks for 78).
- Addresses: an internationalised domain with an ASCII local part is written as its A-label (IDNA), so the
  message stays plain ASCII. A non-ASCII local part cannot be encoded (RFC 2047 §5 forbids encoded-words in
  an addr-spec): it is written raw in UTF-8 (RFC 6532), the message uses the SMTPUTF8 policy, and the
  transport must send it with ``MAIL FROM:<...> SMTPUTF8`` (RFC 6531) to a server that offers it.
  :func:`needs_smtputf8` tells which.
- Date (RFC 5322 §3.3) from an aware datetime, in UTC; Message-ID stable per outbox row (:func:`make_message_id`,
  DESIGN invariant 8); List-Id (RFC 2919); List-Unsubscribe (RFC 2369) with a mailto and, when given, the
  URL; List-Unsubscribe-Post only for an https URL (RFC 8058 §3.1); Auto-Submitted: auto-generated (RFC 3834
  §5) for reminders and notices; Content-Language (RFC 3282).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from datetime import datetime
from email.message import EmailMessage, MIMEPart
from email.policy import EmailPolicy
from email.utils import format_datetime
from urllib.parse import quote

from email_validator import EmailNotValidError, validate_email

from mailer.compose.ics import CalendarPart
from mailer.compose.render import Rendered
from mailer.config import Sender, StepKind
from mailer.errors import PermanentDeliveryError
from mailer.store.recipient import Recipient
from mailer.timeline.clock import require_aware

MAX_LINE = 76  # RFC 2047 §2: a header line holding encoded-words is at most 76 characters
#: Every multipart boundary starts with "=_" (which quoted-printable and base64 never write); a 7bit body
#: holding "--=_" is encoded instead, so no body line can be taken for a delimiter of any nesting level.
BOUNDARY_MARK = "--=_"
_WORD_MAX = 75  # RFC 2047 §2: one encoded-word is at most 75 characters
_WORD_OVERHEAD = len("=?utf-8?q??=")
_LONG_WORD = 60  # a literal word longer than this is encoded so that it can be folded

#: Headers are stored raw and never refolded; CRLF line ends for SMTP.
POLICY = EmailPolicy(linesep="\r\n", refold_source="none", cte_type="7bit", max_line_length=78)
#: The same with UTF-8 headers allowed (RFC 6532), for addresses with a non-ASCII local part.
POLICY_SMTPUTF8 = POLICY.clone(utf8=True)

_CONTROL_TO_SPACE = {c: " " for c in [*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029]}
_SURROGATE = re.compile("[\ud800-\udfff]")
_Q_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!*+-/")  # RFC 2047 §5(3)
_ATEXT = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+$")  # RFC 5322 §3.2.3
_ASCII_ADDRESS = re.compile(
    r"^[!#-'*+\-/-9=?A-Z^-~.]+@[A-Za-z0-9.\-\[\]:]+$"
)  # no space, quote, <>, (), comma
_MESSAGE_ID = re.compile(r"^<[!-;=?-~]+@[!-;=?-Z^-~]+>$")
_DOT_ATOM = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)+$")
_LANGUAGE_TAG = re.compile(r"^[A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*$")
_URL = re.compile(r"^https?://[!#-;=?-~]+$")  # ASCII, no space, quote, '<' or '>'
_ASCII_BYTES = bytes(range(128))
_BOUNDARY = re.compile(r'boundary="([^"]+)"')
_NEWLINE = re.compile(r"\r\n|\r|\n")  # as email.generator's NLCRE
CRLF = "\r\n"
_AUTO_SUBMITTED_KINDS = frozenset({StepKind.REMINDER, StepKind.NOTICE})


def clean_header_text(value: str) -> str:
    """One line of text safe for a header: controls and line breaks to spaces, whitespace collapsed, stripped.

    Lone surrogates become U+FFFD. Idempotent.
    """
    text = value.translate(_CONTROL_TO_SPACE)
    if not text.isascii():
        text = _SURROGATE.sub("\ufffd", text)
    return " ".join(text.split())


def encode_address(address: str) -> tuple[str, bool]:
    """The addr-spec to write in a header for ``address``, and whether it needs SMTPUTF8.

    ASCII addresses are kept as they are; an IDN domain becomes its A-label; a non-ASCII local part is kept
    raw (needs SMTPUTF8). Raises :class:`PermanentDeliveryError` for anything that is no single address
    (spaces, controls, brackets, commas, no "@").
    """
    if address.isascii():
        if not _ASCII_ADDRESS.match(address) or address.startswith("@") or address.endswith("@"):
            raise PermanentDeliveryError(f"unsendable address {address!r}")
        return address, False
    try:
        valid = validate_email(address, check_deliverability=False, allow_smtputf8=True)
    except EmailNotValidError as exc:
        raise PermanentDeliveryError(f"unsendable address {address!r}: {exc}") from None
    if valid.ascii_email:
        return valid.ascii_email, False
    return f"{valid.local_part}@{valid.ascii_domain or valid.domain}", True


def needs_smtputf8(message: EmailMessage) -> bool:
    """True when ``message`` carries a raw UTF-8 address and must be sent with the SMTPUTF8 extension."""
    return bool(message.policy.utf8)


def to_bytes(message: EmailMessage) -> bytes:
    """The message as bytes for SMTP DATA: CRLF line ends, UTF-8 headers only for SMTPUTF8 messages.

    A message as :func:`build_message` made it (raw headers, encoded parts) is written directly, byte for byte
    what :meth:`EmailMessage.as_bytes` would give, without its header re-parsing (about ten times faster);
    anything else (a header set through the normal API, another shape) goes through the standard generator.
    Dot-stuffing is the SMTP client's job.
    """
    out: list[str] = []
    if not _write(message, out):
        return message.as_bytes(policy=message.policy)
    return "".join(out).encode("utf-8" if message.policy.utf8 else "ascii")


def _write(part: EmailMessage | MIMEPart, out: list[str]) -> bool:
    """Append ``part`` in wire form (CRLF) to ``out``; False when it is not in the shape this module builds."""
    content_type = ""
    for name, value in part.raw_items():
        if not isinstance(value, str) or hasattr(value, "name"):
            return False  # a parsed header object: let the generator fold it
        out.append(f"{name}: {value.replace(chr(10), CRLF)}{CRLF}")
        if name.lower() == "content-type":
            content_type = value
    out.append(CRLF)
    payload = part._payload  # get_payload() would re-parse Content-Transfer-Encoding
    if isinstance(payload, list):
        match = _BOUNDARY.search(content_type)
        if not match or part.preamble is not None or part.epilogue is not None:
            return False
        boundary = match.group(1)
        for index, sub in enumerate(payload):
            out.append(f"--{boundary}{CRLF}" if index == 0 else f"{CRLF}--{boundary}{CRLF}")
            if not isinstance(sub, MIMEPart) or not _write(sub, out):
                return False
        out.append(f"{CRLF}--{boundary}--{CRLF}")
        return True
    if not isinstance(payload, str):
        return False
    out.append(payload.replace("\n", CRLF) if "\r" not in payload else CRLF.join(_NEWLINE.split(payload)))
    return True


def build_message(
    rendered: Rendered,
    recipient: Recipient,
    *,
    sender: Sender,
    message_id: str,
    date: datetime,
    list_id: str,
    unsubscribe_mailto: str,
    unsubscribe_url: str | None = None,
    list_name: str = "",
    auto_submitted: bool | None = None,
    calendar: CalendarPart | None = None,
) -> EmailMessage:
    """The message for ``recipient`` (an :class:`EmailMessage`; :func:`to_bytes` gives its wire form).

    ``message_id`` "<id@domain>" (see :func:`make_message_id`); ``date`` aware (written in UTC); ``list_id`` a
    dot-atom (see :func:`make_list_id`), ``list_name`` its optional description; ``unsubscribe_mailto`` an
    address or "mailto:address"; ``unsubscribe_url`` an http(s) URL (One-Click only when https).
    ``auto_submitted`` None means: yes for reminders and notices (``rendered.kind``). ``calendar`` adds the
    calendar parts (see the module docstring).

    Raises :class:`PermanentDeliveryError` when the recipient's address cannot be written, ValueError for a
    malformed message_id, list_id, language, URL or sender address, and
    :class:`mailer.errors.NaiveDatetimeError` for a naive ``date``.
    """
    to_spec, to_utf8 = encode_address(recipient.email)
    from_spec, from_utf8 = _config_address(sender.address, "sender address")
    reply = _config_address(sender.reply_to, "reply_to") if sender.reply_to else None
    if not _MESSAGE_ID.match(message_id):
        raise ValueError(f"malformed Message-ID {message_id!r}: expected '<left@right>'")
    if not _DOT_ATOM.match(list_id):
        raise ValueError(f"malformed List-Id {list_id!r}: expected a dot-atom like 'webinars.example.org'")
    if not _LANGUAGE_TAG.match(rendered.language):
        raise ValueError(f"malformed language tag {rendered.language!r}")
    unsubscribe = [f"<{_mailto(unsubscribe_mailto)}>"]
    if unsubscribe_url is not None:
        if not _URL.match(unsubscribe_url):
            raise ValueError(
                f"unsubscribe URL must be an ASCII http(s) URL without spaces: {unsubscribe_url!r}"
            )
        unsubscribe.append(f"<{unsubscribe_url}>")
    if auto_submitted is None:
        auto_submitted = rendered.kind in _AUTO_SUBMITTED_KINDS

    utf8 = to_utf8 or from_utf8 or bool(reply and reply[1])
    message = EmailMessage(policy=POLICY_SMTPUTF8 if utf8 else POLICY)
    message.set_raw("Date", format_datetime(require_aware(date, "message date")))
    message.set_raw("From", _mailbox("From", sender.name, from_spec))
    if reply is not None:
        message.set_raw("Reply-To", _mailbox("Reply-To", "", reply[0]))
    message.set_raw("To", _mailbox("To", recipient.display_name, to_spec))
    message.set_raw("Subject", _unstructured("Subject", rendered.subject))
    message.set_raw("Message-ID", message_id)
    message.set_raw("MIME-Version", "1.0")
    message.set_raw("Content-Language", rendered.language)
    message.set_raw("List-Id", _mailbox("List-Id", list_name, list_id))
    message.set_raw("List-Unsubscribe", _list("List-Unsubscribe", unsubscribe))
    if unsubscribe_url is not None and unsubscribe_url.startswith("https://"):
        message.set_raw("List-Unsubscribe-Post", "List-Unsubscribe=One-Click")
    if auto_submitted:
        message.set_raw("Auto-Submitted", "auto-generated")

    boundary = "=_" + hashlib.blake2b(message_id.encode("ascii"), digest_size=12).hexdigest()
    parts = [_text_part(rendered.text, "plain"), _text_part(rendered.html, "html")]
    if calendar is None:
        message.set_raw("Content-Type", f'multipart/alternative; boundary="{boundary}"')
        message.set_payload(parts)
        return message
    mixed = "=_m" + boundary[2:]  # neither boundary is a prefix of the other (RFC 2046 §5.1.1)
    parts.append(_calendar_part(calendar, attachment=False))
    alternative = MIMEPart(policy=POLICY)
    alternative.set_raw("Content-Type", f'multipart/alternative; boundary="{boundary}"')
    alternative.set_payload(parts)
    message.set_raw("Content-Type", f'multipart/mixed; boundary="{mixed}"')
    message.set_payload([alternative, _calendar_part(calendar, attachment=True)])
    return message


def calendar_headers(calendar: CalendarPart, *, attachment: bool) -> list[tuple[str, str]]:
    """Content-Type (and Content-Disposition) of a calendar part: the ``text/calendar`` alternative, whose
    ``method`` parameter matches the calendar's METHOD (RFC 6047 §2.4), or the ``application/ics`` file."""
    if not attachment:
        return [("Content-Type", f'text/calendar; charset="utf-8"; method={calendar.method.value}')]
    name = calendar.filename
    return [
        ("Content-Type", f'application/ics; name="{name}"'),
        ("Content-Disposition", f'attachment; filename="{name}"'),
    ]


def calendar_encoding(data: bytes, *, encode: bool = True) -> tuple[str, str]:
    """(Content-Transfer-Encoding, payload with LF line ends) for calendar bytes: 7bit when ASCII, free of
    :data:`BOUNDARY_MARK` and of lines over 998 octets, else base64 of the bytes as they are (CRLF lines,
    RFC 5545 §3.1). ``encode=False`` only decides: the payload is then "" (mailer.compose.wire encodes itself)."""
    if data.isascii() and BOUNDARY_MARK.encode("ascii") not in data:
        text = data.decode("ascii").replace("\r\n", "\n")
        if "\r" not in text and max(map(len, text.split("\n"))) <= 998:
            return "7bit", (text if text.endswith("\n") else text + "\n") if encode else ""
    return "base64", base64.encodebytes(data).decode("ascii") if encode else ""


def _calendar_part(calendar: CalendarPart, *, attachment: bool) -> MIMEPart:
    part = MIMEPart(policy=POLICY)
    for name, value in calendar_headers(calendar, attachment=attachment):
        part.set_raw(name, value)
    cte, payload = calendar_encoding(calendar.data)
    part.set_raw("Content-Transfer-Encoding", cte)
    part.set_payload(payload)
    return part


def _config_address(address: str, what: str) -> tuple[str, bool]:
    try:
        return encode_address(address)
    except PermanentDeliveryError as exc:
        raise ValueError(f"{what}: {exc}") from None


def _mailto(value: str) -> str:
    """``mailto:`` URI (RFC 6068) for an address, with ``?subject=unsubscribe`` unless a query is given."""
    text = value.strip()
    if text.lower().startswith("mailto:"):
        text = text[len("mailto:") :]
    address, _, query = text.partition("?")
    spec, _ = _config_address(address, "unsubscribe mailto")
    if query and not _URL.match("https://x/?" + query):
        raise ValueError(f"unsubscribe mailto query must be ASCII without spaces: {value!r}")
    return f"mailto:{quote(spec, safe='@!$*+-._~')}?{query or 'subject=unsubscribe'}"


def _text_part(text: str, subtype: str) -> MIMEPart:
    """One UTF-8 text part: 7bit if ASCII (and free of :data:`BOUNDARY_MARK`), else quoted-printable or base64."""
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


class _Folder:
    """Lays out tokens separated by single spaces into header lines of at most :data:`MAX_LINE` characters."""

    def __init__(self, name: str) -> None:
        self.lines: list[str] = []
        self.line = ""
        self.used = len(name) + 2  # "Name: "

    def room(self) -> int:
        """Characters available for the next token on this line (after its separating space)."""
        return MAX_LINE - self.used - (1 if self.line else 0)

    def newline(self) -> None:
        self.lines.append(self.line)
        self.line, self.used = "", 1  # a continuation line starts with one space

    def put(self, token: str) -> None:
        if self.line and len(token) > self.room():
            self.newline()
        if self.line:
            self.line += " "
            self.used += 1
        self.line += token
        self.used += len(token)

    def put_encoded(self, text: str) -> None:
        """``text`` as one or more adjacent encoded-words (their separating whitespace is not part of it)."""
        data = text.encode("utf-8")
        q_cost = sum(1 if b in _Q_SAFE or b == 0x20 else 3 for b in data)
        use_q = q_cost <= (len(data) + 2) // 3 * 4
        while text:
            if self.line and self.room() < _WORD_OVERHEAD + 12:
                self.newline()
            room = min(self.room(), _WORD_MAX) - _WORD_OVERHEAD
            chunk, text = _take(text, room, use_q)
            if not chunk:  # not even one character fits here: start a new line
                self.newline()
                continue
            raw = chunk.encode("utf-8")
            if use_q:
                encoded = "".join(chr(b) if b in _Q_SAFE else "_" if b == 0x20 else f"={b:02X}" for b in raw)
                self.put(f"=?utf-8?q?{encoded}?=")
            else:
                self.put(f"=?utf-8?b?{base64.b64encode(raw).decode('ascii')}?=")

    def value(self) -> str:
        return "\n ".join([*self.lines, self.line])


def _take(text: str, room: int, use_q: bool) -> tuple[str, str]:
    """Split ``text`` after the most whole characters whose encoding fits ``room`` characters."""
    cost = 0
    size = 0
    for index, char in enumerate(text):
        raw = char.encode("utf-8")
        if use_q:
            cost += sum(1 if b in _Q_SAFE or b == 0x20 else 3 for b in raw)
        else:
            size += len(raw)
            cost = (size + 2) // 3 * 4
        if cost > room:
            return text[:index], text[index:]
    return text, ""


def _needs_encoding(word: str) -> bool:
    return not word.isascii() or "=?" in word or len(word) > _LONG_WORD


def _unstructured(name: str, value: str) -> str:
    """RFC 5322 unstructured text: ASCII words literal, runs of other words as encoded-words (RFC 2047 §5(1))."""
    folder = _Folder(name)
    run: list[str] = []
    for word in clean_header_text(value).split(" "):
        if word and _needs_encoding(word):
            run.append(word)
            continue
        if run:
            folder.put_encoded(" ".join(run))
            run = []
        if word:
            folder.put(word)
    if run:
        folder.put_encoded(" ".join(run))
    return folder.value()


def _list(name: str, items: list[str]) -> str:
    """Comma-separated tokens (RFC 2369 URLs in angle brackets), folded after a comma."""
    folder = _Folder(name)
    for index, item in enumerate(items):
        folder.put(item + ("," if index < len(items) - 1 else ""))
    return folder.value()


def _mailbox(name: str, display_name: str, addr_spec: str) -> str:
    """``phrase <addr-spec>``: atoms, a quoted-string, or encoded-words (RFC 2047 §5(3)) for the phrase."""
    folder = _Folder(name)
    phrase = clean_header_text(display_name)
    words = phrase.split(" ") if phrase else []
    if any(_needs_encoding(word) for word in words):
        folder.put_encoded(phrase)
    elif all(_ATEXT.match(word) for word in words):
        for word in words:
            folder.put(word)
    elif words:
        quoted = [word.replace("\\", "\\\\").replace('"', '\\"') for word in words]
        quoted[0] = '"' + quoted[0]
        quoted[-1] += '"'
        for word in quoted:
            folder.put(word)
    folder.put(f"<{addr_spec}>")
    return folder.value()


__all__ = [
    "BOUNDARY_MARK",
    "MAX_LINE",
    "POLICY",
    "POLICY_SMTPUTF8",
    "build_message",
    "calendar_encoding",
    "calendar_headers",
    "clean_header_text",
    "encode_address",
    "needs_smtputf8",
    "to_bytes",
]
