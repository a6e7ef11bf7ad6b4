"""Dates, times, zones and words for one recipient (mailer/compose/localise.py, mailer/zones.py): the exact
strings, in zones whose offsets have minutes and where the recipient's date is not the session's."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from mailer.compose.localise import (
    DateWords,
    duration_text,
    locale_for,
    session_times,
    word_list,
    zone_label,
)
from mailer.zones import canonical_zone_name, resolve_zone

START = datetime(2021, 7, 13, 13, 0, tzinfo=UTC)  # africa-2021: 10:00 GMT-3
END = START + timedelta(hours=3)
NNBSP = "\u202f"  # CLDR's space before AM/PM in English


def test_session_times_in_kathmandu_keep_the_offsets_minutes() -> None:
    times = session_times(START, END, "Asia/Kathmandu", "GMT-3", "en")
    assert times == {
        "start_local": f"Tuesday, July 13, 2021, 6:45{NNBSP}PM (Kathmandu, GMT+05:45)",
        "start_local_date": "Tuesday, July 13, 2021",
        "start_local_day": "July 13",
        "start_local_time": f"6:45{NNBSP}PM",
        "end_local_time": f"9:45{NNBSP}PM",
        "local_zone": "Kathmandu, GMT+05:45",
        "start_session_zone": f"Tuesday, July 13, 2021, 10:00{NNBSP}AM (GMT-03:00)",
        "session_zone": "GMT-03:00",
        "same_zone": False,
        "duration": "3 hours",
    }


def test_session_times_on_the_recipients_next_day_at_plus_13_45() -> None:
    times = session_times(START, END, "UTC+13:45", "GMT-3", "en")
    assert times["start_local"] == f"Wednesday, July 14, 2021, 2:45{NNBSP}AM (GMT+13:45)"
    assert times["start_local_day"] == "July 14"
    assert times["end_local_time"] == f"5:45{NNBSP}AM"
    assert times["start_session_zone"] == f"Tuesday, July 13, 2021, 10:00{NNBSP}AM (GMT-03:00)"


def test_session_times_for_a_spanish_reader_in_honolulu() -> None:
    times = session_times(START, END, "Pacific/Honolulu", "GMT-3", "es-AR")
    assert times["start_local"] == "martes, 13 de julio de 2021, 03:00 (Honolulú, GMT-10:00)"
    assert (times["start_local_time"], times["end_local_time"]) == ("03:00", "06:00")
    assert times["duration"] == "3 horas"


def test_the_same_offset_is_the_same_zone() -> None:
    assert session_times(START, END, "America/Argentina/Buenos_Aires", "GMT-3", "en")["same_zone"] is True
    assert session_times(START, END, "UTC+03:00", "GMT-3", "en")["same_zone"] is False


def test_date_words_show_local_values_in_the_recipients_zone_and_session_values_in_the_sessions() -> None:
    words = DateWords(locale_for("en"), resolve_zone("Pacific/Kiritimati"), resolve_zone("GMT-3"))
    assert words.local(START) == f"Wednesday, July 14, 2021, 3:00{NNBSP}AM (Kiritimati, GMT+14:00)"
    assert words.local_date(START) == "Wednesday, July 14, 2021"
    assert words.local_time(START) == f"3:00{NNBSP}AM"
    assert words.session(START) == f"Tuesday, July 13, 2021, 10:00{NNBSP}AM (GMT-03:00)"


@pytest.mark.parametrize("language", ["es", "es-AR", "es-419", "es-MX", "es-ES"])
def test_spanish_and_its_regional_tags_say_e_before_an_i_sound(language: str) -> None:
    assert word_list(("Francia", "Italia", "Inglaterra"), language) == "Francia, Italia e Inglaterra"


@pytest.mark.parametrize(
    ("language", "expected"),
    [
        ("en", "France, Italy, and Ireland"),
        ("fr", "France, Italy et Ireland"),
        ("pt", "France, Italy e Ireland"),
    ],
)
def test_other_languages_keep_their_own_list_words(language: str, expected: str) -> None:
    assert word_list(("France", "Italy", "Ireland"), language) == expected


@pytest.mark.parametrize(
    ("delta", "expected"),
    [
        (timedelta(hours=3), "3 hours"),
        (timedelta(hours=1), "1 hour"),
        (timedelta(hours=1, minutes=30), "1 hour and 30 minutes"),
        (timedelta(hours=2, minutes=1), "2 hours and 1 minute"),
        (timedelta(minutes=45), "45 minutes"),
        (timedelta(0), "0 minutes"),
    ],
)
def test_durations_are_exact_hours_and_minutes(delta: timedelta, expected: str) -> None:
    assert duration_text(delta, locale_for("en")) == expected


@pytest.mark.parametrize(
    ("zone", "label"),
    [
        ("UTC+05:45", "GMT+05:45"),
        ("GMT+13:45", "GMT+13:45"),
        ("GMT-3", "GMT-03:00"),
        ("UTC-09:30", "GMT-09:30"),
    ],
)
def test_fixed_offset_labels_keep_their_minutes(zone: str, label: str) -> None:
    assert zone_label(START.astimezone(resolve_zone(zone)), locale_for("en")) == label


@pytest.mark.parametrize(
    ("written", "offset", "canonical"),
    [
        ("UTC+05:45", timedelta(hours=5, minutes=45), "UTC+05:45"),
        ("GMT+5:45", timedelta(hours=5, minutes=45), "UTC+05:45"),
        ("UTC+0545", timedelta(hours=5, minutes=45), "UTC+05:45"),
        ("GMT+13:45", timedelta(hours=13, minutes=45), "UTC+13:45"),
        ("GMT-3", timedelta(hours=-3), "UTC-03:00"),
        ("UTC-09:30", -timedelta(hours=9, minutes=30), "UTC-09:30"),
        ("utc+14", timedelta(hours=14), "UTC+14:00"),
    ],
)
def test_written_offsets_keep_hours_minutes_and_sign(written: str, offset: timedelta, canonical: str) -> None:
    zone = resolve_zone(written)
    assert zone.utcoffset(None) == offset
    assert zone == timezone(offset)
    assert canonical_zone_name(written) == canonical
