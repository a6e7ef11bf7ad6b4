"""Recording delivery outcomes: sent, deferred with a backoff, failed or bounced, each with its event."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import Integer, Table, bindparam, select, text, update
from sqlalchemy.orm import Session as DbSession

from mailer.config import Settings
from mailer.store.models import (
    Contact,
    EventKind,
    Message,
    MessageStatus,
)
from mailer.store.outbox.batch import among, is_postgresql
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
    time and gives its attempt back. A bounce also suppresses the address (reason ``hard-bounce``).
    """
    now = require_aware(now, "now")
    if not outcomes:
        return
    if is_postgresql(db):
        sent = [outcome for outcome in outcomes if outcome.status is MessageStatus.SENT]
        if sent:
            _record_sent(db, sent, now, worker)
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
    by = f" by {worker}" if worker else ""
    for row in db.execute(query):
        outcome = by_pk[row.id]
        status, detail, due_at = outcome.status, outcome.text, row.due_at
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
                "reply_text": outcome.text[:2000],
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
    insert_events(db, events)


def _record_sent(db: DbSession, outcomes: Sequence[Outcome], now: datetime, worker: str | None) -> None:
    """PostgreSQL: apply 2xx outcomes (to the messages still ``sending``, and claimed by ``worker`` when
    given) and log them in one statement: an UPDATE ... FROM unnest() ... RETURNING whose rows feed the
    INSERT of their events; two round trips fewer than the general path, which a commit per group of
    replies makes worth it."""
    by_pk = {outcome.pk: outcome for outcome in outcomes}
    db.execute(
        _RECORD_SENT if worker is None else _RECORD_SENT_BY,
        {
            "now": now,
            "worker": worker,
            "by": f" by {worker}" if worker else "",
            "pk": list(by_pk),
            "reply_code": [outcome.code for outcome in by_pk.values()],
            "reply_text": [outcome.text[:2000] for outcome in by_pk.values()],
            "detail": [outcome.text for outcome in by_pk.values()],
            "language": [outcome.language for outcome in by_pk.values()],
            "provider_id": [outcome.provider_id[:255] for outcome in by_pk.values()],
        },
    )


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

# The sent messages' update and their "sent" events in one statement (a data-modifying WITH): the event's
# detail is what event_row() is given elsewhere, "<reply> (attempt <n>[ by <worker>])".
_SENT_SQL = (
    "WITH sent AS (UPDATE messages AS m SET status = 'sent', reply_code = v.reply_code, "
    "reply_text = v.reply_text, language = COALESCE(NULLIF(v.language, ''), m.language), sent_at = :now, "
    "lease_until = NULL, provider_id = NULLIF(v.provider_id, ''), updated_at = :now "
    "FROM unnest(CAST(:pk AS integer[]), CAST(:reply_code AS integer[]), CAST(:reply_text AS text[]), "
    "CAST(:detail AS text[]), CAST(:language AS varchar[]), CAST(:provider_id AS varchar[])) "
    "AS v(pk, reply_code, reply_text, detail, language, provider_id) "
    "WHERE m.id = v.pk AND m.status = 'sending'{worker} RETURNING m.id, m.attempts, v.reply_code, v.detail) "
    "INSERT INTO delivery_events (message_pk, at, kind, detail, reply_code) "
    "SELECT id, :now, 'sent', detail || ' (attempt ' || attempts || CAST(:by AS text) || ')', reply_code "
    "FROM sent"
)
_RECORD_SENT = text(_SENT_SQL.format(worker=""))
_RECORD_SENT_BY = text(_SENT_SQL.format(worker=" AND m.worker = :worker"))
