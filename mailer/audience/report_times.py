"""The times in a webinar platform's registration report: the zone its preamble names, each row's local time.

Shapes
    report_zone(label) -> IANA/offset zone name or None       "Buenos Aires, Georgetown" -> Buenos Aires' zone
    preamble_zone_label(preamble records) -> str               the "Time Zone" value of the report's preamble
    preamble_value(preamble records, keys) -> str              the value of any named preamble cell
    parse_registration_time(text, zone) -> aware UTC datetime or None

Registration times are local wall-clock times in the zone the preamble names (else the session's zone).
Nothing here raises on a bad cell: what cannot be read is ``None`` or "".
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime, tzinfo
from functools import lru_cache
from zoneinfo import available_timezones

from mailer.audience.cells import clean_text
from mailer.audience.locales import fold
from mailer.audience.table import Record
from mailer.timeline.clock import accepted_instant, require_aware
from mailer.zones import canonical_zone_name, is_known_zone

_ZONE_KEYS = frozenset({"time zone", "timezone", "zona horaria", "fuseau horaire"})
_OFFSET_IN_LABEL = re.compile(r"(?:GMT|UTC)\s*([+-])\s*(\d{1,2})(?::?(\d{2}))?", re.IGNORECASE)
_ZONE_AREAS = (
    "Africa",
    "America",
    "Antarctica",
    "Asia",
    "Atlantic",
    "Australia",
    "Europe",
    "Indian",
    "Pacific",
)
_TIME_FORMATS = (
    "%Y-%m-%d %I:%M:%S %p",
    "%Y-%m-%d %I:%M %p",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%d %H:%M",
    "%b %d, %Y %I:%M:%S %p",
    "%b %d, %Y %I:%M %p",
    "%m/%d/%Y %I:%M:%S %p",
    "%m/%d/%Y %I:%M %p",
    "%m/%d/%Y %H:%M:%S",
    "%m/%d/%Y %H:%M",
)


@lru_cache(maxsize=1)
def _city_zones() -> dict[str, str]:
    """Folded city name -> IANA zone ("buenos aires" -> "America/Argentina/Buenos_Aires")."""
    cities: dict[str, str] = {}
    for name in sorted(available_timezones()):
        if name.startswith(_ZONE_AREAS):
            cities.setdefault(fold(name.rsplit("/", 1)[-1].replace("_", " "), accents=False), name)
    return cities


def report_zone(label: str) -> str | None:
    """The zone a report's "Time Zone" label means, as a storable name, or ``None`` when it means nothing.

    Accepts an IANA name or an offset ("GMT-3", "(GMT-03:00) Buenos Aires" -> "UTC-03:00"), else the first
    comma-separated part naming a zone's city ("Buenos Aires, Georgetown" -> "America/Argentina/Buenos_Aires").
    """
    text = label.strip()
    if not text:
        return None
    if is_known_zone(text):
        return canonical_zone_name(text)
    match = _OFFSET_IN_LABEL.search(text)
    if match:
        sign, hours, minutes = match.group(1), int(match.group(2)), int(match.group(3) or 0)
        name = f"UTC{sign}{hours:02d}:{minutes:02d}"
        return name if is_known_zone(name) else None
    for part in re.split(r"[,;/()]", text):
        zone = _city_zones().get(fold(part, accents=False))
        if zone:
            return zone
    return None


def parse_registration_time(text: str, zone: tzinfo) -> datetime | None:
    """A report's local registration time ("2021-06-20 03:14:15 PM") in ``zone`` -> aware UTC; ``None`` if blank
    or in no known format. ISO 8601 text with an offset keeps its own offset. Raises
    :class:`mailer.errors.InstantRangeError` for a time outside the years the mailer accepts (9999-12-31)."""
    text = clean_text(text)
    if not text:
        return None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        parsed = None
        for layout in _TIME_FORMATS:
            try:
                parsed = datetime.strptime(text, layout)
                break
            except ValueError:
                continue
    if parsed is None:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zone)
    return require_aware(accepted_instant(parsed, f"registration time {text!r}"), "registration time")


def preamble_zone_label(preamble: Sequence[Record]) -> str:
    """The value under (or beside) a "Time Zone" cell in the report's preamble, or ""."""
    return preamble_value(preamble, _ZONE_KEYS)


def preamble_value(preamble: Sequence[Record], keys: frozenset[str]) -> str:
    """The value under (or beside) the first preamble cell whose folded text (accents dropped) is one of
    ``keys``: below it when its row is a row of keys (three or more cells), else beside it; "" if none."""
    for index, record in enumerate(preamble):
        for column, cell in enumerate(record.cells):
            if fold(cell, accents=False) not in keys:
                continue
            below = preamble[index + 1].cells if index + 1 < len(preamble) else ()
            beside = record.cells[column + 1] if column + 1 < len(record.cells) else ""
            is_key_row = sum(1 for c in record.cells if c.strip()) >= 3
            if is_key_row and column < len(below) and below[column].strip():
                return below[column].strip()
            if beside.strip():
                return beside.strip()
            if column < len(below):
                return below[column].strip()
    return ""


__all__ = ["parse_registration_time", "preamble_value", "preamble_zone_label", "report_zone"]
