"""Relative words ("tomorrow", "in one hour", "in 13 hours") are decided by the moment a message is actually sent,
in the recipient's zone: send windows, lateness, midnight and the date line."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from mailer.app import App
from mailer.compose.context import send_lead
from mailer.config import Settings
from mailer.delivery.transport import SmtpRouter
from mailer.errors import NaiveDatetimeError
from mailer.service import Service
from mailer.store.engine import transaction
from mailer.timeline.clock import VirtualClock
from tests.conftest import RunningServer, with_smtp
from tests.factories import add_contact, register


def _latin_america_with_window(settings: Settings) -> Settings:
    steps = tuple(
        dataclasses.replace(step, send_window=(time(8, 0), time(20, 0)))
        if step.name == "reminder-1d"
        else step
        for step in settings.series.steps
    )
    return dataclasses.replace(settings, series=dataclasses.replace(settings.series, steps=steps))


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_reminder_held_until_the_session_morning_does_not_say_tomorrow(
    app: App, smtp_server: RunningServer
) -> None:
    # Issue 13 case 2: session 2022-03-07 10:00 GMT-3 = 21:00 in Singapore; reminder-1d (-1d) falls at 21:00
    # the evening before, outside 08:00-20:00, so it is held until 08:00 on the session day.
    settings = with_smtp(_latin_america_with_window(app.settings), smtp_server)
    session = settings.series.session("latin-america-2022")
    with transaction(app.factory) as db:
        contact = add_contact(db, "tan@example.org", region="latin-america", time_zone="Asia/Singapore")
        register(db, contact, session.id)
    clock = VirtualClock(datetime(2022, 3, 6, 13, 0, tzinfo=UTC))
    service = Service(App(settings, app.engine, app.factory), clock)

    async def run() -> None:
        async with SmtpRouter(settings) as pool:
            service.materialise()
            await service.dispatch(pool)
            assert smtp_server.messages == []  # 21:00 in Singapore: held
            clock.set(datetime(2022, 3, 7, 0, 0, tzinfo=UTC))  # 08:00 in Singapore
            service.materialise()
            await service.dispatch(pool)

    asyncio.run(run())
    [received] = [m for m in smtp_server.messages if "tan@example.org" in m.rcpt_tos]
    message = received.parsed()
    assert message["Subject"] == "Reminder: Budapest Convention webinar (Latin America), March 7"
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "the webinar starts in 13 hours." in " ".join(text.split())
    assert "tomorrow" not in text.lower()


SESSION_START = datetime(2022, 3, 7, 13, 0, tzinfo=UTC)


@dataclasses.dataclass(frozen=True)
class _Session:
    start: datetime


@pytest.mark.parametrize(
    ("zone", "sent_at", "expected"),
    [
        # On time, one day before: "tomorrow" in Lagos.
        ("Africa/Lagos", SESSION_START - timedelta(days=1), ("day", "")),
        # 10:00 UTC is 23:00 on 6 March in Pago Pago (UTC-11), the start 02:00 on 7 March there: tomorrow.
        ("Pacific/Pago_Pago", SESSION_START - timedelta(hours=3), ("day", "")),
        # Across the date line: 13:00 UTC is 03:00 on 8 March in Kiritimati; at 10:00 UTC on 7 March it is
        # 00:00 on 8 March there: the same day, 3 hours left.
        ("Pacific/Kiritimati", SESSION_START - timedelta(hours=3), ("", "in 3 hours")),
        # Just before midnight in Kiritimati (23:59 on 7 March): the start is tomorrow there.
        ("Pacific/Kiritimati", SESSION_START - timedelta(hours=3, minutes=1), ("day", "")),
        # A one-hour reminder sent 30 minutes late says the minutes left.
        ("Europe/Paris", SESSION_START - timedelta(minutes=30), ("", "in 30 minutes")),
        ("Europe/Paris", SESSION_START - timedelta(hours=1), ("hour", "")),
        # A week before, and after the start: nothing relative.
        ("Asia/Kathmandu", SESSION_START - timedelta(days=7), ("week", "")),
        ("Asia/Kathmandu", SESSION_START + timedelta(minutes=1), ("", "")),
        # Boundaries: at the start nothing; "in one hour" from 50 to 70 minutes inclusive; whole minutes under
        # two hours.
        ("Europe/Paris", SESSION_START, ("", "")),
        ("Europe/Paris", SESSION_START - timedelta(minutes=50), ("hour", "")),
        ("Europe/Paris", SESSION_START - timedelta(minutes=70), ("hour", "")),
        ("Europe/Paris", SESSION_START - timedelta(minutes=71, seconds=30), ("", "in 71 minutes")),
        ("Europe/Paris", SESSION_START - timedelta(minutes=90), ("", "in 90 minutes")),
        ("Europe/Paris", SESSION_START - timedelta(hours=2), ("", "in 2 hours")),
        # Whole hours left, never rounded up: 21 h 30 min before 23:00 in Brisbane (UTC+10) is "21 hours".
        ("Australia/Brisbane", SESSION_START - timedelta(hours=21, minutes=30), ("", "in 21 hours")),
        # Days on the recipient's calendar, never turned into weeks.
        ("Europe/Paris", SESSION_START - timedelta(days=25), ("", "in 25 days")),
    ],
)
def test_send_lead_around_midnight_and_the_date_line(
    zone: str, sent_at: datetime, expected: tuple[str, str]
) -> None:
    session = _Session(SESSION_START.astimezone(ZoneInfo("America/Sao_Paulo")))
    assert send_lead(session, ZoneInfo(zone), sent_at, "en") == expected  # type: ignore[arg-type]


def test_a_naive_send_moment_is_refused_by_name() -> None:
    with pytest.raises(NaiveDatetimeError, match=r"^sent_at must be timezone-aware"):
        send_lead(_Session(SESSION_START), ZoneInfo("UTC"), datetime(2022, 3, 7, 12, 0), "en")  # type: ignore[arg-type]
