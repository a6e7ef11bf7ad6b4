"""Offsets, durations and clock times as written in the config files.

``"-6w"`` or ``"+1h"`` is a step's :class:`Offset` from its session's start; ``"30s"`` or ``"3d"`` a duration;
``"09:00"`` a wall-clock time. Each parser raises ValueError; the table reader turns that into a ConfigError.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import time, timedelta

_OFFSET = re.compile(r"^([+-])\s*(\d+)\s*(w|d|h|m)$")
_DURATION = re.compile(r"^(\d+)\s*(w|d|h|m|s)$")
_UNIT_SECONDS = {"w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1}


@dataclass(frozen=True)
class Offset:
    """A step's position relative to the session start.

    ``calendar_days`` keep the wall-clock time in the session's zone across DST;
    ``exact`` is an absolute duration. One of them is zero.
    """

    calendar_days: int
    exact: timedelta
    text: str

    @property
    def is_before(self) -> bool:
        return self.calendar_days < 0 or self.exact < timedelta(0)


def parse_offset(text: str) -> Offset:
    """Parse "-6w", "-21d", "-1h", "+90m": weeks and days are calendar days, hours and minutes exact.

    Raises ValueError on anything else.
    """
    match = _OFFSET.match(text.strip())
    if not match:
        raise ValueError(f"bad offset {text!r}")
    sign = -1 if match.group(1) == "-" else 1
    amount, unit = int(match.group(2)), match.group(3)
    if unit in ("w", "d"):
        return Offset(sign * amount * (7 if unit == "w" else 1), timedelta(0), text.strip())
    return Offset(0, sign * timedelta(seconds=amount * _UNIT_SECONDS[unit]), text.strip())


def parse_clock_time(text: str) -> time:
    """Parse "HH:MM" (24-hour) into a naive wall-clock time; raise ValueError otherwise."""
    hours, _, minutes = text.strip().partition(":")
    if not (hours.isdigit() and minutes.isdigit() and len(minutes) == 2):
        raise ValueError(f"bad time {text!r}")
    return time(int(hours), int(minutes))


def parse_duration(text: str) -> timedelta:
    """Parse "3d", "12h", "90m", "30s" (positive) into a timedelta; raise ValueError otherwise."""
    match = _DURATION.match(text.strip())
    if not match:
        raise ValueError(f"bad duration {text!r}")
    return timedelta(seconds=int(match.group(1)) * _UNIT_SECONDS[match.group(2)])
