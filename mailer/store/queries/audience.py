"""Who a step reaches: audience sizes along each session's timeline, and what queuing a wave would do.

The outbox's audience queries are imported where they are used: the read queries of this package are
loaded by every command that reads the log, which should not pay for the whole outbox.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session as DbSession

from mailer.config import Series, Session, Step
from mailer.store.models import (
    Contact,
    ContactStatus,
    Message,
    Suppression,
)
from mailer.timeline.clock import require_aware
from mailer.timeline.plan import Deadline, plan


def audience_size(
    db: DbSession, series: Series, session: Session, step: Step, audience: str, now: datetime
) -> int:
    """How many contacts a wave of ``step`` would go to now (suppressed ones included, as queue_wave does)."""
    from mailer.store.outbox.queue import audience_query

    now = require_aware(now, "now")
    return (
        db.scalar(
            select(func.count()).select_from(audience_query(series, session, step, audience, now).subquery())
        )
        or 0
    )


@dataclass(frozen=True)
class TimelineRow:
    """One step of a session's timeline with the size of its default audience now."""

    session: Session
    step: Step
    at: datetime  # the step's send time (UTC) under the session's current start
    deadline: Deadline  # the last moment it may go (UTC) and the skip reason after it
    audience: str  # the default audience key: the session's region, "registrants" or "invited"
    size: int  # contacts a wave queued now would go to, suppressed ones included


def session_timelines(
    db: DbSession, series: Series, now: datetime, session_id: str | None = None
) -> dict[str, list[TimelineRow]]:
    """Each session's steps in time order (the ``mailer sessions list`` tables and the organisers' sessions
    page), keyed by session id in config order; only ``session_id`` when given."""
    from mailer.store.outbox import default_audience

    now = require_aware(now, "now")
    timelines: dict[str, list[TimelineRow]] = {
        session.id: [] for session in series.sessions if not session_id or session.id == session_id
    }
    for item in plan(series):
        if item.session.id not in timelines:
            continue
        audience = default_audience(item.session, item.step)
        size = audience_size(db, series, item.session, item.step, audience, now)
        timelines[item.session.id].append(
            TimelineRow(item.session, item.step, item.at, item.deadline, audience, size)
        )
    return timelines


@dataclass(frozen=True)
class WavePlan:
    """What queuing a wave would do, shown before the organiser confirms."""

    new_recipients: int  # contacts in the audience without a message for this step yet
    already: int  # contacts who already have one (queuing again adds nobody twice)
    suppressed: int  # of the new ones, addresses on the suppression list or not active
    by_language: list[tuple[str, int]]  # new recipients per contact language, most first
    first_send: datetime | None  # earliest due time among the new recipients (UTC)
    last_send: datetime | None
    late: int = 0  # of the new ones, messages that would be skipped: past the deadline, or a window after it


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
    from mailer.store.outbox.queue import ZonePlan, audience_query, message_deadline, zone_plan

    now = require_aware(now, "now")
    at = require_aware(at, "at") if at is not None else None
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
    late = 0
    wave_deadline = message_deadline(series, session, step, at)
    zones: dict[str, ZonePlan] = {}
    for contact_id, language, zone, status, key in rows:
        if contact_id in have:
            continue
        new += 1
        languages[language or "?"] += 1
        if status != ContactStatus.ACTIVE or key in suppressed_keys:
            suppressed += 1
        if zone not in zones:
            zones[zone] = zone_plan(series, session, step, zone, at, wave_deadline, now)
        times.append(zones[zone].due_at)
        late += bool(zones[zone].reason)
    if not times:
        return WavePlan(0, len(rows), 0, [], None, None)
    return WavePlan(
        new,
        len(rows) - new,
        suppressed,
        languages.most_common(),
        max(min(times), now),
        max(*times, now),
        late,
    )
