"""Recording delivery outcomes: sent, deferred with a backoff, failed or bounced, each with its event."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

import psycopg
from sqlalchemy import Integer, Table, bindparam, select, text, update
from sqlalchemy.orm import Session as DbSession

from mailer.config import Settings
from mailer.store.models import (
    Contact,
    EventKind,
    Message,
    MessageStatus,
)
from mailer.store.outbox.batch import among, driver_connection, is_postgresql
from mailer.store.outbox.claim import MAX_EXPIRIES
from mailer.store.outbox.events import event_row, insert_events
from mailer.store.outbox.suppressions import suppress
from mailer.timeline.clock import require_aware


@dataclass(frozen=True)
class Outcome:
    """The result of one delivery attempt for one message, from the transport's classification."""

    pk: int
    status: MessageStatus  # SENT, DEFERRED, FAILED or BOUNCED
    code: int | None
    text: str
    language: str = ""
    retry_at: datetime | None = (
        None  # a deferral without an attempt (relay unreachable): due then, not counted
    )
    provider_id: str = ""  # the relay's id for the accepted message (from its 250 reply), for webhooks
    uncertain: bool = False  # a deferral after the content was sent with no reply: it may have arrived


UNANSWERED_HELD_REASON = (
    "held for review: twice its content was sent and no reply came (the connection closed or timed out), so it"
    " may have reached the recipient already; resend it from the staff page if it did not"
)


def retry_delay(attempts: int, base: timedelta, rng: random.Random | None = None) -> timedelta:
    """Exponential backoff with +-20 % jitter: base * 2**(attempts-1), capped at 6 hours."""
    rng = rng or random.Random()
    delay = min(base * (1 << max(attempts - 1, 0)), timedelta(hours=6))
    return delay * rng.uniform(0.8, 1.2)


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
    after the message's deadline. A deferral with ``retry_at`` (nothing reached the relay) is due at that
    time and gives its attempt back. An ``uncertain`` deferral (the content was sent, no reply came: the
    message may have arrived, RFC 1047) counts as a lease expiry does: the retry goes carefully (alone, its
    outcome committed before the next), and at the :data:`~mailer.store.outbox.claim.MAX_EXPIRIES`-th the
    message is ``held`` for staff review instead of being sent once more, so one person receives a step at
    most twice. A bounce also suppresses the address (reason ``hard-bounce``).
    """
    now = require_aware(now, "now")
    if not outcomes:
        return
    if is_postgresql(db):
        sent = [outcome for outcome in outcomes if outcome.status is MessageStatus.SENT]
        if sent:
            record_sent(driver_connection(db), sent, now, worker)
            outcomes = [outcome for outcome in outcomes if outcome.status is not MessageStatus.SENT]
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
            Message.expiries,
            Contact.email_key,
        )
        .join(Contact, Contact.id == Message.contact_id)
        .where(among(db, Message.id, by_pk, Integer), Message.status == MessageStatus.SENDING)
    )
    if worker is not None:
        query = query.where(Message.worker == worker)
    changes: list[dict[str, object]] = []
    events: list[dict[str, object]] = []
    unattempted: list[int] = []
    uncertain: list[int] = []
    by = f" by {worker}" if worker else ""
    for row in db.execute(query):
        outcome = by_pk[row.id]
        status, detail, due_at = outcome.status, outcome.text, row.due_at
        if status is MessageStatus.DEFERRED and outcome.uncertain:
            uncertain.append(row.id)
            if row.expiries + 1 >= MAX_EXPIRIES:
                status, detail = MessageStatus.HELD, f"{UNANSWERED_HELD_REASON}; last reply: {outcome.text}"
        if status is MessageStatus.DEFERRED:
            retry_at = outcome.retry_at or now + retry_delay(row.attempts, settings.retry_base)
            if outcome.retry_at is not None:
                unattempted.append(row.id)
            if retry_at >= row.deadline_at:
                status = MessageStatus.FAILED
                detail = f"gave up: next retry would be after the deadline; last reply: {outcome.text}"
            else:
                due_at = retry_at
                detail = f"{outcome.text}; retry at {retry_at.isoformat()}"
                if outcome.retry_at is not None:
                    detail += "; not counted as an attempt"
        if status is MessageStatus.BOUNCED:
            suppress(db, row.email_key, "hard-bounce", outcome.text, now)
        changes.append(
            {
                "pk": row.id,
                "status": status.value,
                "reply_code": outcome.code,
                "reply_text": (detail if status is MessageStatus.HELD else outcome.text)[:2000],
                "language": outcome.language or row.language,
                "due_at": due_at,
                "sent_at": now if status is MessageStatus.SENT else None,
                "provider_id": (outcome.provider_id[:255] or None) if status is MessageStatus.SENT else None,
            }
        )
        events.append(
            event_row(
                row.id, EventKind(status.value), now, f"{detail} (attempt {row.attempts}{by})", outcome.code
            )
        )
    if changes:
        _update_outcomes(db, changes, now)
    if unattempted:
        db.execute(
            update(Message)
            .where(among(db, Message.id, unattempted, Integer))
            .values(attempts=Message.attempts - 1)
        )
    if uncertain:
        db.execute(
            update(Message)
            .where(among(db, Message.id, uncertain, Integer))
            .values(expiries=Message.expiries + 1)
        )
    insert_events(db, events)


def record_sent(
    connection: psycopg.Connection[Any], outcomes: Sequence[Outcome], now: datetime, worker: str | None
) -> int:
    """PostgreSQL: apply 2xx ``outcomes`` (to the messages still ``sending``, and claimed by ``worker`` when
    given) and log their ``sent`` events in one statement, an UPDATE ... FROM unnest() ... RETURNING whose
    rows feed the INSERT of the events, run on the driver's ``connection`` (psycopg) as a prepared statement:
    inside its open transaction, or as a transaction of its own when it is in autocommit mode (no BEGIN and
    COMMIT round trips: what the outcome recorder does for a group of replies that are all 2xx). The same rows
    as :func:`record_outcomes`. Returns how many messages changed. Raises NaiveDatetimeError for a naive
    ``now``, ``psycopg.Error`` for what the store refuses."""
    now = require_aware(now, "now")
    by_pk = {outcome.pk: outcome for outcome in outcomes}
    if not by_pk:
        return 0
    values = by_pk.values()
    cursor = connection.execute(
        _SENT_SQL_DRIVER,
        {
            "now": now,
            "worker": worker,
            "by": f" by {worker}" if worker else "",
            "pk": list(by_pk),
            "reply_code": [outcome.code for outcome in values],
            "detail": [outcome.text for outcome in values],
            "language": [outcome.language for outcome in values],
            "provider_id": [outcome.provider_id for outcome in values],
        },
        prepare=True,
    )
    return cursor.rowcount


def _update_outcomes(db: DbSession, rows: list[dict[str, object]], now: datetime) -> None:
    """Write delivery outcomes by primary key: on PostgreSQL one UPDATE ... FROM unnest() of one array per
    column; elsewhere an executemany of one UPDATE."""
    if is_postgresql(db):
        columns = ("pk", "status", "reply_code", "reply_text", "language", "due_at", "sent_at", "provider_id")
        db.execute(_UPDATE_OUTCOMES, {"now": now, **{name: [row[name] for row in rows] for name in columns}})
        return
    table = cast(Table, Message.__table__)
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
            provider_id=bindparam("provider_id"),
            lease_until=None,
            updated_at=now,
        ),
        rows,
    )


_UPDATE_OUTCOMES = text(
    "UPDATE messages AS m SET status = v.status, reply_code = v.reply_code, reply_text = v.reply_text, "
    "language = v.language, due_at = v.due_at, sent_at = v.sent_at, provider_id = v.provider_id, "
    "lease_until = NULL, updated_at = :now "
    "FROM unnest(CAST(:pk AS integer[]), CAST(:status AS varchar[]), CAST(:reply_code AS integer[]), "
    "CAST(:reply_text AS text[]), CAST(:language AS varchar[]), CAST(:due_at AS timestamptz[]), "
    "CAST(:sent_at AS timestamptz[]), CAST(:provider_id AS varchar[])) "
    "AS v(pk, status, reply_code, reply_text, language, due_at, sent_at, provider_id) "
    "WHERE m.id = v.pk"
)

# The sent messages' update and their "sent" events in one statement (a data-modifying WITH), in the driver's
# placeholders: the event's detail is what event_row() is given elsewhere, "<reply> (attempt <n>[ by
# <worker>])"; the reply text is kept to 2,000 characters and the provider's id to 255, as the general path
# does. A NULL worker matches any claim. The arrays go in binary form (%b): psycopg dumps a list so without
# quoting and escaping each element, several times faster than in text form. The status test is written
# "(...) IS TRUE" (the same, status being NOT NULL) so that the planner looks the messages up by primary key
# instead of matching it to the partial index ix_messages_leased and scanning every message in flight (see
# claim._MARK_HANDED).
_SENT_SQL_DRIVER = (
    "WITH sent AS (UPDATE messages AS m SET status = 'sent', reply_code = v.reply_code, "
    "reply_text = left(v.detail, 2000), language = COALESCE(NULLIF(v.language, ''), m.language), "
    "sent_at = %(now)s, lease_until = NULL, provider_id = NULLIF(left(v.provider_id, 255), ''), "
    "updated_at = %(now)s "
    "FROM unnest(%(pk)b::integer[], %(reply_code)b::integer[], %(detail)b::text[], %(language)b::varchar[], "
    "%(provider_id)b::varchar[]) AS v(pk, reply_code, detail, language, provider_id) "
    "WHERE m.id = v.pk AND (m.status = 'sending') IS TRUE "
    "AND (%(worker)s::varchar IS NULL OR m.worker = %(worker)s) "
    "RETURNING m.id, m.attempts, v.reply_code, v.detail) "
    "INSERT INTO delivery_events (message_pk, at, kind, detail, reply_code) "
    "SELECT id, %(now)s, 'sent', detail || ' (attempt ' || attempts || %(by)s::text || ')', reply_code "
    "FROM sent"
)
