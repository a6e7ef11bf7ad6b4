"""The outbox: queue waves idempotently, claim due messages, record every state transition.

State machine (DESIGN invariant 5)::

    queued --claim--> sending --2xx--> sent
                         |--4xx / drop--> deferred --(due again)--> sending ...
                         |--5xx on recipient--> bounced (address suppressed)
                         |--other 5xx / deadline passed--> failed
    queued --send-time check--> skipped (reason) | suppressed

Every transition is committed together with a row in ``delivery_events``. Uniqueness of
(contact, session, step) is enforced by the database, so queuing twice, from two processes or after a
restart, never makes a second message. Claims use ``FOR UPDATE SKIP LOCKED`` on PostgreSQL; on SQLite
(one sending process) the write lock of the claiming transaction serialises them.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Integer, String, and_, any_, bindparam, exists, func, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session as DbSession

from mailer.config import Audience, Series, Session, Settings, Step, StepKind
from mailer.message_ids import make_message_id
from mailer.store.models import (
    PENDING_STATUSES,
    Contact,
    ContactList,
    ContactStatus,
    DeliveryEvent,
    EventKind,
    ListMembership,
    Message,
    MessageStatus,
    Registration,
    RegistrationStatus,
    SessionRow,
    Suppression,
    Wave,
    WaveStatus,
)
from mailer.store.recipient import Recipient, recipient_of
from mailer.timeline.clock import require_aware
from mailer.timeline.plan import (
    Deadline,
    SkipReason,
    hold_for_window,
    message_due,
    notice_step,
    resolve_step,
    step_deadline,
    step_time,
)

_INSERT_CHUNK = 500


def message_key(series_id: str, session_id: str, step: str, contact_id: int) -> str:
    """The identity of a message row, stable across restarts and processes."""
    return f"{series_id}/{session_id}/{step}/{contact_id}"


def _insert_ignoring_conflicts(db: DbSession, table: type, rows: list[dict[str, object]]) -> list[int]:
    """INSERT rows, skipping those that violate a unique constraint; returns the new rows' ids."""
    if not rows:
        return []
    dialect = db.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    primary = next(iter(table.__table__.primary_key.columns))  # type: ignore[attr-defined]
    new_ids: list[int] = []
    for start in range(0, len(rows), _INSERT_CHUNK):
        statement = insert(table).on_conflict_do_nothing().returning(primary)
        new_ids.extend(db.scalars(statement, rows[start : start + _INSERT_CHUNK]))
    return new_ids


@dataclass(frozen=True)
class SessionChange:
    """A session whose config differs from the store: rescheduled (``date-changed``) or ``cancelled``."""

    session_id: str
    change: str
    sequence: int  # the new iCalendar SEQUENCE (RFC 5545 sec. 3.8.7.4)
    retimed: int  # pending messages given new due times
    skipped: int  # pending messages skipped because the session was cancelled
    notices: int  # notices queued


def sync_sessions(db: DbSession, settings: Settings, now: datetime) -> list[SessionChange]:
    """Bring the ``sessions`` table in line with the config; apply reschedules and cancellations.

    A changed start (or zone) raises the session's SEQUENCE, re-times every pending message of it and
    queues a "date changed" notice to everyone already invited or registered. A newly cancelled session
    raises SEQUENCE, skips its pending messages (reason "cancelled") and queues a cancellation notice to
    registrants. Rows are locked (PostgreSQL), so concurrent processes apply each change once. Caller commits.
    """
    series = settings.series
    existing = {row.id: row for row in db.scalars(select(SessionRow).with_for_update())}
    changes: list[SessionChange] = []
    for session in series.sessions:
        row = existing.get(session.id)
        starts_at = require_aware(session.start, "session start")
        duration = int(session.duration.total_seconds() // 60)
        if row is None:
            db.add(
                SessionRow(
                    id=session.id,
                    region=session.region,
                    starts_at=starts_at,
                    time_zone=session.zone_name,
                    duration_minutes=duration,
                    sequence=0,
                    cancelled=session.cancelled,
                    updated_at=now,
                )
            )
            continue
        if session.cancelled and not row.cancelled:
            row.cancelled = True
            row.sequence += 1
            row.updated_at = now
            skipped = _skip_pending(db, session.id, SkipReason.CANCELLED, now)
            result = queue_wave(
                db,
                settings,
                session,
                notice_step("cancelled", row.sequence),
                now,
                at=now,
                created_by="session-change",
            )
            changes.append(SessionChange(session.id, "cancelled", row.sequence, 0, skipped, result.added))
        elif not session.cancelled and (
            row.starts_at != starts_at
            or row.time_zone != session.zone_name
            or row.duration_minutes != duration
        ):
            moved = row.starts_at != starts_at
            if moved:
                row.previous_starts_at = row.starts_at
            row.starts_at, row.time_zone, row.duration_minutes = starts_at, session.zone_name, duration
            row.sequence += 1
            row.updated_at = now
            retimed = retime_pending(db, settings, session)
            added = 0
            if moved:
                notice = notice_step("date-changed", row.sequence)
                added = queue_wave(
                    db, settings, session, notice, now, at=now, created_by="session-change"
                ).added
            changes.append(SessionChange(session.id, "date-changed", row.sequence, retimed, 0, added))
    return changes


def _skip_pending(db: DbSession, session_id: str, reason: SkipReason, now: datetime) -> int:
    pending = db.scalars(
        select(Message.id).where(Message.session_id == session_id, Message.status.in_(PENDING_STATUSES))
    ).all()
    if pending:
        db.execute(
            update(Message)
            .where(Message.id.in_(pending))
            .values(status=MessageStatus.SKIPPED, updated_at=now)
        )
        _log_many(db, pending, EventKind.SKIPPED, now, reason.value)
    return len(pending)


def retime_pending(db: DbSession, settings: Settings, session: Session) -> int:
    """Give every pending message of ``session`` the due time and deadline of its step under the session's
    current start; timeline waves get their new time too. Returns how many messages were re-timed."""
    for wave in db.scalars(select(Wave).where(Wave.session_id == session.id, Wave.created_by == "timeline")):
        wave.scheduled_at = step_time(session, resolve_step(settings.series, wave.step))
    rows = db.execute(
        select(Message, Wave, Contact.time_zone)
        .join(Wave, Wave.id == Message.wave_id)
        .join(Contact, Contact.id == Message.contact_id)
        .where(Message.session_id == session.id, Message.status.in_(PENDING_STATUSES))
    ).all()
    for message, wave, zone in rows:
        step = resolve_step(settings.series, message.step)
        if step.kind is StepKind.NOTICE and step.name not in {s.name for s in settings.series.steps}:
            continue
        base = wave.scheduled_at if wave.created_by != "timeline" else None
        meant = message_due(session, step, zone, base)
        message.deadline_at = _deadline(settings.series, session, step, meant).at
        message.due_at = hold_for_window(meant, step, zone)
    return len(rows)


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
    are logged as skipped with the reason. Caller commits. Raises NaiveDatetimeError for naive times.
    """
    now = require_aware(now, "now")
    if step.audience in (Audience.REGISTRANTS, Audience.INVITED):
        audience = step.audience.value
    else:
        audience = audience or session.region
    scheduled_at = require_aware(at, "--at") if at is not None else step_time(session, step)
    if db.get_bind().dialect.name == "postgresql":
        lock_key = f"{session.id}/{step.name}/{audience}"
        if not db.scalar(select(func.pg_try_advisory_xact_lock(func.hashtext(lock_key)))):
            wave = db.scalars(
                select(Wave).where(Wave.session_id == session.id, Wave.step == step.name)
            ).first()
            if wave is not None:
                return QueueResult(wave, False, 0, 0, wave.scheduled_at)
            db.scalar(select(func.pg_advisory_xact_lock(func.hashtext(lock_key))))
    created = bool(
        _insert_ignoring_conflicts(
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
    wave_deadline = _deadline(settings.series, session, step, base)
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
        deadline = _deadline(settings.series, session, step, meant) if step.local_time else wave_deadline
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
    new_ids = _insert_ignoring_conflicts(db, Message, rows)
    reasons = {row["contact_id"]: row["reply_text"] for row in rows}
    inserted = (
        db.execute(select(Message.id, Message.contact_id).where(Message.id.in_(new_ids))).all()
        if new_ids
        else []
    )
    queued = [pk for pk, contact_id in inserted if not reasons[contact_id]]
    _log_many(db, queued, EventKind.QUEUED, now, f"wave {wave.id}")
    skipped = 0
    for pk, contact_id in inserted:
        if reasons[contact_id]:
            skipped += 1
            log_event(db, pk, EventKind.SKIPPED, now, detail=str(reasons[contact_id]))
    return QueueResult(wave, created, len(new_ids), skipped, wave_deadline.at)


def _deadline(series: Series, session: Session, step: Step, base: datetime | None) -> Deadline:
    if step.kind is StepKind.NOTICE and step.name not in {s.name for s in series.steps}:
        start = session.start.astimezone(UTC)
        return Deadline((base or start) + step.max_late, SkipReason.TOO_LATE)
    return step_deadline(series, session, step, base)


def _log_many(
    db: DbSession, message_pks: Iterable[int], kind: EventKind, now: datetime, detail: str = ""
) -> None:
    _insert_events(db, [_event(pk, kind, now, detail) for pk in message_pks])


def log_event(
    db: DbSession,
    message_pk: int,
    kind: EventKind,
    now: datetime,
    *,
    code: int | None = None,
    detail: str = "",
) -> None:
    """Append one delivery event (caller commits)."""
    db.add(DeliveryEvent(message_pk=message_pk, at=now, kind=kind, reply_code=code, detail=detail))


@dataclass(frozen=True)
class ClaimedMessage:
    """A message claimed for sending, with everything the sender needs and no ORM state."""

    pk: int
    message_id: str
    session_id: str
    step: str
    recipient: Recipient
    needs_smtputf8: bool
    attempts: int
    deadline_at: datetime


def reap_expired_leases(db: DbSession, now: datetime) -> int:
    """Put messages stuck in ``sending`` past their lease back to ``queued`` (a crashed worker's)."""
    stuck = db.scalars(
        select(Message.id).where(Message.status == MessageStatus.SENDING, Message.lease_until < now)
    ).all()
    if stuck:
        db.execute(
            update(Message)
            .where(Message.id.in_(stuck), Message.status == MessageStatus.SENDING)
            .values(status=MessageStatus.QUEUED, lease_until=None, worker="", updated_at=now)
        )
        _log_many(db, stuck, EventKind.RECLAIMED, now, "lease expired")
    return len(stuck)


def claim_due(
    db: DbSession, settings: Settings, now: datetime, *, worker: str, limit: int, lease: timedelta
) -> tuple[list[ClaimedMessage], list[tuple[str, str, str]]]:
    """Claim up to ``limit`` due messages for ``worker`` until ``now + lease``; caller commits.

    Returns (claimed messages, [(session_id, step, status)] of those finished by the checks below).

    Send-time checks (DESIGN invariant 6) happen here: past deadline, session or wave cancelled,
    suppressed address, registration withdrawn, invitation to someone who answered meanwhile: such
    messages are finished as skipped or suppressed instead of being returned.
    """
    now = require_aware(now, "now")
    query = (
        select(
            Message.id,
            Message.message_id,
            Message.session_id,
            Message.step,
            Message.contact_id,
            Message.attempts,
            Message.deadline_at,
            Contact.email,
            Contact.email_key,
            Contact.name,
            Contact.title,
            Contact.institution,
            Contact.country,
            Contact.language,
            Contact.time_zone,
            Contact.needs_smtputf8,
            Contact.status.label("contact_status"),
        )
        .join(Contact, Contact.id == Message.contact_id)
        .join(Wave, Wave.id == Message.wave_id)
        .where(Message.status.in_(PENDING_STATUSES), Message.due_at <= now, Wave.status == WaveStatus.ACTIVE)
        .order_by(Message.due_at, Message.id)
        .limit(limit)
    )
    if db.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True, of=Message)
    rows = db.execute(query).all()
    if not rows:
        return [], []
    keys = {row.email_key for row in rows}
    suppressed = set(
        db.scalars(select(Suppression.email_key).where(_among(db, Suppression.email_key, keys, String)))
    )
    answers = {
        (contact_id, session_id): status
        for contact_id, session_id, status in db.execute(
            select(Registration.contact_id, Registration.session_id, Registration.status).where(
                _among(db, Registration.contact_id, {row.contact_id for row in rows}, Integer),
                Registration.session_id.in_({row.session_id for row in rows}),
            )
        )
    }
    cancelled = set(db.scalars(select(SessionRow.id).where(SessionRow.cancelled.is_(True))))

    claimed: list[ClaimedMessage] = []
    finished: list[tuple[str, str, str]] = []
    ended: dict[tuple[MessageStatus, str], list[int]] = {}
    events: list[dict[str, object]] = []
    for row in rows:
        step = resolve_step(settings.series, row.step)
        answer = answers.get((row.contact_id, row.session_id))
        reason = _skip_reason(row, step, answer, now, suppressed, cancelled)
        if reason is not None:
            status = MessageStatus.SUPPRESSED if reason is SkipReason.SUPPRESSED else MessageStatus.SKIPPED
            ended.setdefault((status, reason.value), []).append(row.id)
            finished.append((row.session_id, row.step, status.value))
            continue
        claimed.append(
            ClaimedMessage(
                pk=row.id,
                message_id=row.message_id,
                session_id=row.session_id,
                step=row.step,
                recipient=recipient_of(row, settings.series.session(row.session_id).region),
                needs_smtputf8=row.needs_smtputf8,
                attempts=row.attempts + 1,
                deadline_at=row.deadline_at,
            )
        )
    for (status, reason_text), pks in ended.items():
        db.execute(update(Message).where(Message.id.in_(pks)).values(status=status, updated_at=now))
        events.extend(_event(pk, EventKind(status.value), now, reason_text) for pk in pks)
    if claimed:
        db.execute(
            update(Message)
            .where(_among(db, Message.id, [message.pk for message in claimed], Integer))
            .values(
                status=MessageStatus.SENDING,
                lease_until=now + lease,
                worker=worker,
                attempts=Message.attempts + 1,
                updated_at=now,
            )
        )
    _insert_events(db, events)
    return claimed, finished


def _event(
    pk: int, kind: EventKind, now: datetime, detail: str, code: int | None = None
) -> dict[str, object]:
    return {"message_pk": pk, "at": now, "kind": kind, "detail": detail, "reply_code": code}


def _insert_events(db: DbSession, rows: list[dict[str, object]]) -> None:
    """Append delivery events: on PostgreSQL one INSERT from unnest() of one array per column, whatever the
    count (a batch's rows cost the client no per-row work); elsewhere an executemany in chunks."""
    if not rows:
        return
    if _postgresql(db):
        columns = ("message_pk", "at", "kind", "detail", "reply_code")
        db.execute(_INSERT_EVENTS, {name: [row[name] for row in rows] for name in columns})
        return
    for start in range(0, len(rows), _INSERT_CHUNK):
        db.execute(DeliveryEvent.__table__.insert(), rows[start : start + _INSERT_CHUNK])


def _update_outcomes(db: DbSession, rows: list[dict[str, object]], now: datetime) -> None:
    """Write delivery outcomes by primary key: on PostgreSQL one UPDATE ... FROM unnest() of one array per
    column; elsewhere an executemany of one UPDATE."""
    if _postgresql(db):
        columns = ("pk", "status", "reply_code", "reply_text", "language", "due_at", "sent_at")
        db.execute(_UPDATE_OUTCOMES, {"now": now, **{name: [row[name] for row in rows] for name in columns}})
        return
    table = Message.__table__
    db.execute(
        table.update()
        .where(table.c.id == bindparam("pk"))
        .values(
            status=bindparam("status"),
            reply_code=bindparam("reply_code"),
            reply_text=bindparam("reply_text"),
            language=bindparam("language"),
            due_at=bindparam("due_at"),
            sent_at=bindparam("sent_at"),
            lease_until=None,
            updated_at=now,
        ),
        rows,
    )


def _postgresql(db: DbSession) -> bool:
    return db.get_bind().dialect.name == "postgresql"


def _among(db: DbSession, column: Any, values: Iterable[object], element_type: Any) -> Any:
    """``column IN (values)``; on PostgreSQL ``column = ANY(array)``: one parameter for a whole batch, so
    neither SQLAlchemy nor psycopg handles a bind per value."""
    values = list(values)
    if _postgresql(db):
        return column == any_(bindparam(None, values, type_=postgresql.ARRAY(element_type)))
    return column.in_(values)


_INSERT_EVENTS = text(
    "INSERT INTO delivery_events (message_pk, at, kind, detail, reply_code) "
    "SELECT * FROM unnest(CAST(:message_pk AS integer[]), CAST(:at AS timestamptz[]), CAST(:kind AS varchar[]), "
    "CAST(:detail AS text[]), CAST(:reply_code AS integer[]))"
)
_UPDATE_OUTCOMES = text(
    "UPDATE messages AS m SET status = v.status, reply_code = v.reply_code, reply_text = v.reply_text, "
    "language = v.language, due_at = v.due_at, sent_at = v.sent_at, lease_until = NULL, updated_at = :now "
    "FROM unnest(CAST(:pk AS integer[]), CAST(:status AS varchar[]), CAST(:reply_code AS integer[]), "
    "CAST(:reply_text AS text[]), CAST(:language AS varchar[]), CAST(:due_at AS timestamptz[]), "
    "CAST(:sent_at AS timestamptz[])) AS v(pk, status, reply_code, reply_text, language, due_at, sent_at) "
    "WHERE m.id = v.pk"
)


def _skip_reason(
    row: Any,
    step: Step,
    answer: RegistrationStatus | None,
    now: datetime,
    suppressed: set[str],
    cancelled_sessions: set[str],
) -> SkipReason | None:
    """Why the claimed ``row`` (message and contact columns) must not be sent now, or None."""
    if row.session_id in cancelled_sessions and step.kind is not StepKind.NOTICE:
        return SkipReason.CANCELLED
    if row.email_key in suppressed or row.contact_status != ContactStatus.ACTIVE:
        return SkipReason.SUPPRESSED
    if now >= row.deadline_at:
        return SkipReason.TOO_LATE
    if step.audience is Audience.REGISTRANTS and answer != RegistrationStatus.REGISTERED:
        return SkipReason.NOT_REGISTERED
    if step.kind is StepKind.INVITATION and answer is not None:
        if answer == RegistrationStatus.DECLINED:
            return SkipReason.DECLINED
        if step.audience is Audience.LIST_UNREGISTERED:
            return SkipReason.ALREADY_REGISTERED
    return None


@dataclass(frozen=True)
class Outcome:
    """The result of one delivery attempt for one message, from the transport's classification."""

    pk: int
    status: MessageStatus  # SENT, DEFERRED, FAILED or BOUNCED
    code: int | None
    text: str
    language: str = ""


def retry_delay(attempts: int, base: timedelta, rng: random.Random | None = None) -> timedelta:
    """Exponential backoff with +-20 % jitter: base * 2**(attempts-1), capped at 6 hours."""
    rng = rng or random.Random()
    delay = min(base * (2 ** max(attempts - 1, 0)), timedelta(hours=6))
    return delay * rng.uniform(0.8, 1.2)


def renew_leases(db: DbSession, pks: Sequence[int], worker: str, until: datetime) -> None:
    """Extend ``worker``'s claim on messages it is still sending to ``until``; caller commits."""
    db.execute(
        update(Message)
        .where(
            _among(db, Message.id, pks, Integer),
            Message.status == MessageStatus.SENDING,
            Message.worker == worker,
        )
        .values(lease_until=until)
    )


def record_outcomes(
    db: DbSession,
    settings: Settings,
    outcomes: Sequence[Outcome],
    now: datetime,
    *,
    worker: str | None = None,
) -> None:
    """Apply delivery outcomes to their messages (only those still ``sending``, and still claimed by
    ``worker`` when given) and log them; caller commits.

    A temporary failure becomes ``deferred`` with a retry time, or ``failed`` when the retry would fall
    after the message's deadline. A bounce also suppresses the address (reason ``hard-bounce``).
    """
    if not outcomes:
        return
    by_pk = {outcome.pk: outcome for outcome in outcomes}
    query = (
        select(
            Message.id,
            Message.attempts,
            Message.deadline_at,
            Message.due_at,
            Message.language,
            Contact.email_key,
        )
        .join(Contact, Contact.id == Message.contact_id)
        .where(_among(db, Message.id, by_pk, Integer), Message.status == MessageStatus.SENDING)
    )
    if worker is not None:
        query = query.where(Message.worker == worker)
    changes: list[dict[str, object]] = []
    events: list[dict[str, object]] = []
    by = f" by {worker}" if worker else ""
    for row in db.execute(query):
        outcome = by_pk[row.id]
        status, detail, due_at = outcome.status, outcome.text, row.due_at
        if status is MessageStatus.DEFERRED:
            retry_at = now + retry_delay(row.attempts, settings.retry_base)
            if retry_at >= row.deadline_at:
                status = MessageStatus.FAILED
                detail = f"gave up: next retry would be after the deadline; last reply: {outcome.text}"
            else:
                due_at = retry_at
                detail = f"{outcome.text}; retry at {retry_at.isoformat()}"
        if status is MessageStatus.BOUNCED:
            suppress(db, row.email_key, "hard-bounce", outcome.text, now)
        changes.append(
            {
                "pk": row.id,
                "status": status.value,
                "reply_code": outcome.code,
                "reply_text": outcome.text[:2000],
                "language": outcome.language or row.language,
                "due_at": due_at,
                "sent_at": now if status is MessageStatus.SENT else None,
            }
        )
        events.append(
            _event(
                row.id, EventKind(status.value), now, f"{detail} (attempt {row.attempts}{by})", outcome.code
            )
        )
    if changes:
        _update_outcomes(db, changes, now)
    _insert_events(db, events)


def release_claims(db: DbSession, pks: Sequence[int], now: datetime) -> None:
    """Give claimed, unsent messages back (graceful shutdown): ``sending`` -> ``queued``."""
    if not pks:
        return
    db.execute(
        update(Message)
        .where(Message.id.in_(pks), Message.status == MessageStatus.SENDING)
        .values(
            status=MessageStatus.QUEUED,
            lease_until=None,
            worker="",
            attempts=Message.attempts - 1,
            updated_at=now,
        )
    )
    _log_many(db, pks, EventKind.RECLAIMED, now, "released at shutdown")


def suppress(db: DbSession, email_key: str, reason: str, detail: str, now: datetime) -> None:
    """Add ``email_key`` to the suppression list (no-op when already there); caller commits."""
    _insert_ignoring_conflicts(
        db,
        Suppression,
        [{"email_key": email_key, "reason": reason, "detail": detail[:2000], "created_at": now}],
    )


def next_due_at(db: DbSession, after: datetime) -> datetime | None:
    """The earliest due time of a pending message in an active wave strictly after ``after``, or None."""
    return db.scalar(
        select(func.min(Message.due_at))
        .join(Wave, Wave.id == Message.wave_id)
        .where(Message.status.in_(PENDING_STATUSES), Wave.status == WaveStatus.ACTIVE, Message.due_at > after)
    )


def has_due(db: DbSession, now: datetime) -> bool:
    """True when some pending message of an active wave is due at ``now``."""
    return (
        db.scalar(
            select(Message.id)
            .join(Wave, and_(Wave.id == Message.wave_id, Wave.status == WaveStatus.ACTIVE))
            .where(Message.status.in_(PENDING_STATUSES), Message.due_at <= now)
            .limit(1)
        )
        is not None
    )


def set_wave_status(db: DbSession, wave_id: int, status: WaveStatus, now: datetime) -> tuple[Wave, int]:
    """Pause, resume or cancel a wave; returns the wave and how many pending messages it touched.

    Cancelling finishes every pending message as skipped ("cancelled"); a cancelled wave stays cancelled.
    Raises NotFoundError for an unknown wave and ValueError for a change from ``cancelled``.
    """
    from mailer.errors import NotFoundError

    wave = db.get(Wave, wave_id)
    if wave is None:
        raise NotFoundError(f"no wave {wave_id} (see `mailer waves list`)")
    if wave.status == WaveStatus.CANCELLED and status != WaveStatus.CANCELLED:
        raise ValueError(f"wave {wave_id} is cancelled and cannot be {status.value}d")
    pending = db.scalars(
        select(Message.id).where(Message.wave_id == wave_id, Message.status.in_(PENDING_STATUSES))
    ).all()
    wave.status = status
    if status is WaveStatus.CANCELLED:
        db.execute(
            update(Message)
            .where(Message.id.in_(pending), Message.status.in_(PENDING_STATUSES))
            .values(status=MessageStatus.SKIPPED, updated_at=now)
        )
        _log_many(db, pending, EventKind.SKIPPED, now, SkipReason.CANCELLED.value)
    else:
        kind = EventKind.PAUSED if status is WaveStatus.PAUSED else EventKind.RESUMED
        _log_many(db, pending, kind, now, f"wave {wave_id} {status.value}")
    return wave, len(pending)
