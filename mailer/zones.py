"""Time zone names as people write them, resolved to tzinfo objects.

Accepted: IANA names ("America/Argentina/Buenos_Aires"), and fixed offsets as a person means them:
"GMT-3", "UTC+05:30", "UTC", "GMT". "GMT-3" is UTC-03:00; note that the IANA name with the same
digits, "Etc/GMT+3", is also UTC-03:00 (POSIX inverts the sign), and is accepted as IANA.
"""

from __future__ import annotations

import re
from datetime import UTC, timedelta, timezone, tzinfo
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_FIXED = re.compile(r"^(?:GMT|UTC)\s*([+-])\s*(\d{1,2})(?::?(\d{2}))?$", re.IGNORECASE)


class UnknownZoneError(ValueError):
    """The text names no IANA zone and is no fixed offset."""


@lru_cache(maxsize=1024)
def resolve_zone(name: str) -> tzinfo:
    """Return the tzinfo for ``name``; raise :class:`UnknownZoneError` when it means nothing (any text that is
    no zone: a key too long for a file name, a NUL byte or a path outside the zone database included).

    Fixed offsets give ``datetime.timezone`` objects; whole-hour ones are equal in effect to the
    matching ``Etc/GMT±N`` zone with the sign inverted.
    """
    text = name.strip()
    if text.upper() in {"UTC", "GMT", "Z"}:
        return UTC
    match = _FIXED.match(text)
    if match:
        sign, hours, minutes = match.group(1), int(match.group(2)), int(match.group(3) or 0)
        if hours > 14 or minutes >= 60:
            raise UnknownZoneError(f"offset out of range: {name!r}")
        delta = timedelta(hours=hours, minutes=minutes)
        return timezone(-delta if sign == "-" else delta, canonical_zone_name(text))
    try:
        return ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:  # OSError: a key too long for a file name
        raise UnknownZoneError(
            f"unknown time zone {name[:80]!r}{'...' if len(name) > 80 else ''}: use an IANA name such as 'Europe/Paris' or an offset such as 'GMT-3'"
        ) from exc


def canonical_zone_name(name: str) -> str:
    """Normalise a zone name for storage: IANA names unchanged, offsets as ``UTC±HH:MM``."""
    text = name.strip()
    if text.upper() in {"UTC", "GMT", "Z"}:
        return "UTC"
    match = _FIXED.match(text)
    if match:
        sign, hours, minutes = match.group(1), int(match.group(2)), int(match.group(3) or 0)
        return f"UTC{sign}{hours:02d}:{minutes:02d}"
    return text


def is_known_zone(name: str) -> bool:
    """True when :func:`resolve_zone` accepts ``name``."""
    try:
        resolve_zone(name)
    except UnknownZoneError:
        return False
    return True
