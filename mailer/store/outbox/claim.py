"""Claiming due messages with a lease (``FOR UPDATE SKIP LOCKED`` on PostgreSQL), renewing, releasing
and reaping expired leases; when the next message is due."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from sqlalchemy import Integer, and_, func, select, update
from sqlalchemy.orm import Session as DbSession

from mailer.config import Settings
from mailer.store.models import (
    PENDING_STATUSES,
    Contact,
    EventKind,
    Message,
    MessageStatus,
    Wave,
    WaveStatus,
    message_status_is,
)
from mailer.store.outbox.batch import among, driver_connection, is_postgresql
from mailer.store.outbox.checks import load_facts, skip_reason
from mailer.store.outbox.events import event_row, insert_events, log_many
from mailer.store.recipient import Recipient, recipient_of
from mailer.timeline.clock import require_aware
from mailer.timeline.plan import (
    SkipReason,
    resolve_step,
)


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
    wave_id: int = 0
    careful: bool = False  # its lease expired before: send it alone, outcome committed before the next


MAX_EXPIRIES = 2
"""Lease expiries after which a message is held for staff review instead of being sent again."""

HELD_REASON = (
    "held for review: its lease expired twice (a worker died or stalled while sending it), so it may "
    "have reached the recipient already; resend it from the staff page if it did not"
)


def reap_expired_leases(db: DbSession, now: datetime) -> int:
    """Take back messages stuck in ``sending`` past their lease (a dead or stalled worker's); caller commits.

    A message never handed to SMTP under the expired claim (no ``handed_at``: the sender marks messages a
    window ahead of sending them) goes back to ``queued`` as it was: it cannot have been delivered. One that
    was handed over may have reached the server: the expiry is counted. At the first counted expiry the
    message goes back to ``queued`` due ``now``, behind what is already due, and is sent carefully from then
    on (:attr:`ClaimedMessage.careful`); at the second (:data:`MAX_EXPIRIES`) it is ``held`` for staff review
    instead of being sent a third time. On PostgreSQL rows another process is reaping are skipped
    (``SKIP LOCKED``), so each expiry is counted once. Returns how many messages were taken back or held.
    """
    now = require_aware(now, "now")
    query = select(Message.id, Message.expiries, Message.handed_at).where(
        message_status_is(MessageStatus.SENDING), Message.lease_until < now
    )
    if is_postgresql(db):
        query = query.with_for_update(skip_locked=True)
    stuck = db.execute(query).all()
    if not stuck:
        return 0
    counted = [row for row in stuck if row.handed_at is not None]
    held = [row.id for row in counted if row.expiries + 1 >= MAX_EXPIRIES]
    reclaimed = [row.id for row in counted if row.expiries + 1 < MAX_EXPIRIES]
    unsent = [row.id for row in stuck if row.handed_at is None]
    common = {"lease_until": None, "worker": "", "handed_at": None, "updated_at": now}
    if held:
        db.execute(
            update(Message)
            .where(Message.id.in_(held))
            .values(
                status=MessageStatus.HELD, reply_text=HELD_REASON, expiries=Message.expiries + 1, **common
            )
        )
        log_many(db, held, EventKind.HELD, now, HELD_REASON)
    if reclaimed:
        db.execute(
            update(Message)
            .where(Message.id.in_(reclaimed))
            .values(status=MessageStatus.QUEUED, due_at=now, expiries=Message.expiries + 1, **common)
        )
        log_many(db, reclaimed, EventKind.RECLAIMED, now, "lease expired: sent alone next time")
    if unsent:
        db.execute(
            update(Message)
            .where(Message.id.in_(unsent))
            .values(status=MessageStatus.QUEUED, attempts=Message.attempts - 1, **common)
        )
        log_many(db, unsent, EventKind.RECLAIMED, now, "lease expired before it was handed to SMTP")
    return len(stuck)


def mark_handed(db: DbSession, pks: Sequence[int], worker: str, now: datetime) -> int:
    """Note that ``worker`` hands messages ``pks`` to SMTP from now on (written before they are sent, so an
    expired lease tells whether they may have reached the server); caller commits. Only messages still
    claimed by ``worker`` are marked: one that is not (its lease expired and another worker took it) must not
    be sent. Returns how many were marked. On PostgreSQL the statement of :func:`mark_handed_now`, in
    ``db``'s transaction. Raises NaiveDatetimeError for a naive ``now``."""
    now = require_aware(now, "now")
    if not pks:
        return 0
    if is_postgresql(db):
        return mark_handed_now(driver_connection(db), pks, worker, now)
    result = db.execute(
        update(Message)
        .where(
            Message.id.in_(pks),
            Message.status == MessageStatus.SENDING,
            Message.worker == worker,
        )
        .values(handed_at=now)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def still_claimed(db: DbSession, pks: Sequence[int], worker: str) -> set[int]:
    """Those of ``pks`` that ``worker`` still holds (``sending`` under its claim)."""
    if not pks:
        return set()
    return set(
        db.scalars(
            select(Message.id).where(
                among(db, Message.id, pks, Integer),
                Message.status == MessageStatus.SENDING,
                Message.worker == worker,
            )
        )
    )


def mark_handed_now(
    connection: psycopg.Connection[Any], pks: Sequence[int], worker: str, now: datetime
) -> int:
    """PostgreSQL: :func:`mark_handed` as one prepared statement on the driver's ``connection`` (psycopg),
    inside its open transaction, or committed by itself when the connection is in autocommit mode (what a
    batch's hand-over marks use: no BEGIN and COMMIT round trips). Returns how many messages were marked.
    Raises NaiveDatetimeError for a naive ``now``, ``psycopg.Error`` for what the store refuses."""
    now = require_aware(now, "now")
    if not pks:
        return 0
    cursor = connection.execute(_MARK_HANDED, {"now": now, "pks": list(pks), "worker": worker}, prepare=True)
    return cursor.rowcount


# The ids go in binary form (%b): psycopg dumps the list without quoting each element. The status test is
# written "(...) IS TRUE" (the same, status being NOT NULL) so that the planner cannot match it to the partial
# index ix_messages_leased (status = 'sending'): with the statistics taken when the wave was queued (nobody
# sending yet) it would scan every message in flight, of every worker, for each mark instead of looking the
# given ids up in the primary key (O(in flight) per statement, not O(marked)).
_MARK_HANDED = (
    "UPDATE messages SET handed_at = %(now)s "
    "WHERE id = ANY(%(pks)b::integer[]) AND (status = 'sending') IS TRUE AND worker = %(worker)s"
)


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
            Message.wave_id,
            Message.contact_id,
            Message.deadline_at,
            Message.expiries,
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
        .where(message_status_is(*PENDING_STATUSES), Message.due_at <= now, Wave.status == WaveStatus.ACTIVE)
        .order_by(Message.due_at, Message.id)
        .limit(limit)
    )
    if is_postgresql(db):
        query = query.with_for_update(skip_locked=True, of=Message)
    rows = db.execute(query).all()
    if not rows:
        return [], []
    facts = load_facts(db, rows)

    sendable: list[Any] = []
    finished: list[tuple[str, str, str]] = []
    ended: dict[tuple[MessageStatus, str], list[int]] = {}
    events: list[dict[str, object]] = []
    labels = {row.id: (row.session_id, row.step) for row in rows}
    for row in rows:
        step = resolve_step(settings.series, row.step)
        reason = skip_reason(row, step, facts, now)
        if reason is not None:
            status = MessageStatus.SUPPRESSED if reason is SkipReason.SUPPRESSED else MessageStatus.SKIPPED
            ended.setdefault((status, reason.value), []).append(row.id)
        else:
            sendable.append(row)
    # Each write below takes only the rows still pending, and what it took is what the claim returns: on
    # SQLite the read above is not locked, so another process may have claimed or finished some of them
    # since (on PostgreSQL the rows are locked and every row is taken).
    for (status, reason_text), pks in ended.items():
        taken = db.scalars(
            update(Message)
            .where(Message.id.in_(pks), message_status_is(*PENDING_STATUSES))
            .values(status=status, updated_at=now)
            .returning(Message.id)
            .execution_options(synchronize_session=False)
        ).all()
        events.extend(event_row(pk, EventKind(status.value), now, reason_text) for pk in taken)
        finished.extend((*labels[pk], status.value) for pk in taken)
    claimed: list[ClaimedMessage] = []
    if sendable:
        attempts = dict(
            db.execute(
                update(Message)
                .where(
                    among(db, Message.id, [row.id for row in sendable], Integer),
                    message_status_is(*PENDING_STATUSES),
                )
                .values(
                    status=MessageStatus.SENDING,
                    handed_at=None,
                    lease_until=now + lease,
                    worker=worker,
                    attempts=Message.attempts + 1,
                    updated_at=now,
                )
                .returning(Message.id, Message.attempts)
                .execution_options(synchronize_session=False)
            ).all()
        )
        claimed = [
            ClaimedMessage(
                pk=row.id,
                message_id=row.message_id,
                session_id=row.session_id,
                step=row.step,
                recipient=recipient_of(row, settings.series.session(row.session_id).region),
                needs_smtputf8=row.needs_smtputf8,
                attempts=attempts[row.id],
                deadline_at=row.deadline_at,
                wave_id=row.wave_id,
                careful=row.expiries > 0,
            )
            for row in sendable
            if row.id in attempts
        ]
    insert_events(db, events)
    return claimed, finished


def renew_leases(db: DbSession, pks: Sequence[int], worker: str, until: datetime) -> None:
    """Extend ``worker``'s claim on messages it is still sending to ``until``; caller commits."""
    until = require_aware(until, "until")
    db.execute(
        update(Message)
        .where(
            among(db, Message.id, pks, Integer),
            Message.status == MessageStatus.SENDING,
            Message.worker == worker,
        )
        .values(lease_until=until)
    )


def renew_worker_leases(db: DbSession, worker: str, until: datetime) -> int:
    """Extend to ``until`` every claim ``worker`` holds (all its messages in ``sending``); caller commits.
    Returns how many were renewed. Raises NaiveDatetimeError for a naive ``until``."""
    until = require_aware(until, "until")
    result = db.execute(
        update(Message)
        .where(Message.status == MessageStatus.SENDING, Message.worker == worker)
        .values(lease_until=until)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def release_claims(db: DbSession, pks: Sequence[int], now: datetime, *, worker: str | None = None) -> None:
    """Give claimed, unsent messages back (graceful shutdown): ``sending`` -> ``queued``; with ``worker``,
    only those it still holds (another worker may have taken over a claim whose lease expired)."""
    now = require_aware(now, "now")
    if not pks:
        return
    query = update(Message).where(Message.id.in_(pks), Message.status == MessageStatus.SENDING)
    if worker is not None:
        query = query.where(Message.worker == worker)
    released = db.scalars(
        query.values(
            status=MessageStatus.QUEUED,
            lease_until=None,
            handed_at=None,
            worker="",
            attempts=Message.attempts - 1,
            updated_at=now,
        )
        .returning(Message.id)
        .execution_options(synchronize_session=False)
    ).all()
    log_many(db, released, EventKind.RECLAIMED, now, "released at shutdown")


def next_due_at(db: DbSession, after: datetime) -> datetime | None:
    """The earliest due time of a pending message in an active wave strictly after ``after``, or None."""
    after = require_aware(after, "after")
    return db.scalar(
        select(func.min(Message.due_at))
        .join(Wave, Wave.id == Message.wave_id)
        .where(message_status_is(*PENDING_STATUSES), Wave.status == WaveStatus.ACTIVE, Message.due_at > after)
    )


def has_due(db: DbSession, now: datetime) -> bool:
    """True when some pending message of an active wave is due at ``now``."""
    now = require_aware(now, "now")
    return (
        db.scalar(
            select(Message.id)
            .join(Wave, and_(Wave.id == Message.wave_id, Wave.status == WaveStatus.ACTIVE))
            .where(message_status_is(*PENDING_STATUSES), Message.due_at <= now)
            .limit(1)
        )
        is not None
    )
