"""Injected "now" (DESIGN invariant 3): the system clock for the service, a virtual one for tests and simulate."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol

from mailer.errors import NaiveDatetimeError


def require_aware(value: datetime, what: str = "datetime") -> datetime:
    """Return ``value`` converted to UTC; raise :class:`NaiveDatetimeError` if it has no tzinfo."""
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        raise NaiveDatetimeError(f"{what} must be timezone-aware, got naive {value.isoformat()}")
    return value.astimezone(UTC)


class Clock(Protocol):
    """Anything that tells the current time as an aware UTC datetime."""

    def now(self) -> datetime: ...


class SystemClock:
    """The real wall clock, in UTC."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class VirtualClock:
    """A clock that moves only when told to; used by tests and ``mailer simulate``."""

    def __init__(self, start: datetime) -> None:
        self._now = require_aware(start, "virtual clock start")

    def now(self) -> datetime:
        return self._now

    def set(self, moment: datetime) -> None:
        """Jump to ``moment`` (aware). Moving backwards is allowed; callers decide if it makes sense."""
        self._now = require_aware(moment, "virtual clock time")

    def advance(self, delta: timedelta) -> datetime:
        """Move forward by ``delta`` and return the new time."""
        self._now = self._now + delta
        return self._now
