"""The one place SMTP replies are classified (DESIGN invariant 7; reply codes as RFC 5321 sec. 4.2.1 has them).

:func:`classify` (pure) maps a reply code, or no reply at all, to a message status:

    2xx                                   -> sent
    4xx, connection refused or dropped,   -> deferred (retried with backoff until the deadline)
    timeout (no reply: ``code`` None)
    552 at RCPT                           -> deferred (RFC 5321 sec. 4.5.3.1.10: treat as 452)
    other 5xx at RCPT                     -> bounced  (hard bounce: the address is suppressed)
    5xx at AUTH                           -> deferred (our credentials, not the message: fix and it goes)
    5xx at connect, MAIL, DATA            -> failed   (permanent for this message, address kept)
    1xx, 3xx or any other code where a    -> failed   (as 5xx: SMTP defines no such completion reply,
    completion reply is due                            RFC 5321 sec. 4.2.1), except at AUTH (deferred)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from mailer.store.models import MessageStatus


class Phase(StrEnum):
    """Where in the SMTP dialogue a reply came."""

    CONNECT = "connect"  # greeting, EHLO, STARTTLS
    AUTH = "auth"  # AUTH (login)
    MAIL = "mail"
    RCPT = "rcpt"
    DATA = "data"


@dataclass(frozen=True)
class Reply:
    """A classified delivery result: ``status`` is SENT, DEFERRED, BOUNCED or FAILED; ``text`` the reason.

    ``retry_at`` (aware) is set on a deferral that made no attempt (the relay is unreachable: nothing of
    the message reached it): retry then, without counting an attempt. ``uncertain`` is set on a deferral
    whose message content was written and no reply to its final dot came (the connection closed or timed
    out): the server may have accepted it (RFC 1047), so a copy may already be on its way.
    """

    status: MessageStatus
    code: int | None
    text: str
    retry_at: datetime | None = None
    uncertain: bool = False


def classify(code: int | None, phase: Phase) -> MessageStatus:
    """Classify an SMTP reply ``code`` (None: no reply, i.e. connection error or timeout) at ``phase``."""
    if code is None:
        return MessageStatus.DEFERRED
    if 200 <= code < 300:
        return MessageStatus.SENT
    if 400 <= code < 500:
        return MessageStatus.DEFERRED
    if phase is Phase.RCPT and code == 552:
        return MessageStatus.DEFERRED
    if phase is Phase.RCPT and 500 <= code < 600:
        return MessageStatus.BOUNCED
    if phase is Phase.AUTH:
        return MessageStatus.DEFERRED
    return MessageStatus.FAILED


def refused(code: int, message: str, phase: Phase) -> Reply:
    """The server's reply ``code`` and ``message`` at ``phase``, classified. Bytes of the reply that were
    not UTF-8 (which aiosmtplib keeps as surrogate escapes, and no store can hold) become U+FFFD."""
    text = message.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return Reply(classify(code, phase), code, f"{phase.value}: {code} {text}")


def unanswered(phase: Phase, reason: str, *, uncertain: bool = False) -> Reply:
    """No reply at ``phase`` (connection refused, lost or timed out, ``reason`` saying which), classified;
    ``uncertain`` when the message's content had been written (see :class:`Reply`)."""
    if uncertain:
        reason += " after the message's content was sent: it may have been delivered"
    return Reply(classify(None, phase), None, f"{phase.value}: {reason}", uncertain=uncertain)


def expected(phase: Phase, code: int) -> bool:
    """The reply that lets a transaction go on: 250 to MAIL, 250 or 251 to RCPT, 354 to DATA (RFC 5321)."""
    return code == 354 if phase is Phase.DATA else code == 250 or (phase is Phase.RCPT and code == 251)


_QUEUED_AS = re.compile(r"\bqueued as:?\s+<?([A-Za-z0-9][\w.@=+/-]{3,200})>?", re.IGNORECASE)
_OK_ID = re.compile(
    r"^(?:2\.\d{1,3}\.\d{1,3}\s+)?ok:?\s+<?([A-Za-z0-9][\w.@=+/-]{7,200})>?\s*$", re.IGNORECASE
)


def provider_message_id(text: str) -> str:
    """The relay's id for an accepted message, read from the text of its 250 reply to DATA; ``""`` if none.

    ``"Ok 0100017a2b3c4d5e-1a2b-...-000000"`` (Amazon SES: the ``mail.messageId`` its notifications carry),
    ``"Ok: queued as 9Oqjh3IZSuynjc_Z7FPBaQ"`` (SendGrid: the start of ``sg_message_id``; Postfix and most
    relays say ``queued as``), ``"2.0.0 Ok: queued as 4F1A2B3C"``. A bare ``"OK"`` or ``"Great success"``
    gives ``""``. Angle brackets around the id are dropped.
    """
    first = text.strip().splitlines()[0].strip() if text.strip() else ""
    match = _QUEUED_AS.search(first) or _OK_ID.match(first)
    return match.group(1) if match else ""
