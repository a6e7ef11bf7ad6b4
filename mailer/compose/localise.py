"""Language and local-time wording for templates, with Babel (CLDR data). Pure functions; cached where shared.

Dates are shown in a zone and a language: ``date_time`` gives "Wednesday, July 14, 2021, 2:00 AM
(Apia, GMT+13:00)" in English, "mercredi 14 juillet 2021, 02:00 (Apia, UTC+13:00)" in French. Babel's
output may hold U+202F (narrow no-break space) between a time and its AM/PM marker.

Language families follow CLDR: :func:`language_family` gives a tag and its parents, nearest first
("pt-MZ" -> "pt-PT" -> "pt", "es-AR" -> "es-419" -> "es"), so a language added later needs no code.
Bidirectional text: :func:`isolate` and :func:`isolate_ltr` wrap text in Unicode isolates (UAX #9) for text
parts, so a date or a URL keeps its own order inside a right-to-left sentence.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, timedelta, tzinfo
from functools import lru_cache
from typing import Any, Literal
from zoneinfo import ZoneInfo

from babel import Locale
from babel.core import get_global
from babel.dates import (
    format_date,
    format_skeleton,
    format_time,
    format_timedelta,
    get_timezone_gmt,
    get_timezone_location,
)
from babel.lists import format_list
from babel.units import format_unit

from mailer.timeline.clock import require_aware
from mailer.zones import resolve_zone

_HANGING = re.compile(r"^\s*(?:(?:\d+\.|[-*\u2022])\s+)?")
_SPANISH_E = re.compile(r" y (?=[hH]?[iIíÍ](?![aeoáéó]))")  # "español e inglés", but "y hielo"


def normalise_tag(tag: str) -> str:
    """BCP 47 case conventions: ``pt_br`` -> ``pt-BR``, ``zh-hant-tw`` -> ``zh-Hant-TW``; "" stays ""."""
    parts = [p for p in re.split(r"[-_]", tag.strip()) if p]
    out = [parts[0].lower()] if parts else []
    for part in parts[1:]:
        if len(part) == 4 and part.isalpha():
            out.append(part.title())
        elif len(part) == 2 or (len(part) == 3 and part.isdigit()):
            out.append(part.upper())
        else:
            out.append(part.lower())
    return "-".join(out)


@lru_cache(maxsize=1024)
def language_family(tag: str) -> tuple[str, ...]:
    """``tag`` and its parent languages, nearest first, by CLDR's parent locales and else by truncation.

    "pt-MZ" -> ("pt-MZ", "pt-PT", "pt"); "pt-BR" -> ("pt-BR", "pt"); "es-AR" -> ("es-AR", "es-419", "es");
    "zh-Hant-TW" -> ("zh-Hant-TW", "zh-Hant", "zh"); "" -> (). Tags are normalised (:func:`normalise_tag`).
    """
    parents: Mapping[str, str] = get_global("parent_exceptions")
    family: list[str] = []
    current = normalise_tag(tag)
    while current and current not in family:
        family.append(current)
        parent = parents.get(current.replace("-", "_"), "root")
        current = normalise_tag(parent) if parent != "root" else current.rpartition("-")[0]
    return tuple(family)


def with_country(tag: str, country: str) -> str:
    """``tag`` made regional with an ISO 3166 ``country`` when it names none: ("pt", "MZ") -> "pt-MZ".

    A tag that already has a region ("pt-BR"), a blank tag or a country that is not two letters or three
    digits is returned normalised and unchanged.
    """
    normal = normalise_tag(tag)
    code = country.strip().upper()
    if not normal or not re.fullmatch(r"[A-Z]{2}|\d{3}", code):
        return normal
    subtags = normal.split("-")
    if any(len(part) == 2 or (len(part) == 3 and part.isdigit()) for part in subtags[1:]):
        return normal
    return f"{normal}-{code}"


def isolate(text: str) -> str:
    """``text`` between FIRST STRONG ISOLATE and POP DIRECTIONAL ISOLATE (U+2068 ... U+2069): a name or a date
    inside a sentence of the other direction keeps its own order and does not move the words around it."""
    return f"\u2068{text}\u2069" if text else text


def isolate_ltr(text: str) -> str:
    """``text`` (a URL or an address) as a left-to-right isolate, U+2066 ... U+2069, with a NO-BREAK SPACE
    inside each end: clients turning URLs into links stop at it (it is whitespace to them), not at an
    invisible character, and :func:`wrap_text` never puts a mark on a line of its own there."""
    return f"\u2066\u00a0{text}\u00a0\u2069" if text else text


@lru_cache(maxsize=256)
def locale_for(tag: str) -> Locale:
    """The Babel locale of a BCP 47 tag. Raises ValueError or babel.UnknownLocaleError for unknown tags."""
    return Locale.parse(tag, sep="-")


def is_rtl(locale: Locale) -> bool:
    """True for right-to-left scripts (Arabic, Hebrew, ...)."""
    return bool(locale.character_order == "right-to-left")


#: CLDR's pt and pt-PT put the offset first ("-03:00 GMT"), which Portuguese readers do not write: they use
#: "GMT-03:00" like the other languages here.
_OFFSET_FIRST = frozenset({"pt"})
#: CLDR's pt glue of a full date and a time lacks the comma before the time that pt-PT and Brazilian style
#: guides put there ("segunda-feira, 7 de março de 2022, 10:00").
_DATE_TIME_GLUE = {"pt": "{1}, {0}"}
#: A GMT/UTC label's sign and digits ("GMT-03:00", "غرينتش-03:00") that a browser must not break apart.
_SPACES = re.compile(r"[ \t]+")
_OFFSET_LABEL = re.compile(r"(GMT|UTC|غرينتش)([+\-\u2212])(\d)")


def zone_label(moment: datetime, locale: Locale) -> str:
    """ "Apia, GMT+13:00" for IANA zones, "GMT-03:00" for fixed offsets, in ``locale`` (moment aware)."""
    require_aware(moment, "moment")
    gmt = get_timezone_gmt(moment, locale=Locale("en") if locale.language in _OFFSET_FIRST else locale)
    if isinstance(moment.tzinfo, ZoneInfo) and "/" in moment.tzinfo.key:
        city = get_timezone_location(moment.tzinfo, locale=locale, return_city=True)
        return f"{city}{'،' if is_rtl(locale) else ','} {gmt}"
    return gmt


def date_time(moment: datetime, locale: Locale) -> str:
    """Full date and short time joined by the locale's own pattern, then the zone label in parentheses."""
    require_aware(moment, "moment")
    glue = _DATE_TIME_GLUE.get(locale.language) or re.sub(
        r"'([^']*)'", r"\1", str(locale.datetime_formats["full"])
    )
    text = glue.replace("{1}", format_date(moment, "full", locale=locale)).replace(
        "{0}", format_time(moment, "short", locale=locale)
    )
    return f"{text} ({zone_label(moment, locale)})"


def duration_text(delta: timedelta, locale: Locale) -> str:
    """Exact hours and minutes in words: "3 hours", "1 hour and 30 minutes" (never rounded)."""
    hours, minutes = divmod(int(delta.total_seconds()) // 60, 60)
    parts = [format_unit(hours, "duration-hour", locale=locale)] if hours else []
    if minutes or not parts:
        parts.append(format_unit(minutes, "duration-minute", locale=locale))
    return format_list(parts, locale=locale)


@lru_cache(maxsize=256)
def word_list(items: tuple[str, ...], language: str) -> str:
    """ "A, B and C" with the language's CLDR list pattern; Spanish "y" becomes "e" before an /i/ sound."""
    text = format_list(list(items), locale=locale_for(language))
    if language.split("-")[0] == "es":
        text = _SPANISH_E.sub(" e ", text)
    return text


LeadUnit = Literal["day", "hour", "minute", "second"]


@lru_cache(maxsize=256)
def lead_words(before: timedelta, language: str, unit: LeadUnit = "second") -> str:
    """How long before the start, in words with a direction: "in 3 days", "dans 3 jours"; with ``unit``
    "hour" or "minute" the time is said in that unit, never rounded up to a larger one ("in 13 hours")."""
    if unit == "second":
        return format_timedelta(before, add_direction=True, locale=locale_for(language))
    return format_timedelta(
        before, granularity=unit, threshold=10_000, add_direction=True, locale=locale_for(language)
    )


@lru_cache(maxsize=256)
def language_names(tags: tuple[str, ...], language: str) -> str:
    """The languages ``tags`` named in ``language`` as a list: ("en", "fr") in "fr" -> "anglais et français"."""
    locale = locale_for(language)
    return word_list(
        tuple(locale_for(normalise_tag(t)).get_display_name(locale) or t for t in tags), language
    )


@lru_cache(maxsize=4096)
def session_times(
    start: datetime, end: datetime, local_zone: str, session_zone: str, language: str
) -> dict[str, Any]:
    """The date strings of a session for one (recipient zone, language); the same for every such recipient.

    Keys: start_local, start_local_date, start_local_day ("July 14", for subjects), start_local_time,
    end_local_time, local_zone, start_session_zone, session_zone (str), same_zone (bool), duration (str).
    Raises mailer.zones.UnknownZoneError.
    """
    require_aware(start, "start")
    require_aware(end, "end")
    locale = locale_for(language)
    here = resolve_zone(local_zone)
    local, local_end = start.astimezone(here), end.astimezone(here)
    in_session = start.astimezone(resolve_zone(session_zone))
    return {
        "start_local": date_time(local, locale),
        "start_local_date": format_date(local, "full", locale=locale),
        "start_local_day": format_skeleton("MMMMd", local, locale=locale),
        "start_local_time": format_time(local, "short", locale=locale),
        "end_local_time": format_time(local_end, "short", locale=locale),
        "local_zone": zone_label(local, locale),
        "start_session_zone": date_time(in_session, locale),
        "session_zone": zone_label(in_session, locale),
        "same_zone": local.utcoffset() == in_session.utcoffset(),
        "duration": duration_text(end - start, locale),
    }


class DateWords:
    """Formats any aware datetime for one render: in the recipient's zone or the session's, in one locale."""

    def __init__(self, locale: Locale, local_zone: tzinfo, session_zone: tzinfo) -> None:
        self.locale = locale
        self.local_zone = local_zone
        self.session_zone = session_zone

    def local(self, value: datetime) -> str:
        """Date, time and zone in the recipient's zone. Raises NaiveDatetimeError for a naive value."""
        return date_time(require_aware(value, "template datetime").astimezone(self.local_zone), self.locale)

    def local_date(self, value: datetime) -> str:
        return format_date(
            require_aware(value, "template datetime").astimezone(self.local_zone), "full", locale=self.locale
        )

    def local_time(self, value: datetime) -> str:
        return format_time(
            require_aware(value, "template datetime").astimezone(self.local_zone), "short", locale=self.locale
        )

    def session(self, value: datetime) -> str:
        """Date, time and zone in the session's own zone."""
        return date_time(require_aware(value, "template datetime").astimezone(self.session_zone), self.locale)


def keep_offsets_whole(html: str) -> str:
    """``html`` with WORD JOINERs (U+2060) around the sign of each GMT/UTC offset label, so that a narrow
    screen never breaks "(GMT-" from "03:00)" (UAX #14 lets browsers break after a hyphen-minus)."""
    return _OFFSET_LABEL.sub("\\1\u2060\\2\u2060\\3", html)


def wrap_text(text: str, width: int = 72) -> str:
    """Wrap lines longer than ``width`` columns at spaces (U+0020, tabs); never break a word or a URL, nor at a
    no-break space (U+00A0: inside :func:`isolate_ltr`, so its marks stay on the line of the URL they hold).

    Greedy: each output line takes as many words as fit. Continuation lines of an indented line or a list
    item ("  1. ", "- ") hang under its text; runs of whitespace inside a wrapped line become one space.
    """
    lines = []
    for line in text.split("\n"):
        if len(line) <= width:
            lines.append(line)
            continue
        match = _HANGING.match(line)
        hang = " " * (len(match.group(0)) if match else 0)
        prefix = line[: len(line) - len(line.lstrip(" \t"))]
        rest = " ".join(word for word in _SPACES.split(line) if word)
        while len(prefix) + len(rest) > width:
            room = width - len(prefix)
            cut = rest.rfind(" ", 0, room + 1)  # the last space that leaves the line within width
            if cut <= 0:  # the first word alone is longer: it goes whole
                cut = rest.find(" ")
                if cut == -1:
                    break
            lines.append(prefix + rest[:cut])
            prefix, rest = hang, rest[cut + 1 :]
        lines.append(prefix + rest)
    return "\n".join(lines)
