"""The rules of a message's header fields and calendar parts, shared by the one builder
(:mod:`mailer.compose.wire`), which writes the message's bytes with them.

Header values are composed here, not by :mod:`email.headerregistry` (whose folding RFC 2047-encodes long URLs
and splits display names badly): each function returns a field's value with ``"\n "`` where it folds.

- Every header value made from data goes through :func:`clean_header_text`: CR, LF and every other C0/C1
  control, DEL and U+2028/U+2029 become a space, runs of whitespace one space. No line break from data can
  reach a header, so a name cell holding "\\r\\nBcc: ..." stays inside the display name.
- Non-ASCII display names and subjects become RFC 2047 encoded-words (Q or B, whichever is shorter), folded so
  no line exceeds 76 characters (RFC 2047 §2; RFC 5322 §2.1.1 asks for 78): :func:`unstructured`,
  :func:`mailbox`, :func:`url_list`.
- Addresses (:func:`encode_address`): an internationalised domain with an ASCII local part is written as its
  A-label (IDNA), so the message stays plain ASCII. A non-ASCII local part cannot be encoded (RFC 2047 §5
  forbids encoded-words in an addr-spec): it is written raw in UTF-8 (RFC 6532), and the transport must send
  the message with ``MAIL FROM:<...> SMTPUTF8`` (RFC 6531) to a server that offers it.
- The patterns a Message-ID (RFC 5322 §3.6.4), a List-Id (RFC 2919), a language tag (RFC 3282) and an
  unsubscribe URL (RFC 2369) must match; which step kinds are ``Auto-Submitted: auto-generated`` (RFC 3834
  §5: every automatic message, that is all but invitations).
- Calendar parts (:mod:`mailer.compose.ics`): their headers (:func:`calendar_headers`, RFC 6047 §2.4) and
  transfer encoding (:func:`calendar_encoding`): 7bit when ASCII, else base64 of their UTF-8 bytes (CRLF
  kept, as RFC 5545 asks).
"""

from __future__ import annotations

import base64
import re
from functools import lru_cache
from urllib.parse import quote

from email_validator import EmailNotValidError, validate_email

from mailer.compose.ics import CalendarPart
from mailer.config import StepKind
from mailer.errors import PermanentDeliveryError

MAX_LINE = 76  # RFC 2047 §2: a header line holding encoded-words is at most 76 characters
#: Every multipart boundary starts with "=_" (which quoted-printable and base64 never write); a 7bit body
#: holding "--=_" is encoded instead, so no body line can be taken for a delimiter of any nesting level.
BOUNDARY_MARK = "--=_"
_WORD_MAX = 75  # RFC 2047 §2: one encoded-word is at most 75 characters
_WORD_OVERHEAD = len("=?utf-8?q??=")
_LONG_WORD = 60  # a literal word longer than this is encoded so that it can be folded

_CONTROL_TO_SPACE = {c: " " for c in [*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029]}
_SURROGATE = re.compile("[\ud800-\udfff]")
_Q_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!*+-/")  # RFC 2047 §5(3)
_ATEXT = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+$")  # RFC 5322 §3.2.3
_ASCII_ADDRESS = re.compile(
    r"^[!#-'*+\-/-9=?A-Z^-~.]+@[A-Za-z0-9.\-\[\]:]+$"
)  # no space, quote, <>, (), comma
#: A Message-ID as written: ``<left@right>`` of printable ASCII (RFC 5322 §3.6.4).
MESSAGE_ID = re.compile(r"^<[!-;=?-~]+@[!-;=?-Z^-~]+>$")
#: A List-Id's identifier: a dot-atom like ``webinars.example.org`` (RFC 2919 §2).
DOT_ATOM = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)+$")
#: A Content-Language value: one BCP 47 tag (RFC 3282).
LANGUAGE_TAG = re.compile(r"^[A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*$")
#: A URL in List-Unsubscribe: ASCII http(s), no space, quote, '<' or '>' (RFC 2369 §2).
HEADER_URL = re.compile(r"^https?://[!#-;=?-~]+$")
#: Step kinds whose messages carry ``Auto-Submitted: auto-generated`` (RFC 3834 §5): all but invitations.
AUTO_SUBMITTED_KINDS = frozenset(StepKind) - {StepKind.INVITATION}


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


def calendar_encoding(data: bytes) -> str:
    """The Content-Transfer-Encoding of calendar bytes: "7bit" when ASCII, free of :data:`BOUNDARY_MARK` and of
    lines over 998 octets, else "base64" of the bytes as they are (CRLF lines kept, RFC 5545 §3.1)."""
    if data.isascii() and BOUNDARY_MARK.encode("ascii") not in data:
        text = data.decode("ascii").replace("\r\n", "\n")
        if "\r" not in text and max(map(len, text.split("\n"))) <= 998:
            return "7bit"
    return "base64"


def config_address(address: str, what: str) -> tuple[str, bool]:
    """:func:`encode_address` for an address from the configuration (``what`` names it): ValueError, not
    PermanentDeliveryError, when it cannot be written."""
    try:
        return encode_address(address)
    except PermanentDeliveryError as exc:
        raise ValueError(f"{what}: {exc}") from None


def mailto_uri(value: str) -> str:
    """``mailto:`` URI (RFC 6068) for an address, with ``?subject=unsubscribe`` unless a query is given."""
    text = value.strip()
    if text.lower().startswith("mailto:"):
        text = text[len("mailto:") :]
    address, _, query = text.partition("?")
    spec, _ = config_address(address, "unsubscribe mailto")
    if query and not HEADER_URL.match("https://x/?" + query):
        raise ValueError(f"unsubscribe mailto query must be ASCII without spaces: {value!r}")
    return f"mailto:{quote(spec, safe='@!$*+-._~')}?{query or 'subject=unsubscribe'}"


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


def unstructured(name: str, value: str) -> str:
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


def url_list(name: str, items: list[str]) -> str:
    """Comma-separated tokens (RFC 2369 URLs in angle brackets), folded after a comma."""
    folder = _Folder(name)
    for index, item in enumerate(items):
        folder.put(item + ("," if index < len(items) - 1 else ""))
    return folder.value()


@lru_cache(maxsize=4096)
def mailbox_words(display_name: str) -> str | None:
    """The phrase :func:`mailbox` writes for ``display_name`` before the address when it needs no
    encoded-word (atoms, or one quoted-string; "" for no name), as one line; None when it needs encoding.
    When ``"Name: " + phrase + " <addr-spec>"`` fits in :data:`MAX_LINE` characters that is the field."""
    phrase = clean_header_text(display_name)
    words = phrase.split(" ") if phrase else []
    if any(_needs_encoding(word) for word in words):
        return None
    if all(_ATEXT.match(word) for word in words):
        return " ".join(words)
    quoted = " ".join(word.replace("\\", "\\\\").replace('"', '\\"') for word in words)
    return f'"{quoted}"'


def mailbox(name: str, display_name: str, addr_spec: str) -> str:
    """``phrase <addr-spec>``: atoms, a quoted-string, or encoded-words (RFC 2047 §5(3)) for the phrase."""
    lines, line, used = _phrase(name, display_name)
    folder = _Folder(name)
    folder.lines, folder.line, folder.used = list(lines), line, used
    folder.put(f"<{addr_spec}>")
    return folder.value()


@lru_cache(maxsize=4096)
def _phrase(name: str, display_name: str) -> tuple[tuple[str, ...], str, int]:
    """The lines of field ``name`` once :func:`mailbox`'s phrase is laid out: (full lines, the line being
    filled, its width used), kept by display name (the RFC 2047 encoding of a name costs more than the rest)."""
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
    return tuple(folder.lines), folder.line, folder.used


__all__ = [
    "AUTO_SUBMITTED_KINDS",
    "BOUNDARY_MARK",
    "DOT_ATOM",
    "HEADER_URL",
    "LANGUAGE_TAG",
    "MAX_LINE",
    "MESSAGE_ID",
    "calendar_encoding",
    "calendar_headers",
    "clean_header_text",
    "config_address",
    "encode_address",
    "mailbox",
    "mailbox_words",
    "mailto_uri",
    "unstructured",
    "url_list",
]
