"""Queuing a wave larger than a driver's bound-parameter limit (PostgreSQL: 65,535) in one set-based step."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from sqlalchemy import func, select

from mailer.app import App
from mailer.message_ids import make_message_id
from mailer.store.engine import transaction
from mailer.store.models import DeliveryEvent, Message
from mailer.store.outbox import message_key, queue_wave
from tests.factories import add_contacts_in_bulk

INVITATION_AT = datetime(2021, 6, 1, 13, 0, tzinfo=UTC)
WAVE = 70_000  # more recipients than PostgreSQL accepts bound parameters in one statement


def test_a_wave_over_65535_recipients_is_queued_in_the_store(app: App) -> None:
    series = app.settings.series
    session, step = series.session("africa-2021"), series.step("invitation")
    with transaction(app.factory) as db:
        add_contacts_in_bulk(db, WAVE, zones=("Africa/Lagos", "Africa/Nairobi", "Asia/Tokyo"))
    started = time.monotonic()
    with transaction(app.factory) as db:
        result = queue_wave(db, app.settings, session, step, INVITATION_AT)
    elapsed = time.monotonic() - started
    assert (result.created, result.added, result.skipped) == (True, WAVE, 0)
    with transaction(app.factory) as db:
        again = queue_wave(db, app.settings, session, step, INVITATION_AT)
        counts = (
            db.scalar(select(func.count()).select_from(Message)),
            db.scalar(select(func.count(func.distinct(Message.message_id)))),
            db.scalar(select(func.count()).select_from(DeliveryEvent).where(DeliveryEvent.kind == "queued")),
        )
        first, last = db.execute(
            select(Message.contact_id, Message.message_id, Message.recipient)
            .where(
                Message.id.in_(
                    [db.scalar(select(func.min(Message.id))), db.scalar(select(func.max(Message.id)))]
                )
            )
            .order_by(Message.id)
        ).all()
    assert again.added == 0
    assert counts == (WAVE, WAVE, WAVE)
    for contact_id, message_id, _recipient in (first, last):
        key = message_key(series.id, session.id, step.name, contact_id)
        assert message_id == make_message_id(key, app.settings.sender.domain)
    assert (first.recipient, last.recipient) == ("person1@bulk.example", f"person{WAVE}@bulk.example")
    assert elapsed < 60, f"queuing {WAVE} messages took {elapsed:.1f} s"
