"""Steps -> due times and deadlines (the lateness policy). Pure functions over config objects.

Rules (DESIGN invariant 2):
- Offsets in weeks/days move the calendar date in the session's zone and keep its wall-clock time, so a
  reminder "1 day before" a 10:00 session is at 10:00 local even across a DST change.
- Offsets in hours/minutes are exact durations from the start instant.
- A step may be sent late until its deadline: the earliest of (its time + ``max_late``), the session start
  (for steps before the session) and the time of the next step of the same kind, so that a contact who
  appears late gets at most the latest applicable step, never a flood of past ones.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from mailer.config import Audience, Offset, Series, Session, Step, StepKind
from mailer.timeline.clock import require_aware
from mailer.zones import resolve_zone


class SkipReason(StrEnum):
    """Why a message was not sent (logged with the ``skipped`` event)."""

    TOO_LATE = "too late"  # past its step's max_late
    SESSION_STARTED = "session started"  # a pre-session step after the start
    SUPERSEDED = "superseded by a later step"  # the next step of the same kind is due
    CANCELLED = "cancelled"  # wave or session cancelled
    SUPPRESSED = "suppressed"  # address on the suppression list
    NOT_REGISTERED = "not registered"  # registrant step for someone no longer registered
    ALREADY_REGISTERED = "already registered"  # invitation for someone who registered meanwhile
    DECLINED = "declined"  # said they cannot attend
    WINDOW_AFTER_DEADLINE = "send window opens after the deadline"  # held by the send window too long


def step_time(session: Session, step: Step) -> datetime:
    """The step's moment for ``session``, as an aware UTC datetime."""
    start = require_aware(session.start, "session start").astimezone(session.zone)
    if step.offset.calendar_days:
        local = datetime.combine(
            start.date() + timedelta(days=step.offset.calendar_days), start.time().replace(tzinfo=None)
        )
        moment = local.replace(tzinfo=session.zone)
    else:
        moment = start.astimezone(UTC) + step.offset.exact
    return moment.astimezone(UTC)


@dataclass(frozen=True)
class Deadline:
    """The last moment a step may still go out, and the reason it ends there."""

    at: datetime
    reason: SkipReason


def step_deadline(series: Series, session: Session, step: Step, base: datetime | None = None) -> Deadline:
    """The deadline of ``step`` for ``session``.

    ``base`` is the moment the message was meant to go (default: the step's time; an organiser's
    ``--at`` or a recipient-local time may differ); ``max_late`` counts from there.
    """
    moment = step_time(session, step)
    base = require_aware(base, "base") if base is not None else moment
    candidates = [Deadline(base + step.max_late, SkipReason.TOO_LATE)]
    if step.offset.is_before:
        candidates.append(Deadline(session.start.astimezone(UTC), SkipReason.SESSION_STARTED))
    later_same_kind = [
        step_time(session, other)
        for other in series.steps
        if other.kind is step.kind and other.name != step.name and step_time(session, other) > moment
    ]
    if later_same_kind:
        candidates.append(Deadline(min(later_same_kind), SkipReason.SUPERSEDED))
    return min(candidates, key=lambda deadline: deadline.at)


def message_due(
    session: Session, step: Step, recipient_zone: str, scheduled_at: datetime | None = None
) -> datetime:
    """When one recipient's message of ``step`` is meant to go, in UTC, before any send window.

    A ``local_time`` step is due at that wall-clock time in the recipient's zone, ``offset`` calendar
    days from the session's date *as the recipient sees it*; other steps at ``scheduled_at`` (an
    organiser's choice) or the step's time. Raises NaiveDatetimeError for a naive session start or
    ``scheduled_at``.
    """
    start = require_aware(session.start, "session start")
    if scheduled_at is not None:
        scheduled_at = require_aware(scheduled_at, "scheduled_at")
    if step.local_time is None:
        return scheduled_at if scheduled_at else step_time(session, step)
    zone = resolve_zone(recipient_zone)
    local_date = start.astimezone(zone).date() + timedelta(days=step.offset.calendar_days)
    return datetime.combine(local_date, step.local_time, tzinfo=zone).astimezone(UTC)


def hold_for_window(due: datetime, step: Step, recipient_zone: str) -> datetime:
    """``due`` moved forward to the opening of the step's send window in the recipient's zone, if outside it."""
    require_aware(due, "due")
    if step.send_window is None:
        return due
    opens, closes = step.send_window
    zone = resolve_zone(recipient_zone)
    local = due.astimezone(zone)
    if local.time() < opens:
        local = datetime.combine(local.date(), opens, tzinfo=zone)
    elif local.time() >= closes:
        local = datetime.combine(local.date() + timedelta(days=1), opens, tzinfo=zone)
    return local.astimezone(UTC)


def materialise_at(session: Session, step: Step) -> datetime:
    """When the service should queue the step's wave: its time, or for recipient-local steps two days
    earlier, since the first recipients (UTC+14) reach that wall-clock time up to about a day and a half sooner."""
    moment = step_time(session, step)
    return moment - timedelta(days=2) if step.local_time is not None else moment


_NOTICE_NAME = re.compile(r"^(date-changed|cancelled)-(\d+)$")
NOTICE_MAX_LATE = timedelta(days=30)


def notice_step(change: str, sequence: int) -> Step:
    """The synthetic step of a session change: ``date-changed-N`` (to the invited) or ``cancelled-N``
    (to registrants and everyone whose calendar holds the event), N being the session's new iCalendar
    SEQUENCE."""
    audience = Audience.INVITED if change == "date-changed" else Audience.CALENDAR
    return Step(
        name=f"{change}-{sequence}",
        kind=StepKind.NOTICE,
        offset=Offset(0, timedelta(0), "0h"),
        template="notice",
        audience=audience,
        auto=False,
        max_late=NOTICE_MAX_LATE,
    )


def resolve_step(series: Series, name: str) -> Step:
    """The configured step called ``name``, or the synthetic notice step it names; KeyError otherwise."""
    match = _NOTICE_NAME.match(name)
    if match:
        return notice_step(match.group(1), int(match.group(2)))
    return series.step(name)


@dataclass(frozen=True)
class PlannedStep:
    """One (session, step) with its absolute times in UTC."""

    session: Session
    step: Step
    at: datetime
    deadline: Deadline


def plan(series: Series) -> list[PlannedStep]:
    """Every (session, step) of the series, ordered by time."""
    planned = [
        PlannedStep(session, step, step_time(session, step), step_deadline(series, session, step))
        for session in series.sessions
        for step in series.steps
    ]
    return sorted(planned, key=lambda item: (item.at, item.session.id, item.step.name))


def plan_moments(series: Series) -> list[datetime]:
    """Every moment the timeline itself makes something due, in UTC, ascending and without repeats: each step's
    time and, for automatic steps of sessions not cancelled, the moment its wave is materialised
    (:func:`materialise_at`, earlier than the step's time for recipient-local steps)."""
    moments = {item.at for item in plan(series)}
    moments.update(
        materialise_at(item.session, item.step)
        for item in plan(series)
        if item.step.auto and not item.session.cancelled
    )
    return sorted(moments)


def next_moment(series: Series, after: datetime, pending: datetime | None) -> datetime | None:
    """The first moment strictly after ``after`` at which anything is due: a moment of :func:`plan_moments`
    or ``pending``, the store's earliest pending due time after ``after`` (a recipient-local due time, a send
    window's opening, a retry, an organiser's wave). None when nothing is left. The service's wake-ups and
    ``mailer simulate``'s virtual clock both follow it. Raises NaiveDatetimeError for naive times."""
    after = require_aware(after, "after")
    candidates = [moment for moment in plan_moments(series) if moment > after]
    if pending is not None:
        pending = require_aware(pending, "pending")
        if pending > after:
            candidates.append(pending)
    return min(candidates, default=None)


def due_steps(series: Series, now: datetime) -> list[PlannedStep]:
    """Automatic steps of sessions not cancelled whose wave should exist by ``now`` (late ones included:
    the caller applies deadlines)."""
    now = require_aware(now, "now")
    return [
        item
        for item in plan(series)
        if item.step.auto and not item.session.cancelled and materialise_at(item.session, item.step) <= now
    ]
