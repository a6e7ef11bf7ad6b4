"""Reschedule, cancel, recipient-local times and send windows, on a virtual clock, SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from sqlalchemy import select

from mailer.app import App
from mailer.config import Settings, parse_offset
from mailer.store.engine import transaction
from mailer.store.models import Message, MessageStatus, SessionRow
from mailer.store.outbox import Outcome, claim_due, queue_wave, record_outcomes, sync_sessions
from mailer.store.outbox.queue import message_deadline
from tests.factories import add_contact, register

INVITATION_AT = datetime(2021, 6, 1, 13, 0, tzinfo=UTC)


def with_session(settings: Settings, session_id: str, **changes: object) -> Settings:
    sessions = tuple(
        dataclasses.replace(s, **changes) if s.id == session_id else s for s in settings.series.sessions
    )
    return dataclasses.replace(settings, series=dataclasses.replace(settings.series, sessions=sessions))


def with_step(settings: Settings, name: str, **changes: object) -> Settings:
    steps = tuple(dataclasses.replace(s, **changes) if s.name == name else s for s in settings.series.steps)
    return dataclasses.replace(settings, series=dataclasses.replace(settings.series, steps=steps))


def _send_invitations(app: App) -> None:
    session = app.settings.series.session("africa-2021")
    with transaction(app.factory) as db:
        sync_sessions(db, app.settings, INVITATION_AT)
        queue_wave(db, app.settings, session, app.settings.series.step("invitation"), INVITATION_AT)
    with transaction(app.factory) as db:
        claimed, _ = claim_due(
            db, app.settings, INVITATION_AT, worker="w", limit=100, lease=timedelta(minutes=5)
        )
        record_outcomes(
            db, app.settings, [Outcome(m.pk, MessageStatus.SENT, 250, "ok") for m in claimed], INVITATION_AT
        )


def test_reschedule_retimes_pending_steps_and_notifies_the_invited(app: App) -> None:
    with transaction(app.factory) as db:
        add_contact(db, "invited@example.org")
        registered = add_contact(db, "registered@example.org")
        register(db, registered, "africa-2021")
    _send_invitations(app)
    reminder_at = datetime(2021, 7, 6, 13, 0, tzinfo=UTC)
    session = app.settings.series.session("africa-2021")
    with transaction(app.factory) as db:
        queue_wave(db, app.settings, session, app.settings.series.step("reminder-1w"), reminder_at)
    # The organiser moves the session one week later, 10:00 GMT-3 still.
    later = session.start + timedelta(days=7)
    moved = with_session(app.settings, "africa-2021", start=later)
    now = reminder_at + timedelta(minutes=1)
    with transaction(app.factory) as db:
        changes = sync_sessions(db, moved, now)
    assert [(c.change, c.sequence, c.notices) for c in changes] == [("date-changed", 1, 2)]
    with transaction(app.factory) as db:
        again = sync_sessions(db, moved, now)  # a second process, or a restart: nothing more
        row = db.get(SessionRow, "africa-2021")
        assert again == [] and row is not None and row.sequence == 1
        assert row.previous_starts_at == session.start.astimezone(UTC)
        notices = db.scalars(select(Message.recipient).where(Message.step == "date-changed-1")).all()
        assert sorted(notices) == ["invited@example.org", "registered@example.org"]
        # The pending reminder follows the new date: one week before it, late by at most 12 hours.
        reminder = db.scalars(select(Message).where(Message.step == "reminder-1w")).one()
        assert reminder.status == "queued"
        assert reminder.due_at == (later - timedelta(days=7)).astimezone(UTC)
        assert reminder.deadline_at == reminder.due_at + timedelta(hours=12)


def test_cancel_skips_pending_and_notifies_registrants(app: App) -> None:
    with transaction(app.factory) as db:
        registered = add_contact(db, "registered@example.org")
        register(db, registered, "africa-2021")
        add_contact(db, "listed@example.org")
    session = app.settings.series.session("africa-2021")
    with transaction(app.factory) as db:
        sync_sessions(db, app.settings, INVITATION_AT)
        queue_wave(db, app.settings, session, app.settings.series.step("invitation"), INVITATION_AT)
    cancelled = with_session(app.settings, "africa-2021", cancelled=True)
    with transaction(app.factory) as db:
        changes = sync_sessions(db, cancelled, INVITATION_AT)
    assert [(c.change, c.skipped, c.notices) for c in changes] == [("cancelled", 2, 1)]
    with transaction(app.factory) as db:
        claimed, _ = claim_due(db, cancelled, INVITATION_AT, worker="w", limit=10, lease=timedelta(minutes=5))
    assert [(m.step, m.recipient.email) for m in claimed] == [("cancelled-1", "registered@example.org")]


def test_recipient_local_hour_step_across_zones(app: App) -> None:
    # "09:00 in the recipient's zone, 2 days before", for the 13 July 2021 13:00 UTC session.
    settings = with_step(app.settings, "reminder-1d", offset=parse_offset("-2d"), local_time=time(9, 0))
    zones = {
        "apia@example.org": "Pacific/Apia",
        "kathmandu@example.org": "Asia/Kathmandu",
        "tongatapu@example.org": "Pacific/Tongatapu",
        "lima@example.org": "America/Lima",
    }
    with transaction(app.factory) as db:
        for email, zone in zones.items():
            register(db, add_contact(db, email, time_zone=zone), "africa-2021")
    session = settings.series.session("africa-2021")
    with transaction(app.factory) as db:
        queue_wave(
            db, settings, session, settings.series.step("reminder-1d"), datetime(2021, 7, 9, tzinfo=UTC)
        )
        due = dict(db.execute(select(Message.recipient, Message.due_at)).all())  # type: ignore[arg-type]
        deadlines = dict(db.execute(select(Message.recipient, Message.deadline_at)).all())  # type: ignore[arg-type]
    # Each message's deadline counts from its own local time, not from the wave's step time.
    step = settings.series.step("reminder-1d")
    assert {email: deadlines[email].astimezone(UTC) for email in zones} == {
        email: message_deadline(settings.series, session, step, due[email].astimezone(UTC)).at
        for email in zones
    }
    assert len(set(deadlines.values())) == 3  # Apia and Tongatapu (both UTC+13 then) share one
    local = {email: due[email].astimezone(ZoneInfo(zone)) for email, zone in zones.items()}
    # Apia (UTC+13) sees the session on 14 July 02:00, so two days before is 12 July.
    assert local["apia@example.org"].replace(tzinfo=None) == datetime(2021, 7, 12, 9, 0)
    assert local["tongatapu@example.org"].replace(tzinfo=None) == datetime(2021, 7, 12, 9, 0)
    assert local["kathmandu@example.org"].replace(tzinfo=None) == datetime(2021, 7, 11, 9, 0)
    assert local["kathmandu@example.org"].utcoffset() == timedelta(hours=5, minutes=45)
    assert local["lima@example.org"].replace(tzinfo=None) == datetime(2021, 7, 11, 9, 0)


def test_send_window_holds_invitations_until_morning(app: App) -> None:
    settings = with_step(app.settings, "invitation", send_window=(time(8, 0), time(20, 0)))
    with transaction(app.factory) as db:
        add_contact(db, "tokyo@example.org", time_zone="Asia/Tokyo")  # 13:00 UTC = 22:00 in Tokyo
        add_contact(db, "lagos@example.org", time_zone="Africa/Lagos")  # 14:00 in Lagos
    session = settings.series.session("africa-2021")
    with transaction(app.factory) as db:
        queue_wave(db, settings, session, settings.series.step("invitation"), INVITATION_AT)
        due = dict(db.execute(select(Message.recipient, Message.due_at)).all())  # type: ignore[arg-type]
    assert due["lagos@example.org"] == INVITATION_AT
    assert due["tokyo@example.org"].astimezone(ZoneInfo("Asia/Tokyo")).replace(tzinfo=None) == datetime(
        2021, 6, 2, 8, 0
    )
    with transaction(app.factory) as db:
        claimed, _ = claim_due(db, settings, INVITATION_AT, worker="w", limit=10, lease=timedelta(minutes=5))
    assert [m.recipient.email for m in claimed] == ["lagos@example.org"]


def test_a_late_registrant_gets_the_latest_reminder_only(app: App) -> None:
    from mailer.service import Service
    from mailer.timeline.clock import VirtualClock

    session = app.settings.series.session("africa-2021")
    start = session.start.astimezone(UTC)
    with transaction(app.factory) as db:
        early = add_contact(db, "early@example.org")
        register(db, early, session.id, at=start - timedelta(days=30))
    clock = VirtualClock(start - timedelta(days=8))
    service = Service(app, clock)
    for moment in (start - timedelta(days=7), start - timedelta(days=1)):  # the 1-week and 1-day reminders
        clock.set(moment)
        service.materialise()
    # Registered 20 hours before the start: the 1-day reminder (due 24 h before, late until 12 h before)
    # still makes sense; the 1-week one does not; nothing else is due yet.
    clock.set(start - timedelta(hours=20))
    with transaction(app.factory) as db:
        late = add_contact(db, "late@example.org")
        register(db, late, session.id, at=clock.now())
    service.materialise()
    with transaction(app.factory) as db:
        steps = db.execute(select(Message.recipient, Message.step, Message.status).order_by(Message.id)).all()
    assert [(r, s, st) for r, s, st in steps if r == "late@example.org"] == [
        ("late@example.org", "reminder-1d", "queued")
    ]
    early_reminders = sorted(
        (s, st) for r, s, st in steps if r == "early@example.org" and s.startswith("reminder")
    )
    assert early_reminders == [("reminder-1d", "queued"), ("reminder-1w", "queued")]
