"""Read-only queries behind the staff and organiser pages (the CLI's views live in mailer.store.reports)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Select, and_, func, or_, select
from sqlalchemy.orm import Session as DbSession

from mailer.config import Series, Session, Step
from mailer.store.models import (
    Contact,
    ContactStatus,
    DeliveryEvent,
    Message,
    MessageStatus,
    Suppression,
    Wave,
    WaveStatus,
)
from mailer.store.outbox import audience_query
from mailer.timeline.plan import hold_for_window, message_due

PAGE_SIZE = 50


@dataclass(frozen=True)
class LogFilter:
    """The delivery log's filters, as given in the query string ("" = any)."""

    session: str = ""
    step: str = ""
    status: str = ""
    language: str = ""
    region: str = ""
    address: str = ""
    q: str = ""  # free text: address, name, institution, SMTP reply or Message-ID
    wave: str = ""

    @classmethod
    def from_query(cls, params: Any) -> LogFilter:
        """Read the filters from a query-string mapping; unknown keys are ignored, values trimmed."""
        return cls(**{f.name: str(params.get(f.name, "")).strip()[:200] for f in fields(cls)})

    def as_params(self) -> dict[str, str]:
        """The filters that are set, for building links (pagination, CSV export)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name)}


@dataclass(frozen=True)
class LogEntry:
    """One message row of the dashboard log."""

    pk: int
    recipient: str
    name: str
    session_id: str
    step: str
    language: str
    contact_language: str
    status: str
    attempts: int
    reply_code: int | None
    reply_text: str
    due_at: datetime
    sent_at: datetime | None
    updated_at: datetime
    detail: str


def _conditions(series: Series, filters: LogFilter) -> list[Any]:
    conditions: list[Any] = []
    if filters.session:
        conditions.append(Message.session_id == filters.session)
    if filters.step:
        conditions.append(Message.step == filters.step)
    if filters.status:
        conditions.append(Message.status == filters.status)
    if filters.wave.isdigit():
        conditions.append(Message.wave_id == int(filters.wave))
    if filters.region:
        conditions.append(
            Message.session_id.in_([s.id for s in series.sessions if s.region == filters.region])
        )
    if filters.language:
        lang = filters.language.lower()
        contact_lang = func.lower(Contact.language)
        conditions.append(
            or_(
                Message.language == filters.language,
                and_(Message.language == "", or_(contact_lang == lang, contact_lang.like(f"{lang}-%"))),
            )
        )
    if filters.address:
        conditions.append(Contact.email_key.contains(filters.address.casefold(), autoescape=True))
    if filters.q:
        needle = filters.q.casefold()
        conditions.append(
            or_(
                Contact.email_key.contains(needle, autoescape=True),
                func.lower(Contact.name).contains(needle, autoescape=True),
                func.lower(Contact.institution).contains(needle, autoescape=True),
                func.lower(Message.reply_text).contains(needle, autoescape=True),
                Message.message_id == filters.q,
            )
        )
    return conditions


def _log_select(series: Series, filters: LogFilter) -> Select[Any]:
    last_event = (
        select(DeliveryEvent.detail)
        .where(DeliveryEvent.message_pk == Message.id)
        .order_by(DeliveryEvent.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    return (
        select(Message, Contact.name, Contact.language, last_event)
        .join(Contact, Contact.id == Message.contact_id)
        .where(*_conditions(series, filters))
    )


def _entry(message: Message, name: str, contact_language: str, detail: str | None) -> LogEntry:
    return LogEntry(
        pk=message.id,
        recipient=message.recipient,
        name=name,
        session_id=message.session_id,
        step=message.step,
        language=message.language,
        contact_language=contact_language,
        status=message.status,
        attempts=message.attempts,
        reply_code=message.reply_code,
        reply_text=message.reply_text,
        due_at=message.due_at,
        sent_at=message.sent_at,
        updated_at=message.updated_at,
        detail=detail or "",
    )


def log_rows(
    db: DbSession, series: Series, filters: LogFilter, *, limit: int, offset: int = 0
) -> tuple[list[LogEntry], int]:
    """Up to ``limit`` matching messages from ``offset``, newest change first, and the total matching count
    (the dashboard's log and ``mailer log``)."""
    query = _log_select(series, filters)
    total = db.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = db.execute(
        query.order_by(Message.updated_at.desc(), Message.id.desc()).limit(limit).offset(offset)
    ).all()
    return [_entry(*row) for row in rows], total


def log_page(db: DbSession, series: Series, filters: LogFilter, page: int) -> tuple[list[LogEntry], int]:
    """One page (1-based, PAGE_SIZE rows) of :func:`log_rows`."""
    return log_rows(db, series, filters, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)


def log_all(db: DbSession, series: Series, filters: LogFilter, batch: int = 1000) -> Any:
    """Every matching message, oldest first, fetched in batches (for the CSV export)."""
    last_id = 0
    while True:
        rows = db.execute(
            _log_select(series, filters).where(Message.id > last_id).order_by(Message.id).limit(batch)
        ).all()
        if not rows:
            return
        for row in rows:
            yield _entry(*row)
        last_id = rows[-1][0].id


def contact_languages(db: DbSession) -> list[str]:
    """Languages seen on contacts and messages, for the filter's choices."""
    found = set(db.scalars(select(Contact.language).distinct())) | set(
        db.scalars(select(Message.language).where(Message.language != "").distinct())
    )
    return sorted(tag for tag in found if tag)


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


def pending_due(db: DbSession, wave_id: int, now: datetime) -> int:
    """Pending messages of an active wave whose time has come (the wave is sending now)."""
    return (
        db.scalar(
            select(func.count(Message.id))
            .join(Wave, Wave.id == Message.wave_id)
            .where(
                Message.wave_id == wave_id,
                Wave.status == WaveStatus.ACTIVE,
                Message.status.in_((MessageStatus.QUEUED, MessageStatus.DEFERRED, MessageStatus.SENDING)),
                Message.due_at <= now,
            )
        )
        or 0
    )


def audience_size(
    db: DbSession, series: Series, session: Session, step: Step, audience: str, now: datetime
) -> int:
    """How many contacts a wave of ``step`` would go to now (suppressed ones included, as queue_wave does)."""
    return (
        db.scalar(
            select(func.count()).select_from(audience_query(series, session, step, audience, now).subquery())
        )
        or 0
    )


@dataclass(frozen=True)
class WavePlan:
    """What queuing a wave would do, shown before the organiser confirms."""

    new_recipients: int  # contacts in the audience without a message for this step yet
    already: int  # contacts who already have one (queuing again adds nobody twice)
    suppressed: int  # of the new ones, addresses on the suppression list or not active
    by_language: list[tuple[str, int]]  # new recipients per contact language, most first
    first_send: datetime | None  # earliest due time among the new recipients (UTC)
    last_send: datetime | None


def plan_wave(
    db: DbSession,
    series: Series,
    session: Session,
    step: Step,
    audience: str,
    now: datetime,
    at: datetime | None = None,
) -> WavePlan:
    """Recipients per language and the first send time of queuing ``step`` for ``audience`` at ``now``."""
    members = audience_query(series, session, step, audience, now)
    rows = db.execute(
        select(Contact.id, Contact.language, Contact.time_zone, Contact.status, Contact.email_key).where(
            Contact.id.in_(members)
        )
    ).all()
    have = set(
        db.scalars(
            select(Message.contact_id).where(Message.session_id == session.id, Message.step == step.name)
        )
    )
    suppressed_keys = set(
        db.scalars(
            select(Suppression.email_key).where(
                Suppression.email_key.in_(select(Contact.email_key).where(Contact.id.in_(members)))
            )
        )
    )
    languages: Counter[str] = Counter()
    times: list[datetime] = []
    suppressed = 0
    new = 0
    for contact_id, language, zone, status, key in rows:
        if contact_id in have:
            continue
        new += 1
        languages[language or "?"] += 1
        if status != ContactStatus.ACTIVE or key in suppressed_keys:
            suppressed += 1
        times.append(hold_for_window(message_due(session, step, zone, at), step, zone))
    if not times:
        return WavePlan(0, len(rows), 0, [], None, None)
    return WavePlan(
        new, len(rows) - new, suppressed, languages.most_common(), max(min(times), now), max(*times, now)
    )


__all__ = [
    "PAGE_SIZE",
    "Bucket",
    "LogEntry",
    "LogFilter",
    "WavePlan",
    "audience_size",
    "contact_languages",
    "log_all",
    "log_page",
    "pending_due",
    "plan_wave",
    "sends_over_time",
]
