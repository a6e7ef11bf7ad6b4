"""Does a registration report belong to the session it is imported into? Its preamble's title and date decide.

Shapes
    report_heading(preamble) -> ReportHeading                 the topic and scheduled time the preamble names
    mismatch(heading, session, sessions, zone) -> str         "" when it fits, else what differs (both shown)

A webinar platform's report opens with a preamble such as ``Topic,Webinar ID,Scheduled Time,Time Zone`` over
``Budapest Convention webinar: African Region,927...,2021-07-13 10:00 AM,"Buenos Aires, Georgetown"``.

- **Date**: the scheduled day, read in the report's zone, must be the session's start day in the session's
  zone (or, the report's zone being unknown, the same calendar day as written).
- **Title**: topic and titles are compared by their words (folded, accents dropped, short words ignored):
  the topic must share at least one word with the session's title or region name, and no other session of
  the series may share more words with it (a topic naming the African Region is refused for Latin America).

A preamble without a topic or a scheduled time is not checked on that point (a bare table has nothing to check).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, tzinfo

from mailer.audience.locales import fold
from mailer.audience.report_times import parse_registration_time, preamble_value
from mailer.audience.table import Record
from mailer.config import Session
from mailer.errors import InstantRangeError

_TOPIC_KEYS = frozenset({"topic", "webinar topic", "meeting topic", "title", "tema", "titre", "sujet"})
_SCHEDULED_KEYS = frozenset(
    {"scheduled time", "start time", "scheduled start time", "date", "hora programada", "heure prevue"}
)
_MIN_WORD = 3  # shorter words ("of", "on", "la") say nothing about which session a title names


@dataclass(frozen=True)
class ReportHeading:
    """What a report's preamble says about its webinar: ``topic`` and ``scheduled`` as written ("" if absent)."""

    topic: str
    scheduled: str


def report_heading(preamble: Sequence[Record]) -> ReportHeading:
    """The topic and scheduled time named in a report's preamble."""
    return ReportHeading(preamble_value(preamble, _TOPIC_KEYS), preamble_value(preamble, _SCHEDULED_KEYS))


def _words(text: str) -> set[str]:
    return {word for word in fold(text, accents=False).split() if len(word) >= _MIN_WORD}


def _session_words(session: Session, region_name: str) -> set[str]:
    return _words(session.title) | _words(region_name)


def _scheduled_day(heading: ReportHeading, session: Session, zone: tzinfo) -> tuple[date | None, date | None]:
    """(day as written, day in the session's zone) of the report's scheduled time; None when unreadable."""
    try:
        moment = parse_registration_time(heading.scheduled, zone)
    except InstantRangeError:
        moment = None
    if moment is None:
        return None, None
    written = moment.astimezone(zone).date()
    return written, moment.astimezone(session.zone).date()


def mismatch(
    heading: ReportHeading,
    session: Session,
    sessions: Sequence[Session],
    region_names: dict[str, str],
    zone: tzinfo,
) -> str:
    """ "" when the report fits ``session``, else a sentence showing the report's title and date beside the
    session's. ``sessions`` are the series' sessions (to find the one a topic names better), ``region_names``
    region id -> display name, ``zone`` the zone the report's times are in."""
    problems: list[str] = []
    topic_words = _words(heading.topic)
    if topic_words:
        score = {
            other.id: len(topic_words & _session_words(other, region_names.get(other.region, "")))
            for other in sessions
        }
        best = max(sessions, key=lambda other: (score[other.id], other.id == session.id))
        if score[session.id] == 0 or best.id != session.id:
            better = f" (it names {best.id}: {best.title!r})" if best.id != session.id else ""
            problems.append(f"the report's title {heading.topic!r} is not {session.title!r}{better}")
    written, local = _scheduled_day(heading, session, zone)
    start_day = session.start.astimezone(session.zone).date()
    if written is not None and start_day not in (written, local):
        problems.append(
            f"the report's date {written.isoformat()} is not the session's {start_day.isoformat()}"
        )
    return "; ".join(problems)


__all__ = ["ReportHeading", "mismatch", "report_heading"]
