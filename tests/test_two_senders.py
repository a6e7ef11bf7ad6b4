"""Two sending processes on one store send each message once: on PostgreSQL the claim locks its rows
(``FOR UPDATE SKIP LOCKED``); on SQLite, whose claim reads without a lock, each claim takes only the rows it
finds still pending when it writes, and sends only those."""

from __future__ import annotations

import asyncio
import dataclasses
import multiprocessing
import multiprocessing.synchronize
from collections import Counter

from sqlalchemy import func, select

from mailer.app import App, open_app
from mailer.config import Security, Settings
from mailer.delivery.pool import SmtpPool
from mailer.service import Service
from mailer.store.engine import transaction
from mailer.store.models import Message
from mailer.store.outbox import queue_wave
from mailer.timeline.clock import VirtualClock
from tests.conftest import INVITATION_AT, RunningServer
from tests.factories import add_contacts_in_bulk

PEOPLE = 600


def _send_until_done(settings: Settings, worker: str, start: multiprocessing.synchronize.Event) -> None:
    """One process: dispatch in batches of 25 until nothing is due (run in a spawned child)."""
    app = open_app(settings)
    service = Service(app, VirtualClock(INVITATION_AT), worker=worker, batch_size=25)

    async def run() -> None:
        async with SmtpPool(settings.smtp) as pool:
            await service.dispatch(pool)

    start.wait(60)
    asyncio.run(run())
    app.close()


def test_two_processes_sending_one_wave_send_each_message_once(app: App, smtp_server: RunningServer) -> None:
    smtp = dataclasses.replace(
        app.settings.smtp, host=smtp_server.host, port=smtp_server.port, security=Security.NONE, connections=2
    )
    settings = dataclasses.replace(app.settings, smtp=smtp)
    with transaction(app.factory) as db:
        add_contacts_in_bulk(db, PEOPLE)
    with transaction(app.factory) as db:
        series = settings.series
        queue_wave(db, settings, series.session("africa-2021"), series.step("invitation"), INVITATION_AT)

    spawn = multiprocessing.get_context("spawn")
    start = spawn.Event()
    senders = [spawn.Process(target=_send_until_done, args=(settings, f"w{i}", start)) for i in range(2)]
    for sender in senders:
        sender.start()
    start.set()
    for sender in senders:
        sender.join(120)
        assert sender.exitcode == 0

    copies = Counter(recipient for received in smtp_server.messages for recipient in received.rcpt_tos)
    assert len(copies) == PEOPLE
    assert max(copies.values()) == 1, [address for address, n in copies.items() if n > 1][:5]
    with transaction(app.factory) as db:
        statuses = dict(db.execute(select(Message.status, func.count()).group_by(Message.status)).all())
        attempts = db.scalar(select(func.max(Message.attempts)))
    assert (statuses, attempts) == ({"sent": PEOPLE}, 1)
