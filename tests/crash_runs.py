"""SIGKILLs of service processes holding a batch, against a counting SMTP server, on PostgreSQL.

Shared by ``tests/test_crash_recovery.py`` (a few kills) and ``bench/crash_duplicates.py`` (20 kills):
``processes`` real ``schedule.py`` processes share one wave; again and again one of them is killed (SIGKILL)
at a moment it holds claimed messages (``sending`` under its ``host:pid``) and a new one takes its place;
then the survivors finish the wave. What the server received, per recipient, gives the duplicates.
"""

from __future__ import annotations

import asyncio
import random
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from aiosmtpd.smtp import SMTP, Envelope
from aiosmtpd.smtp import Session as SmtpSession
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

from mailer.app import open_app
from mailer.config import load_settings
from mailer.delivery.capture import SmtpServer
from mailer.store.engine import transaction
from mailer.store.models import Message, MessageStatus
from tests import service_processes as live


class CountingHandler:
    """aiosmtpd handler counting accepted messages per recipient (thread-safe); keeps no bodies. Each message
    is answered after ``slow`` seconds (a relay's own pace)."""

    def __init__(self, slow: float = 0.0) -> None:
        self.received: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.slow = slow

    async def handle_DATA(self, server: SMTP, session: SmtpSession, envelope: Envelope) -> str:
        if self.slow:
            await asyncio.sleep(self.slow)
        with self.lock:
            self.received.update(str(rcpt) for rcpt in envelope.rcpt_tos)
        return "250 2.0.0 OK"

    def total(self) -> int:
        with self.lock:
            return sum(self.received.values())


@dataclass
class KillRun:
    """What one run did and what the server received."""

    contacts: int
    kills: int
    connections: int  # per process
    received: Counter[str] = field(default_factory=Counter)
    statuses: dict[str, int] = field(default_factory=dict)
    held: set[str] = field(default_factory=set)  # recipients whose message is held for staff review
    seconds: float = 0.0

    @property
    def duplicates(self) -> int:
        """Copies received beyond the first, over all recipients."""
        return sum(count - 1 for count in self.received.values())

    @property
    def lost(self) -> int:
        """Contacts who received nothing and whose message is not held for staff review either."""
        return self.contacts - len(set(self.received) | self.held)

    @property
    def held_unreceived(self) -> int:
        """Held messages that never reached the server (staff resend them)."""
        return len(self.held - set(self.received))

    @property
    def most(self) -> int:
        """The most copies one recipient received."""
        return max(self.received.values(), default=0)

    @property
    def per_kill(self) -> float:
        return self.duplicates / self.kills if self.kills else 0.0

    def summary(self) -> str:
        return (
            f"{self.kills} SIGKILLs of processes holding a batch, {self.contacts} contacts, "
            f"{self.connections} connections per process: {self.duplicates} duplicates "
            f"({self.per_kill:.2f} per kill), at most {self.most} copies of one message, {self.lost} lost, "
            f"{len(self.held)} held for review ({self.held_unreceived} of them never received), "
            f"statuses {self.statuses}, {self.seconds:.0f} s"
        )


def fresh_database(url: str, name: str) -> str:
    """An empty PostgreSQL database ``name`` on the server of ``url`` (dropped first); returns its URL."""
    base = make_url(url)
    admin = create_engine(base.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return base.set(database=name).render_as_string(hide_password=False)


def drop_database(url: str) -> None:
    """Drop the PostgreSQL database of ``url`` (disconnecting its sessions)."""
    parsed = make_url(url)
    admin = create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{parsed.database}" WITH (FORCE)'))
    admin.dispose()


def _holds_a_batch(app_factory: object, worker: str) -> bool:
    with transaction(app_factory) as db:  # type: ignore[arg-type]
        return bool(
            db.scalar(
                select(func.count())
                .select_from(Message)
                .where(Message.status == MessageStatus.SENDING, Message.worker == worker)
            )
        )


def kill_run(
    directory: Path, database_url: str, *, contacts: int, kills: int, processes: int = 3, seed: int = 20210713
) -> KillRun:
    """Run the scenario of the module docstring in ``directory`` on the (empty) store at ``database_url``."""
    config = live.write_live_config(directory)
    settings = load_settings(config, database_url=database_url)
    app = open_app(settings)
    live.add_contacts(app, contacts)
    rng = random.Random(seed)
    handler = CountingHandler()
    host = socket.gethostname()
    started = time.monotonic()
    run = KillRun(contacts, 0, settings.smtp.connections)
    with SmtpServer(handler) as server:
        serial = 0

        def start() -> live.ServiceProcess:
            nonlocal serial
            serial += 1
            return live.ServiceProcess(config, database_url, server.port, directory / f"service-{serial}.log")

        running = [start() for _ in range(processes)]
        assert live.wait_until(lambda: handler.total() > 0, 120), running[0].log_path.read_text()[-3000:]
        while run.kills < kills and (live.message_count(app) < contacts or live.pending_count(app) > 0):
            time.sleep(rng.uniform(0.1, 0.6))
            victim = rng.choice(running)
            worker = f"{host}:{victim.process.pid}"
            if not live.wait_until(lambda w=worker: _holds_a_batch(app.factory, w), 5, interval=0.02):
                continue
            victim.kill()
            run.kills += 1
            running[running.index(victim)] = start()
        finished = live.wait_until(
            lambda: live.message_count(app) == contacts and live.pending_count(app) == 0,
            180,
        )
        for process in running:  # a process started by the last kill gets SIGTERM only once it can take it
            live.wait_until(lambda p=process: "service started" in p.log_path.read_text(), 60)
        codes = [process.terminate() for process in running]
        assert finished, running[0].log_path.read_text()[-3000:]
        assert codes == [0] * processes
        with handler.lock:
            run.received = Counter(handler.received)
    with transaction(app.factory) as db:
        run.statuses = {
            str(status): count
            for status, count in db.execute(select(Message.status, func.count()).group_by(Message.status))
        }
        run.held = set(db.scalars(select(Message.recipient).where(Message.status == MessageStatus.HELD)))
    app.close()
    run.seconds = time.monotonic() - started
    return run
