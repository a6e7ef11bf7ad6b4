"""Notices by relationship (issue 13, cases 4 and 5): registrants, invitees not registered and people who
declined each read what fits them; a cancellation's calendar CANCEL goes to everyone who was sent the event
in a REQUEST, and only to them."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage

import pytest

from mailer.app import App
from mailer.compose.outgoing import Outgoing, notice_extra, sample_links
from mailer.config import Settings
from mailer.delivery.transport import SmtpRouter
from mailer.service import Service
from mailer.store.engine import transaction
from mailer.store.models import RegistrationStatus
from mailer.store.recipient import Recipient
from mailer.store.relationships import Relationship
from mailer.timeline.clock import VirtualClock
from mailer.timeline.plan import notice_step
from tests.conftest import RunningServer, with_smtp
from tests.factories import add_contact, register
from tests.test_session_changes import with_session

INVITATION_AT = datetime(2021, 6, 1, 13, 0, tzinfo=UTC)


def _run(app: App, settings: Settings, now: datetime) -> None:
    service = Service(App(settings, app.engine, app.factory), VirtualClock(now))

    async def tick() -> None:
        async with SmtpRouter(settings) as pool:
            service.materialise()
            await service.dispatch(pool)

    asyncio.run(tick())


def _text(message: EmailMessage) -> str:
    body = message.get_body(("plain",))
    assert body is not None
    return " ".join(body.get_content().split())


def _calendar(message: EmailMessage) -> str | None:
    for part in message.walk():
        if part.get_content_type() == "text/calendar":
            return str(part.get_content())
    return None


def _received(server: RunningServer, subject_start: str) -> dict[str, EmailMessage]:
    found: dict[str, EmailMessage] = {}
    for received in server.messages:
        message = received.parsed()
        if str(message["Subject"]).startswith(subject_start):
            [address] = received.rcpt_tos
            assert address not in found
            found[address] = message
    return found


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_notices_by_relationship_and_cancel_to_calendar_holders(app: App, smtp_server: RunningServer) -> None:
    settings = with_smtp(app.settings, smtp_server)
    session = settings.series.session("africa-2021")
    with transaction(app.factory) as db:
        registered = add_contact(db, "registered@example.org")
        add_contact(db, "invited@example.org")
        declined = add_contact(db, "declined@example.org")
    _run(app, settings, INVITATION_AT)  # the invitation, a calendar REQUEST, to all three
    with transaction(app.factory) as db:
        register(db, registered, session.id)
        register(db, declined, session.id, RegistrationStatus.DECLINED)
        late = add_contact(db, "late@example.org")  # on the list after the invitations went
    moved = with_session(settings, session.id, start=session.start + timedelta(days=7))
    _run(app, moved, INVITATION_AT + timedelta(days=1))
    changed = _received(smtp_server, "New date:")
    assert sorted(changed) == ["declined@example.org", "invited@example.org", "registered@example.org"]
    kept = "Your registration remains valid and the link to join is unchanged"
    assert kept in _text(changed["registered@example.org"])
    invited_text = _text(changed["invited@example.org"])
    assert kept not in invited_text
    assert "If you would like to take part on the new date, you can register here: http" in invited_text
    declined_text = _text(changed["declined@example.org"])
    assert kept not in declined_text
    assert "You let us know that you could not attend on the previous date." in declined_text
    for message in changed.values():
        calendar = _calendar(message)
        assert calendar is not None and "METHOD:REQUEST" in calendar and "SEQUENCE:1" in calendar

    with transaction(app.factory) as db:
        register(db, late, session.id)  # registered, but never sent the event
    cancelled = with_session(moved, session.id, cancelled=True)
    _run(app, cancelled, INVITATION_AT + timedelta(days=2))
    notices = _received(smtp_server, "Cancelled:")
    assert sorted(notices) == [
        "declined@example.org",
        "invited@example.org",
        "late@example.org",
        "registered@example.org",
    ]
    for address in ("declined@example.org", "invited@example.org", "registered@example.org"):
        calendar = _calendar(notices[address])
        assert calendar is not None
        assert "METHOD:CANCEL" in calendar and "SEQUENCE:2" in calendar and "STATUS:CANCELLED" in calendar
    assert _calendar(notices["late@example.org"]) is None  # no REQUEST before: no CANCEL
    assert "We apologise for any inconvenience" in _text(notices["registered@example.org"])
    assert "Please disregard the invitation." in _text(notices["invited@example.org"])
    assert "You had already let us know that you could not attend" in _text(notices["declined@example.org"])


REGISTERED_ONLY = {
    "en": "Your registration remains valid",
    "fr": "Votre inscription reste valable",
    "es": "Su inscripción sigue siendo válida",
    "pt": "Sua inscrição continua válida",
    "pt-PT": "A sua inscrição mantém-se válida",
    "ar": "يبقى تسجيلكم ساريًا",
}


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("language", sorted(REGISTERED_ONLY))
def test_only_registrants_read_that_their_registration_remains_valid(
    settings: Settings, language: str
) -> None:
    outgoing = Outgoing(settings)
    session = settings.series.session("africa-2021")
    step = notice_step("date-changed", 1)
    recipient = Recipient("someone@example.org", "Ada", language=language, time_zone="Africa/Lagos")
    seen: dict[Relationship, str] = {}
    for relationship in Relationship:
        rendered = outgoing.render(
            step,
            session,
            recipient,
            links=sample_links(settings),
            extra=notice_extra(step.name, session.start - timedelta(days=7), relationship),
        )
        seen[relationship] = rendered.text + rendered.html
    assert REGISTERED_ONLY[language] in seen[Relationship.REGISTERED]
    assert REGISTERED_ONLY[language] not in seen[Relationship.INVITED]
    assert REGISTERED_ONLY[language] not in seen[Relationship.DECLINED]
    assert seen[Relationship.INVITED] != seen[Relationship.DECLINED]
