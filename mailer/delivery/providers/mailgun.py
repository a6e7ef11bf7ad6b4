"""Mailgun's webhooks (``/webhooks/mailgun``): failed (permanent or temporary), complained, delivered.

Signature (Mailgun, "Securing Webhooks"): the body's ``signature`` object holds ``timestamp`` (Unix seconds),
``token`` (random, 50 characters) and ``signature``, the hex HMAC-SHA256 of ``timestamp`` followed by
``token`` keyed with the HTTP webhook signing key (from the environment). The timestamp must be no older
than ``max_age``.

``event-data`` (Mailgun, "Events"): ``event``, ``id`` (unique), ``timestamp``, ``recipient``, ``severity``
(permanent: hard; temporary: soft), ``reason``, ``delivery-status`` (``code``, ``message``, ``description``,
``enhanced-code``, ``mx-host``), ``message.headers.message-id`` (our Message-ID, without brackets).
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime
from typing import Any

from mailer.config.providers import ProviderWebhook
from mailer.delivery.providers.events import (
    ProviderEvent,
    Webhook,
    bracketed,
    json_object,
    load_json,
    recipient_report,
    signed_time,
    text,
    timestamp,
)
from mailer.errors import WebhookRefusedError
from mailer.store.models import ReportKind
from mailer.timeline.clock import require_aware


def verify(document: dict[str, Any], hook: ProviderWebhook, now: datetime) -> None:
    """Check the body's signature and its age; WebhookRefusedError otherwise."""
    now = require_aware(now, "now")
    key = hook.secret
    if not key:
        raise WebhookRefusedError(503, f"${hook.secret_env} is not set: cannot verify Mailgun events")
    signature = json_object(document.get("signature"))
    signed_at, token, given = (str(signature.get(name, "")) for name in ("timestamp", "token", "signature"))
    if not signed_at or not token or not given:
        raise WebhookRefusedError(403, "unsigned: no Mailgun signature, timestamp or token")
    expected = hmac.new(key.encode(), (signed_at + token).encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), given.lower().encode()):
        raise WebhookRefusedError(403, "Mailgun signature does not match")
    signed_time(signed_at, now, hook.max_age, "Mailgun timestamp")


def read(body: bytes, hook: ProviderWebhook, now: datetime) -> Webhook:
    """Verify one POST and read its event; raises WebhookRefusedError."""
    now = require_aware(now, "now")
    document = load_json(body)
    if not isinstance(document, dict):
        raise WebhookRefusedError(400, "Mailgun webhook body is not a JSON object")
    verify(document, hook, now)
    data = json_object(document.get("event-data"))
    name = data.get("event")
    if name == "failed":
        kind = ReportKind.HARD if data.get("severity") == "permanent" else ReportKind.SOFT
    elif name == "complained":
        kind = ReportKind.COMPLAINT
    elif name == "delivered":
        kind = ReportKind.DELIVERED
    else:
        return Webhook(ignored=1)
    event_id = text(data.get("id"), 200)
    if not event_id:
        raise WebhookRefusedError(400, "Mailgun event without an id")
    status = json_object(data.get("delivery-status"))
    code = text(status.get("code"), 10)
    words = text(status.get("message")) or text(status.get("description")) or text(data.get("reason"))
    diagnostic = " ".join(part for part in (code, words) if part) or text(name)
    message_id = bracketed(json_object(json_object(data.get("message")).get("headers")).get("message-id"))
    report = recipient_report(
        kind,
        address=text(data.get("recipient"), 320),
        status_code=text(status.get("enhanced-code"), 20),
        words=words,
        diagnostic=diagnostic,
        message_id=message_id,
        reporting_mta=text(status.get("mx-host"), 255) or "Mailgun",
        arrived_at=timestamp(data.get("timestamp")),
    )
    return Webhook(events=(ProviderEvent("mailgun", event_id, report),))
