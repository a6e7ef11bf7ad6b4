"""Leases: a reclaimed message goes behind the queue and alone, is held after two expiries, and a live but
CPU-starved worker keeps what it holds. Real aiosmtpd server, SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from mailer.app import App
from mailer.config import StepKind
from mailer.delivery.forwarding import Forwarding
from mailer.delivery.pool import SmtpPool
from mailer.service import Service
from mailer.store.engine import transaction
from mailer.store.models import DeliveryEvent, EventKind, Message, MessageStatus
from mailer.store.outbox import HELD_REASON, claim_due, mark_handed, queue_wave, reap_expired_leases
from mailer.timeline.clock import VirtualClock
from tests.conftest import RunningServer, with_smtp
from tests.factories import add_contact

INVITATION_AT = datetime(2021, 6, 1, 13, 0, tzinfo=UTC)
LEASE = timedelta(minutes=5)


class RunningClock:
    """Real time, shifted so that it starts at ``start``: leases expire in wall-clock time."""

    def __init__(self, start: datetime) -> None:
        self._offset = start - datetime.now(UTC)

    def now(self) -> datetime:
        return datetime.now(UTC) + self._offset


class ObservedPool(Forwarding):
    """The real pool, plus a hook run on the event loop before each send (what the test observes or does)."""

    def __init__(self, pool: SmtpPool, before_send: Callable[[str], None]) -> None:
        self.pool = pool
        self.observe = before_send

    def route(self, kind: StepKind | None) -> SmtpPool:
        return self.pool

    def before_send(self, recipient: str) -> None:
        self.observe(recipient)

    async def close(self) -> None:
        await self.pool.close()


def _queue(app: App, count: int) -> list[int]:
    series = app.settings.series
    with transaction(app.factory) as db:
        ids = [add_contact(db, f"person{i}@example.org").id for i in range(count)]
    with transaction(app.factory) as db:
        queue_wave(db, app.settings, series.session("africa-2021"), series.step("invitation"), INVITATION_AT)
    return ids


def _statuses(app: App) -> dict[str, int]:
    with transaction(app.factory) as db:
        return dict(db.execute(select(Message.status, func.count()).group_by(Message.status)).all())  # type: ignore[arg-type]


def _events(app: App, kind: EventKind) -> int:
    with transaction(app.factory) as db:
        return (
            db.scalar(select(func.count()).select_from(DeliveryEvent).where(DeliveryEvent.kind == kind)) or 0
        )


def test_a_reclaimed_message_goes_behind_the_queue_and_is_held_after_two_expiries(app: App) -> None:
    _queue(app, 3)
    with transaction(app.factory) as db:
        (first,), _ = claim_due(db, app.settings, INVITATION_AT, worker="crashed", limit=1, lease=LEASE)
        mark_handed(db, [first.pk], "crashed", INVITATION_AT)  # it went to SMTP: this expiry counts
    assert first.careful is False
    later = INVITATION_AT + timedelta(minutes=6)
    with transaction(app.factory) as db:
        assert reap_expired_leases(db, later) == 1
    with transaction(app.factory) as db:
        claimed, _ = claim_due(db, app.settings, later, worker="crashed-too", limit=3, lease=LEASE)
        mark_handed(db, [message.pk for message in claimed], "crashed-too", later)
    assert [message.pk for message in claimed][-1] == first.pk, "the reclaimed message is last in line"
    assert [message.careful for message in claimed] == [False, False, True]
    later += timedelta(minutes=6)
    with transaction(app.factory) as db:
        assert reap_expired_leases(db, later) == 3
    assert _statuses(app) == {"held": 1, "queued": 2}
    with transaction(app.factory) as db:
        held = db.get(Message, first.pk)
        assert held is not None
        assert (held.status, held.expiries, held.reply_text, held.worker) == ("held", 2, HELD_REASON, "")
        events = db.execute(
            select(DeliveryEvent.kind, DeliveryEvent.detail)
            .where(DeliveryEvent.message_pk == first.pk)
            .order_by(DeliveryEvent.id)
        ).all()
    assert [tuple(event) for event in events][1:] == [
        ("reclaimed", "lease expired: sent alone next time"),
        ("held", HELD_REASON),
    ]
    with transaction(app.factory) as db:  # claimed again, never handed to SMTP: not counted, not held
        again, finished = claim_due(db, app.settings, later, worker="crashed-3", limit=5, lease=LEASE)
    assert [message.careful for message in again] == [True, True] and finished == []
    assert first.pk not in [message.pk for message in again], "held is not sent a third time"
    with transaction(app.factory) as db:
        assert reap_expired_leases(db, later + timedelta(minutes=6)) == 2
    assert _statuses(app) == {"held": 1, "queued": 2}
    with transaction(app.factory) as db:
        expiries = db.scalars(select(Message.expiries).where(Message.status == "queued")).all()
        details = db.scalars(
            select(DeliveryEvent.detail).where(DeliveryEvent.kind == "reclaimed").order_by(DeliveryEvent.id)
        ).all()
    assert expiries == [1, 1]
    assert details[-2:] == ["lease expired before it was handed to SMTP"] * 2


def test_a_careful_message_is_committed_before_its_connection_sends_the_next(
    app: App, smtp_server: RunningServer
) -> None:
    app = dataclasses.replace(app, settings=with_smtp(app.settings, smtp_server, connections=1))
    _queue(app, 4)
    with transaction(app.factory) as db:
        claimed, _ = claim_due(db, app.settings, INVITATION_AT, worker="crashed", limit=4, lease=LEASE)
        mark_handed(db, [message.pk for message in claimed], "crashed", INVITATION_AT)
    later = INVITATION_AT + timedelta(minutes=6)
    with transaction(app.factory) as db:
        assert reap_expired_leases(db, later) == 4
    sent_before_each: list[int] = []

    def count_sent(recipient: str) -> None:
        with transaction(app.factory) as db:
            sent_before_each.append(
                db.scalar(select(func.count()).select_from(Message).where(Message.status == "sent")) or 0
            )

    async def run() -> None:
        async with SmtpPool(app.settings.smtp) as pool:
            await Service(app, VirtualClock(later)).dispatch(ObservedPool(pool, count_sent))

    asyncio.run(run())
    assert sent_before_each == [0, 1, 2, 3]
    assert _statuses(app) == {"sent": 4}


def test_a_message_never_handed_to_smtp_goes_back_uncounted_in_its_place(app: App) -> None:
    _queue(app, 3)
    with transaction(app.factory) as db:
        claimed, _ = claim_due(db, app.settings, INVITATION_AT, worker="crashed", limit=3, lease=LEASE)
        mark_handed(db, [claimed[0].pk], "crashed", INVITATION_AT)  # only the first went
        due_before = dict(db.execute(select(Message.id, Message.due_at)).all())
    later = INVITATION_AT + timedelta(minutes=6)
    with transaction(app.factory) as db:
        assert reap_expired_leases(db, later) == 3
        rows = {
            row.id: (row.expiries, row.attempts, row.due_at)
            for row in db.execute(select(Message.id, Message.expiries, Message.attempts, Message.due_at))
        }
        claims = set(
            db.execute(select(Message.status, Message.worker, Message.lease_until, Message.handed_at))
        )
        stamps = set(db.scalars(select(Message.updated_at)))
    first, second, third = (message.pk for message in claimed)
    assert rows[first] == (1, 1, later)
    assert rows[second] == (0, 0, due_before[second]) and rows[third] == (0, 0, due_before[third])
    assert claims == {("queued", "", None, None)}  # every claim given back, whether counted or not
    assert {stamp.astimezone(UTC) for stamp in stamps} == {later}


def test_a_cpu_starved_worker_keeps_its_claims(app: App, smtp_server: RunningServer) -> None:
    lease = timedelta(seconds=1)
    settings = dataclasses.replace(with_smtp(app.settings, smtp_server, connections=1), lease=lease)
    app = dataclasses.replace(app, settings=settings)
    count = 12
    _queue(app, count)
    clock = RunningClock(INVITATION_AT)
    reaped: list[int] = []
    stop = threading.Event()

    def other_process() -> None:  # another worker's claim transaction, reaping every 0.1 s
        while not stop.wait(0.1):
            with transaction(app.factory) as db:
                reaped.append(reap_expired_leases(db, clock.now()))

    def starve(recipient: str) -> None:  # the event loop busy for 0.3 s before each send
        end = time.perf_counter() + 0.3
        while time.perf_counter() < end:
            pass

    async def run() -> None:
        async with SmtpPool(app.settings.smtp) as pool:
            await Service(app, clock, batch_size=count).dispatch(ObservedPool(pool, starve))

    reaper = threading.Thread(target=other_process)
    reaper.start()
    started = time.monotonic()
    try:
        asyncio.run(run())
    finally:
        stop.set()
        reaper.join()
    elapsed = time.monotonic() - started
    assert elapsed > 3 * lease.total_seconds(), "the batch outlived its first lease three times over"
    assert sum(reaped) == 0 and len(reaped) > 20
    assert _events(app, EventKind.RECLAIMED) == 0
    assert _statuses(app) == {MessageStatus.SENT.value: count}
    received = Counter(rcpt for message in smtp_server.messages for rcpt in message.rcpt_tos)
    assert sorted(received.values()) == [1] * count
