"""Queuing a wave: materialise one step of a session for an audience into message rows, idempotently."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import (
    ColumnElement,
    Integer,
    String,
    Text,
    and_,
    case,
    cast,
    column,
    exists,
    func,
    literal,
    null,
    select,
    values,
)
from sqlalchemy.orm import Session as DbSession
from sqlalchemy.orm import aliased
from sqlalchemy.sql.expression import Selectable

from mailer.config import Audience, Series, Session, Settings, Step, StepKind
from mailer.errors import MailerError
from mailer.message_ids import ascii_domain
from mailer.store.models import (
    Contact,
    ContactList,
    DeliveryEvent,
    EventKind,
    ListMembership,
    Message,
    MessageIdLookup,
    MessageStatus,
    Registration,
    RegistrationStatus,
    UTCDateTime,
    Wave,
    WaveStatus,
)
from mailer.store.outbox.batch import (
    insert_ignoring_conflicts,
    insert_selected,
    is_postgresql,
    message_digest_sql,
    refresh_statistics,
)
from mailer.store.relationships import calendar_request_sent
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
    return f"{key_prefix(series_id, session_id, step)}{contact_id}"


def key_prefix(series_id: str, session_id: str, step: str) -> str:
    """What the :func:`message_key` of every message of one (session, step) starts with."""
    return f"{series_id}/{session_id}/{step}/"


@dataclass(frozen=True)
class QueueResult:
    """What queuing a wave did: ``added`` new messages, ``skipped`` of them logged as skipped on arrival."""

    wave: Wave
    created: bool
    added: int
    skipped: int
    deadline: datetime


class LateMessagesError(MailerError, ValueError):
    """Queuing would log messages as skipped on arrival: past the step's deadline, they could never be sent."""


def refuse_late_messages(result: QueueResult, session: Session, step: Step, *, how_to_confirm: str) -> None:
    """The rule the CLI and the API share (the web page asks the same with a tick box): a queuing whose new
    messages would be skipped on arrival is a mistake (a mistyped ``at``, the wrong session) unless the
    caller confirmed it. Raises LateMessagesError, with ``how_to_confirm`` as the way on, when
    ``result.skipped``; the caller's transaction then rolls the queuing back."""
    if result.skipped:
        raise LateMessagesError(
            f"{result.skipped} of the {result.added} new messages of {session.id} / {step.name} would be past"
            f" the step's deadline ({result.deadline:%Y-%m-%d %H:%M} UTC) and skipped for good: nothing was"
            f" queued. Check the send time and the session's date; to queue them as skipped anyway, "
            f"{how_to_confirm}"
        )


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
    if step.audience is Audience.CALENDAR:
        holders = select(Message.contact_id).where(
            Message.session_id == session.id, calendar_request_sent(series, Message)
        )
        return holders.union(answered.where(Registration.status == RegistrationStatus.REGISTERED))
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
    are logged as skipped with the reason. The new messages' Message-IDs are entered in
    :class:`~mailer.store.models.MessageIdLookup` in one sorted statement (:func:`look_up_new_messages`).
    A large wave has PostgreSQL's planner statistics of the messages
    refreshed (:func:`~mailer.store.outbox.batch.refresh_statistics`), so claims of it stay O(batch). A
    cancelled wave stays cancelled: queuing it again adds nobody (``added`` 0, the wave's status says why).
    Caller commits. Raises NaiveDatetimeError for naive times.
    """
    now = require_aware(now, "now")
    if step.audience in (Audience.REGISTRANTS, Audience.INVITED, Audience.CALENDAR):
        audience = step.audience.value
    else:
        audience = audience or session.region
    scheduled_at = require_aware(at, "--at") if at is not None else step_time(session, step)
    if is_postgresql(db):
        lock_key = f"{session.id}/{step.name}/{audience}"
        if not db.scalar(select(func.pg_try_advisory_xact_lock(func.hashtext(lock_key)))):
            wave = db.scalar(
                select(Wave).where(
                    Wave.session_id == session.id, Wave.step == step.name, Wave.audience == audience
                )
            )
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
                    "offset_seconds": _offset_seconds(session, at),
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

    fresh = and_(
        Contact.id.in_(audience_query(settings.series, session, step, audience, now)),
        ~exists(
            select(_EARLIER.id).where(
                _EARLIER.contact_id == Contact.id,
                _EARLIER.session_id == session.id,
                _EARLIER.step == step.name,
            )
        ),
    )
    zones = db.scalars(select(Contact.time_zone).where(fresh).distinct()).all()
    plans = [zone_plan(settings.series, session, step, zone, base, wave_deadline, now) for zone in zones]
    before = db.scalar(select(func.max(Message.id))) or 0
    prefix = key_prefix(settings.series.id, session.id, step.name)
    for start in range(0, len(plans), ZONE_CHUNK):
        insert_selected(
            db,
            Message,
            _MESSAGE_COLUMNS,
            _new_messages(
                db, plans[start : start + ZONE_CHUNK], fresh, prefix, settings, session, step, wave, now
            ),
        )
    look_up_new_messages(db, wave.id, before)
    skipped = log_new_messages(db, wave.id, before, MessageStatus.SKIPPED, now)
    queued = log_new_messages(db, wave.id, before, MessageStatus.QUEUED, now)
    refresh_statistics(db, Message, queued + skipped)
    return QueueResult(wave, created, queued + skipped, skipped, wave_deadline.at)


ZONE_CHUNK = 1000  # zones per INSERT: 4 bound values each, far below any driver's limit
_EARLIER = aliased(Message, name="earlier")
_MESSAGE_COLUMNS = (
    "message_id",
    "contact_id",
    "session_id",
    "step",
    "wave_id",
    "recipient",
    "language",
    "status",
    "due_at",
    "deadline_at",
    "attempts",
    "worker",
    "reply_text",
    "created_at",
    "updated_at",
)


@dataclass(frozen=True)
class ZonePlan:
    """When the messages of a wave to recipients in one time zone go: due, deadline and skip reason ("": none)."""

    zone: str
    due_at: datetime
    deadline_at: datetime
    reason: str


def zone_plan(
    series: Series,
    session: Session,
    step: Step,
    zone: str,
    base: datetime | None,
    wave_deadline: Deadline,
    now: datetime,
) -> ZonePlan:
    """The due time, deadline and skip reason of a message of ``step`` to a recipient in ``zone`` (an IANA
    name): recipient-local steps and send windows depend on the zone only, so a wave needs one per zone.
    Raises NaiveDatetimeError for a naive ``base`` or ``now``."""
    now = require_aware(now, "now")
    meant = message_due(session, step, zone, None if base is None else require_aware(base, "base"))
    deadline = message_deadline(series, session, step, meant) if step.local_time else wave_deadline
    due = hold_for_window(meant, step, zone)
    reason: SkipReason | None = None
    if now >= deadline.at:
        reason = deadline.reason
    elif due >= deadline.at:
        reason = SkipReason.WINDOW_AFTER_DEADLINE
    return ZonePlan(zone, due, deadline.at, reason.value if reason else "")


def _new_messages(
    db: DbSession,
    plans: Sequence[ZonePlan],
    fresh: ColumnElement[bool],
    prefix: str,
    settings: Settings,
    session: Session,
    step: Step,
    wave: Wave,
    now: datetime,
) -> Selectable:
    """The SELECT of the message rows of ``wave`` for the contacts matching ``fresh`` whose zone is in
    ``plans`` (columns in :data:`_MESSAGE_COLUMNS` order, by contact id). The msg-id is computed by the
    store: :func:`mailer.message_ids.make_message_id` of the row's :func:`message_key`."""
    by_zone = (
        values(
            column("zone", String),
            column("due_at", UTCDateTime()),
            column("deadline_at", UTCDateTime()),
            column("reason", Text),
            name="wave_zones",
        )
        .data([(plan.zone, plan.due_at, plan.deadline_at, plan.reason) for plan in plans])
        .cte("wave_zones")
    )
    key = literal(prefix, String) + cast(Contact.id, String)
    message_id = (
        literal("<", String)
        + message_digest_sql(db, key)
        + literal(f"@{ascii_domain(settings.sender.domain)}>", String)
    )
    stamp = literal(now, UTCDateTime())
    return (
        select(
            message_id,
            Contact.id,
            literal(session.id, String),
            literal(step.name, String),
            literal(wave.id, Integer),
            Contact.email,
            literal("", String),
            case(
                (by_zone.c.reason == "", literal(MessageStatus.QUEUED.value, String)),
                else_=literal(MessageStatus.SKIPPED.value, String),
            ),
            by_zone.c.due_at,
            by_zone.c.deadline_at,
            literal(0, Integer),
            literal("", String),
            by_zone.c.reason,
            stamp,
            stamp,
        )
        .join_from(Contact, by_zone, by_zone.c.zone == Contact.time_zone)
        .where(fresh)
        .order_by(Contact.id)
    )


def look_up_new_messages(db: DbSession, wave_id: int, before: int) -> int:
    """Enter the Message-IDs of the messages of ``wave_id`` added after id ``before`` in
    :class:`~mailer.store.models.MessageIdLookup`, in one INSERT ... SELECT in Message-ID order (a sweep
    through its B-tree, not a random walk); returns how many."""
    return insert_selected(
        db,
        MessageIdLookup,
        ("message_id", "message_pk"),
        select(Message.message_id, Message.id)
        .where(Message.id > before, Message.wave_id == wave_id)
        .order_by(Message.message_id),
    )


def log_new_messages(db: DbSession, wave_id: int, before: int, status: MessageStatus, now: datetime) -> int:
    """Log the arrival of the messages of ``wave_id`` added after id ``before`` in ``status`` (queued: "wave
    N"; skipped: the reason) in one INSERT ... SELECT; returns how many. Raises NaiveDatetimeError for a
    naive ``now``."""
    now = require_aware(now, "now")
    detail = Message.reply_text if status is MessageStatus.SKIPPED else literal(f"wave {wave_id}", Text)
    return insert_selected(
        db,
        DeliveryEvent,
        ("message_pk", "at", "kind", "detail", "reply_code"),
        select(
            Message.id,
            literal(now, UTCDateTime()),
            literal(EventKind(status.value).value, String),
            detail,
            null(),
        )
        .where(Message.id > before, Message.wave_id == wave_id, Message.status == status)
        .order_by(Message.id),
    )


def _offset_seconds(session: Session, at: datetime | None) -> int | None:
    """An organiser's ``at`` as whole seconds from the session start, so that a reschedule moves it too."""
    return None if at is None else round((at - session.start).total_seconds())


def message_deadline(series: Series, session: Session, step: Step, base: datetime | None) -> Deadline:
    """The deadline of a message of ``step`` meant for ``base`` (None: the step's own time); a notice not in
    the timeline may go until ``max_late`` after ``base`` (or the session start)."""
    if step.kind is StepKind.NOTICE and step.name not in {s.name for s in series.steps}:
        start = session.start.astimezone(UTC)
        return Deadline((base or start) + step.max_late, SkipReason.TOO_LATE)
    return step_deadline(series, session, step, base)
