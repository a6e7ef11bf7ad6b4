"""Wave control: pause, resume or cancel a wave; skipping pending messages."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session as DbSession

from mailer.errors import MailerError, NotFoundError
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


# The participle of each change, for messages: "cannot be resumed", "already paused".
CHANGE_DONE = {WaveStatus.ACTIVE: "resumed", WaveStatus.PAUSED: "paused", WaveStatus.CANCELLED: "cancelled"}


class WaveStateError(MailerError, ValueError):
    """A wave cannot take the asked state: it is cancelled (for good), or already in that state
    (``already`` True; nothing was changed or logged)."""

    def __init__(self, message: str, *, already: bool) -> None:
        super().__init__(message)
        self.already = already


def set_wave_status(db: DbSession, wave_id: int, status: WaveStatus, now: datetime) -> tuple[Wave, int]:
    """Pause, resume or cancel a wave; returns the wave and how many pending messages it touched.

    Cancelling finishes every pending message as skipped ("cancelled"); a cancelled wave stays cancelled (a
    done wave may still be cancelled, so that queuing its step again adds nobody).
    Any change clears the wave's ``hold_reason`` (the organiser has decided).
    Raises NotFoundError for an unknown wave; WaveStateError (a ValueError) for a change from ``cancelled``,
    when the wave is already in ``status``, or when pausing a done wave (every message final, or none: a
    wave that reaches nobody, which a later queuing of its step would otherwise fill while paused unseen):
    ``already`` True for the last two, and nothing is changed or logged then.
    """
    now = require_aware(now, "now")
    wave = db.get(Wave, wave_id)
    if wave is None:
        raise NotFoundError(f"no wave {wave_id} (see `mailer waves list`)")
    if wave.status == status:
        state = "active" if status is WaveStatus.ACTIVE else CHANGE_DONE[status]
        raise WaveStateError(f"wave {wave_id} is already {state}: nothing changed", already=True)
    if wave.status == WaveStatus.CANCELLED:
        raise WaveStateError(
            f"wave {wave_id} is cancelled and cannot be {CHANGE_DONE[status]}", already=False
        )
    pending = pending_messages(db, Message.wave_id == wave_id)
    if status is WaveStatus.PAUSED and not pending:
        total = db.scalar(select(func.count(Message.id)).where(Message.wave_id == wave_id)) or 0
        if total:
            raise WaveStateError(
                f"wave {wave_id} is done: {total} message{'' if total == 1 else 's'}, none pending;"
                " nothing to pause",
                already=True,
            )
        raise WaveStateError(
            f"wave {wave_id} is done: it reaches nobody (0 messages; its list had no one to send to);"
            " nothing to pause. Queuing the step again once the list has contacts adds them to this wave",
            already=True,
        )
    wave.status = status
    wave.hold_reason = ""
    if status is WaveStatus.CANCELLED:
        skip_messages(db, pending, SkipReason.CANCELLED, now)
    else:
        kind = EventKind.PAUSED if status is WaveStatus.PAUSED else EventKind.RESUMED
        log_many(db, pending, kind, now, f"wave {wave_id} {status.value}")
    return wave, len(pending)
