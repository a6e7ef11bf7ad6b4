"""/metrics, /healthz and /readyz scraped from the real server before, during and after a wave."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import socket
from datetime import timedelta

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from mailer.app import App
from mailer.delivery.pool import SmtpPool
from mailer.service import Service
from mailer.store.engine import head_revision, transaction
from mailer.timeline.clock import VirtualClock
from mailer.web.server import ThreadedServer
from tests.conftest import RunningServer
from tests.factories import add_contact
from tests.test_web_support import INVITATION_AT, sending_app, signing_secret


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = httpx.get(url + "/metrics", timeout=30)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def test_metrics_and_health_during_a_wave(app: App, smtp_server: RunningServer) -> None:
    with transaction(app.factory) as db:
        for n in range(12):
            add_contact(db, f"member{n}@parliament.example")
    clock = VirtualClock(INVITATION_AT + timedelta(minutes=10))
    sending = sending_app(app, smtp_server, "http://127.0.0.1:9")
    service = Service(sending, clock)
    service.materialise()
    with ThreadedServer(sending, clock=clock) as web:
        assert httpx.get(web.url + "/healthz").text == "ok"
        ready = httpx.get(web.url + "/readyz")
        relay = f"{smtp_server.host}:{smtp_server.port}"
        assert ready.status_code == 200
        assert ready.json() == {
            "ready": True,
            "checks": {"store": "ok", "migrations": "ok", "relays": {relay: "ok"}},
        }
        before = scrape(web.url)
        queued = (
            "mailer_messages",
            (("session", "africa-2021"), ("status", "queued"), ("step", "invitation")),
        )
        assert before[queued] == 12
        assert before[("mailer_queue_depth", ())] == 12
        assert before[("mailer_queue_oldest_due_seconds", ())] == 600
        assert before[("mailer_store_up", ())] == 1

        async def send() -> None:
            async with SmtpPool(sending.settings.smtp) as pool:
                await service.dispatch(pool)

        asyncio.run(send())
        after = scrape(web.url)
        sent = ("mailer_messages", (("session", "africa-2021"), ("status", "sent"), ("step", "invitation")))
        assert after[sent] == 12
        assert queued not in after
        assert after[("mailer_queue_depth", ())] == 0
        assert after[("mailer_queue_oldest_due_seconds", ())] == 0
        replies = ("mailer_smtp_replies_total", (("class", "2xx"),))
        assert after[replies] - before.get(replies, 0) == 12
        count = ("mailer_send_seconds_count", (("kind", "invitation"),))
        assert after[count] - before.get(count, 0) == 12
        assert httpx.post(web.url + "/metrics").status_code == 403  # the CSRF guard: an unsafe method


def test_readyz_reports_an_unreachable_relay(app: App) -> None:
    with socket.socket() as probe:  # a port nobody listens on once closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    smtp = dataclasses.replace(app.settings.smtp, host="127.0.0.1", port=port)
    sending = App(dataclasses.replace(app.settings, smtp=smtp), app.engine, app.factory)
    relay = f"127.0.0.1:{port}"
    with ThreadedServer(sending, clock=VirtualClock(INVITATION_AT)) as web:
        ready = httpx.get(web.url + "/readyz", timeout=30)
    assert ready.status_code == 503
    body = ready.json()
    assert body["ready"] is False
    assert body["checks"]["store"] == "ok"
    assert body["checks"]["relays"][relay].startswith("unreachable: ConnectionRefusedError")


def test_known_labels_are_exposed_at_zero_before_their_first_event(app: App) -> None:
    with ThreadedServer(app, clock=VirtualClock(INVITATION_AT)) as web:
        figures = scrape(web.url)

    def labels(name: str) -> set[tuple[tuple[str, str], ...]]:
        return {key[1] for key in figures if key[0] == name}

    assert labels("mailer_webhook_refused_total") == {
        (("reason", reason), ("source", source))
        for source in ("generic", "zoom")
        for reason in ("signature", "timestamp", "format", "secret")
    }
    assert labels("mailer_registration_events_total") == {
        (("outcome", outcome), ("source", source))
        for source in ("generic", "zoom")
        for outcome in ("applied", "duplicate", "stale", "ignored")
    }
    assert labels("mailer_imports_total") == {
        (("kind", kind), ("via", via)) for kind in ("contacts", "registrations") for via in ("api", "web")
    }
    assert labels("mailer_smtp_replies_total") == {(("class", c),) for c in ("2xx", "4xx", "5xx", "none")}
    assert labels("mailer_send_seconds_count") == {
        (("kind", kind),) for kind in ("invitation", "reminder", "follow-up", "notice")
    }


def test_readyz_reads_the_schema_revision_without_logging_and_names_a_store_behind(
    app: App, caplog: pytest.LogCaptureFixture
) -> None:
    """A probe every few seconds must not fill the log (Alembic logs its set-up at INFO when started);
    a store at an older revision is not ready and says which."""
    with ThreadedServer(app, clock=VirtualClock(INVITATION_AT)) as web, caplog.at_level(logging.INFO):
        ready = httpx.get(web.url + "/readyz", timeout=30)
        assert ready.json()["checks"]["migrations"] == "ok"
        assert [record.name for record in caplog.records if record.name.startswith("alembic")] == []
        with app.engine.begin() as connection:
            connection.exec_driver_sql("UPDATE alembic_version SET version_num = '0001'")
        behind = httpx.get(web.url + "/readyz", timeout=30)
    assert behind.status_code == 503
    assert behind.json()["checks"]["migrations"] == f"at 0001, code expects {head_revision()}"
