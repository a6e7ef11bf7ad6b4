"""Read-only views of the delivery log for staff: per message, per wave, per session and step."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session as DbSession

from mailer.models import Contact, DeliveryEvent, Message, MessageStatus, Wave

STATUS_COLUMNS = tuple(status.value for status in MessageStatus)


@dataclass(frozen=True)
class LogRow:
    """One message as the log shows it; ``detail`` is its last event's text."""

    pk: int
    recipient: str
    session_id: str
    step: str
    language: str
    status: str
    attempts: int
    reply_code: int | None
    reply_text: str
    due_at: datetime
    sent_at: datetime | None
    updated_at: datetime
    detail: str


def delivery_log(
    db: DbSession,
    *,
    session_id: str | None = None,
    step: str | None = None,
    status: str | None = None,
    address: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[LogRow], int]:
    """Messages matching the filters, newest change first, and the total matching count.

    ``address`` matches a substring of the recipient, case-insensitively.
    """
    conditions = []
    if session_id:
        conditions.append(Message.session_id == session_id)
    if step:
        conditions.append(Message.step == step)
    if status:
        conditions.append(Message.status == status)
    if address:
        conditions.append(Contact.email_key.contains(address.strip().casefold()))
    last_event = (
        select(DeliveryEvent.detail)
        .where(DeliveryEvent.message_pk == Message.id)
        .order_by(DeliveryEvent.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    base = select(Message, last_event).join(Contact, Contact.id == Message.contact_id).where(*conditions)
    total = db.scalar(select(func.count()).select_from(base.subquery())) or 0
    rows = db.execute(base.order_by(Message.updated_at.desc(), Message.id.desc()).limit(limit).offset(offset)).all()
    return [
        LogRow(
            pk=message.id,
            recipient=message.recipient,
            session_id=message.session_id,
            step=message.step,
            language=message.language,
            status=message.status,
            attempts=message.attempts,
            reply_code=message.reply_code,
            reply_text=message.reply_text,
            due_at=message.due_at,
            sent_at=message.sent_at,
            updated_at=message.updated_at,
            detail=detail or "",
        )
        for message, detail in rows
    ], total


def message_events(db: DbSession, message_pk: int) -> list[DeliveryEvent]:
    """Every event of one message, oldest first."""
    return list(db.scalars(select(DeliveryEvent).where(DeliveryEvent.message_pk == message_pk).order_by(DeliveryEvent.id)))


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
    query = select(Message.session_id, Message.step, Message.status, func.count(), func.min(Message.due_at)).group_by(
        Message.session_id, Message.step, Message.status
    )
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
