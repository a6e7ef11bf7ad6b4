"""Read-only views of the delivery log for staff: per message, per wave, per session and step."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session as DbSession

from mailer.store.models import DeliveryEvent, Message, MessageStatus, Wave

STATUS_COLUMNS = tuple(status.value for status in MessageStatus)


def message_events(db: DbSession, message_pk: int) -> list[DeliveryEvent]:
    """Every event of one message, oldest first."""
    return list(
        db.scalars(
            select(DeliveryEvent).where(DeliveryEvent.message_pk == message_pk).order_by(DeliveryEvent.id)
        )
    )


@dataclass(frozen=True)
class CountRow:
    """Message counts by status for one group (a session and step, or a wave)."""

    session_id: str
    step: str
    wave_id: int | None
    audience: str
    wave_status: str
    counts: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def counts_by_step(db: DbSession, session_id: str | None = None) -> list[CountRow]:
    """Message counts per (session, step) and status, in timeline order (by earliest due time)."""
    query = select(
        Message.session_id, Message.step, Message.status, func.count(), func.min(Message.due_at)
    ).group_by(Message.session_id, Message.step, Message.status)
    if session_id:
        query = query.where(Message.session_id == session_id)
    groups: dict[tuple[str, str], dict[str, int]] = defaultdict(dict)
    first_due: dict[tuple[str, str], datetime] = {}
    for session, step, status, count, due in db.execute(query):
        groups[(session, step)][status] = count
        first_due[(session, step)] = min(due, first_due.get((session, step), due))
    order = sorted(groups, key=lambda key: (first_due[key], key))
    return [CountRow(key[0], key[1], None, "", "", groups[key]) for key in order]


def counts_by_wave(db: DbSession, session_id: str | None = None) -> list[CountRow]:
    """Message counts per wave and status, in scheduled order."""
    query = (
        select(Wave, Message.status, func.count(Message.id))
        .outerjoin(Message, Message.wave_id == Wave.id)
        .group_by(Wave.id, Message.status)
        .order_by(Wave.scheduled_at, Wave.id)
    )
    if session_id:
        query = query.where(Wave.session_id == session_id)
    rows: dict[int, CountRow] = {}
    for wave, status, count in db.execute(query):
        row = rows.setdefault(
            wave.id, CountRow(wave.session_id, wave.step, wave.id, wave.audience, wave.status, {})
        )
        if status is not None:
            row.counts[status] = count
    return list(rows.values())
