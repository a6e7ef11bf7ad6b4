"""Calendar entries: what the iCalendar says (parsed back with icalendar), how it travels in the message, and
the whole life of one event through the real service: invitation, reschedule (same UID, SEQUENCE 1, new
times) and cancellation (METHOD:CANCEL, SEQUENCE 2), on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime, timedelta, timezone
from email.message import EmailMessage
from pathlib import Path

import icalendar
import pytest

from mailer.app import App
from mailer.compose.ics import CalendarPart, Method, build_calendar, calendar_method, event_uid
from mailer.compose.render import Rendered
from mailer.compose.wire import Composer
from mailer.config import Settings, StepKind, load_settings
from mailer.delivery.pool import SmtpPool
from mailer.errors import NaiveDatetimeError
from mailer.message_ids import make_message_id
from mailer.service import Service
from mailer.store.engine import transaction
from mailer.store.recipient import Recipient
from mailer.timeline.clock import VirtualClock
from mailer.timeline.plan import notice_step
from tests.conftest import RunningServer, with_smtp
from tests.factories import add_contact, register
from tests.reference_message import regenerate
from tests.test_mime import parse

ROOT = Path(__file__).resolve().parent.parent
STAMP = datetime(2021, 6, 1, 13, 0, 5, tzinfo=UTC)
INVITATION_AT = datetime(2021, 6, 1, 13, 0, tzinfo=UTC)
UID = "africa-2021.budapest-convention-2021@example.org"
ZOE = Recipient("zoe.smith@example.org", 'Zoë "Q" Smith\r\nBcc: x@example.org', "Hon.", language="fr")


@pytest.fixture(scope="module")
def shipped() -> Settings:
    return load_settings(ROOT / "config", database_url="sqlite://")


def calendar_of(
    shipped: Settings, method: Method = Method.REQUEST, sequence: int = 0, **changes: object
) -> CalendarPart:
    arguments: dict[str, object] = {
        "sequence": sequence,
        "method": method,
        "organiser_name": shipped.sender.name,
        "organiser_address": shipped.sender.address,
        "attendee": ZOE,
        "stamp": STAMP,
        "summary": "Webinaire parlementaire sur la Convention de Budapest : Région africaine",
        "language": "fr",
    }
    arguments.update(changes)
    series = shipped.series
    return build_calendar(series, series.session("africa-2021"), **arguments)  # type: ignore[arg-type]


def event(data: bytes) -> tuple[icalendar.Calendar, icalendar.Event]:
    calendar = icalendar.Calendar.from_ical(data)
    events = calendar.walk("VEVENT")
    assert len(events) == 1
    return calendar, events[0]


def assert_valid_lines(data: bytes) -> None:
    """CRLF only, every line at most 75 octets (RFC 5545 §3.1), valid UTF-8, each TZID with its VTIMEZONE."""
    assert data.endswith(b"\r\n") and data.count(b"\n") == data.count(b"\r\n")
    assert all(len(line) <= 75 for line in data.split(b"\r\n")), [
        line for line in data.split(b"\r\n") if len(line) > 75
    ]
    text = data.decode("utf-8")
    calendar = icalendar.Calendar.from_ical(data)
    zones = {str(zone["TZID"]) for zone in calendar.walk("VTIMEZONE")}
    used = {
        part.split("=", 1)[1].split(":")[0].split(";")[0]
        for part in text.replace("\r\n ", "").split(";")
        if part.startswith("TZID=")
    }
    assert used <= zones  # none here: every time is UTC


def test_a_request_says_everything_a_calendar_needs(shipped: Settings) -> None:
    part = calendar_of(shipped)
    assert_valid_lines(part.data)
    calendar, entry = event(part.data)
    session = shipped.series.session("africa-2021")
    assert (calendar["METHOD"], calendar["VERSION"], part.method) == ("REQUEST", "2.0", Method.REQUEST)
    assert str(entry["UID"]) == "africa-2021.budapest-convention-2021@example.org"
    assert str(entry["UID"]) == event_uid(shipped.series, session, "example.org")
    assert entry["SEQUENCE"] == 0 and str(entry["STATUS"]) == "CONFIRMED"
    assert entry["DTSTART"].dt == datetime(2021, 7, 13, 13, 0, tzinfo=UTC) == session.start  # 10:00 GMT-3
    assert entry["DTEND"].dt == datetime(2021, 7, 13, 16, 0, tzinfo=UTC)
    assert entry["DTSTAMP"].dt == STAMP
    assert b"DTSTART:20210713T130000Z\r\n" in part.data and b"TZID" not in part.data
    assert str(entry["SUMMARY"]) == "Webinaire parlementaire sur la Convention de Budapest : Région africaine"
    assert entry["SUMMARY"].params["LANGUAGE"] == "fr"
    assert str(entry["LOCATION"]) == str(entry["URL"]) == session.join_url
    description = str(entry["DESCRIPTION"])
    # The agenda in the calendar's language (issue 13 case 7), not English.
    assert session.join_url in description and "1. Allocutions d’ouverture" in description
    assert "Opening remarks" not in description
    organiser = entry["ORGANIZER"]
    assert (str(organiser), organiser.params["CN"]) == (
        "mailto:webinars@example.org",
        "Budapest Convention webinars",
    )
    attendee = entry["ATTENDEE"]
    assert str(attendee) == "mailto:zoe.smith@example.org"
    assert attendee.params["CN"] == "Hon. Zoë Q Smith Bcc: x@example.org"  # no quote, no line break
    assert (attendee.params["RSVP"], attendee.params["PARTSTAT"], attendee.params["ROLE"]) == (
        "FALSE",
        "NEEDS-ACTION",
        "REQ-PARTICIPANT",
    )


def test_a_cancellation_removes_the_same_event(shipped: Settings) -> None:
    request = calendar_of(shipped)
    cancel = calendar_of(shipped, Method.CANCEL, sequence=2)
    calendar, entry = event(cancel.data)
    assert (calendar["METHOD"], str(entry["STATUS"]), entry["SEQUENCE"]) == ("CANCEL", "CANCELLED", 2)
    assert entry["UID"] == event(request.data)[1]["UID"]


def test_the_method_follows_the_step(shipped: Settings) -> None:
    methods = {step.name: calendar_method(step) for step in shipped.series.steps}
    assert methods == {
        "invitation": Method.REQUEST,
        "invitation-2": Method.REQUEST,
        "reminder-1w": Method.REQUEST,
        "reminder-1d": Method.REQUEST,
        "reminder-1h": Method.REQUEST,
        "follow-up": None,
    }
    assert calendar_method(notice_step("date-changed", 3)) is Method.REQUEST
    assert calendar_method(notice_step("cancelled", 4)) is Method.CANCEL


def test_long_and_international_values_fold_and_round_trip(shipped: Settings) -> None:
    arabic = "ندوة برلمانية عبر الإنترنت حول اتفاقية بودابست بشأن الجريمة الإلكترونية: المنطقة الأفريقية"
    guest = Recipient("josé.núñez@assemblée.example", "واصف الحويطات " * 4 + "🎉", language="ar")
    part = calendar_of(shipped, summary=arabic, language="ar", attendee=guest)
    assert_valid_lines(part.data)
    _, entry = event(part.data)
    assert str(entry["SUMMARY"]) == arabic
    assert str(entry["ATTENDEE"]) == "mailto:jos%C3%A9.n%C3%BA%C3%B1ez@xn--assemble-h1a.example"  # RFC 6068
    assert entry["ATTENDEE"].params["CN"] == " ".join(guest.name.split())


def test_a_calendar_is_the_same_for_the_same_message_and_checks_its_input(shipped: Settings) -> None:
    assert calendar_of(shipped).data == calendar_of(shipped).data
    other = calendar_of(shipped, attendee=Recipient("ann@example.org", "Ann"))
    mine, theirs = (part.data.replace(b"\r\n ", b"").split(b"\r\n") for part in (calendar_of(shipped), other))
    assert [line for line in theirs if not line.startswith(b"ATTENDEE")] == [
        line for line in mine if not line.startswith(b"ATTENDEE")
    ]  # only the attendee differs
    assert [line for line in theirs if line.startswith(b"ATTENDEE")] == [
        b'ATTENDEE;CN="Ann";CUTYPE=INDIVIDUAL;PARTSTAT=NEEDS-ACTION;ROLE=REQ-PARTICIPANT;RSVP=FALSE'
        b":mailto:ann@example.org"
    ]
    with pytest.raises(ValueError, match="SEQUENCE"):
        calendar_of(shipped, sequence=-1)
    with pytest.raises(NaiveDatetimeError):
        calendar_of(shipped, stamp=datetime(2021, 6, 1))
    with pytest.raises(ValueError, match="not an email address"):
        calendar_of(shipped, organiser_address="nobody")


@pytest.mark.parametrize("method", list(Method))
def test_the_message_carries_the_calendar_as_outlook_and_gmail_expect(
    shipped: Settings, method: Method
) -> None:
    part = calendar_of(shipped, method, sequence=1)
    rendered = Rendered("Invitation", "Text\n", "<p>HTML</p>\n", "fr", "fr", StepKind.INVITATION)
    composer = Composer(shipped.sender, list_id="b.example.org", unsubscribe_mailto="u@example.org")
    raw = composer.compose(
        rendered, ZOE, message_id=make_message_id("m:1", "example.org"), date=STAMP, calendar=part
    ).data
    assert regenerate(raw)[1] == raw
    parsed = parse(raw)
    assert not parsed.defects and parsed.get_content_type() == "multipart/mixed"
    alternative, attachment = parsed.iter_parts()
    assert [p.get_content_type() for p in alternative.iter_parts()] == [
        "text/plain",
        "text/html",
        "text/calendar",
    ]
    inline = list(alternative.iter_parts())[2]
    assert (
        inline.get_param("method") == method.value == str(icalendar.Calendar.from_ical(part.data)["METHOD"])
    )
    assert inline.get_content_charset() == "utf-8"
    assert isinstance(attachment, EmailMessage)
    assert (attachment.get_content_type(), attachment.get_filename()) == ("application/ics", "invite.ics")
    assert attachment.get_content_disposition() == "attachment"
    assert inline.get_payload(decode=True) == attachment.get_payload(decode=True) == part.data  # CRLF kept
    assert parsed.get_body(("html",)).get_content().replace("\r\n", "\n") == "<p>HTML</p>\n"  # type: ignore[union-attr]


def test_without_a_calendar_the_message_is_unchanged(shipped: Settings) -> None:
    rendered = Rendered("Thanks", "Text\n", "<p>HTML</p>\n", "en", "en", StepKind.FOLLOW_UP)
    composer = Composer(shipped.sender, list_id="b.example.org", unsubscribe_mailto="u@example.org")
    raw = composer.compose(rendered, ZOE, message_id=make_message_id("m:2", "example.org"), date=STAMP).data
    assert parse(raw).get_content_type() == "multipart/alternative"


def _dispatch(app: App, now: datetime) -> None:
    service = Service(app, VirtualClock(now))

    async def run() -> None:
        async with SmtpPool(app.settings.smtp) as pool:
            service.materialise()
            await service.dispatch(pool)

    asyncio.run(run())


def _calendars(server: RunningServer) -> dict[tuple[str, str], icalendar.Event]:
    """(recipient, subject) -> the event of each received message with a calendar; checks both copies agree."""
    found: dict[tuple[str, str], icalendar.Event] = {}
    for received in server.messages:
        message = received.parsed()
        parts = [p for p in message.walk() if p.get_content_type() in ("text/calendar", "application/ics")]
        if not parts:
            continue
        inline, attached = parts
        data = inline.get_payload(decode=True)
        assert data == attached.get_payload(decode=True)
        calendar, entry = event(data)
        assert inline.get_param("method") == str(calendar["METHOD"])
        found[(received.rcpt_tos[0], str(message["Subject"]))] = entry
    return found


def test_one_event_through_invitation_reschedule_and_cancellation(
    app: App, smtp_server: RunningServer
) -> None:
    live = dataclasses.replace(app, settings=with_smtp(app.settings, smtp_server))
    with transaction(live.factory) as db:
        register(
            db,
            add_contact(db, "registered@example.org", language="fr", time_zone="Africa/Abidjan"),
            "africa-2021",
        )
        add_contact(db, "listed@example.org", language="pt", country="MZ", time_zone="Africa/Maputo")
    _dispatch(live, INVITATION_AT)  # the invitation wave (6 weeks before), REQUEST, SEQUENCE 0
    invitations = _calendars(smtp_server)
    assert len(invitations) == 2
    uids = {str(entry["UID"]) for entry in invitations.values()}
    assert uids == {UID}
    assert {entry["SEQUENCE"] for entry in invitations.values()} == {0}
    summaries = {recipient: str(entry["SUMMARY"]) for (recipient, _), entry in invitations.items()}
    assert summaries["listed@example.org"].startswith("Webinar parlamentar")  # pt + Mozambique: pt-PT

    session = live.settings.series.session("africa-2021")
    later = session.start + timedelta(days=7)
    moved = _with_session(live, start=later)
    _dispatch(moved, INVITATION_AT + timedelta(days=1))  # "date changed" notices to everyone invited
    notices = {key: entry for key, entry in _calendars(smtp_server).items() if key not in invitations}
    assert len(notices) == 2
    for entry in notices.values():
        assert (str(entry["UID"]), entry["SEQUENCE"], str(entry["STATUS"])) == (UID, 1, "CONFIRMED")
        assert entry["DTSTART"].dt == later.astimezone(UTC)

    cancelled = _with_session(moved, start=later, cancelled=True)
    # Cancellation notices to everyone whose calendar holds the event (issue 13 case 5), not registrants only.
    _dispatch(cancelled, INVITATION_AT + timedelta(days=2))
    seen = set(invitations) | set(notices)
    cancels = {key: entry for key, entry in _calendars(smtp_server).items() if key not in seen}
    assert sorted(key[0] for key in cancels) == ["listed@example.org", "registered@example.org"]
    for entry in cancels.values():
        assert (entry["SEQUENCE"], str(entry["STATUS"])) == (2, "CANCELLED")
        assert str(entry["UID"]) == UID
    for raw in (received.parsed() for received in smtp_server.messages[-2:]):
        assert [p.get_param("method") for p in raw.walk() if p.get_content_type() == "text/calendar"] == [
            "CANCEL"
        ]


def _with_session(app: App, **changes: object) -> App:
    series = app.settings.series
    sessions = tuple(
        dataclasses.replace(s, **changes) if s.id == "africa-2021" else s for s in series.sessions
    )
    settings = dataclasses.replace(app.settings, series=dataclasses.replace(series, sessions=sessions))
    return dataclasses.replace(app, settings=settings)
