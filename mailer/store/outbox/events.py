"""The delivery log: append ``delivery_events`` rows, one or a batch at a time."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import cast

from sqlalchemy import Table, text
from sqlalchemy.orm import Session as DbSession

from mailer.store.models import (
    DeliveryEvent,
    EventKind,
)
from mailer.store.outbox.batch import INSERT_CHUNK, is_postgresql
from mailer.timeline.clock import require_aware


def log_many(
    db: DbSession, message_pks: Iterable[int], kind: EventKind, now: datetime, detail: str = ""
) -> None:
    """Append one event of ``kind`` with the same ``detail`` to each of ``message_pks`` (caller commits)."""
    now = require_aware(now, "now")
    insert_events(db, [event_row(pk, kind, now, detail) for pk in message_pks])


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
    now = require_aware(now, "now")
    db.add(DeliveryEvent(message_pk=message_pk, at=now, kind=kind, reply_code=code, detail=detail))


def event_row(
    pk: int, kind: EventKind, now: datetime, detail: str, code: int | None = None
) -> dict[str, object]:
    """One ``delivery_events`` row as a mapping, for :func:`insert_events`."""
    now = require_aware(now, "now")
    return {"message_pk": pk, "at": now, "kind": kind, "detail": detail, "reply_code": code}


def insert_events(db: DbSession, rows: list[dict[str, object]]) -> None:
    """Append delivery events: on PostgreSQL one INSERT from unnest() of one array per column, whatever the
    count (a batch's rows cost the client no per-row work); elsewhere an executemany in chunks."""
    if not rows:
        return
    if is_postgresql(db):
        columns = ("message_pk", "at", "kind", "detail", "reply_code")
        db.execute(_INSERT_EVENTS, {name: [row[name] for row in rows] for name in columns})
        return
    for start in range(0, len(rows), INSERT_CHUNK):
        db.execute(cast(Table, DeliveryEvent.__table__).insert(), rows[start : start + INSERT_CHUNK])


_INSERT_EVENTS = text(
    "INSERT INTO delivery_events (message_pk, at, kind, detail, reply_code) "
    "SELECT * FROM unnest(CAST(:message_pk AS integer[]), CAST(:at AS timestamptz[]), CAST(:kind AS varchar[]), "
    "CAST(:detail AS text[]), CAST(:reply_code AS integer[]))"
)
