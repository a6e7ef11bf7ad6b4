"""SendGrid's Event Webhook (``/webhooks/sendgrid``), with the Signed Event Webhook turned on.

Signature (SendGrid, "Getting Started with the Event Webhook Security Features"): ECDSA over P-256 with
SHA-256 of the ``X-Twilio-Email-Event-Webhook-Timestamp`` header followed by the raw body, base64 DER in
``X-Twilio-Email-Event-Webhook-Signature``; the verification key (base64 DER SubjectPublicKeyInfo, as the
settings page shows it, or PEM) comes from the environment. The timestamp must be no older than ``max_age``.

The body is a JSON array of events (SendGrid, "Event Webhook reference"), each with ``event``, ``email``,
``timestamp`` (Unix seconds), ``sg_event_id`` (unique), ``sg_message_id`` (the id of its ``250 Ok: queued as
<id>`` followed by ``.filter...``) and ``smtp-id`` (our Message-ID). Read here:

    bounce        type "bounce" (or none): hard; type "blocked": soft  (``status``, ``reason``)
    dropped       reason "Bounced Address" or "Invalid": hard; "Spam Reporting Address": complaint;
                  other reasons (an unsubscribe kept by SendGrid): recorded, nothing done
    spamreport    complaint
    deferred      soft (``response``): the receiving server answered 4xx
    delivered     delivered (``response``)

Other events (processed, open, click, ...) are counted as ignored and not recorded.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from mailer.config.providers import ProviderWebhook
from mailer.delivery.providers.events import (
    ProviderEvent,
    Webhook,
    bracketed,
    load_json,
    recipient_report,
    signed_time,
    text,
    timestamp,
)
from mailer.errors import WebhookRefusedError
from mailer.store.models import ReportKind
from mailer.timeline.clock import require_aware

SIGNATURE_HEADER = "x-twilio-email-event-webhook-signature"
TIMESTAMP_HEADER = "x-twilio-email-event-webhook-timestamp"
_DROPPED = {
    "bounced address": ReportKind.HARD,
    "invalid": ReportKind.HARD,
    "spam reporting address": ReportKind.COMPLAINT,
}


def public_key(secret: str) -> ec.EllipticCurvePublicKey:
    """The verification key from its base64 DER or PEM text; WebhookRefusedError(503) when it is not a P-256
    public key (the service's configuration, not the request, is wrong)."""
    try:
        if "BEGIN PUBLIC KEY" in secret:
            key = serialization.load_pem_public_key(secret.encode())
        else:
            key = serialization.load_der_public_key(base64.b64decode("".join(secret.split()), validate=True))
    except (ValueError, binascii.Error, UnsupportedAlgorithm) as exc:
        raise WebhookRefusedError(503, f"the SendGrid verification key cannot be read: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise WebhookRefusedError(503, "the SendGrid verification key is not an ECDSA P-256 public key")
    return key


def verify(headers: Mapping[str, str], body: bytes, hook: ProviderWebhook, now: datetime) -> None:
    """Check the signature and age of one POST (``headers`` with lower-case names); WebhookRefusedError."""
    now = require_aware(now, "now")
    secret = hook.secret
    if not secret:
        raise WebhookRefusedError(503, f"${hook.secret_env} is not set: cannot verify SendGrid events")
    key = public_key(secret)
    signed_at, signature = headers.get(TIMESTAMP_HEADER, ""), headers.get(SIGNATURE_HEADER, "")
    if not signed_at or not signature:
        raise WebhookRefusedError(403, "unsigned: no SendGrid signature or timestamp header")
    try:
        key.verify(
            base64.b64decode(signature, validate=True), signed_at.encode() + body, ec.ECDSA(hashes.SHA256())
        )
    except (InvalidSignature, binascii.Error, ValueError):
        raise WebhookRefusedError(403, "SendGrid signature does not match") from None
    signed_time(signed_at, now, hook.max_age, "SendGrid timestamp")


def read(headers: Mapping[str, str], body: bytes, hook: ProviderWebhook, now: datetime) -> Webhook:
    """Verify one POST and read its events; raises WebhookRefusedError."""
    now = require_aware(now, "now")
    verify(headers, body, hook, now)
    document = load_json(body)
    if not isinstance(document, list):
        raise WebhookRefusedError(400, "SendGrid events are not a JSON array")
    events: list[ProviderEvent] = []
    ignored = 0
    for entry in document:
        event = _event(entry) if isinstance(entry, dict) else None
        if event is None:
            ignored += 1
        else:
            events.append(event)
    return Webhook(events=tuple(events), ignored=ignored)


def _kind(entry: Mapping[str, Any]) -> ReportKind | None:
    name = entry.get("event")
    if name == "bounce":
        return ReportKind.SOFT if entry.get("type") == "blocked" else ReportKind.HARD
    if name == "dropped":
        return _DROPPED.get(text(entry.get("reason")).lower(), ReportKind.OTHER)
    return {
        "spamreport": ReportKind.COMPLAINT,
        "deferred": ReportKind.SOFT,
        "delivered": ReportKind.DELIVERED,
    }.get(str(name))


def _event(entry: dict[str, Any]) -> ProviderEvent | None:
    kind = _kind(entry)
    if kind is None:
        return None
    name = text(entry.get("event"), 20)
    reason = text(entry.get("reason")) or text(entry.get("response"))
    diagnostic = f"{name}: {reason}" if reason else name
    sg_id = text(entry.get("sg_message_id"), 255)
    provider_ids = tuple(dict.fromkeys(i for i in (sg_id, sg_id.partition(".")[0]) if i))
    message_id = bracketed(entry.get("smtp-id"))
    report = recipient_report(
        kind,
        diagnostic=diagnostic,
        address=text(entry.get("email"), 320),
        status_code=text(entry.get("status"), 20),
        words=reason,
        message_id=message_id,
        provider_ids=provider_ids,
        reporting_mta="SendGrid",
        arrived_at=timestamp(entry.get("timestamp")),
    )
    event_id = (
        text(entry.get("sg_event_id"), 200)
        or hashlib.sha256(json.dumps(entry, sort_keys=True).encode()).hexdigest()
    )
    return ProviderEvent("sendgrid", event_id, report)
