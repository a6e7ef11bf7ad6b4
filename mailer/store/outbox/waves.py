"""Wave control: pause, resume or cancel a wave; skipping pending messages."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session as DbSession

from mailer.errors import NotFoundError
from mailer.store.models import (
    PENDING_STATUSES,
    EventKind,
    Message,
    MessageStatus,
    Wave,
    WaveStatus,
)
from mailer.store.outbox.events import log_many
from mailer.timeline.clock import require_aware
from mailer.timeline.plan import (
    SkipReason,
)


def pending_messages(db: DbSession, condition: Any) -> list[int]:
    """Primary keys of the pending (queued, deferred or sending) messages matching ``condition``."""
    return list(db.scalars(select(Message.id).where(condition, Message.status.in_(PENDING_STATUSES))))


def skip_messages(db: DbSession, pks: Sequence[int], reason: SkipReason, now: datetime) -> None:
    """Finish the still pending ones of ``pks`` as skipped for ``reason`` and log it; caller commits."""
    now = require_aware(now, "now")
    if not pks:
        return
    db.execute(
        update(Message)
        .where(Message.id.in_(pks), Message.status.in_(PENDING_STATUSES))
        .values(status=MessageStatus.SKIPPED, updated_at=now)
    )
    log_many(db, pks, EventKind.SKIPPED, now, reason.value)


def set_wave_status(db: DbSession, wave_id: int, status: WaveStatus, now: datetime) -> tuple[Wave, int]:
    """Pause, resume or cancel a wave; returns the wave and how many pending messages it touched.

    Cancelling finishes every pending message as skipped ("cancelled"); a cancelled wave stays cancelled.
    Raises NotFoundError for an unknown wave and ValueError for a change from ``cancelled``.
    """
    now = require_aware(now, "now")
    wave = db.get(Wave, wave_id)
    if wave is None:
        raise NotFoundError(f"no wave {wave_id} (see `mailer waves list`)")
    if wave.status == WaveStatus.CANCELLED and status != WaveStatus.CANCELLED:
        raise ValueError(f"wave {wave_id} is cancelled and cannot be {status.value}d")
    pending = pending_messages(db, Message.wave_id == wave_id)
    wave.status = status
    if status is WaveStatus.CANCELLED:
        skip_messages(db, pending, SkipReason.CANCELLED, now)
    else:
        kind = EventKind.PAUSED if status is WaveStatus.PAUSED else EventKind.RESUMED
        log_many(db, pending, kind, now, f"wave {wave_id} {status.value}")
    return wave, len(pending)
