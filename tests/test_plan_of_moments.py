"""One plan of moments: ``mailer simulate`` sends what the service, ticking every 15 minutes on the same
virtual clock, sends, at the same minutes, for generated series (recipient-local steps, send windows, offsets in
hours and days, zones from UTC-11 to UTC+14, DST dates). Every generated time is on a quarter hour, so a service
that wakes every 15 minutes acts at exactly the minutes anything is due."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import tempfile
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy import select

from mailer.app import App, open_app
from mailer.config import Audience, Settings, StepKind, load_settings, parse_offset
from mailer.config.series import Step
from mailer.delivery.transport import SmtpRouter
from mailer.service import Service
from mailer.simulate import simulate
from mailer.store.engine import transaction
from mailer.store.models import Message
from mailer.timeline.clock import VirtualClock
from mailer.timeline.plan import next_moment, plan, plan_moments
from tests.conftest import ROOT, RunningServer, with_smtp
from tests.factories import add_contact, register

BASE = load_settings(ROOT / "config", database_url="sqlite:///:memory:")
QUARTER = timedelta(minutes=15)
ZONES = (
    "Pacific/Pago_Pago",  # UTC-11
    "America/Los_Angeles",
    "America/Sao_Paulo",
    "UTC",
    "Europe/Paris",
    "Asia/Dubai",
    "Asia/Kathmandu",  # UTC+05:45
    "Asia/Tokyo",
    "Pacific/Chatham",  # UTC+12:45 / +13:45
    "Pacific/Kiritimati",  # UTC+14
)
# Around the European and North American DST changes of 2022, and two quiet dates.
DATES = (
    datetime(2022, 3, 7),
    datetime(2022, 3, 13),
    datetime(2022, 3, 27),
    datetime(2022, 4, 3),
    datetime(2022, 6, 10),
    datetime(2022, 11, 6),
)
OFFSETS = ("-2d", "-1d", "-3h", "-1h", "+2h", "+1d")


def quarter(hour_min: int, hour_max: int) -> st.SearchStrategy[time]:
    return st.builds(time, st.integers(hour_min, hour_max), st.sampled_from((0, 15, 30, 45)))


@st.composite
def steps(draw: st.DrawFn) -> tuple[Step, ...]:
    chosen = draw(st.lists(st.sampled_from(OFFSETS), min_size=1, max_size=3, unique=True))
    made = []
    for index, text in enumerate(chosen):
        offset = parse_offset(text)
        local_time = draw(st.none() | quarter(0, 23)) if offset.calendar_days else None
        window = None
        if draw(st.booleans()):
            opens = draw(quarter(6, 10))
            window = (opens, draw(quarter(max(opens.hour + 4, 14), 22)))
        after = offset.is_before is False
        made.append(
            Step(
                name=f"step-{index}",
                kind=StepKind.FOLLOW_UP if after else StepKind.REMINDER,
                offset=offset,
                template="follow-up" if after else "reminder",
                audience=Audience.REGISTRANTS,
                auto=True,
                max_late=draw(st.sampled_from((timedelta(minutes=30), timedelta(hours=12)))),
                local_time=local_time,
                send_window=window,
            )
        )
    return tuple(made)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[Settings, list[str]]:
    zone = draw(st.sampled_from(ZONES))
    day = draw(st.sampled_from(DATES))
    start = datetime.combine(day.date(), draw(quarter(0, 23)), tzinfo=ZoneInfo(zone))
    session = dataclasses.replace(BASE.series.session("africa-2021"), start=start, zone_name=zone)
    series = dataclasses.replace(BASE.series, sessions=(session,), steps=draw(steps()))
    recipients = draw(st.lists(st.sampled_from(ZONES), min_size=1, max_size=4, unique=True))
    return dataclasses.replace(BASE, series=series), recipients


def _open(settings: Settings, folder: Path, name: str, zones: list[str]) -> App:
    app = open_app(dataclasses.replace(settings, database_url=f"sqlite:///{folder / name}.db"))
    session = settings.series.sessions[0]
    with transaction(app.factory) as db:
        for index, zone in enumerate(zones):
            contact = add_contact(db, f"r{index}@example.org", time_zone=zone)
            register(db, contact, session.id)
    return app


def _outcomes(app: App) -> list[tuple[str, str, str, datetime | None]]:
    with transaction(app.factory) as db:
        rows = db.execute(
            select(Message.recipient, Message.step, Message.status, Message.sent_at).order_by(
                Message.recipient, Message.step
            )
        ).all()
    return [(recipient, step, str(status), sent) for recipient, step, status, sent in rows]


async def _tick_by_tick(app: App, start: datetime, end: datetime) -> None:
    clock = VirtualClock(start)
    service = Service(app, clock)
    async with SmtpRouter(app.settings) as pool:
        while clock.now() <= end:
            service.materialise()
            await service.dispatch(pool)
            clock.advance(QUARTER)


@hypothesis_settings(
    max_examples=int(os.environ.get("MOMENTS_EXAMPLES", "12")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(scenarios())
def test_simulate_sends_what_the_ticking_service_sends(
    smtp_server: RunningServer, scenario: tuple[Settings, list[str]]
) -> None:
    settings, zones = scenario
    settings = with_smtp(settings, smtp_server)
    start = plan_moments(settings.series)[0] - timedelta(hours=1)
    end = max(item.deadline.at for item in plan(settings.series)) + timedelta(hours=1)
    with tempfile.TemporaryDirectory() as folder:
        simulated = _open(settings, Path(folder), "simulated", zones)
        ticking = _open(settings, Path(folder), "ticking", zones)
        try:
            asyncio.run(simulate(simulated, start=start, end=end))
            asyncio.run(_tick_by_tick(ticking, start, end))
            expected = _outcomes(ticking)
            assert expected, "every scenario queues something"
            assert _outcomes(simulated) == expected
        finally:
            simulated.close()
            ticking.close()


def test_tokyo_and_kathmandu_get_the_local_reminder_on_time(smtp_server: RunningServer) -> None:
    # Issue case 1: reminder-1d at 09:00 recipient-local; the session is 2022-03-07 10:00 GMT-3.
    steps = tuple(
        dataclasses.replace(step, local_time=time(9, 0)) if step.name == "reminder-1d" else step
        for step in BASE.series.steps
    )
    session = BASE.series.session("latin-america-2022")
    series = dataclasses.replace(BASE.series, sessions=(session,), steps=steps)
    settings = with_smtp(dataclasses.replace(BASE, series=series), smtp_server)
    with tempfile.TemporaryDirectory() as folder:
        app = _open(settings, Path(folder), "demo", ["Asia/Tokyo", "Asia/Kathmandu"])
        try:
            asyncio.run(
                simulate(
                    app, start=datetime(2022, 3, 1, tzinfo=UTC), end=datetime(2022, 3, 7, 11, tzinfo=UTC)
                )
            )
            sent = {(r, s): (st_, at) for r, s, st_, at in _outcomes(app)}
        finally:
            app.close()
    assert sent[("r0@example.org", "reminder-1d")] == ("sent", datetime(2022, 3, 6, 0, 0, tzinfo=UTC))
    assert sent[("r1@example.org", "reminder-1d")] == ("sent", datetime(2022, 3, 6, 3, 15, tzinfo=UTC))


def test_next_moment_includes_the_store_and_the_materialising_of_local_steps() -> None:
    steps = tuple(
        dataclasses.replace(step, local_time=time(9, 0)) if step.name == "reminder-1d" else step
        for step in BASE.series.steps
    )
    session = BASE.series.session("latin-america-2022")
    series = dataclasses.replace(BASE.series, sessions=(session,), steps=steps)
    after = datetime(2022, 3, 1, tzinfo=UTC)
    # reminder-1d is at 2022-03-06 13:00 UTC; its wave is materialised two days earlier.
    assert next_moment(series, after, None) == datetime(2022, 3, 4, 13, 0, tzinfo=UTC)
    pending = datetime(2022, 3, 2, 9, 15, tzinfo=UTC)
    assert next_moment(series, after, pending) == pending
    assert next_moment(series, datetime(2022, 3, 20, tzinfo=UTC), None) is None
