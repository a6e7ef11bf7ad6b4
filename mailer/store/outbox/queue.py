"""Queuing a wave: materialise one step of a session for an audience into message rows, idempotently."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import exists, func, select
from sqlalchemy.orm import Session as DbSession

from mailer.config import Audience, Series, Session, Settings, Step, StepKind
from mailer.message_ids import make_message_id
from mailer.store.models import (
    Contact,
    ContactList,
    EventKind,
    ListMembership,
    Message,
    MessageStatus,
    Registration,
    RegistrationStatus,
    Wave,
    WaveStatus,
)
from mailer.store.outbox.batch import insert_ignoring_conflicts, is_postgresql
from mailer.store.outbox.events import log_event, log_many
from mailer.timeline.clock import require_aware
from mailer.timeline.plan import (
    Deadline,
    SkipReason,
    hold_for_window,
    message_due,
    step_deadline,
    step_time,
)


def message_key(series_id: str, session_id: str, step: str, contact_id: int) -> str:
    """The identity of a message row, stable across restarts and processes."""
    return f"{series_id}/{session_id}/{step}/{contact_id}"


@dataclass(frozen=True)
class QueueResult:
    """What queuing a wave did: ``added`` new messages, ``skipped`` of them logged as skipped on arrival."""

    wave: Wave
    created: bool
    added: int
    skipped: int
    deadline: datetime


def default_audience(session: Session, step: Step) -> str:
    """The wave audience key: the session's region list, or "registrants"."""
    return "registrants" if step.audience is Audience.REGISTRANTS else session.region


def audience_query(series: Series, session: Session, step: Step, audience: str, now: datetime):  # type: ignore[no-untyped-def]
    """SELECT of contact ids a wave of ``step`` goes to at ``now``.

    Registrations count from their ``registered_at`` on. Suppressed contacts are included: they are
    finished as suppressed at send time, so the log shows why they got nothing.
    """
    now = require_aware(now, "now")
    answered = select(Registration.contact_id).where(
        Registration.session_id == session.id,
        (Registration.registered_at.is_(None)) | (Registration.registered_at <= now),
    )
    if step.audience is Audience.REGISTRANTS:
        return answered.where(Registration.status == RegistrationStatus.REGISTERED)
    if step.audience is Audience.INVITED:
        invited = select(Message.contact_id).where(
            Message.session_id == session.id,
            Message.status == MessageStatus.SENT,
            Message.step.in_([s.name for s in series.steps if s.kind is StepKind.INVITATION]),
        )
        return invited.union(answered.where(Registration.status == RegistrationStatus.REGISTERED))
    members = (
        select(ListMembership.contact_id)
        .join(ContactList, ContactList.id == ListMembership.list_id)
        .where(ContactList.region == audience)
    )
    if step.audience is Audience.LIST_UNREGISTERED:
        return members.where(ListMembership.contact_id.not_in(answered))
    declined = answered.where(Registration.status == RegistrationStatus.DECLINED)
    return members.where(ListMembership.contact_id.not_in(declined))


def queue_wave(
    db: DbSession,
    settings: Settings,
    session: Session,
    step: Step,
    now: datetime,
    *,
    audience: str | None = None,
    at: datetime | None = None,
    created_by: str = "timeline",
) -> QueueResult:
    """Materialise ``step`` of ``session`` for an audience into message rows, idempotently.

    ``audience`` is a region id (default: the session's region; ignored for registrant and invited steps),
    ``at`` an optional later send time (aware). Runs again safely: only contacts without a message for
    this (session, step) are added, and on PostgreSQL one process at a time materialises a given step
    (a transaction-scoped advisory lock; the others return at once). Each message gets its own due time
    (recipient-local steps, send windows) and deadline; messages that could only go after their deadline
    are logged as skipped with the reason. A cancelled wave stays cancelled: queuing it again adds nobody
    (``added`` 0, the wave's status says why). Caller commits. Raises NaiveDatetimeError for naive times.
    """
    now = require_aware(now, "now")
    if step.audience in (Audience.REGISTRANTS, Audience.INVITED):
        audience = step.audience.value
    else:
        audience = audience or session.region
    scheduled_at = require_aware(at, "--at") if at is not None else step_time(session, step)
    if is_postgresql(db):
        lock_key = f"{session.id}/{step.name}/{audience}"
        if not db.scalar(select(func.pg_try_advisory_xact_lock(func.hashtext(lock_key)))):
            wave = db.scalars(
                select(Wave).where(Wave.session_id == session.id, Wave.step == step.name)
            ).first()
            if wave is not None:
                return QueueResult(wave, False, 0, 0, wave.scheduled_at)
            db.scalar(select(func.pg_advisory_xact_lock(func.hashtext(lock_key))))
    created = bool(
        insert_ignoring_conflicts(
            db,
            Wave,
            [
                {
                    "session_id": session.id,
                    "step": step.name,
                    "audience": audience,
                    "status": WaveStatus.ACTIVE,
                    "scheduled_at": scheduled_at,
                    "created_at": now,
                    "created_by": created_by,
                }
            ],
        )
    )
    wave = db.scalars(
        select(Wave).where(Wave.session_id == session.id, Wave.step == step.name, Wave.audience == audience)
    ).one()
    base = wave.scheduled_at if wave.created_by != "timeline" else None
    wave_deadline = message_deadline(settings.series, session, step, base)
    if wave.status == WaveStatus.CANCELLED:
        return QueueResult(wave, False, 0, 0, wave_deadline.at)
    if not created and now >= wave_deadline.at and step.local_time is None:
        return QueueResult(wave, False, 0, 0, wave_deadline.at)

    already = select(Message.id).where(
        Message.contact_id == Contact.id, Message.session_id == session.id, Message.step == step.name
    )
    candidates = db.execute(
        select(Contact.id, Contact.email, Contact.time_zone)
        .where(
            Contact.id.in_(audience_query(settings.series, session, step, audience, now)), ~exists(already)
        )
        .order_by(Contact.id)
    ).all()
    rows: list[dict[str, object]] = []
    for contact_id, email, zone in candidates:
        meant = message_due(session, step, zone, base)
        deadline = (
            message_deadline(settings.series, session, step, meant) if step.local_time else wave_deadline
        )
        due = hold_for_window(meant, step, zone)
        reason: SkipReason | None = None
        if now >= deadline.at:
            reason = deadline.reason
        elif due >= deadline.at:
            reason = SkipReason.WINDOW_AFTER_DEADLINE
        key = message_key(settings.series.id, session.id, step.name, contact_id)
        rows.append(
            {
                "message_id": make_message_id(key, settings.sender.domain),
                "contact_id": contact_id,
                "session_id": session.id,
                "step": step.name,
                "wave_id": wave.id,
                "recipient": email,
                "language": "",
                "status": MessageStatus.SKIPPED if reason else MessageStatus.QUEUED,
                "due_at": due,
                "deadline_at": deadline.at,
                "attempts": 0,
                "worker": "",
                "reply_text": reason.value if reason else "",
                "created_at": now,
                "updated_at": now,
            }
        )
    new_ids = insert_ignoring_conflicts(db, Message, rows)
    reasons = {row["contact_id"]: row["reply_text"] for row in rows}
    inserted = (
        db.execute(select(Message.id, Message.contact_id).where(Message.id.in_(new_ids))).all()
        if new_ids
        else []
    )
    queued = [pk for pk, contact_id in inserted if not reasons[contact_id]]
    log_many(db, queued, EventKind.QUEUED, now, f"wave {wave.id}")
    skipped = 0
    for pk, contact_id in inserted:
        if reasons[contact_id]:
            skipped += 1
            log_event(db, pk, EventKind.SKIPPED, now, detail=str(reasons[contact_id]))
    return QueueResult(wave, created, len(new_ids), skipped, wave_deadline.at)


def message_deadline(series: Series, session: Session, step: Step, base: datetime | None) -> Deadline:
    """The deadline of a message of ``step`` meant for ``base`` (None: the step's own time); a notice not in
    the timeline may go until ``max_late`` after ``base`` (or the session start)."""
    if step.kind is StepKind.NOTICE and step.name not in {s.name for s in series.steps}:
        start = session.start.astimezone(UTC)
        return Deadline((base or start) + step.max_late, SkipReason.TOO_LATE)
    return step_deadline(series, session, step, base)
