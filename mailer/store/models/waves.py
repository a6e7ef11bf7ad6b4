"""The waves table: one step materialised for an audience, the organiser's handle on it."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from mailer.store.models.base import Base


class WaveStatus(StrEnum):
    """An organiser's handle on one materialised step."""

    ACTIVE = "active"  # messages go out when due
    PAUSED = "paused"  # messages wait; resume puts them back
    CANCELLED = "cancelled"  # pending messages skipped with reason "cancelled"


class Wave(Base):
    """One step materialised for an audience. Unique per (session, step, audience)."""

    __tablename__ = "waves"
    __table_args__ = (UniqueConstraint("session_id", "step", "audience"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[str] = mapped_column(String(100))
    step: Mapped[str] = mapped_column(String(100))
    audience: Mapped[str] = mapped_column(String(100))  # region id or "registrants"
    status: Mapped[WaveStatus] = mapped_column(String(20), default=WaveStatus.ACTIVE)
    scheduled_at: Mapped[datetime]
    created_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(String(100), default="timeline")
    # An organiser's explicit time as seconds from the session start (negative = before): a reschedule
    # moves the wave with the session. None for timeline waves and notices, which are timed otherwise.
    offset_seconds: Mapped[int | None] = mapped_column(default=None)
    # Why the store holds the wave (paused) without the organiser asking, "" when it does not.
    hold_reason: Mapped[str] = mapped_column(Text, default="")
