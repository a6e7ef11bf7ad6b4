"""Bounces, complaints and deliveries that sending providers post to their webhooks.

Each provider module verifies one request (signature or credentials, age) and reads its events into the
:class:`mailer.delivery.reports.Report` shape a mailbox report has, so the same attribution
(mailer.delivery.attribution) and policy (mailer.delivery.handling) apply:

    ses.py        Amazon SES notifications through SNS (certificate-signed; subscription handshake)
    sendgrid.py   SendGrid Event Webhook (ECDSA P-256)
    postmark.py   Postmark webhooks (HTTP basic auth)
    mailgun.py    Mailgun webhooks (HMAC-SHA256)
    events.py     ProviderEvent, Webhook and the checks they share

:func:`read_webhook` picks the module. Everything here is pure but for the SNS certificate fetch, which
goes through the injected :class:`mailer.delivery.providers.ses.Certificates`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from mailer.config.providers import ProviderWebhook
from mailer.delivery.providers import mailgun, postmark, sendgrid, ses
from mailer.delivery.providers.events import ProviderEvent, Webhook
from mailer.delivery.providers.ses import Certificates, Fetch, fetch_https
from mailer.errors import WebhookRefusedError
from mailer.timeline.clock import require_aware


def read_webhook(
    headers: Mapping[str, str], body: bytes, hook: ProviderWebhook, now: datetime, certificates: Certificates
) -> Webhook:
    """Verify one request to ``hook``'s provider and read it (``headers`` with lower-case names).

    Raises :class:`mailer.errors.WebhookRefusedError` (4xx; 503 when the provider's secret is not set)
    for anything not to act on. Blocking for SES when a certificate must be fetched.
    """
    now = require_aware(now, "now")
    if hook.provider == "ses":
        return ses.read(body, hook, now, certificates)
    if hook.provider == "sendgrid":
        return sendgrid.read(headers, body, hook, now)
    if hook.provider == "postmark":
        return postmark.read(headers, body, hook, now)
    if hook.provider == "mailgun":
        return mailgun.read(body, hook, now)
    raise WebhookRefusedError(404, f"no webhook for provider {hook.provider!r}")


__all__ = ["Certificates", "Fetch", "ProviderEvent", "Webhook", "fetch_https", "read_webhook"]
