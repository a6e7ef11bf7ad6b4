"""The suppression list: addresses never mailed again (hard bounces, unsubscribes, complaints)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session as DbSession

from mailer.store.models import (
    Suppression,
)
from mailer.store.outbox.batch import insert_ignoring_conflicts
from mailer.timeline.clock import require_aware


def suppress(db: DbSession, email_key: str, reason: str, detail: str, now: datetime) -> None:
    """Add ``email_key`` to the suppression list (no-op when already there); caller commits."""
    now = require_aware(now, "now")
    insert_ignoring_conflicts(
        db,
        Suppression,
        [{"email_key": email_key, "reason": reason, "detail": detail[:2000], "created_at": now}],
    )
