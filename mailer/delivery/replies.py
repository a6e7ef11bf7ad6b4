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
    the message reached it): retry then, without counting an attempt.
    """

    status: MessageStatus
    code: int | None
    text: str
    retry_at: datetime | None = None


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
    """The server's reply ``code`` and ``message`` at ``phase``, classified."""
    return Reply(classify(code, phase), code, f"{phase.value}: {code} {message}")


def unanswered(phase: Phase, reason: str) -> Reply:
    """No reply at ``phase`` (connection refused, lost or timed out, ``reason`` saying which), classified."""
    return Reply(classify(None, phase), None, f"{phase.value}: {reason}")


def expected(phase: Phase, code: int) -> bool:
    """The reply that lets a transaction go on: 250 to MAIL, 250 or 251 to RCPT, 354 to DATA (RFC 5321)."""
    return code == 354 if phase is Phase.DATA else code == 250 or (phase is Phase.RCPT and code == 251)
