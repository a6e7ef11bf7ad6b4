"""Message counts: per status for each session and step or wave, progress, sends per hour or day."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session as DbSession

from mailer.store.models import (
    Message,
    MessageStatus,
    Wave,
    WaveStatus,
)
from mailer.timeline.clock import require_aware

STATUS_COLUMNS = tuple(status.value for status in MessageStatus)
UNFINISHED_STATUSES = (MessageStatus.QUEUED, MessageStatus.DEFERRED, MessageStatus.SENDING)


@dataclass(frozen=True)
class CountRow:
    """Message counts by status for one group (a session and step, or a wave)."""

    session_id: str
    step: str
    wave_id: int | None
    audience: str
    wave_status: str
    counts: dict[str, int]
    hold_reason: str = ""  # why the store holds the wave (a reschedule made its time absurd), "" if not

    @property
    def total(self) -> int:
        """Messages of the group, in any status."""
        return sum(self.counts.values())

    @property
    def done(self) -> int:
        """Messages of the group in a final status (not queued, deferred or sending)."""
        return self.total - sum(self.counts.get(status.value, 0) for status in UNFINISHED_STATUSES)

    @property
    def state(self) -> str:
        """The wave's state as staff read it: ``done`` once every message of an active or paused wave is
        final, or when an active wave reaches nobody (no messages: nothing to pause or cancel, as
        :func:`mailer.store.outbox.set_wave_status` refuses); else the wave's status (active, paused,
        cancelled). An empty paused wave stays ``paused``: its step queued again would be held."""
        if self.wave_status == WaveStatus.CANCELLED:
            return self.wave_status
        if self.total == 0:
            return "done" if self.wave_status == WaveStatus.ACTIVE else self.wave_status
        return "done" if self.done == self.total else self.wave_status

    @property
    def percent(self) -> int:
        """``done`` as a whole percentage of ``total`` (0 for an empty group)."""
        return round(100 * self.done / self.total) if self.total else 0


def used_statuses(rows: Sequence[CountRow]) -> list[str]:
    """The statuses, in STATUS_COLUMNS order, that some row has a message in (the columns worth showing)."""
    return [status for status in STATUS_COLUMNS if any(row.counts.get(status) for row in rows)]


def status_totals(rows: Iterable[CountRow]) -> dict[str, int]:
    """Message counts by status summed over ``rows``."""
    totals: dict[str, int] = defaultdict(int)
    for row in rows:
        for status, count in row.counts.items():
            totals[status] += count
    return dict(totals)


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


def counts_by_wave(
    db: DbSession, session_id: str | None = None, *, wave_id: int | None = None
) -> list[CountRow]:
    """Message counts per wave and status, in scheduled order (waves without messages included)."""
    query = (
        select(Wave, Message.status, func.count(Message.id))
        .outerjoin(Message, Message.wave_id == Wave.id)
        .group_by(Wave.id, Message.status)
        .order_by(Wave.scheduled_at, Wave.id)
    )
    if session_id:
        query = query.where(Wave.session_id == session_id)
    if wave_id is not None:
        query = query.where(Wave.id == wave_id)
    rows: dict[int, CountRow] = {}
    for wave, status, count in db.execute(query):
        row = rows.setdefault(
            wave.id,
            CountRow(wave.session_id, wave.step, wave.id, wave.audience, wave.status, {}, wave.hold_reason),
        )
        if status is not None:
            row.counts[status] = count
    return list(rows.values())


@dataclass(frozen=True)
class Bucket:
    """Messages sent in one hour or day (UTC)."""

    start: datetime
    count: int


def sends_over_time(
    db: DbSession, *, session_id: str = "", wave_id: int | None = None
) -> tuple[list[Bucket], str]:
    """Sent messages per hour (span up to 3 days) or per day, gaps filled with zero; and the unit used."""
    query = select(Message.sent_at).where(Message.status == MessageStatus.SENT, Message.sent_at.is_not(None))
    if session_id:
        query = query.where(Message.session_id == session_id)
    if wave_id is not None:
        query = query.where(Message.wave_id == wave_id)
    moments = [moment for moment in db.scalars(query) if moment is not None]
    if not moments:
        return [], "hour"
    first, last = min(moments), max(moments)
    unit = "hour" if last - first <= timedelta(days=3) else "day"

    def floor(moment: datetime) -> datetime:
        moment = moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        return moment.replace(hour=0) if unit == "day" else moment

    counts = Counter(floor(moment) for moment in moments)
    step = timedelta(hours=1) if unit == "hour" else timedelta(days=1)
    buckets, cursor = [], floor(first)
    while cursor <= floor(last):
        buckets.append(Bucket(cursor, counts.get(cursor, 0)))
        cursor += step
    return buckets, unit


@dataclass(frozen=True)
class SentSpan:
    """When a (session, step)'s messages went: the first and the last ``sent_at`` (aware UTC) and how many."""

    first: datetime
    last: datetime
    count: int


def sent_spans(db: DbSession) -> dict[tuple[str, str], SentSpan]:
    """For every (session id, step) with a sent message: when the first and last went, and how many."""
    query = (
        select(
            Message.session_id,
            Message.step,
            func.min(Message.sent_at),
            func.max(Message.sent_at),
            func.count(),
        )
        .where(Message.status == MessageStatus.SENT, Message.sent_at.is_not(None))
        .group_by(Message.session_id, Message.step)
    )
    return {
        (session, step): SentSpan(first, last, count)
        for session, step, first, last, count in db.execute(query)
        if first is not None and last is not None  # never None: the rows have a sent_at
    }


def pending_due(db: DbSession, wave_id: int, now: datetime) -> int:
    """Pending messages of an active wave whose time has come (the wave is sending now)."""
    now = require_aware(now, "now")
    return (
        db.scalar(
            select(func.count(Message.id))
            .join(Wave, Wave.id == Message.wave_id)
            .where(
                Message.wave_id == wave_id,
                Wave.status == WaveStatus.ACTIVE,
                Message.status.in_(UNFINISHED_STATUSES),
                Message.due_at <= now,
            )
        )
        or 0
    )
