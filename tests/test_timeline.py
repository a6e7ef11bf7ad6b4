from __future__ import annotations

import copy
import dataclasses
from datetime import UTC, datetime, time, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from mailer.config import Audience, Offset, Step, StepKind, load_settings, parse_offset
from mailer.errors import NaiveDatetimeError
from mailer.timeline.plan import (
    SkipReason,
    due_steps,
    hold_for_window,
    materialise_at,
    message_due,
    next_moment,
    notice_step,
    plan,
    plan_moments,
    resolve_step,
    step_deadline,
    step_time,
)

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


@pytest.mark.parametrize(
    ("step", "max_late", "at", "reason"),
    [
        # reminder-1w (6 July 13:00 UTC) is followed by reminder-1d (12 July) and reminder-1h (13 July 12:00):
        # it ends when the next one, reminder-1d, is due.
        ("reminder-1w", timedelta(days=30), datetime(2021, 7, 12, 13, 0, tzinfo=UTC), SkipReason.SUPERSEDED),
        # reminder-1h with a day of lateness and no later reminder: the start (13:00 UTC) ends it.
        (
            "reminder-1h",
            timedelta(days=1),
            datetime(2021, 7, 13, 13, 0, tzinfo=UTC),
            SkipReason.SESSION_STARTED,
        ),
        # a step after the session is not ended by its start
        ("follow-up", timedelta(days=30), datetime(2021, 8, 13, 13, 0, tzinfo=UTC), SkipReason.TOO_LATE),
    ],
    ids=["superseded-by-the-next-of-its-kind", "before-the-session-ends-at-its-start", "after-the-session"],
)
def test_a_long_late_step_ends_at_the_next_of_its_kind_the_start_or_its_lateness(
    step: str, max_late: timedelta, at: datetime, reason: SkipReason
) -> None:
    long_late = dataclasses.replace(SERIES.step(step), max_late=max_late)
    deadline = step_deadline(SERIES, AFRICA, long_late)
    assert deadline.at == at
    assert deadline.reason is reason


def test_max_late_counts_from_the_base_the_message_was_meant_to_go() -> None:
    base = datetime(2021, 7, 12, 20, 0, tzinfo=UTC)
    deadline = step_deadline(SERIES, AFRICA, SERIES.step("reminder-1d"), base)
    assert deadline.at == datetime(2021, 7, 13, 8, 0, tzinfo=UTC)  # 12 h after the base
    assert deadline.reason is SkipReason.TOO_LATE


LOCAL_9 = dataclasses.replace(SERIES.step("reminder-1d"), local_time=time(9, 0))


def test_recipient_local_steps_are_materialised_two_days_before_their_step_time() -> None:
    assert materialise_at(AFRICA, LOCAL_9) == datetime(2021, 7, 10, 13, 0, tzinfo=UTC)
    assert materialise_at(AFRICA, SERIES.step("reminder-1d")) == datetime(2021, 7, 12, 13, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("zone", "expected"),
    [
        # The session (13 July 10:00 GMT-3 = 13:00 UTC) is already 14 July in Kiritimati (UTC+14):
        # "the day before, 09:00" there is 13 July 09:00 +14:00.
        ("Pacific/Kiritimati", datetime(2021, 7, 12, 19, 0, tzinfo=UTC)),
        # ... and still 13 July in Honolulu (UTC-10): 12 July 09:00 -10:00.
        ("Pacific/Honolulu", datetime(2021, 7, 12, 19, 0, tzinfo=UTC)),
        ("Asia/Kathmandu", datetime(2021, 7, 12, 3, 15, tzinfo=UTC)),  # +05:45
        ("Pacific/Chatham", datetime(2021, 7, 12, 20, 15, tzinfo=UTC)),  # +12:45 in July (+13:45 in summer)
        ("UTC+13:45", datetime(2021, 7, 12, 19, 15, tzinfo=UTC)),  # 14 July there
    ],
)
def test_recipient_local_steps_use_the_date_the_recipient_sees(zone: str, expected: datetime) -> None:
    assert message_due(AFRICA, LOCAL_9, zone) == expected


WINDOW = dataclasses.replace(SERIES.step("invitation"), send_window=(time(8, 0), time(20, 0)))


@pytest.mark.parametrize(
    ("local_due", "local_sent"),
    [
        (datetime(2021, 6, 1, 7, 59), datetime(2021, 6, 1, 8, 0)),
        (datetime(2021, 6, 1, 8, 0), datetime(2021, 6, 1, 8, 0)),  # exactly at opening: goes
        (datetime(2021, 6, 1, 19, 59), datetime(2021, 6, 1, 19, 59)),
        (datetime(2021, 6, 1, 20, 0), datetime(2021, 6, 2, 8, 0)),  # exactly at closing: next morning
        (datetime(2021, 6, 1, 23, 30), datetime(2021, 6, 2, 8, 0)),
        (datetime(2021, 6, 1, 0, 0), datetime(2021, 6, 1, 8, 0)),
    ],
)
@pytest.mark.parametrize("zone", ["Asia/Kathmandu", "UTC+13:45", "America/Argentina/Buenos_Aires"])
def test_send_window_opens_inclusive_and_closes_exclusive(
    zone: str, local_due: datetime, local_sent: datetime
) -> None:
    tz = ZoneInfo(zone) if "/" in zone else timezone(timedelta(hours=13, minutes=45))
    due = local_due.replace(tzinfo=tz).astimezone(UTC)
    assert hold_for_window(due, WINDOW, zone) == local_sent.replace(tzinfo=tz).astimezone(UTC)


def test_no_send_window_keeps_the_due_time() -> None:
    due = datetime(2021, 6, 1, 2, 0, tzinfo=UTC)
    assert hold_for_window(due, SERIES.step("invitation"), "Asia/Kathmandu") == due


def test_notice_steps_go_to_the_invited_on_a_date_change_and_to_calendar_holders_on_a_cancellation() -> None:
    notice = dict(
        kind=StepKind.NOTICE,
        offset=Offset(0, timedelta(0), "0h"),
        template="notice",
        auto=False,
        max_late=timedelta(days=30),
    )
    assert notice_step("date-changed", 3) == Step(name="date-changed-3", audience=Audience.INVITED, **notice)  # type: ignore[arg-type]
    assert notice_step("cancelled", 4) == Step(name="cancelled-4", audience=Audience.CALENDAR, **notice)  # type: ignore[arg-type]


def test_resolve_step_finds_configured_and_notice_steps_and_nothing_else() -> None:
    assert resolve_step(SERIES, "reminder-1d") is SERIES.step("reminder-1d")
    assert resolve_step(SERIES, "cancelled-12") == notice_step("cancelled", 12)
    assert resolve_step(SERIES, "date-changed-2") == notice_step("date-changed", 2)
    for name in ("cancelled-", "cancelled-x", "moved-2", "xcancelled-2", "cancelled-2x"):
        with pytest.raises(KeyError):
            resolve_step(SERIES, name)


def test_the_plan_has_every_session_and_step_in_time_order_with_deadlines() -> None:
    planned = plan(SERIES)
    assert len(planned) == len(SERIES.sessions) * len(SERIES.steps) == 24
    assert [item.at for item in planned] == sorted(item.at for item in planned)
    first = planned[0]
    assert (first.session.id, first.step.name, first.at) == (
        "africa-2021",
        "invitation",
        datetime(2021, 6, 1, 13, 0, tzinfo=UTC),
    )
    assert first.deadline == step_deadline(SERIES, AFRICA, SERIES.step("invitation"))
    assert [(item.session.id, item.step.name) for item in planned[4:7]] == [
        ("africa-2021", "reminder-1h"),
        ("africa-2021", "follow-up"),
        ("caribbean-2021", "invitation"),
    ]


def test_due_steps_includes_a_step_at_exactly_its_materialising_moment() -> None:
    at = datetime(2021, 6, 22, 13, 0, tzinfo=UTC)  # africa-2021's invitation-2
    assert [p.step.name for p in due_steps(SERIES, at)] == ["invitation", "invitation-2"]
    assert [p.step.name for p in due_steps(SERIES, at - timedelta(microseconds=1))] == ["invitation"]


NAIVE = datetime(2021, 7, 1, 12, 0)
NAIVE_SESSION = copy.copy(AFRICA)
object.__setattr__(NAIVE_SESSION, "start", NAIVE)  # Session refuses one; the functions check again


@pytest.mark.parametrize(
    ("call", "what"),
    [
        (lambda: step_time(NAIVE_SESSION, SERIES.step("invitation")), "session start"),
        (lambda: step_deadline(SERIES, AFRICA, SERIES.step("invitation"), NAIVE), "base"),
        (lambda: message_due(NAIVE_SESSION, SERIES.step("invitation"), "UTC"), "session start"),
        (lambda: message_due(AFRICA, SERIES.step("invitation"), "UTC", NAIVE), "scheduled_at"),
        (lambda: hold_for_window(NAIVE, WINDOW, "UTC"), "due"),
        (lambda: next_moment(SERIES, NAIVE, None), "after"),
        (lambda: next_moment(SERIES, START_UTC, NAIVE), "pending"),
        (lambda: due_steps(SERIES, NAIVE), "now"),
    ],
)
def test_a_naive_time_is_refused_naming_it(call: object, what: str) -> None:
    with pytest.raises(NaiveDatetimeError) as refused:
        call()  # type: ignore[operator]
    assert str(refused.value) == f"{what} must be timezone-aware, got naive 2021-07-01T12:00:00"


START_UTC = datetime(2021, 7, 13, 13, 0, tzinfo=UTC)


def test_every_computed_time_is_in_utc() -> None:
    local_due = message_due(AFRICA, LOCAL_9, "Asia/Kathmandu")
    times = [
        step_time(AFRICA, SERIES.step("reminder-1h")),  # an exact offset
        step_time(AFRICA, SERIES.step("reminder-1d")),  # a calendar offset
        local_due,
        message_due(AFRICA, SERIES.step("invitation"), "Asia/Kathmandu"),
        hold_for_window(datetime(2021, 6, 1, 23, 0, tzinfo=UTC), WINDOW, "Asia/Kathmandu"),
        step_deadline(
            SERIES, AFRICA, dataclasses.replace(SERIES.step("reminder-1h"), max_late=timedelta(days=1))
        ).at,
        materialise_at(AFRICA, LOCAL_9),
    ]
    assert all(moment.tzinfo is UTC for moment in times), [moment.tzinfo for moment in times]


def test_an_organisers_time_is_the_due_time_of_a_step_without_a_local_time() -> None:
    chosen = datetime(2021, 6, 2, 9, 30, tzinfo=UTC)
    assert message_due(AFRICA, SERIES.step("invitation"), "Asia/Kathmandu", chosen) == chosen
    assert message_due(AFRICA, SERIES.step("invitation"), "Asia/Kathmandu") == datetime(
        2021, 6, 1, 13, 0, tzinfo=UTC
    )


def test_a_cancelled_sessions_local_steps_are_not_materialised() -> None:
    local = dataclasses.replace(LOCAL_9, name="local-reminder")
    cancelled = dataclasses.replace(AFRICA, cancelled=True)
    assert plan_moments(dataclasses.replace(SERIES, sessions=(cancelled,), steps=(local,))) == [
        datetime(2021, 7, 12, 13, 0, tzinfo=UTC)  # the step's time only, not two days before
    ]
    assert plan_moments(dataclasses.replace(SERIES, sessions=(AFRICA,), steps=(local,))) == [
        datetime(2021, 7, 10, 13, 0, tzinfo=UTC),
        datetime(2021, 7, 12, 13, 0, tzinfo=UTC),
    ]


def test_a_step_at_the_same_time_as_another_of_its_kind_does_not_supersede_it() -> None:
    twin = dataclasses.replace(SERIES.step("reminder-1d"), name="reminder-1d-twin")
    series = dataclasses.replace(SERIES, steps=(*SERIES.steps, twin))
    deadline = step_deadline(series, AFRICA, SERIES.step("reminder-1d"))
    assert (deadline.at, deadline.reason) == (datetime(2021, 7, 13, 1, 0, tzinfo=UTC), SkipReason.TOO_LATE)


def test_next_moment_is_strictly_after_and_takes_an_earlier_pending_time() -> None:
    invitation = datetime(2021, 6, 1, 13, 0, tzinfo=UTC)
    invitation_2 = datetime(2021, 6, 22, 13, 0, tzinfo=UTC)
    assert next_moment(SERIES, invitation - timedelta(microseconds=1), None) == invitation
    assert next_moment(SERIES, invitation, None) == invitation_2
    pending = invitation + timedelta(days=1)
    assert next_moment(SERIES, invitation, pending) == pending
    assert next_moment(SERIES, invitation, invitation) == invitation_2  # not after: ignored
    assert next_moment(SERIES, invitation, invitation_2 + timedelta(days=1)) == invitation_2
    last = plan(SERIES)[-1].at
    assert next_moment(SERIES, last, None) is None
    assert next_moment(SERIES, last, last + timedelta(hours=1)) == last + timedelta(hours=1)
