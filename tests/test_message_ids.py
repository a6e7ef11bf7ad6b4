"""Message-IDs are looked up in their own table (``message_ids``, mailer.store.models.MessageIdLookup), on SQLite
and PostgreSQL: a queued wave enters exactly one per message, the one made from the message's key; a report
naming one finds its message; a message written, changed or deleted through the ORM keeps its row in step; a
contact removed with its queued messages takes their rows along; a row left behind never names another message."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session as DbSession

from mailer.app import App
from mailer.audience.import_undo import remove_unheld_contacts
from mailer.delivery.attribution import attribute
from mailer.delivery.reports import Report
from mailer.message_ids import make_message_id
from mailer.store.engine import transaction
from mailer.store.models import ListMembership, Message, MessageIdLookup, ReportKind
from mailer.store.outbox import queue_wave
from mailer.store.outbox.queue import message_key
from tests.factories import add_contact

INVITATION_AT = datetime(2021, 6, 1, 13, 0, tzinfo=UTC)


def _queue(app: App, count: int, first: int = 0) -> None:
    series = app.settings.series
    with transaction(app.factory) as db:
        for n in range(first, first + count):
            add_contact(db, f"person{n}@example.org")
    with transaction(app.factory) as db:
        queue_wave(db, app.settings, series.session("africa-2021"), series.step("invitation"), INVITATION_AT)


def _entries(db: DbSession) -> list[tuple[str, int]]:
    return sorted(
        tuple(row) for row in db.execute(select(MessageIdLookup.message_id, MessageIdLookup.message_pk))
    )


def _found_by(db: DbSession, *message_ids: str) -> int | None:
    found = attribute(db, Report(ReportKind.HARD, message_ids=message_ids), None)
    return found.message.id if found.message is not None else None


def test_a_wave_enters_one_message_id_per_message_made_from_its_key(app: App) -> None:
    _queue(app, 5)
    series, domain = app.settings.series, app.settings.sender.domain
    with transaction(app.factory) as db:
        messages = db.execute(select(Message.id, Message.contact_id, Message.message_id)).all()
        entries = _entries(db)
    assert len(messages) == 5
    assert entries == sorted(
        (make_message_id(message_key(series.id, "africa-2021", "invitation", contact_id), domain), pk)
        for pk, contact_id, _ in messages
    )
    assert sorted((message_id, pk) for pk, _, message_id in messages) == entries
    _queue(app, 0)  # queued again: nobody new, no entry twice
    with transaction(app.factory) as db:
        assert _entries(db) == entries


def test_a_wave_queued_again_for_a_new_contact_enters_only_its_message(app: App) -> None:
    _queue(app, 3)
    _queue(app, 1, first=3)  # one more contact: the same wave gets one more message
    with transaction(app.factory) as db:
        messages = db.execute(
            select(Message.id, Message.message_id, Message.wave_id).order_by(Message.id)
        ).all()
        entries = _entries(db)
    assert len(messages) == 4 and len({wave for _, _, wave in messages}) == 1
    assert entries == sorted((message_id, pk) for pk, message_id, _ in messages)


def test_a_report_naming_a_message_id_finds_its_message(app: App) -> None:
    _queue(app, 3)
    with transaction(app.factory) as db:
        messages = db.execute(select(Message.id, Message.message_id).order_by(Message.id)).all()
        assert [_found_by(db, message_id) for _, message_id in messages] == [pk for pk, _ in messages]
        assert _found_by(db, "<unknown@example.org>", messages[1].message_id) == messages[1].id
        assert _found_by(db, "<unknown@example.org>") is None


def test_a_row_left_behind_never_names_another_message(app: App) -> None:
    _queue(app, 2)
    with transaction(app.factory) as db:
        first, second = db.execute(select(Message.id, Message.message_id).order_by(Message.id)).all()
        db.execute(delete(MessageIdLookup).where(MessageIdLookup.message_id == first.message_id))
        db.execute(insert(MessageIdLookup).values(message_id="<stale@example.org>", message_pk=second.id))
        assert _found_by(db, "<stale@example.org>") is None
        assert _found_by(db, second.message_id) == second.id


def test_a_message_written_through_the_orm_keeps_its_entry_in_step(app: App) -> None:
    _queue(app, 1)
    with transaction(app.factory) as db:
        queued = db.scalars(select(Message)).one()
        copy = Message(
            message_id="<copy@example.org>",
            contact_id=queued.contact_id,
            session_id=queued.session_id,
            step="invitation-2",
            wave_id=queued.wave_id,
            recipient=queued.recipient,
            due_at=INVITATION_AT,
            deadline_at=INVITATION_AT + timedelta(days=1),
            created_at=INVITATION_AT,
            updated_at=INVITATION_AT,
        )
        db.add(copy)
        db.flush()
        assert _entries(db) == sorted([(queued.message_id, queued.id), ("<copy@example.org>", copy.id)])
        copy.message_id = "<changed@example.org>"
        db.flush()
        assert _found_by(db, "<changed@example.org>") == copy.id
        assert _found_by(db, "<copy@example.org>") is None
        db.delete(copy)
        db.flush()
        assert _entries(db) == [(queued.message_id, queued.id)]


def test_removing_a_never_mailed_contact_removes_its_messages_entries(app: App) -> None:
    _queue(app, 2)
    with transaction(app.factory) as db:
        kept, gone = db.execute(select(Message.contact_id, Message.message_id).order_by(Message.id)).all()
        db.execute(delete(ListMembership).where(ListMembership.contact_id == gone.contact_id))
        assert remove_unheld_contacts(db, [gone.contact_id]) == (1, 0)
        assert [message_id for message_id, _ in _entries(db)] == [kept.message_id]
