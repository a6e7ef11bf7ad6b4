from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest
from sqlalchemy import event, func, select, text, update

from mailer.app import App
from mailer.errors import NaiveDatetimeError
from mailer.store.engine import transaction
from mailer.store.models import (
    DeliveryEvent,
    Message,
    MessageStatus,
    RegistrationStatus,
    Suppression,
    WaveStatus,
)
from mailer.store.outbox import (
    MAX_EXPIRIES,
    Outcome,
    claim_due,
    has_due,
    mark_handed,
    mark_handed_now,
    next_due_at,
    queue_wave,
    reap_expired_leases,
    record_outcomes,
    record_sent,
    release_claims,
    renew_leases,
    renew_worker_leases,
    set_wave_status,
    still_claimed,
    suppress,
)
from mailer.store.outbox import claim as claim_module
from mailer.store.outbox import outcomes as outcomes_module
from mailer.store.outbox.batch import driver_connection
from tests.factories import add_contact, register

INVITATION_AT = datetime(2021, 6, 1, 13, 0, tzinfo=UTC)


def _seed(app: App, n: int = 5) -> list[int]:
    with transaction(app.factory) as db:
        return [add_contact(db, f"person{i}@example.org").id for i in range(n)]


def _status_counts(app: App) -> dict[str, int]:
    with transaction(app.factory) as db:
        return dict(db.execute(select(Message.status, func.count()).group_by(Message.status)).all())  # type: ignore[arg-type]


def test_queue_wave_is_idempotent_and_adds_late_contacts(app: App) -> None:
    series = app.settings.series
    session, step = series.session("africa-2021"), series.step("invitation")
    _seed(app, 5)
    with transaction(app.factory) as db:
        first = queue_wave(db, app.settings, session, step, INVITATION_AT)
    with transaction(app.factory) as db:
        again = queue_wave(db, app.settings, session, step, INVITATION_AT + timedelta(minutes=1))
    assert (first.created, first.added) == (True, 5)
    assert (again.created, again.added) == (False, 0)
    with transaction(app.factory) as db:
        add_contact(db, "late@example.org")
    with transaction(app.factory) as db:
        late = queue_wave(db, app.settings, session, step, INVITATION_AT + timedelta(days=1))
    assert late.added == 1
    assert _status_counts(app) == {"queued": 6}
    with transaction(app.factory) as db:
        ids = db.scalars(select(Message.message_id)).all()
    assert len(set(ids)) == 6 and all(i.startswith("<") and i.endswith("@example.org>") for i in ids)


def test_a_step_queued_after_its_deadline_is_logged_skipped(app: App) -> None:
    series = app.settings.series
    _seed(app, 3)
    with transaction(app.factory) as db:
        result = queue_wave(
            db,
            app.settings,
            series.session("africa-2021"),
            series.step("invitation"),
            INVITATION_AT + timedelta(days=10),
        )
    assert (result.added, result.skipped) == (3, 3)
    with transaction(app.factory) as db:
        details = db.scalars(select(DeliveryEvent.detail).where(DeliveryEvent.kind == "skipped")).all()
    assert details == ["too late"] * 3


def test_claim_checks_suppression_and_registration_at_send_time(app: App) -> None:
    series = app.settings.series
    session = series.session("africa-2021")
    reminder = series.step("reminder-1d")
    reminder_at = datetime(2021, 7, 12, 13, 0, tzinfo=UTC)
    with transaction(app.factory) as db:
        keep = add_contact(db, "keep@example.org")
        gone = add_contact(db, "gone@example.org")
        withdrawn = add_contact(db, "withdrawn@example.org")
        for contact in (keep, gone, withdrawn):
            register(db, contact, session.id)
    with transaction(app.factory) as db:
        assert queue_wave(db, app.settings, session, reminder, reminder_at).added == 3
        suppress(db, "gone@example.org", "unsubscribed", "test", reminder_at)
    with transaction(app.factory) as db:
        from mailer.store.models import Registration

        row = db.scalars(select(Registration).where(Registration.contact_id == withdrawn.id)).one()
        row.status = RegistrationStatus.DECLINED
    with transaction(app.factory) as db:
        claimed, finished = claim_due(
            db, app.settings, reminder_at, worker="w1", limit=10, lease=timedelta(minutes=5)
        )
    assert [m.recipient.email for m in claimed] == ["keep@example.org"]
    assert sorted(finished) == [
        (session.id, "reminder-1d", "skipped"),
        (session.id, "reminder-1d", "suppressed"),
    ]
    with transaction(app.factory) as db:
        assert db.scalars(select(DeliveryEvent.detail).where(DeliveryEvent.kind == "skipped")).all() == [
            "not registered"
        ]


def test_outcomes_defer_then_fail_at_deadline_and_bounce_suppresses(app: App) -> None:
    series = app.settings.series
    ids = _seed(app, 3)
    with transaction(app.factory) as db:
        queue_wave(db, app.settings, series.session("africa-2021"), series.step("invitation"), INVITATION_AT)
    with transaction(app.factory) as db:
        claimed, _ = claim_due(
            db, app.settings, INVITATION_AT, worker="w", limit=10, lease=timedelta(minutes=5)
        )
    by_email = {m.recipient.email: m.pk for m in claimed}
    with transaction(app.factory) as db:
        record_outcomes(
            db,
            app.settings,
            [
                Outcome(by_email["person0@example.org"], MessageStatus.SENT, 250, "ok", "en"),
                Outcome(by_email["person1@example.org"], MessageStatus.DEFERRED, 451, "try later"),
                Outcome(by_email["person2@example.org"], MessageStatus.BOUNCED, 550, "no such user"),
            ],
            INVITATION_AT,
        )
    assert _status_counts(app) == {"sent": 1, "deferred": 1, "bounced": 1}
    with transaction(app.factory) as db:
        assert db.get(Suppression, "person2@example.org").reason == "hard-bounce"  # type: ignore[union-attr]
        deferred = db.get(Message, by_email["person1@example.org"])
        assert deferred is not None
        # The first retry is retry_base (1 min) +-20 %: 48-72 s after the attempt, as the event says.
        delay = deferred.due_at.astimezone(UTC) - INVITATION_AT
        assert timedelta(seconds=48) <= delay <= timedelta(seconds=72)
        details = db.scalars(
            select(DeliveryEvent.detail).where(
                DeliveryEvent.message_pk == deferred.id, DeliveryEvent.kind == "deferred"
            )
        ).all()
        assert details == [f"try later; retry at {deferred.due_at.astimezone(UTC).isoformat()} (attempt 1)"]
    # A retry that would land after the deadline (3 days) fails with the reason.
    late = INVITATION_AT + timedelta(days=2, hours=23, minutes=59)
    with transaction(app.factory) as db:
        claimed, _ = claim_due(db, app.settings, late, worker="w", limit=10, lease=timedelta(minutes=5))
        assert [m.pk for m in claimed] == [by_email["person1@example.org"]]
    with transaction(app.factory) as db:
        record_outcomes(
            db, app.settings, [Outcome(claimed[0].pk, MessageStatus.DEFERRED, 451, "still later")], late
        )
        message = db.get(Message, claimed[0].pk)
        assert message is not None and message.status == "failed" and message.attempts == 2
        assert message.contact_id == ids[1]


def test_an_unanswered_deferral_counts_as_an_expiry_and_the_second_one_holds_the_message(app: App) -> None:
    """No reply after the content was sent (``uncertain``): the message may have arrived, so the deferral
    counts an expiry (the retry goes carefully); at MAX_EXPIRIES it is held instead of deferred. A refusal
    (a reply came) counts none."""
    series = app.settings.series
    _seed(app, 3)
    with transaction(app.factory) as db:
        queue_wave(db, app.settings, series.session("africa-2021"), series.step("invitation"), INVITATION_AT)
        db.execute(
            update(Message)
            .where(Message.recipient == "person1@example.org")
            .values(expiries=MAX_EXPIRIES - 1)
        )
    with transaction(app.factory) as db:
        claimed, _ = claim_due(
            db, app.settings, INVITATION_AT, worker="w", limit=10, lease=timedelta(minutes=5)
        )
    by_contact = {m.recipient.email: m.pk for m in claimed}
    first, again, refused = (by_contact[f"person{i}@example.org"] for i in range(3))
    lost = "data: timed out after the message's content was sent: it may have been delivered"
    with transaction(app.factory) as db:
        record_outcomes(
            db,
            app.settings,
            [
                Outcome(first, MessageStatus.DEFERRED, None, lost, uncertain=True),
                Outcome(again, MessageStatus.DEFERRED, None, lost, uncertain=True),
                Outcome(refused, MessageStatus.DEFERRED, 451, "try later"),
            ],
            INVITATION_AT,
        )
    with transaction(app.factory) as db:
        rows = {
            row.id: (row.status, row.expiries, row.reply_text, row.due_at > INVITATION_AT)
            for row in db.execute(
                select(Message.id, Message.status, Message.expiries, Message.reply_text, Message.due_at)
            )
        }
        events = dict(
            db.execute(
                select(DeliveryEvent.message_pk, DeliveryEvent.kind).where(DeliveryEvent.kind != "queued")
            ).all()
        )
    assert rows[first] == ("deferred", 1, lost, True)
    assert rows[again] == (
        "held",
        MAX_EXPIRIES,
        f"{outcomes_module.UNANSWERED_HELD_REASON}; last reply: {lost}",
        False,
    )
    assert rows[refused] == ("deferred", 0, "try later", True)
    assert events == {first: "deferred", again: "held", refused: "deferred"}
    with transaction(app.factory) as db:  # the retry of the first one goes carefully
        retried, _ = claim_due(
            db,
            app.settings,
            INVITATION_AT + timedelta(hours=1),
            worker="w",
            limit=10,
            lease=timedelta(minutes=5),
        )
    assert {m.pk: m.careful for m in retried} == {first: True, refused: False}


def test_expired_lease_is_reaped_and_cancel_skips_pending(app: App) -> None:
    series = app.settings.series
    _seed(app, 2)
    with transaction(app.factory) as db:
        wave = queue_wave(
            db, app.settings, series.session("africa-2021"), series.step("invitation"), INVITATION_AT
        ).wave
    with transaction(app.factory) as db:
        claimed, _ = claim_due(
            db, app.settings, INVITATION_AT, worker="crashed", limit=1, lease=timedelta(minutes=5)
        )
    assert len(claimed) == 1
    with transaction(app.factory) as db:
        assert reap_expired_leases(db, INVITATION_AT + timedelta(minutes=4)) == 0
        assert reap_expired_leases(db, INVITATION_AT + timedelta(minutes=6)) == 1
    assert _status_counts(app) == {"queued": 2}
    with transaction(app.factory) as db:
        set_wave_status(db, wave.id, WaveStatus.PAUSED, INVITATION_AT)
    with transaction(app.factory) as db:
        assert claim_due(
            db, app.settings, INVITATION_AT, worker="w", limit=5, lease=timedelta(minutes=5)
        ) == ([], [])
        _, touched = set_wave_status(db, wave.id, WaveStatus.CANCELLED, INVITATION_AT)
    assert touched == 2
    assert _status_counts(app) == {"skipped": 2}


def _leases(app: App) -> dict[int, tuple[str, str, datetime | None, datetime | None, int, datetime]]:
    """pk -> (status, worker, lease_until, handed_at, attempts, updated_at)."""
    with transaction(app.factory) as db:
        rows = db.execute(
            select(
                Message.id,
                Message.status,
                Message.worker,
                Message.lease_until,
                Message.handed_at,
                Message.attempts,
                Message.updated_at,
            )
        ).all()
    return {
        pk: (
            str(status),
            worker,
            lease and lease.astimezone(UTC),
            handed and handed.astimezone(UTC),
            attempts,
            updated.astimezone(UTC),
        )
        for pk, status, worker, lease, handed, attempts, updated in rows
    }


def test_a_worker_renews_hands_and_releases_only_its_own_claims(app: App) -> None:
    series = app.settings.series
    _seed(app, 4)
    with transaction(app.factory) as db:
        queue_wave(db, app.settings, series.session("africa-2021"), series.step("invitation"), INVITATION_AT)
    lease, at = timedelta(minutes=5), INVITATION_AT
    with transaction(app.factory) as db:
        mine, _ = claim_due(db, app.settings, at, worker="w1", limit=3, lease=lease)
        theirs, _ = claim_due(db, app.settings, at, worker="w2", limit=3, lease=lease)
    a, b, sent = (message.pk for message in mine)
    [c] = [message.pk for message in theirs]
    with transaction(app.factory) as db:  # w1's third message is sent: no longer its claim
        record_outcomes(db, app.settings, [Outcome(sent, MessageStatus.SENT, 250, "ok")], at, worker="w1")
    end, later, now = at + lease, at + timedelta(minutes=20), at + timedelta(minutes=1)
    with transaction(app.factory) as db:
        renew_leases(db, [a, c, sent], "w1", later)  # c is w2's: untouched
        assert mark_handed(db, [a, b, c, sent], "w1", now) == 2  # only what w1 still holds is marked
        assert mark_handed(db, [], "w1", now) == 0
        assert mark_handed(db, [c], "w1", now) == 0  # another worker's claim: nothing marked
        assert still_claimed(db, [a, b, c, sent], "w1") == {a, b}
        assert still_claimed(db, [a], "w1") == {a}  # of those asked only
        assert still_claimed(db, [], "w1") == set()
    done = ("sent", "w1", None, None, 1, at)
    assert _leases(app) == {
        a: ("sending", "w1", later, now, 1, at),
        b: ("sending", "w1", end, now, 1, at),
        c: ("sending", "w2", end, None, 1, at),
        sent: done,
    }
    with transaction(app.factory) as db:
        assert renew_worker_leases(db, "w1", later + lease) == 2
        assert renew_worker_leases(db, "nobody", later) == 0
    with transaction(app.factory) as db:
        release_claims(db, [c], now, worker="w1")  # w2's claim: w1 gives back only its own
        release_claims(db, [b, sent], now, worker="w1")
        release_claims(db, [], now)
    assert _leases(app) == {
        a: ("sending", "w1", later + lease, now, 1, at),
        b: ("queued", "", None, None, 0, now),
        c: ("sending", "w2", end, None, 1, at),
        sent: done,
    }
    with transaction(app.factory) as db:
        events = db.scalars(
            select(DeliveryEvent.detail).where(
                DeliveryEvent.message_pk == b, DeliveryEvent.kind == "reclaimed"
            )
        ).all()
    assert events == ["released at shutdown"]


def test_the_lease_functions_refuse_naive_times(app: App) -> None:
    naive = datetime(2021, 6, 1, 13, 0)
    calls = {
        "now": [
            lambda db: mark_handed(db, [], "w", naive),
            lambda db: release_claims(db, [], naive),
            lambda db: has_due(db, naive),
            lambda db: reap_expired_leases(db, naive),
            lambda db: claim_due(db, app.settings, naive, worker="w", limit=1, lease=timedelta(minutes=5)),
        ],
        "until": [
            lambda db: renew_leases(db, [], "w", naive),
            lambda db: renew_worker_leases(db, "w", naive),
        ],
        "after": [lambda db: next_due_at(db, naive)],
    }
    with transaction(app.factory) as db:
        for what, functions in calls.items():
            for call in functions:
                with pytest.raises(NaiveDatetimeError) as error:
                    call(db)
                assert str(error.value) == f"{what} must be timezone-aware, got naive 2021-06-01T13:00:00"


def test_the_next_due_time_is_strictly_later_and_only_in_active_waves(app: App) -> None:
    series = app.settings.series
    _seed(app, 1)
    with transaction(app.factory) as db:
        wave = queue_wave(
            db, app.settings, series.session("africa-2021"), series.step("invitation"), INVITATION_AT
        ).wave
    second = INVITATION_AT + timedelta(seconds=1)
    with transaction(app.factory) as db:
        assert next_due_at(db, INVITATION_AT - timedelta(seconds=1)) == INVITATION_AT
        assert next_due_at(db, INVITATION_AT) is None
        assert (has_due(db, INVITATION_AT - timedelta(microseconds=1)), has_due(db, INVITATION_AT)) == (
            False,
            True,
        )
        assert has_due(db, second)
        set_wave_status(db, wave.id, WaveStatus.PAUSED, INVITATION_AT)
    with transaction(app.factory) as db:
        assert next_due_at(db, INVITATION_AT - timedelta(seconds=1)) is None
        assert has_due(db, second) is False
    with transaction(app.factory) as db:  # another wave active, nothing of it due yet: still nothing due
        queue_wave(
            db, app.settings, series.session("africa-2021"), series.step("invitation-2"), INVITATION_AT
        )
        assert has_due(db, second) is False
        set_wave_status(db, wave.id, WaveStatus.ACTIVE, INVITATION_AT)
        db.execute(Message.__table__.update().where(Message.wave_id == wave.id).values(status="sent"))
    with transaction(app.factory) as db:  # sent: no longer due
        assert has_due(db, second) is False
        assert next_due_at(db, INVITATION_AT - timedelta(seconds=1)) != INVITATION_AT


def test_a_claimed_message_carries_its_row_and_is_leased_to_the_worker(app: App) -> None:
    series = app.settings.series
    with transaction(app.factory) as db:
        ana = add_contact(db, "josé@example.org", name="José", country="NG", language="fr")
        ben = add_contact(db, "ben@example.org")
    with transaction(app.factory) as db:  # queued the day before
        wave = queue_wave(
            db,
            app.settings,
            series.session("africa-2021"),
            series.step("invitation"),
            INVITATION_AT - timedelta(days=1),
        ).wave
        suppress(db, "ben@example.org", "unsubscribed", "test", INVITATION_AT - timedelta(days=1))
    with transaction(app.factory) as db:
        message = db.scalars(select(Message).where(Message.contact_id == ana.id)).one()
        message.expiries, message.attempts = 1, 2  # reclaimed once before
        message.handed_at = INVITATION_AT - timedelta(hours=1)  # handed over under its last claim
        pk, message_id, deadline = message.id, message.message_id, message.deadline_at.astimezone(UTC)
    lease = timedelta(minutes=5)
    with transaction(app.factory) as db:
        assert claim_due(
            db, app.settings, INVITATION_AT - timedelta(microseconds=1), worker="w", limit=5, lease=lease
        ) == (
            [],
            [],
        )
        claimed, finished = claim_due(db, app.settings, INVITATION_AT, worker="w", limit=5, lease=lease)
    assert finished == [("africa-2021", "invitation", "suppressed")]
    with transaction(app.factory) as db:
        skipped = db.scalars(select(Message).where(Message.contact_id == ben.id)).one()
        assert (str(skipped.status), skipped.updated_at.astimezone(UTC)) == ("suppressed", INVITATION_AT)
    [first] = claimed
    assert (first.pk, first.message_id, first.session_id, first.step, first.wave_id) == (
        pk,
        message_id,
        "africa-2021",
        "invitation",
        wave.id,
    )
    assert (first.attempts, first.careful, first.deadline_at.astimezone(UTC), first.needs_smtputf8) == (
        3,
        True,
        deadline,
        True,
    )
    assert (
        first.recipient.email,
        first.recipient.name,
        first.recipient.language,
        first.recipient.country,
    ) == (
        "josé@example.org",
        "José",
        "fr",
        "NG",
    )
    assert first.recipient.region == "africa"
    with transaction(app.factory) as db:
        row = db.get(Message, pk)
        assert row is not None
        assert (str(row.status), row.worker, row.attempts, row.handed_at) == ("sending", "w", 3, None)
        assert (row.lease_until.astimezone(UTC), row.updated_at.astimezone(UTC)) == (  # type: ignore[union-attr]
            INVITATION_AT + lease,
            INVITATION_AT,
        )
        assert reap_expired_leases(db, INVITATION_AT + lease) == 0  # the lease holds up to its end


def _postgresql_only(app: App) -> None:
    if app.engine.dialect.name != "postgresql":
        pytest.skip("the driver's statements are PostgreSQL's")


def _claim_three(app: App, worker: str = "w") -> list[int]:
    series = app.settings.series
    _seed(app, 3)
    with transaction(app.factory) as db:
        queue_wave(db, app.settings, series.session("africa-2021"), series.step("invitation"), INVITATION_AT)
    with transaction(app.factory) as db:
        claimed, _ = claim_due(
            db, app.settings, INVITATION_AT, worker=worker, limit=3, lease=timedelta(minutes=5)
        )
    return sorted(message.pk for message in claimed)


def _sent_rows(app: App) -> dict[int, tuple[object, ...]]:
    """pk -> (status, reply_code, reply_text, language, sent_at, lease_until, provider_id, updated_at)."""
    with transaction(app.factory) as db:
        rows = db.execute(
            select(
                Message.id,
                Message.status,
                Message.reply_code,
                Message.reply_text,
                Message.language,
                Message.sent_at,
                Message.lease_until,
                Message.provider_id,
                Message.updated_at,
            )
        ).all()
    return {
        row.id: (
            str(row.status),
            row.reply_code,
            row.reply_text,
            row.language,
            row.sent_at and row.sent_at.astimezone(UTC),
            row.lease_until and row.lease_until.astimezone(UTC),
            row.provider_id,
            row.updated_at.astimezone(UTC),
        )
        for row in rows
    }


def _sent_events(app: App) -> list[tuple[int, str, str, int | None, datetime]]:
    with transaction(app.factory) as db:
        rows = db.execute(
            select(
                DeliveryEvent.message_pk,
                DeliveryEvent.kind,
                DeliveryEvent.detail,
                DeliveryEvent.reply_code,
                DeliveryEvent.at,
            )
            .where(DeliveryEvent.kind == "sent")
            .order_by(DeliveryEvent.message_pk)
        ).all()
    return [(pk, str(kind), detail, code, at.astimezone(UTC)) for pk, kind, detail, code, at in rows]


def test_sent_outcomes_are_one_autocommit_statement_on_the_drivers_connection(app: App) -> None:
    _postgresql_only(app)
    a, b, c = _claim_three(app)
    now = INVITATION_AT + timedelta(seconds=7)
    lease_end = INVITATION_AT + timedelta(minutes=5)
    long_reply, long_id = "2.0.0 " + "é" * 2100, "x" * 300
    with transaction(app.factory) as db:  # a language used before: kept when the reply names none
        db.execute(update(Message).where(Message.id == b).values(language="es"))
    outcomes = [
        Outcome(a, MessageStatus.SENT, 250, "2.0.0 Ok: queued as A1", "fr", provider_id="A1"),
        Outcome(b, MessageStatus.SENT, 251, long_reply, "", provider_id=long_id),
        Outcome(a, MessageStatus.SENT, 250, "2.0.0 Ok: queued as A1", "fr", provider_id="A1"),  # twice: once
    ]
    with app.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        raw = connection.connection.dbapi_connection
        assert isinstance(raw, psycopg.Connection)
        assert record_sent(raw, outcomes, now, "w") == 2  # committed by itself: seen from another session
        assert record_sent(raw, [], now, "w") == 0
        assert record_sent(raw, outcomes, now, "w") == 0  # no longer sending: recorded once
        with pytest.raises(NaiveDatetimeError, match=r"^now must be timezone-aware"):
            record_sent(raw, outcomes, now.replace(tzinfo=None), "w")
    rows = _sent_rows(app)
    assert rows[a] == ("sent", 250, "2.0.0 Ok: queued as A1", "fr", now, None, "A1", now)
    assert rows[b] == ("sent", 251, long_reply[:2000], "es", now, None, long_id[:255], now)
    assert rows[c] == ("sending", None, "", "", None, lease_end, None, INVITATION_AT)
    assert _sent_events(app) == [
        (a, "sent", "2.0.0 Ok: queued as A1 (attempt 1 by w)", 250, now),
        (b, "sent", f"{long_reply} (attempt 1 by w)", 251, now),
    ]


def test_sent_outcomes_go_only_to_the_workers_own_claims_unless_no_worker_is_named(app: App) -> None:
    _postgresql_only(app)
    a, b, c = _claim_three(app, "w1")
    now = INVITATION_AT + timedelta(seconds=3)
    with transaction(app.factory) as db:
        raw = driver_connection(db)
        assert record_sent(raw, [Outcome(a, MessageStatus.SENT, 250, "ok", provider_id="")], now, "w2") == 0
    with transaction(app.factory) as db:  # in the session's transaction, committed with it
        raw = driver_connection(db)
        assert record_sent(raw, [Outcome(a, MessageStatus.SENT, 250, "ok", provider_id="")], now, None) == 1
        assert record_sent(raw, [Outcome(b, MessageStatus.SENT, 250, "fine")], now, "w1") == 1
    rows = _sent_rows(app)
    assert rows[a][:7] == ("sent", 250, "ok", "", now, None, None)
    assert rows[b][:7] == ("sent", 250, "fine", "", now, None, None)
    assert rows[c][0] == "sending"
    assert [event[:3] for event in _sent_events(app)] == [
        (a, "sent", "ok (attempt 1)"),
        (b, "sent", "fine (attempt 1 by w1)"),
    ]


def test_a_hand_over_mark_is_one_autocommit_statement_on_the_drivers_connection(app: App) -> None:
    _postgresql_only(app)
    a, b, c = _claim_three(app)
    with transaction(app.factory) as db:
        record_outcomes(
            db, app.settings, [Outcome(c, MessageStatus.SENT, 250, "ok")], INVITATION_AT, worker="w"
        )
    now = INVITATION_AT + timedelta(seconds=2)
    with app.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        raw = connection.connection.dbapi_connection
        assert isinstance(raw, psycopg.Connection)
        assert mark_handed_now(raw, [a, c], "w", now) == 1  # c is sent: no longer a claim
        assert mark_handed_now(raw, [b], "other", now) == 0
        assert mark_handed_now(raw, [], "w", now) == 0
        with pytest.raises(NaiveDatetimeError, match=r"^now must be timezone-aware"):
            mark_handed_now(raw, [b], "w", now.replace(tzinfo=None))
    assert {pk: handed for pk, (_s, _w, _l, handed, _a, _u) in _leases(app).items()} == {
        a: now,
        b: None,
        c: None,
    }


def test_sent_outcomes_and_hand_over_marks_look_their_messages_up_by_primary_key(app: App) -> None:
    """Statistics taken when the wave was queued (nobody sending yet) must not lead either statement through
    the partial index of messages in flight, which would read every in-flight message per statement."""
    _postgresql_only(app)
    with app.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        _seed(app, 3)
        series = app.settings.series
        with transaction(app.factory) as db:
            queue_wave(
                db, app.settings, series.session("africa-2021"), series.step("invitation"), INVITATION_AT
            )
        connection.exec_driver_sql("ANALYZE messages")
        with transaction(app.factory) as db:
            claimed, _ = claim_due(
                db, app.settings, INVITATION_AT, worker="w", limit=3, lease=timedelta(minutes=5)
            )
        raw = connection.connection.dbapi_connection
        assert isinstance(raw, psycopg.Connection)
        raw.execute("SET enable_seqscan = off")
        pks = [message.pk for message in claimed]
        sent = {
            "now": INVITATION_AT,
            "worker": "w",
            "by": " by w",
            "pk": pks,
            "reply_code": [250] * 3,
            "detail": ["ok"] * 3,
            "language": ["en"] * 3,
            "provider_id": [""] * 3,
        }
        marks = {"now": INVITATION_AT, "pks": pks, "worker": "w"}
        for statement, params in (
            (outcomes_module._SENT_SQL_DRIVER, sent),
            (claim_module._MARK_HANDED, marks),
        ):
            plan = " ".join(row[0] for row in raw.execute("EXPLAIN " + statement, params).fetchall())
            assert "messages_pkey" in plan and "ix_messages_leased" not in plan, plan


def test_claims_and_reaps_at_once_take_different_messages_and_never_wait(app: App) -> None:
    """PostgreSQL: a claim skips the messages another transaction has locked (``FOR UPDATE OF messages SKIP
    LOCKED``) instead of waiting for them, and locks no wave or contact row; reaping skips them the same way.
    The second transaction may wait 2 s for a lock at most, so waiting fails the test."""
    _postgresql_only(app)
    series = app.settings.series
    _seed(app, 4)
    with transaction(app.factory) as db:
        queue_wave(db, app.settings, series.session("africa-2021"), series.step("invitation"), INVITATION_AT)
    lease = timedelta(minutes=5)
    with transaction(app.factory) as first:
        mine, _ = claim_due(first, app.settings, INVITATION_AT, worker="w1", limit=2, lease=lease)
        with transaction(app.factory) as second:
            second.execute(text("SET LOCAL lock_timeout = '2s'"))
            theirs, _ = claim_due(second, app.settings, INVITATION_AT, worker="w2", limit=2, lease=lease)
    assert len(mine) == len(theirs) == 2
    assert not {m.pk for m in mine} & {m.pk for m in theirs}
    expired = INVITATION_AT + lease + timedelta(minutes=1)
    with transaction(app.factory) as first:
        assert reap_expired_leases(first, expired) == 4
        with transaction(app.factory) as second:
            second.execute(text("SET LOCAL lock_timeout = '2s'"))
            assert reap_expired_leases(second, expired) == 0  # the first reaper's rows: skipped


def test_a_claim_takes_only_what_is_still_pending_when_it_writes(app: App) -> None:
    """SQLite reads the due messages without a lock: another process may claim or finish them between this
    claim's read and its writes. Each write takes only the messages still pending, so this claim returns
    none of them and logs nothing twice (PostgreSQL locks the rows it reads instead)."""
    if app.engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL's claim locks the rows it reads: no other claim comes in between")
    series = app.settings.series
    _seed(app, 3)
    with transaction(app.factory) as db:
        queue_wave(db, app.settings, series.session("africa-2021"), series.step("invitation"), INVITATION_AT)
        suppress(db, "person0@example.org", "unsubscribed", "test", INVITATION_AT)
    lease = timedelta(minutes=5)
    others: list[tuple[list[int], list[tuple[str, str, str]]]] = []
    started: list[bool] = []

    def another_claim_first(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        # After this claim's read, before its writes (the other claim's own statements pass).
        if statement.startswith("UPDATE messages") and not started:
            started.append(True)
            with transaction(app.factory) as other:
                claimed, finished = claim_due(
                    other, app.settings, INVITATION_AT, worker="w2", limit=10, lease=lease
                )
            others.append(([m.pk for m in claimed], finished))

    event.listen(app.engine, "before_cursor_execute", another_claim_first)
    try:
        with transaction(app.factory) as db:
            mine, finished = claim_due(db, app.settings, INVITATION_AT, worker="w1", limit=10, lease=lease)
    finally:
        event.remove(app.engine, "before_cursor_execute", another_claim_first)
    [(theirs, their_finished)] = others
    assert (len(theirs), their_finished) == (2, [("africa-2021", "invitation", "suppressed")])
    assert (mine, finished) == ([], [])  # everything was the other's by the time this claim wrote
    with transaction(app.factory) as db:
        kinds = Counter(db.scalars(select(DeliveryEvent.kind).where(DeliveryEvent.kind != "queued")))
        workers = set(db.scalars(select(Message.worker).where(Message.status == "sending")))
    assert kinds == {"suppressed": 1} and workers == {"w2"}
