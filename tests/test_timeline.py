from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from mailer.config import load_settings, parse_offset
from mailer.errors import NaiveDatetimeError
from mailer.timeline.plan import SkipReason, due_steps, step_deadline, step_time

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = load_settings(ROOT / "config", database_url="sqlite:///:memory:")
SERIES = SETTINGS.series
AFRICA = SERIES.session("africa-2021")


def test_default_timeline_of_the_african_session() -> None:
    times = {step.name: step_time(AFRICA, step) for step in SERIES.steps}
    utc = UTC
    assert times["invitation"] == datetime(2021, 6, 1, 13, 0, tzinfo=utc)
    assert times["invitation-2"] == datetime(2021, 6, 22, 13, 0, tzinfo=utc)
    assert times["reminder-1w"] == datetime(2021, 7, 6, 13, 0, tzinfo=utc)
    assert times["reminder-1d"] == datetime(2021, 7, 12, 13, 0, tzinfo=utc)
    assert times["reminder-1h"] == datetime(2021, 7, 13, 12, 0, tzinfo=utc)
    assert times["follow-up"] == datetime(2021, 7, 14, 13, 0, tzinfo=utc)


def _session_in(zone: str, start: datetime) -> object:
    return dataclasses.replace(AFRICA, zone_name=zone, start=start.replace(tzinfo=ZoneInfo(zone)))


@pytest.mark.parametrize(
    ("zone", "start", "offset", "expected_local"),
    [
        # Europe/Paris spring forward 28 March 2021: 1 day before a Monday 10:00 session is Sunday 10:00 CET.
        ("Europe/Paris", datetime(2021, 3, 29, 10, 0), "-1d", datetime(2021, 3, 28, 10, 0)),
        # Autumn back on 31 October 2021: a week before still 10:00 local.
        ("Europe/Paris", datetime(2021, 11, 2, 10, 0), "-1w", datetime(2021, 10, 26, 10, 0)),
        # Southern hemisphere: Sydney DST starts 3 October 2021 and ends 4 April 2021.
        ("Australia/Sydney", datetime(2021, 10, 4, 10, 0), "-1d", datetime(2021, 10, 3, 10, 0)),
        ("Australia/Sydney", datetime(2021, 4, 5, 10, 0), "-1w", datetime(2021, 3, 29, 10, 0)),
        ("Australia/Sydney", datetime(2021, 4, 5, 10, 0), "-1d", datetime(2021, 4, 4, 10, 0)),
        # Europe/Paris spring: a week before a session after the change is still 10:00 local.
        ("Europe/Paris", datetime(2021, 4, 1, 10, 0), "-1w", datetime(2021, 3, 25, 10, 0)),
    ],
)
def test_day_offsets_keep_local_wall_clock_across_dst(
    zone: str, start: datetime, offset: str, expected_local: datetime
) -> None:
    session = _session_in(zone, start)
    step = dataclasses.replace(SERIES.step("reminder-1d"), offset=parse_offset(offset))
    moment = step_time(session, step)  # type: ignore[arg-type]
    local = moment.astimezone(ZoneInfo(zone))
    assert local.replace(tzinfo=None) == expected_local
    # Across a change the real interval is not a whole number of days: it differs by the DST hour.
    start = session.start  # type: ignore[attr-defined]
    changed = start.utcoffset() != local.utcoffset()
    days = -parse_offset(offset).calendar_days
    assert (start - moment != timedelta(days=days)) is changed


def test_hour_offsets_are_exact_durations_across_dst() -> None:
    # Paris 28 March 2021 03:30 CEST session; "-2h" is 2 real hours before: 00:30 CET.
    session = _session_in("Europe/Paris", datetime(2021, 3, 28, 3, 30))
    step = dataclasses.replace(SERIES.step("reminder-1h"), offset=parse_offset("-2h"))
    moment = step_time(session, step)  # type: ignore[arg-type]
    assert session.start - moment == timedelta(hours=2)  # type: ignore[attr-defined]
    assert moment.astimezone(ZoneInfo("Europe/Paris")).strftime("%H:%M %Z") == "00:30 CET"


def test_deadlines_stop_at_session_start_and_next_step_of_same_kind() -> None:
    one_hour = step_deadline(SERIES, AFRICA, SERIES.step("reminder-1h"))
    assert one_hour.at == datetime(2021, 7, 13, 12, 30, tzinfo=UTC)
    assert one_hour.reason is SkipReason.TOO_LATE
    one_day = step_deadline(SERIES, AFRICA, SERIES.step("reminder-1d"))
    assert one_day.at == datetime(2021, 7, 13, 1, 0, tzinfo=UTC)
    long_late = dataclasses.replace(SERIES.step("reminder-1d"), max_late=timedelta(days=5))
    superseded = step_deadline(SERIES, AFRICA, long_late)
    assert superseded.at == datetime(2021, 7, 13, 12, 0, tzinfo=UTC)
    assert superseded.reason is SkipReason.SUPERSEDED
    after = step_deadline(SERIES, AFRICA, SERIES.step("follow-up"))
    assert after.at == datetime(2021, 7, 21, 13, 0, tzinfo=UTC)


def test_due_steps_refuses_naive_now() -> None:
    with pytest.raises(NaiveDatetimeError):
        due_steps(SERIES, datetime(2021, 7, 1))
    names = [(p.session.id, p.step.name) for p in due_steps(SERIES, datetime(2021, 6, 23, tzinfo=UTC))]
    assert names == [("africa-2021", "invitation"), ("africa-2021", "invitation-2")]
