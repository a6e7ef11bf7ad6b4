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

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from enum import StrEnum

from mailer.clock import require_aware
from mailer.config import Series, Session, Step


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


def step_time(session: Session, step: Step) -> datetime:
    """The step's moment for ``session``, as an aware UTC datetime."""
    start = require_aware(session.start, "session start").astimezone(session.zone)
    if step.offset.calendar_days:
        local = datetime.combine(
            start.date() + timedelta(days=step.offset.calendar_days), start.time().replace(tzinfo=None)
        )
        moment = local.replace(tzinfo=session.zone)
    else:
        moment = start.astimezone(timezone.utc) + step.offset.exact
    return moment.astimezone(timezone.utc)


@dataclass(frozen=True)
class Deadline:
    """The last moment a step may still go out, and the reason it ends there."""

    at: datetime
    reason: SkipReason


def step_deadline(series: Series, session: Session, step: Step, scheduled_at: datetime | None = None) -> Deadline:
    """The deadline of ``step`` for ``session``; ``scheduled_at`` (an organiser's --at) moves the base time."""
    base = step_time(session, step)
    if scheduled_at is not None:
        base = max(base, require_aware(scheduled_at, "scheduled_at"))
    candidates = [Deadline(base + step.max_late, SkipReason.TOO_LATE)]
    if step.offset.is_before:
        candidates.append(Deadline(session.start.astimezone(timezone.utc), SkipReason.SESSION_STARTED))
    later_same_kind = [
        step_time(session, other)
        for other in series.steps
        if other.kind is step.kind and other.name != step.name and step_time(session, other) > step_time(session, step)
    ]
    if later_same_kind:
        candidates.append(Deadline(min(later_same_kind), SkipReason.SUPERSEDED))
    return min(candidates, key=lambda deadline: deadline.at)


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


def due_steps(series: Series, now: datetime) -> list[PlannedStep]:
    """Automatic steps whose time has come (``at <= now``), late ones included: the caller applies deadlines."""
    now = require_aware(now, "now")
    return [item for item in plan(series) if item.step.auto and item.at <= now]
