"""Session changes from the config: reschedules re-time pending messages, cancellations skip them;
both raise the session's SEQUENCE and queue a notice."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session as DbSession

from mailer.config import Session, Settings, Step, StepKind
from mailer.store.models import (
    PENDING_STATUSES,
    Contact,
    Message,
    SessionRow,
    Wave,
    WaveStatus,
)
from mailer.store.outbox.batch import is_postgresql
from mailer.store.outbox.queue import message_deadline, queue_wave
from mailer.store.outbox.waves import WaveStateError, pending_messages, set_wave_status, skip_messages
from mailer.timeline.clock import require_aware
from mailer.timeline.plan import (
    SkipReason,
    hold_for_window,
    message_due,
    notice_step,
    resolve_step,
    step_time,
)

log = logging.getLogger(__name__)

SYNC_LOCK = 727273  # PostgreSQL advisory lock key of sync_sessions (727272 is the migrations')


@dataclass(frozen=True)
class SessionChange:
    """A session whose config differs from the store: rescheduled (``date-changed``) or ``cancelled``."""

    session_id: str
    change: str
    sequence: int  # the new iCalendar SEQUENCE (RFC 5545 sec. 3.8.7.4)
    retimed: int  # pending messages given new due times
    skipped: int  # pending messages skipped because the session was cancelled
    notices: int  # notices queued
    held: tuple[int, ...] = ()  # organiser waves paused because the move made their time absurd


def sync_sessions(
    db: DbSession, settings: Settings, now: datetime, *, seen: dict[str, int] | None = None
) -> list[SessionChange]:
    """Bring the ``sessions`` table in line with the config; apply reschedules and cancellations.

    A changed start (or zone) raises the session's SEQUENCE, re-times every pending message of it and
    queues a "date changed" notice to everyone already invited or registered. A newly cancelled session
    raises SEQUENCE, skips its pending messages (reason "cancelled") and queues a cancellation notice to
    registrants. On PostgreSQL one process at a time syncs (a transaction-scoped advisory lock), so processes
    starting together insert each session once and apply each change once. Caller commits.

    ``seen`` (a long-running process's memory, filled in here: session id -> the SEQUENCE after its last
    sync): a session whose SEQUENCE changed since is left alone, with a warning, for the store holds a change
    made by another process or by ``mailer sessions sync`` from a newer config than this process's; applying
    this process's config would undo it (and two processes with different configs would move the session to
    and fro, a "date changed" notice to everyone each time). Restarting the process picks the new config up.
    """
    now = require_aware(now, "now")
    series = settings.series
    if is_postgresql(db):
        db.execute(select(func.pg_advisory_xact_lock(SYNC_LOCK)))
    existing = {row.id: row for row in db.scalars(select(SessionRow).with_for_update())}
    changes: list[SessionChange] = []
    stale: set[str] = set()  # sessions changed elsewhere since this process's last sync: left alone
    for session in series.sessions:
        row = existing.get(session.id)
        if row is not None and seen is not None and seen.get(session.id, row.sequence) != row.sequence:
            if _differs(row, session):
                log.warning(
                    "session %s was changed in the store (SEQUENCE %d) since this process read its config: "
                    "not applying this process's config over it; restart this process to use the new config",
                    session.id,
                    row.sequence,
                )
                stale.add(session.id)
                continue
            seen[session.id] = row.sequence  # the same as this config: nothing to undo
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
            pending = pending_messages(db, Message.session_id == session.id)
            skip_messages(db, pending, SkipReason.CANCELLED, now)
            result = queue_wave(
                db,
                settings,
                session,
                notice_step("cancelled", row.sequence),
                now,
                at=now,
                created_by="session-change",
            )
            changes.append(
                SessionChange(session.id, "cancelled", row.sequence, 0, len(pending), result.added)
            )
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
            retimed, held = retime_pending(db, settings, session, now)
            added = 0
            if moved:
                notice = notice_step("date-changed", row.sequence)
                added = queue_wave(
                    db, settings, session, notice, now, at=now, created_by="session-change"
                ).added
            changes.append(
                SessionChange(session.id, "date-changed", row.sequence, retimed, 0, added, tuple(held))
            )
    if seen is not None:
        db.flush()
        for row in db.scalars(select(SessionRow)):
            if row.id not in stale:
                seen[row.id] = row.sequence
    return changes


def session_sequences(db: DbSession) -> dict[str, int]:
    """Each stored session's SEQUENCE, by id: what a long-running process notes when it starts, for the
    ``seen`` of :func:`sync_sessions`."""
    return {row.id: row.sequence for row in db.execute(select(SessionRow.id, SessionRow.sequence))}


def _differs(row: SessionRow, session: Session) -> bool:
    """The store's ``row`` and the config's ``session`` disagree on what a sync applies."""
    return (
        row.cancelled != session.cancelled
        or row.starts_at != require_aware(session.start, "session start")
        or row.time_zone != session.zone_name
        or row.duration_minutes != int(session.duration.total_seconds() // 60)
    )


def retime_pending(
    db: DbSession, settings: Settings, session: Session, now: datetime
) -> tuple[int, list[int]]:
    """Give every pending message of ``session`` the due time and deadline of its step under the session's
    current start. Timeline waves get their step's new time, an organiser's wave its offset from the start
    (so "one hour before" stays one hour before). An organiser's wave of a step before the session that
    keeps an absolute time (queued before offsets were stored) and now falls at or after the new start is
    held: paused, with ``hold_reason`` saying why, until the organiser resumes or cancels it.
    Returns how many messages were re-timed and the ids of the waves held. Caller commits."""
    now = require_aware(now, "now")
    start = require_aware(session.start, "session start").astimezone(UTC)
    held: list[int] = []
    for wave in db.scalars(select(Wave).where(Wave.session_id == session.id)):
        step = resolve_step(settings.series, wave.step)
        if _is_change_notice(settings, step):
            continue
        if wave.created_by == "timeline":
            wave.scheduled_at = step_time(session, step)
        elif wave.offset_seconds is not None:
            wave.scheduled_at = start + timedelta(seconds=wave.offset_seconds)
        if step.offset.is_before and wave.scheduled_at >= start and wave.status == WaveStatus.ACTIVE:
            try:
                set_wave_status(db, wave.id, WaveStatus.PAUSED, now)
            except WaveStateError:
                continue  # done, or reaches nobody: nothing to hold
            wave.hold_reason = (
                f"held: set for {wave.scheduled_at:%Y-%m-%d %H:%M} UTC, at or after the session's new start"
                f" ({start:%Y-%m-%d %H:%M} UTC), for a step before it; resume or cancel wave {wave.id}"
            )
            held.append(wave.id)
    rows = db.execute(
        select(Message, Wave, Contact.time_zone)
        .join(Wave, Wave.id == Message.wave_id)
        .join(Contact, Contact.id == Message.contact_id)
        .where(Message.session_id == session.id, Message.status.in_(PENDING_STATUSES))
    ).all()
    for message, wave, zone in rows:
        step = resolve_step(settings.series, message.step)
        if _is_change_notice(settings, step):
            continue
        base = wave.scheduled_at if wave.created_by != "timeline" else None
        meant = message_due(session, step, zone, base)
        message.deadline_at = message_deadline(settings.series, session, step, meant).at
        message.due_at = hold_for_window(meant, step, zone)
    return len(rows), held


def _is_change_notice(settings: Settings, step: Step) -> bool:
    """Whether ``step`` is the synthetic notice of a session change (timed by the change, not the start)."""
    return step.kind is StepKind.NOTICE and step.name not in {s.name for s in settings.series.steps}
