"""``/metrics`` (Prometheus text format), ``/healthz`` (the process answers) and ``/readyz`` (it can work).

``/metrics`` joins this process's own counters (:mod:`mailer.metrics`: send latency, SMTP replies by class,
imports, pushed events) with figures read from the store at each scrape, so every process shows the same:

    mailer_messages{session,step,status}        messages by status per session and step
    mailer_queue_depth                          pending messages (queued or deferred) already due
    mailer_queue_oldest_due_seconds             how long the oldest of those has been due (0: none)
    mailer_relay_circuit_open{relay,server}     1 while a relay is considered unreachable
    mailer_relay_circuit_failures{relay,server} its consecutive failed connections
    mailer_store_up                             0 when the store could not be read for this scrape

``/readyz`` answers 200 ``{"ready": true, "checks": {...}}`` when the store answers, its migrations are
current and every configured SMTP relay accepts a TCP connection (none configured: the local capture
server, nothing to check); otherwise 503 with the failing check. GET only: none of these acts.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session as DbSession
from sqlalchemy.orm import sessionmaker
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from mailer.audience.live import EventOutcome
from mailer.config import Settings
from mailer.config.series import StepKind
from mailer.metrics import (
    IMPORT_KINDS,
    IMPORT_VIAS,
    IMPORTS,
    PROCESS_METRICS,
    REFUSAL_REASONS,
    REGISTRATION_EVENTS,
    REPLY_CLASSES,
    SEND_SECONDS,
    SMTP_REPLIES,
    WEBHOOK_REFUSED,
)
from mailer.store.engine import schema_revisions, transaction
from mailer.store.models import PENDING_STATUSES, Message, RelayCircuit
from mailer.timeline.clock import Clock
from mailer.web.app import context_of
from mailer.web.webhooks import WEBHOOK_SOURCES

RELAY_CHECK_TIMEOUT = 2.0  # seconds per relay for /readyz


class StoreCollector(Collector):
    """The store's figures (module docstring), read once per scrape."""

    def __init__(self, factory: sessionmaker[DbSession], clock: Clock) -> None:
        self.factory = factory
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("mailer_store_up", "1 when the store could be read for this scrape.")
        try:
            figures = self._read(self.clock.now())
        except SQLAlchemyError:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from figures

    def _read(self, now: datetime) -> list[Metric]:
        messages = GaugeMetricFamily(
            "mailer_messages",
            "Messages by status per session and step.",
            labels=["session", "step", "status"],
        )
        depth = GaugeMetricFamily("mailer_queue_depth", "Pending messages (queued or deferred) already due.")
        oldest = GaugeMetricFamily(
            "mailer_queue_oldest_due_seconds", "Seconds the oldest due pending message has waited (0: none)."
        )
        circuit_open = GaugeMetricFamily(
            "mailer_relay_circuit_open",
            "1 while the relay is considered unreachable.",
            labels=["relay", "server"],
        )
        failures = GaugeMetricFamily(
            "mailer_relay_circuit_failures", "Consecutive failed connections.", labels=["relay", "server"]
        )
        with transaction(self.factory) as db:
            counts = db.execute(
                select(Message.session_id, Message.step, Message.status, func.count()).group_by(
                    Message.session_id, Message.step, Message.status
                )
            ).all()
            due, first = db.execute(
                select(func.count(), func.min(Message.due_at)).where(
                    Message.status.in_(PENDING_STATUSES), Message.due_at <= now
                )
            ).one()
            circuits = db.scalars(select(RelayCircuit).order_by(RelayCircuit.relay)).all()
        for session_id, step, status, count in counts:
            messages.add_metric([session_id, step, str(status)], count)
        depth.add_metric([], due)
        waited = (
            (now - Message.due_at.type.process_result_value(first, None)).total_seconds() if first else 0.0
        )
        oldest.add_metric([], max(waited, 0.0))
        for row in circuits:
            circuit_open.add_metric([row.relay, row.server], 1 if row.open else 0)
            failures.add_metric([row.relay, row.server], row.failures)
        return [messages, depth, oldest, circuit_open, failures]


def known_labels() -> None:
    """Create every known label combination of the process's metrics, at 0 until its first event: send
    latency per step kind, SMTP replies per class, imports per kind and way (api, web), pushed events per
    source and outcome, webhook refusals per source and reason. Idempotent (an existing child is kept)."""
    for kind in StepKind:
        SEND_SECONDS.labels(kind.value)
    for reply in REPLY_CLASSES:
        SMTP_REPLIES.labels(reply)
    for imported in IMPORT_KINDS:
        for via in IMPORT_VIAS:
            IMPORTS.labels(imported, via)
    for source in WEBHOOK_SOURCES:
        for outcome in EventOutcome:
            REGISTRATION_EVENTS.labels(source, outcome.value)
        for reason in REFUSAL_REASONS:
            WEBHOOK_REFUSED.labels(source, reason)


def build_registry(factory: sessionmaker[DbSession], clock: Clock) -> CollectorRegistry:
    """A registry with this process's metrics, every known label at 0 from the start (:func:`known_labels`),
    and the store's (one per web application)."""
    known_labels()
    registry = CollectorRegistry(auto_describe=True)
    for metric in PROCESS_METRICS:
        registry.register(metric)
    registry.register(StoreCollector(factory, clock))
    return registry


def metrics(request: Request) -> Response:
    """``GET /metrics``: the Prometheus text format."""
    ctx = context_of(request)
    registry = getattr(request.app.state, "metrics_registry", None)
    if registry is None:
        registry = build_registry(ctx.app.factory, ctx.clock)
        request.app.state.metrics_registry = registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


def healthz(request: Request) -> Response:
    """``GET /healthz``: the process is up and answering."""
    return PlainTextResponse("ok")


def relay_checks(settings: Settings, timeout: float = RELAY_CHECK_TIMEOUT) -> dict[str, str]:
    """``{"host:port": "ok" | why not}`` for every configured relay (none: the local capture server)."""
    results: dict[str, str] = {}
    for smtp in (settings.smtp, *settings.smtp_servers.values()):
        if not smtp.host:
            continue
        relay = f"{smtp.host}:{smtp.port}"
        try:
            with socket.create_connection((smtp.host, smtp.port), timeout=timeout):
                results[relay] = "ok"
        except OSError as exc:
            results[relay] = f"unreachable: {type(exc).__name__}: {exc}"
    return results


def readyz(request: Request) -> Response:
    """``GET /readyz``: 200 when the store answers with current migrations and the relays accept a
    connection, else 503; the body names each check."""
    ctx = context_of(request)
    checks: dict[str, Any] = {}
    try:
        current, head = schema_revisions(ctx.app.engine)
        checks["store"] = "ok"
        checks["migrations"] = "ok" if current == head else f"at {current}, code expects {head}"
    except SQLAlchemyError as exc:
        checks["store"] = f"unreachable: {type(exc).__name__}"
        checks["migrations"] = "unknown"
    relays = relay_checks(ctx.settings)
    checks["relays"] = relays or "none configured (local capture server)"
    ready = (
        checks["store"] == "ok" and checks["migrations"] == "ok" and all(v == "ok" for v in relays.values())
    )
    return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)


ROUTES = [
    Route("/metrics", metrics, methods=["GET"]),
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
]

__all__ = ["ROUTES", "StoreCollector", "build_registry", "known_labels", "relay_checks"]
