"""A stop (SIGTERM) is prompt: no new message starts, transactions under way finish and are recorded, waits on
a dead relay are cut short (their messages go back to ``queued`` without spending an attempt), and a stop
during start-up ends the process cleanly."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from aiosmtpd.smtp import SMTP, Envelope
from aiosmtpd.smtp import Session as SmtpSession
from sqlalchemy import create_engine, select, text

from mailer.app import App, open_app
from mailer.config import Security, load_settings
from mailer.delivery.capture import SmtpServer
from mailer.delivery.pool import SmtpPool
from mailer.delivery.transport import NotAttempted, SmtpRouter
from mailer.service import DispatchReport, Service
from mailer.store.engine import transaction
from mailer.store.models import Message, MessageStatus
from mailer.timeline.clock import SystemClock
from tests.conftest import RecordingHandler
from tests.service_processes import ROOT, ServiceProcess, add_contacts, wait_until, write_live_config

MESSAGE = b"From: sender@example.org\r\nTo: person@example.org\r\nSubject: stop\r\n\r\nHello.\r\n"


class SilentRelay:
    """A port that accepts TCP connections and never greets: each connection waits for the connect timeout,
    as with a relay whose host hangs. ``port`` 0 picks a free one."""

    def __init__(self, port: int = 0) -> None:
        self.socket = socket.socket()
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind(("127.0.0.1", port))
        self.socket.listen(64)
        self.port: int = self.socket.getsockname()[1]

    def close(self) -> None:
        self.socket.close()


def _messages(app: App) -> list[tuple[str, str, int]]:
    """(recipient, status, attempts) of every message."""
    with transaction(app.factory) as db:
        rows = db.execute(select(Message.recipient, Message.status, Message.attempts)).all()
    return [(recipient, MessageStatus(status).value, attempts) for recipient, status, attempts in rows]


def test_a_stop_while_connecting_to_a_silent_relay_gives_up_at_once() -> None:
    relay = SilentRelay()
    settings = load_settings(ROOT / "config")
    smtp = dataclasses.replace(
        settings.smtp,
        host="127.0.0.1",
        port=relay.port,
        security=Security.NONE,
        username="",
        connect_timeout=60,
    )

    async def run() -> tuple[BaseException | None, float, int]:
        stop = asyncio.Event()
        async with SmtpPool(smtp) as pool:
            asyncio.get_running_loop().call_later(0.5, stop.set)
            started = time.monotonic()
            try:
                await pool.send("sender@example.org", "person@example.org", MESSAGE, stop=stop)
            except NotAttempted as exc:
                return exc, time.monotonic() - started, pool.circuit.failures
            return None, time.monotonic() - started, pool.circuit.failures

    try:
        error, elapsed, failures = asyncio.run(run())
    finally:
        relay.close()
    assert isinstance(error, NotAttempted)
    assert elapsed < 10, f"a stop cuts the 60 s connect timeout short: {elapsed:.1f} s"
    assert failures == 0, "a connection given up for a stop is no failure of the relay"


def test_a_stopped_dispatch_gives_the_batch_back_without_spending_attempts(
    tmp_path: Path, database_url: str
) -> None:
    """Against a silent relay (60 s connect timeout, 2 connections), a stop 1 s in ends the dispatch within
    seconds; all 30 messages are queued again with no attempt counted."""
    relay = SilentRelay()
    config = write_live_config(tmp_path)
    settings = load_settings(config, database_url=database_url)
    smtp = dataclasses.replace(
        settings.smtp,
        host="127.0.0.1",
        port=relay.port,
        security=Security.NONE,
        username="",
        connections=2,
        connect_timeout=60,
    )
    app = open_app(dataclasses.replace(settings, smtp=smtp))
    add_contacts(app, 30)
    service = Service(app, SystemClock())
    service.materialise()

    async def run() -> tuple[DispatchReport, float]:
        stop = asyncio.Event()
        async with SmtpRouter(app.settings, factory=app.factory) as router:
            asyncio.get_running_loop().call_later(1.0, stop.set)
            started = time.monotonic()
            report = await service.dispatch(router, stop=stop)
            return report, time.monotonic() - started

    try:
        report, elapsed = asyncio.run(run())
    finally:
        relay.close()
        app.close()
    assert report.total == 0
    assert elapsed < 15, f"the stop waited for the connect timeout: {elapsed:.1f} s"
    assert Counter((status, attempts) for _, status, attempts in _messages(app)) == {("queued", 0): 30}


class SlowHandler(RecordingHandler):
    """Takes 20 ms per message before accepting it, so a wave lasts a few seconds."""

    async def handle_DATA(self, server: SMTP, session: SmtpSession, envelope: Envelope) -> str:
        await asyncio.sleep(0.02)
        return await super().handle_DATA(server, session, envelope)


STOP_BOUND = 40.0  # seconds: a few, plus one transaction's timeout (10 s for DATA here), on a loaded machine


def test_service_processes_stop_promptly_when_the_relay_went_dead(tmp_path: Path, database_url: str) -> None:
    """``schedule.py`` processes (2 on PostgreSQL, 1 on SQLite) send 400 messages; after at least 40, the relay
    dies and its port turns silent (a 60 s connect timeout); then SIGTERM. Each process exits 0 within
    :data:`STOP_BOUND` (without the stop cutting the connect short it would wait 60 s at least), and every
    message is either sent and received once, or pending: none lost, none failed, none left ``sending``."""
    count = 400
    config = write_live_config(tmp_path)
    main = (config / "mailer.toml").read_text()
    for old, new in (
        ("connections = 4", "connections = 2"),
        ("messages_per_connection = 500", "messages_per_connection = 1"),  # a new connection a message
        ("connect_timeout = 30 ", "connect_timeout = 60 "),
        ("\ntimeout = 30 ", "\ntimeout = 5 "),
        ("data_timeout = 120 ", "data_timeout = 10 "),
    ):
        assert old in main
        main = main.replace(old, new)
    (config / "mailer.toml").write_text(main)
    app = open_app(load_settings(config, database_url=database_url))
    add_contacts(app, count)
    handler = SlowHandler()
    server = SmtpServer(handler).start()
    port = server.port
    workers = 2 if database_url.startswith("postgresql") else 1
    processes = [
        ServiceProcess(config, database_url, port, tmp_path / f"service-{n}.log") for n in range(workers)
    ]
    silent: SilentRelay | None = None
    try:
        assert wait_until(lambda: len(handler.messages) >= 40, 120), processes[0].log_path.read_text()[-3000:]
        server.stop()
        silent = SilentRelay(port)
        time.sleep(1.5)  # the senders are now waiting on the silent port (or on a reply that never comes)
        for process in processes:
            process.process.send_signal(signal.SIGTERM)
        started = time.monotonic()
        codes = [process.process.wait(STOP_BOUND + 30) for process in processes]
        elapsed = time.monotonic() - started
    finally:
        for process in processes:
            if process.process.poll() is None:
                process.kill()
        if silent is not None:
            silent.close()
    logs = [process.log_path.read_text() for process in processes]
    assert codes == [0] * workers, logs
    assert elapsed < STOP_BOUND, f"{elapsed:.1f} s to stop"
    assert all("Traceback" not in log and log.rstrip().endswith("stopped") for log in logs), logs
    received = Counter(rcpt for message in handler.messages for rcpt in message.rcpt_tos)
    assert set(received.values()) == {1}, "no message received twice"
    statuses = {email: status for email, status, _ in _messages(app)}
    assert len(statuses) == count
    sent = {email for email, status in statuses.items() if status == "sent"}
    assert sent == set(received), "sent in the store exactly when the relay accepted it"
    assert {status for email, status in statuses.items() if email not in sent} <= {"queued", "deferred"}
    app.close()


def test_a_stop_during_start_up_ends_the_process_cleanly(tmp_path: Path, database_url: str) -> None:
    """SIGTERM while ``schedule.py`` waits for the migrations' lock (held here by another connection): the
    process says it stopped before starting and exits 0, without a traceback."""
    if not database_url.startswith("postgresql"):
        pytest.skip("the migrations' lock is PostgreSQL's")
    config = write_live_config(tmp_path)
    engine = create_engine(database_url)
    holder = engine.connect()
    holder.execute(text("SELECT pg_advisory_lock(727272)"))
    log = tmp_path / "service.log"
    process = ServiceProcess(config, database_url, 2525, log)

    def waiting_for_lock() -> bool:
        with engine.connect() as connection:
            return bool(
                connection.execute(
                    text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
                ).scalar()
            )

    try:
        assert wait_until(waiting_for_lock, 60), log.read_text()
        process.process.send_signal(signal.SIGTERM)
        code = process.process.wait(30)
    finally:
        if process.process.poll() is None:
            process.kill()
        holder.close()
        engine.dispose()
    output = log.read_text()
    assert code == 0, output
    assert output.strip().splitlines()[-1] == "stopped before starting", output
    assert "Traceback" not in output


def test_a_stop_right_after_launch_ends_the_process_cleanly(tmp_path: Path) -> None:
    """SIGTERM while ``schedule.py`` is still importing (0.1 s after launch): exit 0 (or 143, if it came before
    Python ran the script at all), no traceback."""
    config = write_live_config(tmp_path)
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "schedule.py"), "--config", str(config)],
        cwd=ROOT,
        env=dict(os.environ, DATABASE_URL=f"sqlite:///{tmp_path / 'mailer.db'}"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    timer = threading.Timer(0.1, process.send_signal, (signal.SIGTERM,))
    timer.start()
    try:
        output, _ = process.communicate(timeout=60)
    finally:
        timer.cancel()
        if process.poll() is None:
            process.kill()
    assert process.returncode in (0, -signal.SIGTERM), output
    assert "Traceback" not in output
    if process.returncode == 0:
        assert output.strip().splitlines()[-1] in ("stopped before starting", "stopped"), output
