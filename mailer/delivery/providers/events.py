"""What every provider adapter produces: a :class:`ProviderEvent` (a report in the mailbox's shape plus the
provider's event id) and the checks they share (freshness of signed timestamps, JSON, time stamps)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from mailer import json_input
from mailer.delivery.handling import fingerprint
from mailer.delivery.reports import Recipient, Report
from mailer.errors import WebhookRefusedError
from mailer.store.models import ReportKind
from mailer.timeline.clock import require_aware

_STATUS = re.compile(r"(?<![\d.])([245]\.\d{1,3}\.\d{1,3})(?![\d.])")
FUTURE_SKEW = timedelta(minutes=5)  # a signed timestamp may run this far ahead of our clock


@dataclass(frozen=True)
class ProviderEvent:
    """One event a provider reported, as the :class:`Report` the bounce handling applies.

    ``event_id`` is the provider's id for this event (SNS MessageId, sg_event_id, Mailgun's event id,
    Postmark's record type and ID): the same event posted twice has the same :attr:`key`.
    """

    provider: str
    event_id: str
    report: Report

    @property
    def key(self) -> str:
        """The event's identity in ``bounce_reports``: SHA-256 of ``provider:event_id``, hex."""
        return fingerprint(f"{self.provider}:{self.event_id}".encode())


@dataclass(frozen=True)
class Webhook:
    """One verified webhook request: its events, or (SNS) a subscription URL to confirm with a GET."""

    events: tuple[ProviderEvent, ...] = ()
    confirm_url: str = ""
    ignored: int = 0  # events of kinds that change nothing here (opens, clicks, processed)


def fresh(moment: datetime, now: datetime, max_age: timedelta, what: str) -> None:
    """Raise WebhookRefusedError(403) when ``moment`` is older than ``max_age`` or ahead of ``now`` by more
    than :data:`FUTURE_SKEW` (a replayed or forged request); NaiveDatetimeError for a naive datetime."""
    moment, now = require_aware(moment, "moment"), require_aware(now, "now")
    if moment < now - max_age:
        raise WebhookRefusedError(403, f"{what} {moment.isoformat()} is older than {max_age}: a replay")
    if moment > now + FUTURE_SKEW:
        raise WebhookRefusedError(403, f"{what} {moment.isoformat()} is in the future")


def signed_time(signed_at: str, now: datetime, max_age: timedelta, what: str) -> None:
    """Check a signature's time stamp (Unix seconds or ISO 8601, as :func:`timestamp` reads it) the way
    :func:`fresh` does; WebhookRefusedError(400) when it cannot be read, as :func:`fresh` raises otherwise.
    Raises :class:`mailer.errors.NaiveDatetimeError` for a naive ``now``."""
    now = require_aware(now, "now")
    moment = timestamp(signed_at)
    if moment is None:
        raise WebhookRefusedError(400, f"unreadable {what} {signed_at[:20]!r}")
    fresh(moment, now, max_age, what)


def json_object(value: object) -> dict[str, Any]:
    """``value`` when it is a JSON object, else an empty one."""
    return value if isinstance(value, dict) else {}


def load_json(body: bytes | str, what: str = "the body") -> Any:
    """``body`` as JSON under :func:`mailer.json_input.load_json`'s rules (the API's); WebhookRefusedError(400)
    naming the problem when it breaks them."""
    try:
        return json_input.load_json(body, what)
    except json_input.JsonInputError as exc:
        raise WebhookRefusedError(400, str(exc)) from None


def timestamp(value: object) -> datetime | None:
    """``1622541600`` (Unix seconds, int, float or digits) or ``"2021-06-01T10:00:00.123Z"`` (ISO 8601 with
    an offset) as an aware UTC datetime; None for anything else."""
    try:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return datetime.fromtimestamp(float(value), UTC)
        if isinstance(value, str) and value.strip():
            text = value.strip()
            if re.fullmatch(r"\d{9,11}(\.\d+)?", text):
                return datetime.fromtimestamp(float(text), UTC)
            text = re.sub(r"(\.\d{6})\d+", r"\1", text.replace("Z", "+00:00"))
            moment = datetime.fromisoformat(text)
            return moment.astimezone(UTC) if moment.tzinfo else None
    except (ValueError, OverflowError, OSError):
        return None
    return None


def status_in(*texts: str) -> str:
    """The first enhanced status code (RFC 3463, ``5.1.1``) in ``texts``, or ``""``."""
    for text in texts:
        match = _STATUS.search(text or "")
        if match:
            return match.group(1)
    return ""


def bracketed(message_id: object) -> str:
    """A Message-ID as stored (``<...>``), from a provider that may drop the angle brackets; ``""`` if none."""
    text = str(message_id or "").strip()
    if not text:
        return ""
    return text if text.startswith("<") else f"<{text.strip('<>')}>"


def text(value: object, limit: int = 500) -> str:
    """A payload field as a one-line string of at most ``limit`` characters."""
    return " ".join(str(value).split())[:limit] if value is not None else ""


def recipient_report(
    kind: ReportKind,
    *,
    address: str,
    status_code: str,
    words: str,
    diagnostic: str,
    message_id: str,
    reporting_mta: str,
    arrived_at: datetime | None,
    provider_ids: tuple[str, ...] = (),
) -> Report:
    """A provider's event about one recipient (Mailgun, SendGrid) as a :class:`Report`: the recipient's
    action is ``delivered`` for a delivery, blank for a complaint and ``failed`` otherwise (RFC 3464 sec.
    2.3.3); its status is the enhanced status code (RFC 3463) in ``status_code``, else the first in
    ``words``; a complaint's feedback type is ``abuse`` (RFC 5965 sec. 3.1); ``message_id`` ("" when the event
    names none) is our Message-ID in brackets. Raises :class:`mailer.errors.NaiveDatetimeError` for a naive
    ``arrived_at``."""
    arrived_at = require_aware(arrived_at, "arrival time") if arrived_at is not None else None
    recipient = Recipient(
        address=address,
        action={ReportKind.DELIVERED: "delivered", ReportKind.COMPLAINT: ""}.get(kind, "failed"),
        status=status_in(status_code, words),
        diagnostic=diagnostic,
    )
    return Report(
        kind=kind,
        recipients=(recipient,),
        message_ids=(message_id,) if message_id else (),
        provider_ids=provider_ids,
        reporting_mta=reporting_mta,
        arrived_at=arrived_at,
        feedback_type="abuse" if kind is ReportKind.COMPLAINT else "",
    )
