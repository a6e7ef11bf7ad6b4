"""Reading what arrives at the bounce address: one pure function from a message's bytes to a :class:`Report`.

Kinds recognised, most specific first:

- complaint: an ARF feedback report (RFC 5965: ``multipart/report; report-type=feedback-report``, a
  ``message/feedback-report`` part), unless its Feedback-Type says the recipient did not complain
  (``not-spam``, ``auth-failure``: :data:`NOT_COMPLAINTS`), which is an ordinary message;
- delivery status: RFC 3464 ``message/delivery-status`` and RFC 6533 ``message/global-delivery-status``
  (UTF-8 addresses, ``utf-8;`` address type, ``\\x{HHHH}`` escapes), one field block per recipient: ``Action:
  failed`` with a 5.x.x status is hard, with 4.x.x soft, ``Action: delayed`` a warning;
- the common non-standard forms (Exchange/Outlook NDRs, Postfix, Exim and qmail plain-text bounces) through
  flufl.bounce's detectors, with the enhanced status (RFC 3463) and diagnostic line found in the text;
- auto-replies (RFC 3834 ``Auto-Submitted: auto-replied``, ``X-Autoreply``, "Out of Office" subjects);
- anything else: an ordinary message.

Whatever the report names, the parts that identify *our* message are collected for attribution
(mailer.delivery.attribution): the addresses it was sent to (a signed return path, mailer.delivery.verp), the
Message-IDs and Return-Paths in the returned headers (``text/rfc822-headers``, ``message/rfc822``,
``message/global-headers``, ``message/global``), and ARF's ``Original-Mail-From``.

:func:`parse_report` never raises: a parser that fails (flufl.bounce detectors raise IndexError on a message
without a From line) is recorded in ``Report.errors``, and a message nothing could read is kind ``unparsed``.
"""

from __future__ import annotations

import email
import email.header
import email.message
import email.utils
import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from flufl.bounce import all_failures

from mailer.store.models import ReportKind

_MESSAGE_ID = re.compile(r"^Message-ID:[ \t]*(<[^>\s]{1,250}>)", re.IGNORECASE | re.MULTILINE)
_RETURN_PATH = re.compile(r"^Return-Path:[ \t]*<([^>\s]{1,320})>", re.IGNORECASE | re.MULTILINE)
_STATUS = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d.])")
_UNICODE_ESCAPE = re.compile(r"\\x\{([0-9A-Fa-f]{1,6})\}")
_AUTO_SUBJECT = re.compile(
    r"^\s*(out of (the )?office|automatic reply|auto(matic)?[- ]?(reply|response)|auto:)", re.I
)
_SEVERITY = {ReportKind.HARD: 3, ReportKind.SOFT: 2, ReportKind.DELAYED: 1}
_TEXT_LIMIT = 1_000_000  # characters of body text searched for status lines and Message-IDs
_FLUFL_LIMIT = 2_000_000  # bytes: larger messages are not handed to flufl.bounce's line-by-line detectors


@dataclass(frozen=True)
class Recipient:
    """One recipient a report speaks about. ``address`` is Final-Recipient (else Original-Recipient)."""

    address: str
    original: str = ""  # Original-Recipient, when given
    action: str = ""  # failed | delayed | delivered | relayed | expanded ("" for non-standard reports)
    status: str = ""  # enhanced status code, "5.1.1"
    diagnostic: str = ""  # "smtp; 550 5.1.1 user unknown", or the bounce's own line


@dataclass(frozen=True)
class Report:
    """What one received message says. See the module docstring for how each field is found."""

    kind: ReportKind
    recipients: tuple[Recipient, ...] = ()
    sent_to: tuple[str, ...] = ()  # addresses the report was delivered to or names as our envelope sender
    message_ids: tuple[str, ...] = ()  # Message-IDs in the returned headers, "<...>"
    provider_ids: tuple[str, ...] = ()  # a sending provider's ids for the message (webhook events)
    reporting_mta: str = ""
    arrived_at: datetime | None = None
    feedback_type: str = ""  # ARF Feedback-Type ("abuse"), for complaints
    errors: tuple[str, ...] = ()  # parsers that failed on this message, "flufl.bounce: IndexError: ..."

    @property
    def status(self) -> str:
        """The first recipient's enhanced status code, or "" ."""
        return next((r.status for r in self.recipients if r.status), "")

    @property
    def diagnostic(self) -> str:
        """The first recipient's diagnostic, or ""."""
        return next((r.diagnostic for r in self.recipients if r.diagnostic), "")

    @property
    def smtp_code(self) -> int | None:
        """The SMTP reply code in the diagnostic (550), else one implied by the status class (5.x.x: 550)."""
        match = re.search(r"(?<!\d)([245]\d\d)(?!\d)", self.diagnostic)
        if match:
            return int(match.group(1))
        return {"5": 550, "4": 450}.get(self.status[:1])


def _text(value: object) -> str:
    """A header value as text: compat32 keeps undecodable bytes as surrogates or Header objects; UTF-8 wins."""
    if isinstance(value, email.header.Header):
        chunks = email.header.decode_header(value)
        return "".join(
            c.decode(charset if charset and charset != "unknown-8bit" else "utf-8", "replace")
            if isinstance(c, bytes)
            else c
            for c, charset in chunks
        )
    text = str(value)
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeError:
        return text.encode("utf-8", "replace").decode("utf-8")


def _unfold(value: str) -> str:
    return " ".join(value.split())


def _decoded(part: email.message.Message) -> str:
    raw = part.get_payload(decode=True)
    if isinstance(raw, bytes):
        return raw.decode("utf-8", "replace")
    payload = part.get_payload()
    return payload if isinstance(payload, str) else ""


def _part_text(part: email.message.Message) -> str:
    """A leaf part's text. A ``message/*`` part the parser split into header blocks (how compat32 reads
    delivery-status, and any 8bit message/* part) is written back as the text it came from."""
    payload = part.get_payload()
    if not isinstance(payload, list):
        return _decoded(part)[:_TEXT_LIMIT]
    chunks: list[str] = []
    for sub in payload:
        if isinstance(sub, email.message.Message):
            head = "\n".join(f"{name}: {_text(value)}" for name, value in sub.raw_items())
            body = "" if sub.is_multipart() else _decoded(sub)
            chunks.append(f"{head}\n\n{body}" if body else head)
    return "\n\n".join(chunks)[:_TEXT_LIMIT]


def _blocks(part: email.message.Message) -> list[dict[str, str]]:
    """The field blocks of a delivery-status or feedback-report part, names lower-cased, values unfolded."""
    blocks: list[dict[str, str]] = []
    for chunk in re.split(r"\r?\n[ \t]*\r?\n", _part_text(part)):
        fields: dict[str, str] = {}
        name = ""
        for line in chunk.splitlines():
            if line[:1] in (" ", "\t") and name:
                fields[name] += " " + line.strip()
            elif ":" in line:
                name, _, value = line.partition(":")
                name = name.strip().lower()
                fields[name] = value.strip()
        if fields:
            blocks.append({key: _unfold(value) for key, value in fields.items()})
    return blocks


def _unescaped(match: re.Match[str]) -> str:
    """The character a ``\\x{HHHH}`` escape names; the escape itself when it names no character (a surrogate,
    beyond U+10FFFF) or a control character, which no address holds."""
    code = int(match.group(1), 16)
    if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF or code < 0x20 or code == 0x7F:
        return match.group(0)
    return chr(code)


def _address(value: str) -> str:
    """``rfc822; a@b.example`` or ``utf-8; j\\x{E9}@b.example`` -> the address itself."""
    kind, semi, rest = value.partition(";")
    address = rest if semi else kind
    if semi and kind.strip().lower() == "utf-8":
        address = _UNICODE_ESCAPE.sub(_unescaped, address)
    return address.strip().strip("<>").strip()


def _after_type(value: str) -> str:
    """``dns; relay.example.net`` -> ``relay.example.net``."""
    return value.partition(";")[2].strip() if ";" in value else value.strip()


def _date(value: str) -> datetime | None:
    """A date header as an aware UTC datetime; None when it cannot be read or is out of range in UTC
    (``Fri, 31 Dec 9999 23:59:00 -0100``)."""
    try:
        moment = email.utils.parsedate_to_datetime(value)
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _bodies(message: email.message.Message) -> list[tuple[str, str]]:
    """(content type, text) of every leaf part (a message/* part counts as a leaf), decoded as UTF-8."""
    found: list[tuple[str, str]] = []
    for part in message.walk():
        kind = part.get_content_type()
        if part.is_multipart() and not kind.startswith("message/"):
            continue
        found.append((kind, _part_text(part)))
    return found


def _returned(message: email.message.Message) -> tuple[list[str], list[str]]:
    """Message-IDs and Return-Paths of the returned original (attached or quoted in the text)."""
    ids: list[str] = []
    paths: list[str] = []
    for part in message.walk():
        kind = part.get_content_type()
        if kind in ("message/rfc822", "message/global"):
            payload = part.get_payload()
            inner = payload[0] if isinstance(payload, list) and payload else None
            if isinstance(inner, email.message.Message):
                if inner.get("Message-ID"):
                    ids.append(_unfold(_text(inner["Message-ID"])))
                if inner.get("Return-Path"):
                    paths.append(_text(inner["Return-Path"]).strip().strip("<>"))
    for kind, text in _bodies(message):
        if kind.startswith("text/") or kind == "message/global-headers":
            ids.extend(_MESSAGE_ID.findall(text))
            paths.extend(_RETURN_PATH.findall(text))
    return list(dict.fromkeys(ids)), list(dict.fromkeys(paths))


def _sent_to(message: email.message.Message) -> list[str]:
    addresses: list[str] = []
    for name in ("To", "Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To"):
        for value in message.get_all(name) or []:
            for _, address in email.utils.getaddresses([_text(value)]):
                if address:
                    addresses.append(address)
    return addresses


def _status_line(texts: list[str]) -> tuple[str, str]:
    """The first enhanced status code in the text and the line it stands on (the diagnostic)."""
    for text in texts:
        match = _STATUS.search(text)
        if match:
            start = text.rfind("\n", 0, match.start()) + 1
            end = text.find("\n", match.end())
            line = text[start : end if end >= 0 else len(text)].strip(" \t\r<>")
            return ".".join(match.groups()), _unfold(line)[:500]
    return "", ""


def _dsn(message: email.message.Message, base: Report) -> Report | None:
    parts = [
        p
        for p in message.walk()
        if p.get_content_type() in ("message/delivery-status", "message/global-delivery-status")
    ]
    if not parts:
        return None
    recipients: list[Recipient] = []
    mta = ""
    arrived: datetime | None = None
    for part in parts:
        blocks = _blocks(part)
        for fields in blocks:
            mta = mta or _after_type(fields.get("reporting-mta", ""))
            arrived = arrived or _date(fields.get("arrival-date", ""))
            final = _address(fields.get("final-recipient", ""))
            original = _address(fields.get("original-recipient", ""))
            if not final and not original:
                continue
            status_match = _STATUS.search(fields.get("status", ""))
            recipients.append(
                Recipient(
                    address=final or original,
                    original=original,
                    action=fields.get("action", "").lower(),
                    status=".".join(status_match.groups()) if status_match else "",
                    diagnostic=fields.get("diagnostic-code", "")[:500],
                )
            )
    kind = ReportKind.OTHER
    for recipient in recipients:
        found = recipient_kind(recipient)
        if found is not None and _SEVERITY[found] > _SEVERITY.get(kind, 0):
            kind = found
    return replace(
        base,
        kind=kind,
        recipients=tuple(recipients),
        reporting_mta=mta or base.reporting_mta,
        arrived_at=arrived or base.arrived_at,
    )


def recipient_kind(recipient: Recipient) -> ReportKind | None:
    """What one DSN recipient's block says: hard or soft failure, delay, or None (no failure)."""
    if recipient.action == "delayed":
        return ReportKind.DELAYED
    if recipient.action == "failed":
        return ReportKind.SOFT if recipient.status.startswith("4") else ReportKind.HARD
    return None  # delivered, relayed, expanded: no failure


# Feedback types (RFC 5965 sec. 7.3 registry) by which a reporter says the recipient did *not* complain:
# "not-spam" (RFC 6430: the recipient moved it out of the spam folder) and "auth-failure" (RFC 6591: the
# message failed SPF or DKIM checks, a report about our sending, or about a forgery of it).
NOT_COMPLAINTS = frozenset({"not-spam", "auth-failure"})


def complaint_kind(feedback_type: str) -> ReportKind:
    """COMPLAINT for a feedback report of ``feedback_type`` (abuse, fraud, virus, other, ...), OTHER (recorded,
    nothing done) for the types in :data:`NOT_COMPLAINTS`."""
    return ReportKind.OTHER if feedback_type.strip().lower() in NOT_COMPLAINTS else ReportKind.COMPLAINT


def _complaint(message: email.message.Message, base: Report) -> Report | None:
    parts = [p for p in message.walk() if p.get_content_type() == "message/feedback-report"]
    if not parts:
        return None
    fields: dict[str, str] = {}
    for block in _blocks(parts[0]):
        for name, value in block.items():
            fields.setdefault(name, value)
    if not fields.get("feedback-type", "").strip():  # REQUIRED (RFC 5965 sec. 3.1): a cut-off report is none
        return None
    sent_to = list(base.sent_to)
    if fields.get("original-mail-from"):
        sent_to.insert(0, fields["original-mail-from"].strip().strip("<>"))
    named = _address(fields.get("original-rcpt-to", ""))
    return replace(
        base,
        kind=complaint_kind(fields["feedback-type"]),
        recipients=(Recipient(named, diagnostic=fields.get("feedback-type", "abuse")),) if named else (),
        reporting_mta=_after_type(fields.get("reporting-mta", "")) or base.reporting_mta,
        arrived_at=_date(fields.get("arrival-date", "")) or base.arrived_at,
        sent_to=tuple(sent_to),
        feedback_type=fields.get("feedback-type", "abuse").lower(),
    )


def _is_auto_reply(message: email.message.Message) -> bool:
    auto = _text(message.get("Auto-Submitted", "")).strip().lower()
    if auto and auto != "no":
        return True
    if any(message.get(name) for name in ("X-Autoreply", "X-Autorespond", "X-Auto-Response-Suppress")):
        return True
    if _text(message.get("Precedence", "")).strip().lower() == "auto_reply":
        return True
    return bool(_AUTO_SUBJECT.match(_text(message.get("Subject", ""))))


def _looks_like_bounce(message: email.message.Message) -> bool:
    sender = _text(message.get("From", "")).lower()
    subject = _text(message.get("Subject", "")).lower()
    return any(word in sender for word in ("mailer-daemon", "postmaster", "mail delivery")) or any(
        word in subject for word in ("undeliver", "delivery status", "failure notice", "returned mail")
    )


def storable(text: str) -> str:
    """``text`` as any store keeps it: a NUL character (PostgreSQL's text refuses it) and a lone surrogate
    (not UTF-8) become U+FFFD, so an address holding one never matches a real one."""
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in text)
    return text


def storable_report(report: Report) -> Report:
    """``report`` with every text :func:`storable`: what the bytes or a provider's event said, never a
    value the store refuses (which would stop a whole batch of reports as if the store had failed)."""

    def each(values: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(storable(value) for value in values)

    return replace(
        report,
        recipients=tuple(
            Recipient(
                storable(r.address),
                storable(r.original),
                storable(r.action),
                storable(r.status),
                storable(r.diagnostic),
            )
            for r in report.recipients
        ),
        sent_to=each(report.sent_to),
        message_ids=each(report.message_ids),
        provider_ids=each(report.provider_ids),
        reporting_mta=storable(report.reporting_mta),
        feedback_type=storable(report.feedback_type),
        errors=each(report.errors),
    )


def parse_report(raw: bytes) -> Report:
    """What the message ``raw`` (RFC 5322 bytes, as stored in a mailbox) reports, every text
    :func:`storable`. Never raises."""
    return storable_report(_parse(raw))


def _parse(raw: bytes) -> Report:
    errors: list[str] = []
    try:
        message = email.message_from_bytes(raw)
        ids, paths = _returned(message)
        sender_domain = email.utils.parseaddr(_text(message.get("From", "")))[1].rpartition("@")[2]
        base = Report(
            kind=ReportKind.OTHER,
            sent_to=tuple(dict.fromkeys([*_sent_to(message), *paths])),
            message_ids=tuple(ids),
            reporting_mta=sender_domain,
            arrived_at=_date(_text(message.get("Date", ""))),
        )
        feedback = _complaint(message, base)
        if feedback is not None:  # a complaint, or a feedback report that is none (not-spam): nothing else
            return feedback
        found = _dsn(message, base)
        if found is not None and found.kind is not ReportKind.OTHER:
            return found
    except Exception as exc:  # noqa: BLE001 - a report that breaks the reader is kept as unparsed
        return Report(kind=ReportKind.UNPARSED, errors=(f"email parser: {type(exc).__name__}: {exc}",))
    temporary: frozenset[bytes] = frozenset()
    permanent: frozenset[bytes] = frozenset()
    if len(raw) <= _FLUFL_LIMIT:
        try:
            temporary, permanent = all_failures(message)
        except Exception as exc:  # noqa: BLE001 - third-party detectors fail on odd input (IndexError)
            errors.append(f"flufl.bounce: {type(exc).__name__}: {exc}")
    texts = [text for kind, text in _bodies(message) if kind.startswith("text/")]
    status, line = (
        _status_line(texts) if (permanent or temporary or _looks_like_bounce(message)) else ("", "")
    )
    base = replace(base, errors=tuple(errors))
    if permanent or (status.startswith("5") and not temporary):
        kind = ReportKind.SOFT if status.startswith("4") else ReportKind.HARD
        names = sorted(a.decode("utf-8", "replace").strip().strip("<>") for a in permanent) or [""]
        recipients = tuple(Recipient(name, action="failed", status=status, diagnostic=line) for name in names)
        return replace(base, kind=kind, recipients=recipients)
    if temporary:
        names = sorted(a.decode("utf-8", "replace").strip().strip("<>") for a in temporary)
        recipients = tuple(
            Recipient(name, action="delayed", status=status, diagnostic=line) for name in names
        )
        return replace(base, kind=ReportKind.DELAYED, recipients=recipients)
    if found is not None:  # a delivery-status report of successes only (relayed, delivered)
        return found
    if _is_auto_reply(message):
        return replace(base, kind=ReportKind.AUTO_REPLY)
    return replace(base, kind=ReportKind.UNPARSED if errors else ReportKind.OTHER)
