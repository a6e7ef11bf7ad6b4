"""The process's own metrics (prometheus_client): what this process did since it started.

Counted where it happens (the service's sends, the web's imports and pushed events) and exposed with the
store's figures at ``/metrics`` (:mod:`mailer.web.metrics`). The objects are in no registry of their own:
each web application registers them in its registry, so tests can build several applications.

    mailer_send_seconds{kind}                   histogram: one SMTP transaction, from MAIL to the reply
    mailer_smtp_replies_total{class}            2xx | 4xx | 5xx | none (no reply: connection failed)
    mailer_imports_total{kind,via}              contacts | registrations, by api | web
    mailer_registration_events_total{source,outcome}  pushed events: applied, duplicate, stale, ignored
    mailer_webhook_refused_total{source,reason}       signature | timestamp | format | secret
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

SEND_SECONDS = Histogram(
    "mailer_send_seconds",
    "Time of one SMTP delivery, from handing the message to the pool to the server's reply.",
    ["kind"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
    registry=None,
)
SMTP_REPLIES = Counter(
    "mailer_smtp_replies",
    "SMTP replies by class (none: no reply, the connection failed).",
    ["class"],
    registry=None,
)
IMPORTS = Counter("mailer_imports", "Files imported.", ["kind", "via"], registry=None)
REGISTRATION_EVENTS = Counter(
    "mailer_registration_events",
    "Registration events pushed by webhook, by outcome.",
    ["source", "outcome"],
    registry=None,
)
WEBHOOK_REFUSED = Counter(
    "mailer_webhook_refused", "Webhook requests refused, by reason.", ["source", "reason"], registry=None
)

REPLY_CLASSES = ("2xx", "4xx", "5xx", "none")
IMPORT_KINDS = ("contacts", "registrations")
IMPORT_VIAS = ("api", "web")
REFUSAL_REASONS = ("signature", "timestamp", "format", "secret")

PROCESS_METRICS = (SEND_SECONDS, SMTP_REPLIES, IMPORTS, REGISTRATION_EVENTS, WEBHOOK_REFUSED)


def reply_class(code: int | None) -> str:
    """The class label of an SMTP reply code: ``"2xx"``, ``"4xx"``, ``"5xx"``, else ``"none"``."""
    if code is None or not 200 <= code < 600:
        return "none"
    return f"{code // 100}xx"


__all__ = [
    "IMPORTS",
    "IMPORT_KINDS",
    "IMPORT_VIAS",
    "PROCESS_METRICS",
    "REFUSAL_REASONS",
    "REGISTRATION_EVENTS",
    "REPLY_CLASSES",
    "SEND_SECONDS",
    "SMTP_REPLIES",
    "WEBHOOK_REFUSED",
    "reply_class",
]
