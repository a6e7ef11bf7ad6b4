"""Webhook signatures: HMAC-SHA256 over ``v0:{timestamp}:{raw body}``, as Zoom signs its webhooks.

Zoom sends ``x-zm-request-timestamp`` (seconds since 1970) and ``x-zm-signature: v0=<hex>``; the generic
endpoint takes the same scheme under ``X-Mailer-Timestamp`` and ``X-Mailer-Signature``. A request is
accepted when the signature matches (compared in constant time) and its timestamp is within the tolerance
of now, either way: an old request sent again is refused as a replay, and within the tolerance a replay
carries an event id already seen, which changes nothing.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime, timedelta

from mailer.timeline.clock import require_aware


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """``v0=`` and the hex HMAC-SHA256 of ``v0:{timestamp}:{body}`` keyed with ``secret``."""
    message = b"v0:" + timestamp.encode("ascii") + b":" + body
    return "v0=" + hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def zoom_validation_token(secret: str, plain_token: str) -> str:
    """Zoom's ``encryptedToken`` for an ``endpoint.url_validation`` challenge: hex HMAC-SHA256 of the plain
    token keyed with the secret token."""
    return hmac.new(secret.encode("utf-8"), plain_token.encode("utf-8"), hashlib.sha256).hexdigest()


def check_signature(
    secret: str, timestamp: str, signature: str, body: bytes, now: datetime, tolerance: timedelta
) -> str | None:
    """None when the request is authentic and fresh, else why not (for the 401 answer; never the secret).

    ``timestamp`` is the header's text (whole seconds since 1970), ``signature`` the header ``v0=<hex>``.
    Raises NaiveDatetimeError for a naive ``now``.
    """
    now = require_aware(now, "now")
    if not timestamp or not signature:
        return "missing signature or timestamp header"
    if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 12:
        return "the timestamp header is not whole seconds since 1970"
    expected = sign(secret, timestamp, body)
    if not hmac.compare_digest(expected.encode("ascii"), signature.strip().encode("utf-8", "replace")):
        return "signature does not match"
    sent = datetime.fromtimestamp(int(timestamp), UTC)
    if abs(now - sent) > tolerance:
        return f"timestamp {sent:%Y-%m-%dT%H:%M:%SZ} is more than {tolerance} from now: refused as a replay"
    return None


__all__ = ["check_signature", "sign", "zoom_validation_token"]
