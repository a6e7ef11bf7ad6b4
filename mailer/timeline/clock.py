"""Injected "now" (DESIGN invariant 3): the system clock for the service, a virtual one for tests and simulate."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol

from mailer.errors import InstantRangeError, NaiveDatetimeError

EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)  # the first instant a person or a system may give
LATEST = datetime(9999, 1, 1, tzinfo=UTC)  # the first instant refused: a day's margin for any UTC offset


def require_aware(value: datetime, what: str = "datetime") -> datetime:
    """Return ``value`` converted to UTC; raise :class:`NaiveDatetimeError` if it has no tzinfo."""
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        raise NaiveDatetimeError(f"{what} must be timezone-aware, got naive {value.isoformat()}")
    return value.astimezone(UTC)


def accepted_instant(value: datetime, what: str = "") -> datetime:
    """Return ``value`` (aware, its offset kept) when it lies in the years 1970 to 9998 UTC, the window every
        store, zone conversion and epoch count holds; raise :class:`InstantRangeError` otherwise, saying "``what``
    is outside ..." (``what`` names the value as the person wrote it; by default "time" and its ISO form).

        Every time parsed from what a person or another system wrote goes through here, so that a year 1 or 9999
        is refused where it is read ("9999-12-31T23:59-23:59" would overflow on conversion to UTC, "0001-01-01"
        overflows PostgreSQL's epoch arithmetic). Raises :class:`NaiveDatetimeError` for a naive ``value``.
    """
    what = what or f"time {value.isoformat()}"
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        raise NaiveDatetimeError(f"{what} must be timezone-aware, got naive {value.isoformat()}")
    try:
        utc: datetime | None = value.astimezone(UTC)
    except OverflowError:
        utc = None
    if utc is None or not EARLIEST <= utc < LATEST:
        raise InstantRangeError(
            f"{what} is outside the years 1970 to 9998 that the mailer accepts: check the year"
        )
    return value


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
