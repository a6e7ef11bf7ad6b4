"""Postmark's Bounce, Spam Complaint and Delivery webhooks (``/webhooks/postmark``).

Postmark signs nothing; it documents HTTP basic auth in the webhook URL (``https://user:password@host/
webhooks/postmark``), checked here against the configured user name and the password from the environment.
Without a signed timestamp, a replay is told by the event's own time (``BouncedAt``, ``DeliveredAt``):
older than ``max_age`` (Postmark retries for about 10 hours) is refused.

The body is one JSON object (Postmark, "Bounce webhook", "Spam complaint webhook", "Delivery webhook"):
``RecordType`` Bounce, SpamComplaint or Delivery, ``ID`` (bounces and complaints), ``MessageID`` (Postmark's id,
the one of its ``250`` reply), ``Email`` or ``Recipient``, ``Type``, ``Description``, ``Details``. Bounce types:

    HardBounce, BadEmailAddress                        hard
    Transient, SoftBounce, DnsError, Blocked,          soft
    SpamNotification
    SpamComplaint                                      complaint
    AutoResponder                                      auto-reply (recorded, nothing done)
    anything else                                      recorded, nothing done
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from mailer.config.providers import ProviderWebhook
from mailer.delivery.providers.events import (
    ProviderEvent,
    Webhook,
    fresh,
    load_json,
    status_in,
    text,
    timestamp,
)
from mailer.delivery.reports import Recipient, Report
from mailer.errors import WebhookRefusedError
from mailer.store.models import ReportKind
from mailer.timeline.clock import require_aware

_BOUNCE_KINDS = {
    "HardBounce": ReportKind.HARD,
    "BadEmailAddress": ReportKind.HARD,
    "Transient": ReportKind.SOFT,
    "SoftBounce": ReportKind.SOFT,
    "DnsError": ReportKind.SOFT,
    "Blocked": ReportKind.SOFT,
    "SpamNotification": ReportKind.SOFT,
    "SpamComplaint": ReportKind.COMPLAINT,
    "AutoResponder": ReportKind.AUTO_REPLY,
}


def verify(headers: Mapping[str, str], hook: ProviderWebhook) -> None:
    """Check the basic-auth credentials (``headers`` with lower-case names); WebhookRefusedError 401 when
    they are missing or wrong, 503 when the password is not configured."""
    password = hook.secret
    if not password:
        raise WebhookRefusedError(503, f"${hook.secret_env} is not set: cannot check Postmark's credentials")
    scheme, _, encoded = headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic" or not encoded:
        raise WebhookRefusedError(401, "no basic-auth credentials")
    try:
        user, colon, given = base64.b64decode(encoded.strip(), validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        raise WebhookRefusedError(401, "unreadable basic-auth credentials") from None
    expected = f"{hook.username}:{password}".encode()
    if not colon or not hmac.compare_digest(f"{user}:{given}".encode(), expected):
        raise WebhookRefusedError(401, f"wrong basic-auth credentials for user {user[:40]!r}")


def read(headers: Mapping[str, str], body: bytes, hook: ProviderWebhook, now: datetime) -> Webhook:
    """Verify one POST and read its event; raises WebhookRefusedError."""
    now = require_aware(now, "now")
    verify(headers, hook)
    entry = load_json(body)
    if not isinstance(entry, dict):
        raise WebhookRefusedError(400, "Postmark event is not a JSON object")
    record = entry.get("RecordType")
    if record not in ("Bounce", "SpamComplaint", "Delivery"):
        return Webhook(ignored=1)
    happened = timestamp(entry.get("DeliveredAt" if record == "Delivery" else "BouncedAt"))
    if happened is None:
        raise WebhookRefusedError(400, f"Postmark {record} without a readable time")
    fresh(happened, now, hook.max_age, f"Postmark {record} time")
    return Webhook(events=(_event(entry, str(record), happened),))


def _event(entry: dict[str, Any], record: str, happened: datetime) -> ProviderEvent:
    details = text(entry.get("Details"))
    description = text(entry.get("Description"))
    if record == "Delivery":
        kind, address = ReportKind.DELIVERED, text(entry.get("Recipient"), 320)
        event_id = f"delivery:{text(entry.get('MessageID'), 100)}:{address}"
    else:
        bounce_type = "SpamComplaint" if record == "SpamComplaint" else text(entry.get("Type"), 40)
        kind = _BOUNCE_KINDS.get(bounce_type, ReportKind.OTHER)
        address = text(entry.get("Email"), 320)
        event_id = f"{record}:{text(entry.get('ID'), 40)}"
        details = f"{bounce_type}: {details or description}".strip()
    provider_id = text(entry.get("MessageID"), 255)
    report = Report(
        kind=kind,
        recipients=(
            Recipient(
                address=address,
                action={ReportKind.HARD: "failed", ReportKind.SOFT: "failed"}.get(kind, ""),
                status=status_in(details, description),
                diagnostic=details or description,
            ),
        ),
        provider_ids=(provider_id,) if provider_id else (),
        reporting_mta="Postmark",
        arrived_at=happened,
        feedback_type="abuse" if kind is ReportKind.COMPLAINT else "",
    )
    return ProviderEvent("postmark", event_id, report)
