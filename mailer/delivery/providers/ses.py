"""Amazon SES notifications delivered by SNS to an HTTPS subscription (``/webhooks/ses``).

SNS signs every message (Amazon SNS Developer Guide, "Verifying the signatures of Amazon SNS messages"):
the string to sign is ``Name\\nvalue\\n`` for these fields in this order, when present:

    Notification                          Message, MessageId, Subject, Timestamp, TopicArn, Type
    SubscriptionConfirmation and          Message, MessageId, SubscribeURL, Timestamp, Token, TopicArn,
    UnsubscribeConfirmation               Type

signed RSA PKCS#1 v1.5 with SHA1 (``SignatureVersion`` 1) or SHA256 (2) by the key of the X.509 certificate
at ``SigningCertURL``. That URL, and a SubscribeURL, are accepted only as ``https://sns.<region>.amazonaws.com``
(or ``.amazonaws.com.cn``) URLs; the certificate must name SNS and be valid now. ``TopicArn`` must be one of
the configured topics; ``Timestamp`` no older than ``max_age``.

The ``Message`` of a Notification is the SES notification (Amazon SES Developer Guide, "Amazon SNS
notification contents"): ``notificationType`` (or ``eventType`` for event publishing) Bounce, Complaint or
Delivery, with ``mail.messageId`` (the id SES returned in its ``250 Ok <id>``), ``mail.commonHeaders
.messageId``, and ``bounce`` (bounceType Permanent: hard, Transient or Undetermined: soft;
``bouncedRecipients`` with status and diagnosticCode), ``complaint`` (``complainedRecipients``,
``complaintFeedbackType``) or ``delivery`` (``recipients``, ``smtpResponse``).
"""

from __future__ import annotations

import base64
import binascii
import threading
import urllib.request
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from mailer.config.providers import ProviderWebhook
from mailer.delivery.providers.events import (
    ProviderEvent,
    Webhook,
    bracketed,
    fresh,
    json_object,
    load_json,
    status_in,
    text,
    timestamp,
)
from mailer.delivery.reports import Recipient, Report, complaint_kind
from mailer.errors import WebhookRefusedError
from mailer.store.models import ReportKind
from mailer.timeline.clock import require_aware

Fetch = Callable[[str], bytes]  # GET an https URL, return the body (raises OSError on failure)

_CONFIRMATION_FIELDS = ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type")
_FIELDS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": _CONFIRMATION_FIELDS,
    "UnsubscribeConfirmation": _CONFIRMATION_FIELDS,
}
_HASHES: dict[str, Callable[[], hashes.HashAlgorithm]] = {"1": hashes.SHA1, "2": hashes.SHA256}
_FETCH_LIMIT = 64 * 1024  # bytes: a certificate is about 2 KB, a confirmation answer smaller


def sns_host(host: str) -> bool:
    """True for ``sns.<region>.amazonaws.com`` and ``sns.<region>.amazonaws.com.cn`` (and the bare
    ``sns.amazonaws.com``): the only hosts certificates and subscription URLs are taken from."""
    labels = host.lower().split(".")
    if labels[-2:] == ["com", "cn"]:
        labels = labels[:-1]
    if labels[-2:] != ["amazonaws", "com"] or labels[0] != "sns":
        return False
    middle = labels[1:-2]
    return len(middle) <= 1 and all(part and part.replace("-", "").isalnum() for part in middle)


def sns_url(url: str, what: str) -> str:
    """``url`` when it is ``https://<an SNS host>/...`` with no user, password or port; WebhookRefusedError(403)
    otherwise."""
    parts = urlsplit(url)
    if (
        parts.scheme != "https"
        or parts.username is not None
        or parts.password is not None
        or parts.port is not None
        or not sns_host(parts.hostname or "")
    ):
        raise WebhookRefusedError(403, f"{what} not on an Amazon SNS host: {url[:200]!r}")
    return url


def fetch_https(url: str) -> bytes:
    """GET ``url`` with TLS verified against the system's CAs, at most 64 KB, 10 s timeout; raises OSError."""
    request = urllib.request.Request(url, headers={"User-Agent": "webinar-mailer"})
    with urllib.request.urlopen(request, timeout=10) as response:
        body: bytes = response.read(_FETCH_LIMIT + 1)
    if len(body) > _FETCH_LIMIT:
        raise OSError(f"{url}: answer larger than {_FETCH_LIMIT} bytes")
    return body


class Certificates:
    """SNS signing certificates by URL, fetched once through ``fetch`` and kept (at most ``limit``)."""

    def __init__(self, fetch: Fetch, limit: int = 32) -> None:
        self.fetch = fetch
        self.limit = limit
        self._known: dict[str, x509.Certificate] = {}
        self._lock = threading.Lock()

    def get(self, url: str, now: datetime) -> x509.Certificate:
        """The certificate at ``url`` (an SNS URL, checked here); WebhookRefusedError(403) when the URL is not
        SNS's, the certificate cannot be fetched or read, does not name SNS, or is not valid at ``now``."""
        now = require_aware(now, "now")
        sns_url(url, "SigningCertURL")
        if not urlsplit(url).path.endswith(".pem"):
            raise WebhookRefusedError(403, f"SigningCertURL is not a .pem: {url[:200]!r}")
        with self._lock:
            known = self._known.get(url)
        if known is None:
            try:
                known = x509.load_pem_x509_certificate(self.fetch(url))
            except (OSError, ValueError) as exc:
                raise WebhookRefusedError(403, f"signing certificate {url}: {exc}") from None
            with self._lock:
                if len(self._known) >= self.limit:
                    self._known.clear()
                self._known[url] = known
        names = known.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        if not names or not sns_host(str(names[0].value)):
            raise WebhookRefusedError(403, f"signing certificate {url} is not issued to Amazon SNS")
        if not known.not_valid_before_utc <= now <= known.not_valid_after_utc:
            raise WebhookRefusedError(403, f"signing certificate {url} is not valid at {now.isoformat()}")
        return known


def string_to_sign(document: Mapping[str, Any]) -> bytes:
    """The bytes SNS signed for ``document`` (see the module docstring)."""
    fields = _FIELDS.get(str(document.get("Type")), ())
    lines = [f"{name}\n{document[name]}\n" for name in fields if document.get(name) is not None]
    return "".join(lines).encode()


def verify(
    document: Mapping[str, Any], hook: ProviderWebhook, now: datetime, certificates: Certificates
) -> None:
    """Check an SNS message's type, topic, signature and age; WebhookRefusedError (400 or 403) otherwise."""
    now = require_aware(now, "now")
    kind = document.get("Type")
    if kind not in _FIELDS:
        raise WebhookRefusedError(400, f"not an SNS message type: {str(kind)[:40]!r}")
    if document.get("TopicArn") not in hook.topic_arns:
        raise WebhookRefusedError(403, f"topic not configured: {str(document.get('TopicArn'))[:200]!r}")
    digest = _HASHES.get(str(document.get("SignatureVersion")))
    if digest is None:
        raise WebhookRefusedError(
            403, f"unknown SignatureVersion {str(document.get('SignatureVersion'))[:10]!r}"
        )
    try:
        signature = base64.b64decode(str(document.get("Signature", "")), validate=True)
    except binascii.Error:
        raise WebhookRefusedError(403, "Signature is not base64") from None
    certificate = certificates.get(str(document.get("SigningCertURL", "")), now)
    key = certificate.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise WebhookRefusedError(403, "signing certificate holds no RSA key")
    try:
        key.verify(signature, string_to_sign(document), padding.PKCS1v15(), digest())
    except InvalidSignature:
        raise WebhookRefusedError(403, "SNS signature does not match") from None
    sent = timestamp(document.get("Timestamp"))
    if sent is None:
        raise WebhookRefusedError(400, "SNS Timestamp missing or unreadable")
    fresh(sent, now, hook.max_age, "SNS Timestamp")


def read(body: bytes, hook: ProviderWebhook, now: datetime, certificates: Certificates) -> Webhook:
    """Verify one SNS POST and read its SES notification. A SubscriptionConfirmation gives ``confirm_url``
    (checked to be SNS's); an UnsubscribeConfirmation gives nothing. Raises WebhookRefusedError."""
    now = require_aware(now, "now")
    document = load_json(body)
    if not isinstance(document, dict):
        raise WebhookRefusedError(400, "SNS message is not a JSON object")
    verify(document, hook, now, certificates)
    if document["Type"] == "SubscriptionConfirmation":
        return Webhook(confirm_url=sns_url(str(document.get("SubscribeURL", "")), "SubscribeURL"))
    if document["Type"] != "Notification":
        return Webhook()
    notification = load_json(str(document.get("Message", "")), "the SNS Message")
    if not isinstance(notification, dict):
        raise WebhookRefusedError(400, "SNS Message is not an SES notification")
    report = _report(notification)
    if report is None:
        return Webhook(ignored=1)
    return Webhook(events=(ProviderEvent("ses", str(document.get("MessageId", "")), report),))


def _report(notification: dict[str, Any]) -> Report | None:
    kind = notification.get("notificationType") or notification.get("eventType")
    mail = json_object(notification.get("mail"))
    ids = [bracketed(json_object(mail.get("commonHeaders")).get("messageId"))]
    ids.extend(
        bracketed(header.get("value"))
        for header in _entries(mail.get("headers"))
        if str(header.get("name", "")).lower() == "message-id"
    )
    base = Report(
        kind=ReportKind.OTHER,
        message_ids=tuple(dict.fromkeys(i for i in ids if i)),
        provider_ids=(text(mail.get("messageId"), 255),) if mail.get("messageId") else (),
        reporting_mta="Amazon SES",
    )
    if kind == "Bounce":
        return _bounce(notification.get("bounce"), base)
    if kind == "Complaint":
        return _complaint(notification.get("complaint"), base)
    if kind == "Delivery":
        return _delivery(notification.get("delivery"), base)
    return None


def _entries(value: object) -> list[dict[str, Any]]:
    return [entry for entry in value if isinstance(entry, dict)] if isinstance(value, list) else []


def _mta(value: object, default: str) -> str:
    mta = text(value, 255)
    return mta.partition(";")[2].strip() if ";" in mta else (mta or default)


def _bounce(bounce: object, base: Report) -> Report:
    data = json_object(bounce)
    permanent = data.get("bounceType") == "Permanent"
    subtype = f"{data.get('bounceType', '')}/{data.get('bounceSubType', '')}"
    recipients = tuple(
        Recipient(
            address=text(entry.get("emailAddress"), 320),
            action=text(entry.get("action"), 20) or "failed",
            status=status_in(text(entry.get("status"), 20), text(entry.get("diagnosticCode")))
            or ("5.0.0" if permanent else "4.0.0"),
            diagnostic=text(entry.get("diagnosticCode")) or f"SES bounce {subtype}",
        )
        for entry in _entries(data.get("bouncedRecipients"))
    )
    return Report(
        kind=ReportKind.HARD if permanent else ReportKind.SOFT,
        recipients=recipients,
        message_ids=base.message_ids,
        provider_ids=base.provider_ids,
        reporting_mta=_mta(data.get("reportingMTA"), base.reporting_mta),
        arrived_at=timestamp(data.get("timestamp")),
    )


def _complaint(complaint: object, base: Report) -> Report:
    data = json_object(complaint)
    feedback = text(data.get("complaintFeedbackType"), 40) or "abuse"
    recipients = tuple(
        Recipient(address=text(entry.get("emailAddress"), 320), diagnostic=feedback)
        for entry in _entries(data.get("complainedRecipients"))
    )
    return Report(
        kind=complaint_kind(feedback),
        recipients=recipients,
        message_ids=base.message_ids,
        provider_ids=base.provider_ids,
        reporting_mta=text(data.get("userAgent"), 255) or base.reporting_mta,
        arrived_at=timestamp(data.get("timestamp")),
        feedback_type=feedback.lower(),
    )


def _delivery(delivery: object, base: Report) -> Report:
    data = json_object(delivery)
    response = text(data.get("smtpResponse"))
    addresses = data.get("recipients")
    recipients = tuple(
        Recipient(
            address=text(address, 320), action="delivered", status=status_in(response), diagnostic=response
        )
        for address in (addresses if isinstance(addresses, list) else [])
        if isinstance(address, str)
    )
    return Report(
        kind=ReportKind.DELIVERED,
        recipients=recipients,
        message_ids=base.message_ids,
        provider_ids=base.provider_ids,
        reporting_mta=_mta(data.get("reportingMTA"), base.reporting_mta),
        arrived_at=timestamp(data.get("timestamp")),
    )
