"""Dates, times, zones and words for one recipient (mailer/compose/localise.py, mailer/zones.py): the exact
strings, in zones whose offsets have minutes and where the recipient's date is not the session's."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from mailer.compose.localise import (
    DateWords,
    date_time,
    duration_text,
    isolate,
    isolate_ltr,
    locale_for,
    normalise_tag,
    session_times,
    with_country,
    word_list,
    zone_label,
)
from mailer.errors import NaiveDatetimeError
from mailer.zones import UnknownZoneError, canonical_zone_name, is_known_zone, resolve_zone

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


def test_date_words_in_french_use_the_french_calendar_in_each_zone() -> None:
    words = DateWords(locale_for("fr"), resolve_zone("Pacific/Kiritimati"), resolve_zone("GMT-3"))
    assert words.local(START) == "mercredi 14 juillet 2021, 03:00 (Kiritimati, UTC+14:00)"
    assert words.local_date(START) == "mercredi 14 juillet 2021"
    assert words.local_time(START) == "03:00"
    assert words.session(START) == "mardi 13 juillet 2021, 10:00 (UTC-03:00)"


def test_session_times_in_french_at_plus_05_45_with_a_half_hour_end() -> None:
    times = session_times(START, START + timedelta(hours=1, minutes=30), "Asia/Kathmandu", "GMT-3", "fr")
    assert (times["start_local"], times["end_local_time"], times["duration"]) == (
        "mardi 13 juillet 2021, 18:45 (Katmandou, UTC+05:45)",
        "20:15",
        "1\u00a0heure et 30 minutes",
    )


def test_quoted_literals_of_a_locales_date_time_pattern_are_written_plainly() -> None:
    # Occitan's full pattern is "{1} 'a' {0}": the quotes mark the literal "a" and are not printed.
    moment = START.astimezone(resolve_zone("Europe/Paris"))
    assert date_time(moment, locale_for("oc")) == "dimars 13 de julhet de 2021 a 15h00 (París, GMT+02:00)"


def test_naive_datetimes_are_refused_naming_what_was_naive() -> None:
    naive = datetime(2021, 7, 13, 13, 0)
    with pytest.raises(NaiveDatetimeError, match=r"^moment must be timezone-aware"):
        date_time(naive, locale_for("en"))
    with pytest.raises(NaiveDatetimeError, match=r"^moment must be timezone-aware"):
        zone_label(naive, locale_for("en"))
    with pytest.raises(NaiveDatetimeError, match=r"^start must be timezone-aware"):
        session_times(naive, END, "UTC", "UTC", "en")
    with pytest.raises(NaiveDatetimeError, match=r"^end must be timezone-aware"):
        session_times(START, naive, "UTC", "UTC", "en")
    words = DateWords(locale_for("en"), UTC, UTC)
    for method in (words.local, words.local_date, words.local_time, words.session):
        with pytest.raises(NaiveDatetimeError, match=r"^template datetime must be timezone-aware"):
            method(naive)


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


def test_durations_drop_seconds_and_are_said_in_the_readers_language() -> None:
    assert (
        duration_text(timedelta(hours=1, minutes=30, seconds=59), locale_for("en")) == "1 hour and 30 minutes"
    )
    assert duration_text(timedelta(hours=2), locale_for("fr")) == "2\u00a0heures"
    assert duration_text(timedelta(hours=1, minutes=30), locale_for("fr")) == "1\u00a0heure et 30 minutes"
    assert duration_text(timedelta(minutes=45), locale_for("de")) == "45 Minuten"


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


@pytest.mark.parametrize("written", ["UTC", "utc", "GMT", "gmt", " Z ", "z"])
def test_utc_by_any_of_its_names_is_utc(written: str) -> None:
    assert resolve_zone(written) is UTC
    assert canonical_zone_name(written) == "UTC"
    assert is_known_zone(written) is True


@pytest.mark.parametrize("written", ["Mars/Olympus_Mons", "UTC+15", "GMT+05:60", ""])
def test_unknown_zones_and_offsets_out_of_range_are_refused(written: str) -> None:
    assert is_known_zone(written) is False
    with pytest.raises(UnknownZoneError):
        resolve_zone(written)


def test_iana_names_are_stored_as_written() -> None:
    assert canonical_zone_name(" Asia/Kathmandu ") == "Asia/Kathmandu"
    assert is_known_zone("Asia/Kathmandu") is True


@pytest.mark.parametrize(
    ("tag", "country", "expected"),
    [
        ("pt", "mz", "pt-MZ"),
        ("es-419", "MX", "es-419"),  # a numeric region is a region
        ("zh-yue", "HK", "zh-yue-HK"),  # a three-letter subtag that is no region
        ("sr-Latn", "rs", "sr-Latn-RS"),
        ("pt", "BRA", "pt"),
    ],
)
def test_a_country_makes_a_tag_regional_only_when_it_names_no_region(
    tag: str, country: str, expected: str
) -> None:
    assert with_country(tag, country) == expected


def test_isolates_leave_empty_text_empty() -> None:
    assert (isolate(""), isolate_ltr("")) == ("", "")
    assert (isolate("Ana"), isolate_ltr("https://example.org/")) == (
        "\u2068Ana\u2069",
        "\u2066\u00a0https://example.org/\u00a0\u2069",
    )


@pytest.mark.parametrize(
    ("tag", "normal"),
    [
        ("CA-Valencia", "ca-valencia"),  # a variant: lower case
        ("zh-YUE-hk", "zh-yue-HK"),  # a three-letter extended language: lower case, the region upper
        ("sr_latn_rs", "sr-Latn-RS"),  # a script: title case
        ("ES_419", "es-419"),
        (" ", ""),
    ],
)
def test_tags_take_bcp47_case_per_subtag(tag: str, normal: str) -> None:
    assert normalise_tag(tag) == normal
