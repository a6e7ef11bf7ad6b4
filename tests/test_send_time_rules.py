"""The outbox's rules, one test each: send-time checks, audiences, retries against the deadline, whose claim
an outcome may finish. Each fails when its rule changes (see the mutation groups in pyproject.toml)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from mailer.app import App
from mailer.errors import NaiveDatetimeError
from mailer.store.engine import transaction
from mailer.store.models import (
    Contact,
    ContactStatus,
    DeliveryEvent,
    Message,
    MessageStatus,
    RegistrationStatus,
    SessionRow,
    Suppression,
)
from mailer.store.outbox import Outcome, claim_due, queue_wave, record_outcomes, release_claims
from mailer.store.outbox.checks import SendTimeFacts, skip_reason
from mailer.store.outbox.outcomes import retry_delay
from mailer.store.outbox.queue import audience_query
from mailer.store.outbox.sessions import sync_sessions
from mailer.timeline.plan import notice_step
from tests.factories import add_contact, register

INVITATION_AT = datetime(2021, 6, 1, 13, 0, tzinfo=UTC)  # africa-2021's invitation; deadline 3 days later
INVITATION_2_AT = datetime(2021, 6, 22, 13, 0, tzinfo=UTC)
LEASE = timedelta(minutes=5)


def _queue(app: App, step: str, at: datetime) -> None:
    series = app.settings.series
    with transaction(app.factory) as db:
        queue_wave(db, app.settings, series.session("africa-2021"), series.step(step), at)


def _claim(app: App, now: datetime, worker: str = "w1") -> list[str]:
    with transaction(app.factory) as db:
        claimed, _ = claim_due(db, app.settings, now, worker=worker, limit=50, lease=LEASE)
    return sorted(message.recipient.email for message in claimed)


def _finished(app: App) -> dict[str, tuple[str, str]]:
    """recipient -> (message status, detail of its last event) of the messages the checks finished."""
    with transaction(app.factory) as db:
        rows = db.execute(
            select(Message.recipient, Message.status, DeliveryEvent.detail)
            .join(DeliveryEvent, DeliveryEvent.message_pk == Message.id)
            .where(Message.status.in_([MessageStatus.SKIPPED, MessageStatus.SUPPRESSED]))
            .order_by(DeliveryEvent.id)
        ).all()
    return {recipient: (str(status), detail) for recipient, status, detail in rows}


def _answer(app: App, email: str, status: RegistrationStatus) -> None:
    with transaction(app.factory) as db:
        contact = db.scalars(select(Contact).where(Contact.email == email)).one()
        register(db, contact, "africa-2021", status)


def _ana_and_ben(app: App) -> None:
    with transaction(app.factory) as db:
        add_contact(db, "ana@example.org")
        add_contact(db, "ben@example.org")


@pytest.mark.parametrize(
    ("step", "at", "answer", "reason"),
    [
        ("invitation", INVITATION_AT, RegistrationStatus.DECLINED, "declined"),
        ("invitation-2", INVITATION_2_AT, RegistrationStatus.REGISTERED, "already registered"),
    ],
    ids=["an-invitation-to-someone-who-declined", "a-second-invitation-to-someone-who-registered"],
)
def test_an_invitation_to_someone_who_answered_meanwhile_is_skipped(
    app: App, step: str, at: datetime, answer: RegistrationStatus, reason: str
) -> None:
    _ana_and_ben(app)
    _queue(app, step, at)
    _answer(app, "ben@example.org", answer)
    assert _claim(app, at) == ["ana@example.org"]
    assert _finished(app) == {"ben@example.org": ("skipped", reason)}


def test_a_contact_no_longer_active_is_finished_as_suppressed(app: App) -> None:
    _ana_and_ben(app)
    _queue(app, "invitation", INVITATION_AT)
    with transaction(app.factory) as db:  # no suppression row: only the contact's status says so
        db.scalars(
            select(Contact).where(Contact.email == "ben@example.org")
        ).one().status = ContactStatus.UNSUBSCRIBED
    assert _claim(app, INVITATION_AT) == ["ana@example.org"]
    assert _finished(app)["ben@example.org"][0] == "suppressed"


def test_audiences_leave_out_the_declined_and_the_answered(app: App) -> None:
    with transaction(app.factory) as db:
        for name in ("open", "registered", "declined"):
            add_contact(db, f"{name}@example.org")
    _answer(app, "registered@example.org", RegistrationStatus.REGISTERED)
    _answer(app, "declined@example.org", RegistrationStatus.DECLINED)
    _queue(app, "invitation", INVITATION_AT)  # "list": everyone but those who declined
    _queue(app, "invitation-2", INVITATION_2_AT)  # "list-unregistered": only those yet to answer
    with transaction(app.factory) as db:
        queued = db.execute(select(Message.step, Message.recipient).order_by(Message.step, Message.recipient))
        assert [tuple(row) for row in queued] == [
            ("invitation", "open@example.org"),
            ("invitation", "registered@example.org"),
            ("invitation-2", "open@example.org"),
        ]


def test_a_message_claimed_at_exactly_its_deadline_is_too_late(app: App) -> None:
    with transaction(app.factory) as db:
        add_contact(db, "ana@example.org")
    _queue(app, "invitation", INVITATION_AT)
    deadline = INVITATION_AT + timedelta(days=3)
    with transaction(app.factory) as db:
        assert db.scalars(select(Message.deadline_at)).one().astimezone(UTC) == deadline
    assert _claim(app, deadline - timedelta(microseconds=1)) == ["ana@example.org"]
    with transaction(app.factory) as db:  # the lease given back: due again
        message = db.scalars(select(Message)).one()
        message.status, message.worker = MessageStatus.QUEUED, ""
    assert _claim(app, deadline) == []
    assert _finished(app) == {"ana@example.org": ("skipped", "too late")}


def _claimed_one(app: App) -> int:
    with transaction(app.factory) as db:
        add_contact(db, "ana@example.org")
    _queue(app, "invitation", INVITATION_AT)
    with transaction(app.factory) as db:
        [claimed], _ = claim_due(db, app.settings, INVITATION_AT, worker="w1", limit=5, lease=LEASE)
    return claimed.pk


def _status(app: App, pk: int) -> tuple[str, datetime]:
    with transaction(app.factory) as db:
        message = db.get(Message, pk)
        assert message is not None
        return str(message.status), message.due_at.astimezone(UTC)


def _deferred(app: App, pk: int, retry_at: datetime) -> None:
    """Record a temporary failure of message ``pk`` at the invitation time, to be retried at ``retry_at``."""
    with transaction(app.factory) as db:
        record_outcomes(
            db,
            app.settings,
            [Outcome(pk, MessageStatus.DEFERRED, None, "down", retry_at=retry_at)],
            INVITATION_AT,
        )


def test_a_retry_due_at_exactly_the_deadline_is_given_up(app: App) -> None:
    pk = _claimed_one(app)
    deadline = INVITATION_AT + timedelta(days=3)
    _deferred(app, pk, deadline)
    assert _status(app, pk)[0] == "failed"
    assert _row(app, pk)["events"] == [
        ("failed", "gave up: next retry would be after the deadline; last reply: down (attempt 1)", None)
    ]


def test_a_retry_due_just_before_the_deadline_is_kept(app: App) -> None:
    pk = _claimed_one(app)
    retry_at = INVITATION_AT + timedelta(days=3) - timedelta(microseconds=1)
    _deferred(app, pk, retry_at)
    assert _status(app, pk) == ("deferred", retry_at)


def test_an_outcome_finishes_only_the_recording_workers_claim(app: App) -> None:
    pk = _claimed_one(app)  # claimed by w1
    with transaction(app.factory) as db:
        record_outcomes(
            db, app.settings, [Outcome(pk, MessageStatus.SENT, 250, "ok", "en")], INVITATION_AT, worker="w2"
        )
    assert _status(app, pk)[0] == "sending"
    with transaction(app.factory) as db:
        record_outcomes(
            db, app.settings, [Outcome(pk, MessageStatus.SENT, 250, "ok", "en")], INVITATION_AT, worker="w1"
        )
    assert _status(app, pk)[0] == "sent"


def test_an_outcome_for_a_message_no_longer_sending_changes_nothing(app: App) -> None:
    pk = _claimed_one(app)
    with transaction(app.factory) as db:  # given back at shutdown: queued again, due as before
        release_claims(db, [pk], INVITATION_AT)
    with transaction(app.factory) as db:
        record_outcomes(db, app.settings, [Outcome(pk, MessageStatus.DEFERRED, 451, "later")], INVITATION_AT)
    assert _status(app, pk) == ("queued", INVITATION_AT)


def test_retry_delay_doubles_from_the_base_with_seeded_jitter_and_a_six_hour_cap() -> None:
    base = timedelta(minutes=1)
    factor = random.Random(7).uniform(0.8, 1.2)
    assert retry_delay(1, base, random.Random(7)) == base * factor
    assert retry_delay(3, base, random.Random(7)) == base * 4 * factor
    assert retry_delay(0, base, random.Random(7)) == base * factor
    assert retry_delay(20, base, random.Random(7)) == timedelta(hours=6) * factor
    low, high = random.Random(), random.Random()
    low.uniform = lambda a, b: a  # type: ignore[method-assign]
    high.uniform = lambda a, b: b  # type: ignore[method-assign]
    assert (retry_delay(1, base, low), retry_delay(1, base, high)) == (
        timedelta(seconds=48),
        timedelta(seconds=72),
    )


def test_a_message_of_a_session_cancelled_meanwhile_is_skipped_as_cancelled(app: App) -> None:
    with transaction(app.factory) as db:
        add_contact(db, "ana@example.org")
    _queue(app, "invitation", INVITATION_AT)
    with transaction(app.factory) as db:  # cancelled in the store only: its wave still active
        sync_sessions(db, app.settings, INVITATION_AT - timedelta(days=1))
        row = db.get(SessionRow, "africa-2021")
        assert row is not None and not row.cancelled
        row.cancelled = True
    assert _claim(app, INVITATION_AT) == []
    assert _finished(app) == {"ana@example.org": ("skipped", "cancelled")}


def test_the_send_time_checks_and_outcomes_refuse_a_naive_now(app: App) -> None:
    facts = SendTimeFacts(set(), {}, set())
    step = app.settings.series.step("invitation")
    with pytest.raises(NaiveDatetimeError) as error:
        skip_reason(None, step, facts, datetime(2021, 6, 1, 13, 0))
    assert str(error.value) == "now must be timezone-aware, got naive 2021-06-01T13:00:00"
    with transaction(app.factory) as db, pytest.raises(NaiveDatetimeError) as error:
        record_outcomes(db, app.settings, [], datetime(2021, 6, 1, 13, 0))
    assert str(error.value) == "now must be timezone-aware, got naive 2021-06-01T13:00:00"


def test_the_audience_query_refuses_a_naive_now(app: App) -> None:
    series = app.settings.series
    session = series.session("africa-2021")
    with pytest.raises(NaiveDatetimeError) as error:
        audience_query(
            series, session, series.step("invitation"), session.region, datetime(2021, 6, 1, 13, 0)
        )
    assert str(error.value) == "now must be timezone-aware, got naive 2021-06-01T13:00:00"


def _row(app: App, pk: int) -> dict[str, object]:
    with transaction(app.factory) as db:
        message = db.get(Message, pk)
        assert message is not None
        return {
            "status": str(message.status),
            "code": message.reply_code,
            "text": message.reply_text,
            "language": message.language,
            "attempts": message.attempts,
            "due_at": message.due_at.astimezone(UTC),
            "sent_at": message.sent_at.astimezone(UTC) if message.sent_at else None,
            "provider_id": message.provider_id,
            "lease_until": message.lease_until,
            "updated_at": message.updated_at.astimezone(UTC),
            "events": [(str(e.kind), e.detail, e.reply_code) for e in message.events][1:],  # after "queued"
        }


@pytest.mark.parametrize("worker", ["w1", None], ids=["by-worker", "any-worker"])
def test_each_outcome_is_recorded_with_its_columns_and_event(app: App, worker: str | None) -> None:
    names = ("sent", "unattempted", "failed", "bounced", "kept")
    with transaction(app.factory) as db:
        for name in names:
            add_contact(db, f"{name}@example.org")
    _queue(app, "invitation", INVITATION_AT)
    with transaction(app.factory) as db:
        claimed, _ = claim_due(db, app.settings, INVITATION_AT, worker="w1", limit=10, lease=LEASE)
        pks = {message.recipient.email.split("@")[0]: message.pk for message in claimed}
        kept = db.get(Message, pks["kept"])
        assert kept is not None
        kept.language = "fr"  # the language the message was rendered in
    at = INVITATION_AT + timedelta(seconds=30)
    retry_at = INVITATION_AT + timedelta(hours=2)
    long_text = "x" * 2500
    with transaction(app.factory) as db:
        record_outcomes(
            db,
            app.settings,
            [
                Outcome(
                    pks["sent"], MessageStatus.SENT, 250, "2.0.0 Ok: queued as A1", "es", provider_id="A1"
                ),
                Outcome(pks["unattempted"], MessageStatus.DEFERRED, None, "relay down", retry_at=retry_at),
                Outcome(pks["failed"], MessageStatus.FAILED, 554, "5.7.1 rejected", provider_id="B2"),
                Outcome(pks["bounced"], MessageStatus.BOUNCED, 550, long_text, "de"),
                Outcome(pks["kept"], MessageStatus.SENT, 250, "y" * 2500, provider_id="p" * 300),
            ],
            at,
            worker=worker,
        )
    by = " by w1" if worker else ""
    common = {"lease_until": None, "updated_at": at}
    assert _row(app, pks["sent"]) == {
        "status": "sent",
        "code": 250,
        "text": "2.0.0 Ok: queued as A1",
        "language": "es",
        "attempts": 1,
        "due_at": INVITATION_AT,
        "sent_at": at,
        "provider_id": "A1",
        **common,
        "events": [("sent", f"2.0.0 Ok: queued as A1 (attempt 1{by})", 250)],
    }
    assert _row(app, pks["unattempted"]) == {
        "status": "deferred",
        "code": None,
        "text": "relay down",
        "language": "",
        "attempts": 0,  # nothing reached the relay: the attempt is given back
        "due_at": retry_at,
        "sent_at": None,
        "provider_id": None,
        **common,
        "events": [
            (
                "deferred",
                f"relay down; retry at {retry_at.isoformat()}; not counted as an attempt (attempt 1{by})",
                None,
            )
        ],
    }
    assert _row(app, pks["failed"]) == {
        "status": "failed",
        "code": 554,
        "text": "5.7.1 rejected",
        "language": "",
        "attempts": 1,
        "due_at": INVITATION_AT,
        "sent_at": None,
        "provider_id": None,
        **common,
        "events": [("failed", f"5.7.1 rejected (attempt 1{by})", 554)],
    }
    bounced = _row(app, pks["bounced"])
    assert (bounced["status"], bounced["text"], bounced["language"], bounced["sent_at"]) == (
        "bounced",
        "x" * 2000,
        "de",
        None,
    )
    assert bounced["events"] == [("bounced", f"{long_text} (attempt 1{by})", 550)]
    kept_row = _row(app, pks["kept"])
    assert (kept_row["language"], kept_row["text"], kept_row["provider_id"]) == ("fr", "y" * 2000, "p" * 255)
    assert kept_row["events"] == [("sent", f"{'y' * 2500} (attempt 1{by})", 250)]
    with transaction(app.factory) as db:
        suppression = db.get(Suppression, "bounced@example.org")
        assert suppression is not None
        assert (suppression.reason, suppression.detail) == ("hard-bounce", "x" * 2000)


def test_an_answer_counts_for_the_audience_from_the_moment_it_was_given(app: App) -> None:
    second = timedelta(seconds=1)
    answered_at: dict[str, datetime | None] = {
        "before": INVITATION_2_AT - second,
        "exactly": INVITATION_2_AT,
        "after": INVITATION_2_AT + second,  # not answered yet when the wave is queued
        "undated": None,  # an import without a date: answered
    }
    with transaction(app.factory) as db:
        add_contact(db, "open@example.org")
        for name, at in answered_at.items():
            register(db, add_contact(db, f"{name}@example.org"), "africa-2021", at=at)  # type: ignore[arg-type]
        register(db, add_contact(db, "elsewhere@example.org"), "caribbean-2021")  # another session's answer
    _queue(app, "invitation-2", INVITATION_2_AT)  # "list-unregistered": only those yet to answer
    with transaction(app.factory) as db:
        assert sorted(db.scalars(select(Message.recipient))) == [
            "after@example.org",
            "elsewhere@example.org",
            "open@example.org",
        ]


def test_change_notices_go_to_the_invited_and_to_the_calendar_holders(app: App) -> None:
    # date-changed-N: whoever was sent an invitation or registered; cancelled-N: registrants and whoever
    # was sent the event in a calendar REQUEST (not a follow-up), of this session only.
    sent_as = {
        "invited": ("invitation", "sent", "africa-2021"),
        "unsent": ("invitation", "queued", "africa-2021"),
        "reminded": ("reminder-1d", "sent", "africa-2021"),
        "moved": ("date-changed-1", "sent", "africa-2021"),
        "followed": ("follow-up", "sent", "africa-2021"),
        "elsewhere": ("invitation", "sent", "caribbean-2021"),
    }
    with transaction(app.factory) as db:
        for name in [*sent_as, "registered", "declined"]:
            add_contact(db, f"{name}@example.org")
    _answer(app, "registered@example.org", RegistrationStatus.REGISTERED)
    _answer(app, "declined@example.org", RegistrationStatus.DECLINED)
    _queue(app, "invitation", INVITATION_AT)
    with transaction(app.factory) as db:
        for message in db.scalars(select(Message)):
            step, status, session_id = sent_as.get(
                message.recipient.split("@")[0], ("gone", "queued", "none")
            )
            message.step, message.status, message.session_id = step, MessageStatus(status), session_id
    series = app.settings.series
    session = series.session("africa-2021")

    def audience(change: str) -> list[str]:
        with transaction(app.factory) as db:
            query = audience_query(series, session, notice_step(change, 1), session.region, INVITATION_2_AT)
            ids = set(db.scalars(query))
            return sorted(c.email.split("@")[0] for c in db.scalars(select(Contact)) if c.id in ids)

    assert audience("date-changed") == ["invited", "registered"]
    assert audience("cancelled") == ["invited", "moved", "registered", "reminded"]
