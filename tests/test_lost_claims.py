"""A worker whose claims were taken over while it was sending (its leases expired meanwhile: the store was
locked longer than the lease, or the worker stalled) sends none of the messages it had not handed to SMTP
yet, and gives back none of the other worker's claims. Real aiosmtpd server, SQLite and PostgreSQL.

Found by locking the messages table for 15 s (6 s lease) under two ``schedule.py`` processes on PostgreSQL:
the first process's hand-over marks, blocked behind the lock, ran after the second process had reaped and
claimed its messages; they marked nothing, and the first process sent them all the same, as the second did
(20 of 1,500 contacts got the invitation twice, logged "lease expired before it was handed to SMTP").
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter
from datetime import timedelta

from sqlalchemy import select

from mailer.app import App
from mailer.delivery.pool import SmtpPool
from mailer.service import Service
from mailer.store.engine import transaction
from mailer.store.models import Message
from mailer.store.outbox import claim_due, reap_expired_leases
from mailer.timeline.clock import VirtualClock
from tests.conftest import INVITATION_AT, RunningServer, with_smtp
from tests.test_leases import ObservedPool, _queue


def test_a_worker_whose_claims_were_taken_over_sends_none_it_had_not_handed_over(
    app: App, smtp_server: RunningServer
) -> None:
    count = 24
    settings = with_smtp(app.settings, smtp_server, connections=1)  # hand-over window: 4 messages
    app = dataclasses.replace(app, settings=settings)
    _queue(app, count)
    clock = VirtualClock(INVITATION_AT)
    taken: list[int] = []  # the other worker's claims

    def take_over(recipient: str) -> None:
        """At the first send, the leases expire and another worker reaps and claims the whole wave."""
        if taken:
            return
        later = clock.advance(settings.lease + timedelta(minutes=1))
        with transaction(app.factory) as db:
            reap_expired_leases(db, later)
        with transaction(app.factory) as db:
            claimed, _ = claim_due(db, settings, later, worker="other", limit=count, lease=settings.lease)
        taken.extend(message.pk for message in claimed)

    async def run() -> None:
        async with SmtpPool(settings.smtp) as pool:
            await Service(app, clock, worker="first", batch_size=count).dispatch(
                ObservedPool(pool, take_over)
            )

    asyncio.run(run())
    assert len(taken) == count
    received = Counter(rcpt for message in smtp_server.messages for rcpt in message.rcpt_tos)
    # Only the first window (handed over before the take-over) may have gone; the rest are the other's.
    assert sum(received.values()) <= 4, received
    with transaction(app.factory) as db:
        claims = {tuple(row) for row in db.execute(select(Message.status, Message.worker))}
    assert claims == {("sending", "other")}, "the other worker's claims are left as they are"
