"""A dead relay is noticed: K failed connections open its circuit, the batch waits for the probe without
an attempt counted, the state is visible to another process, and the probe closes the circuit.

Real sockets only: a bound but not listening loopback port (connections refused), a listening socket that
never answers (connect timeout), then a real aiosmtpd server on the same port.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import os
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiosmtpd.smtp import SMTP, Envelope
from aiosmtpd.smtp import Session as SmtpSession
from sqlalchemy import select

from mailer.app import App, open_app
from mailer.config import Security, Settings, load_settings
from mailer.delivery.capture import SmtpServer
from mailer.delivery.pool import SmtpPool
from mailer.delivery.replies import Reply
from mailer.delivery.transport import SmtpRouter, StoredCircuit
from mailer.service import DispatchReport, Service
from mailer.store.engine import transaction
from mailer.store.models import Message, MessageStatus, RelayCircuit
from mailer.store.relays import CircuitState, load_circuit
from mailer.timeline.clock import SystemClock
from tests.conftest import RecordingHandler
from tests.service_processes import (
    ROOT,
    ServiceProcess,
    add_contacts,
    pending_count,
    wait_until,
    write_live_config,
)

MESSAGES = 40


def _app(tmp_path: Path, database_url: str, port: int, **smtp: object) -> App:
    config = write_live_config(tmp_path)
    settings = load_settings(config, database_url=database_url)
    relay = dataclasses.replace(
        settings.smtp, host="127.0.0.1", port=port, security=Security.NONE, username="", **smtp
    )
    app = open_app(dataclasses.replace(settings, smtp=relay))
    add_contacts(app, MESSAGES)
    return app


def _dispatch(app: App, settings: Settings | None = None) -> tuple[DispatchReport, int, float]:
    """One real dispatch; (its report, connections tried, seconds taken)."""
    service = Service(app, SystemClock())
    service.materialise()

    async def run() -> tuple[DispatchReport, int]:
        async with SmtpRouter(settings or app.settings, factory=app.factory) as router:
            report = await service.dispatch(router)
            return report, router.pool_for(None).connect_attempts

    started = time.monotonic()
    report, attempts = asyncio.run(run())
    return report, attempts, time.monotonic() - started


def _statuses(report: DispatchReport) -> dict[str, int]:
    totals: dict[str, int] = {}
    for (_, _, status), count in report.counts.items():
        totals[status] = totals.get(status, 0) + count
    return totals


def _messages(app: App) -> list[tuple[str, int, datetime]]:
    with transaction(app.factory) as db:
        return [tuple(row) for row in db.execute(select(Message.status, Message.attempts, Message.due_at))]  # type: ignore[misc]


def _report_in_another_process(config: Path, database_url: str) -> str:
    env = dict(os.environ, DATABASE_URL=database_url)
    done = subprocess.run(
        [str(Path(sys.executable).parent / "mailer"), "--config", str(config), "report"],
        cwd=ROOT,
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_refused_relay_opens_the_circuit_and_the_probe_sends_everything_once(
    tmp_path: Path, database_url: str
) -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, not listening: every connection is refused
    port = closed.getsockname()[1]
    app = _app(
        tmp_path,
        database_url,
        port,
        connections=1,
        circuit_failures=3,
        circuit_backoff=1.0,
        circuit_backoff_max=2.0,
    )
    before = datetime.now(UTC)
    report, attempts, _ = _dispatch(app)
    assert attempts == 3, "three refused connections open the circuit; no other message tries"
    assert _statuses(report) == {"deferred": MESSAGES}
    with transaction(app.factory) as db:
        circuit = db.get(RelayCircuit, f"127.0.0.1:{port}")
        assert circuit is not None
        assert (circuit.open, circuit.failures, circuit.server) == (True, 3, "default")
        assert circuit.since is not None and circuit.next_probe_at is not None
        assert before <= circuit.since < circuit.next_probe_at
        next_probe = circuit.next_probe_at
    rows = _messages(app)
    assert {(status, attempts) for status, attempts, _ in rows} == {("deferred", 0)}, "no attempt burnt"
    assert {due for _, _, due in rows} == {next_probe}

    shown = _report_in_another_process(tmp_path / "config", database_url)
    assert f"relay 127.0.0.1:{port} (default) unreachable since {circuit.since:%H:%M:%S} UTC" in shown
    assert f"next probe {next_probe:%H:%M:%S} UTC" in shown

    closed.close()
    handler = RecordingHandler()
    with SmtpServer(handler, port=port):
        time.sleep(max((next_probe - datetime.now(UTC)).total_seconds(), 0) + 0.05)
        report, attempts, _ = _dispatch(app)
    assert _statuses(report) == {"sent": MESSAGES}
    assert attempts == 1, "the probe's connection carries the batch"
    received = [rcpt for message in handler.messages for rcpt in message.rcpt_tos]
    assert sorted(received) == [f"person{i:05d}@example.org" for i in range(MESSAGES)], "each once"
    assert {(status, attempts) for status, attempts, _ in _messages(app)} == {("sent", 1)}
    with transaction(app.factory) as db:
        circuit = db.get(RelayCircuit, f"127.0.0.1:{port}")
        assert circuit is not None
        assert (circuit.open, circuit.failures, circuit.since, circuit.next_probe_at) == (
            False,
            0,
            None,
            None,
        )
    assert "unreachable" not in _report_in_another_process(tmp_path / "config", database_url)


def test_a_silent_relay_costs_one_connect_timeout_not_one_per_message(tmp_path: Path) -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)  # accepts TCP connections and never greets: each waits for the connect timeout
    port = silent.getsockname()[1]
    app = _app(
        tmp_path,
        f"sqlite:///{tmp_path / 'mailer.db'}",
        port,
        connections=3,
        circuit_failures=3,
        connect_timeout=1.0,
    )
    try:
        report, attempts, elapsed = _dispatch(app)
    finally:
        silent.close()
    assert _statuses(report) == {"deferred": MESSAGES}
    assert attempts == 3
    # Without the circuit: MESSAGES / connections timeouts of 1 s each, about 13 s.
    assert 1.0 <= elapsed < 2.5, elapsed
    assert {(status, attempts) for status, attempts, _ in _messages(app)} == {("deferred", 0)}


class SlowGreetingHandler(RecordingHandler):
    """Answers EHLO after 1 s, so a probe is still under way while another pool looks at the circuit."""

    async def handle_EHLO(
        self, server: SMTP, session: SmtpSession, envelope: Envelope, hostname: str, responses: list[str]
    ) -> list[str]:
        await asyncio.sleep(1.0)
        session.host_name = hostname
        return responses


MESSAGE = b"From: sender@example.org\r\nTo: person@example.org\r\nSubject: probe\r\n\r\nHello.\r\n"


def test_processes_share_one_circuit_and_one_probe(tmp_path: Path, database_url: str) -> None:
    """Three pools on one store stand for three processes (each its own circuit, as in its own process):
    one pool's open circuit defers the others' messages without a connection; when the probe is due, of two
    pools sending together exactly one connects, and the other's message waits for the probe it claimed;
    the probe's success closes every pool's circuit."""
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    app = _app(
        tmp_path,
        database_url,
        port,
        connections=1,
        circuit_failures=3,
        circuit_backoff=1.0,
        circuit_backoff_max=2.0,
        connect_timeout=3.0,  # the slow EHLO below takes 1 s
    )
    relay = f"127.0.0.1:{port}"
    pools = [SmtpPool(app.settings.smtp, shared_circuit=StoredCircuit(app.factory, relay)) for _ in range(3)]
    first, second, third = pools

    async def send(pool: SmtpPool, number: int) -> Reply:
        return await pool.send("sender@example.org", f"person{number:05d}@example.org", MESSAGE)

    handler = SlowGreetingHandler()

    async def scenario() -> None:
        opened = await send(first, 0)
        others = await asyncio.gather(send(second, 1), send(third, 2))
        assert opened.status is MessageStatus.DEFERRED
        assert first.connect_attempts == 3 and first.circuit.open
        with transaction(app.factory) as db:
            saved = load_circuit(db, relay)
        assert saved is not None and saved.open and saved.failures == 3
        assert saved.next_probe_at is not None
        assert [pool.connect_attempts for pool in (second, third)] == [0, 0], "the others never connect"
        assert [(reply.status, reply.retry_at) for reply in others] == [
            (MessageStatus.DEFERRED, saved.next_probe_at)
        ] * 2
        assert all(f"relay {relay} (default) unreachable since" in reply.text for reply in others)

        closed.close()
        with SmtpServer(handler, port=port):
            await asyncio.sleep(max((saved.next_probe_at - datetime.now(UTC)).total_seconds(), 0) + 1.1)
            replies = await asyncio.gather(send(second, 3), send(third, 4))
            assert second.connect_attempts + third.connect_attempts == 1, "one probe between the two"
            assert sorted(reply.status for reply in replies) == [MessageStatus.DEFERRED, MessageStatus.SENT]
            waiting = next(reply for reply in replies if reply.status is MessageStatus.DEFERRED)
            with transaction(app.factory) as db:
                after = load_circuit(db, relay)
            assert after is not None and not after.open and after.failures == 0
            assert waiting.retry_at is not None and waiting.retry_at > saved.next_probe_at
            await asyncio.sleep(1.1)  # every pool reads the shared state again after ``refresh`` (1 s)
            final = await asyncio.gather(*(send(pool, 5 + n) for n, pool in enumerate(pools)))
            for pool in pools:
                await pool.close()
        assert [reply.status for reply in final] == [MessageStatus.SENT] * 3
        assert not any(pool.circuit.open for pool in pools)
        probed = 3 if replies[0].status is MessageStatus.SENT else 4
        received = sorted(rcpt for message in handler.messages for rcpt in message.rcpt_tos)
        assert received == sorted(f"person{n:05d}@example.org" for n in (probed, 5, 6, 7))

    asyncio.run(scenario())


class DroppingRelay(threading.Thread):
    """A relay that is down: accepts each TCP connection and closes it before any greeting (the client
    finds it unreachable), keeping the monotonic time of each connection."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.socket = socket.socket()
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen(64)
        self.socket.settimeout(0.2)
        self.port = self.socket.getsockname()[1]
        self.accepted: list[float] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                connection, _ = self.socket.accept()
            except TimeoutError:
                continue
            self.accepted.append(time.monotonic())
            connection.close()
        self.socket.close()


def test_service_processes_share_the_circuit_of_a_dead_relay(tmp_path: Path, database_url: str) -> None:
    """Three ``schedule.py`` processes on one PostgreSQL store, 300 messages (three batches), one
    connection each, against a relay that drops every connection: the first process's 3 failed connections
    open the circuit; the two started after it never connect on their own, and at each due probe, of the
    three processes holding a batch, one connects. Then aiosmtpd on the port gets every message once."""
    if not database_url.startswith("postgresql"):
        pytest.skip("several sending processes need PostgreSQL")
    relay = DroppingRelay()
    relay.start()
    config = write_live_config(tmp_path)
    main = (config / "mailer.toml").read_text()
    for old, new in (
        ("connections = 4", "connections = 1"),
        ("connect_timeout = 30 ", "connect_timeout = 2 "),
        ("circuit_backoff = 30 ", "circuit_backoff = 4 "),
        ("circuit_backoff_max = 600 ", "circuit_backoff_max = 4 "),
    ):
        assert old in main
        main = main.replace(old, new)
    (config / "mailer.toml").write_text(main)
    app = open_app(load_settings(config, database_url=database_url))
    add_contacts(app, 300)
    port = relay.port

    def circuit() -> CircuitState | None:
        with transaction(app.factory) as db:
            return load_circuit(db, f"127.0.0.1:{port}")

    processes = [ServiceProcess(config, database_url, port, tmp_path / "service-0.log")]
    handler = RecordingHandler()
    try:
        assert wait_until(lambda: (state := circuit()) is not None and state.open, 90)
        opened = len(relay.accepted)
        processes += [
            ServiceProcess(config, database_url, port, tmp_path / f"service-{n}.log") for n in (1, 2)
        ]
        assert wait_until(
            lambda: all("found by another process" in p.log_path.read_text() for p in processes[1:]), 90
        ), [p.log_path.read_text()[-2000:] for p in processes[1:]]
        time.sleep(9)  # two more probes at least (every 3.2-4.8 s)
        relay.stop.set()
        relay.join()
        probes = relay.accepted[opened:]
        with SmtpServer(handler, port=port):
            assert wait_until(lambda: pending_count(app) == 0, 120), processes[0].log_path.read_text()[-3000:]
            codes = [process.terminate() for process in processes]
    finally:
        for process in processes:
            if process.process.poll() is None:
                process.kill()
    assert codes == [0, 0, 0]
    assert opened == 3, "the first process's three failed connections opened the circuit"
    assert len(probes) >= 2
    gaps = [later - earlier for earlier, later in itertools.pairwise(probes)]
    assert min(gaps) > 2.0, f"one probe at a time, one backoff apart: {gaps}"
    received = Counter(rcpt for message in handler.messages for rcpt in message.rcpt_tos)
    assert sorted(received) == [f"person{i:05d}@example.org" for i in range(300)]
    assert set(received.values()) == {1}
    logs = [p.log_path.read_text() for p in processes]
    assert all("Traceback" not in log for log in logs)
