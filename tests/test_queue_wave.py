"""Queuing a wave again (mailer/store/outbox/queue.py) on SQLite and PostgreSQL: a cancelled wave and a wave
past its deadline add nobody, naive times are refused by name, an organiser's ``at`` is kept as an offset from
the session start and sets the deadline, a timeline wave follows the session's current time, on PostgreSQL a
step another process is queuing is left to it (its own wave returned) or waited for (no wave yet), and a large
wave leaves PostgreSQL's planner a sample of its messages (so claims of it are planned as O(batch))."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import OperationalError

from mailer.app import App
from mailer.config import Audience
from mailer.errors import NaiveDatetimeError
from mailer.message_ids import make_message_id
from mailer.store.engine import transaction
from mailer.store.models import DeliveryEvent, Message, MessageStatus, Wave, WaveStatus
from mailer.store.outbox import QueueResult, batch, queue_wave, set_wave_status
from mailer.store.outbox.queue import (
    LateMessagesError,
    audience_query,
    default_audience,
    log_new_messages,
    message_deadline,
    message_key,
    refuse_late_messages,
    zone_plan,
)
from mailer.timeline.plan import Deadline, SkipReason, notice_step, step_time
from tests.factories import add_contact

INVITATION_AT = datetime(2021, 6, 1, 13, 0, tzinfo=UTC)


def _seed(app: App, n: int) -> None:
    with transaction(app.factory) as db:
        for i in range(n):
            add_contact(db, f"person{i}@example.org")


def _summary(result: QueueResult) -> tuple[int, bool, int, int, datetime]:
    return (result.wave.id, result.created, result.added, result.skipped, result.deadline)


def _messages(app: App) -> int:
    with transaction(app.factory) as db:
        return db.scalar(select(func.count()).select_from(Message)) or 0


def test_naive_times_are_refused_by_name(app: App) -> None:
    series = app.settings.series
    session, step = series.session("africa-2021"), series.step("invitation")
    with transaction(app.factory) as db:
        with pytest.raises(NaiveDatetimeError) as naive_now:
            queue_wave(db, app.settings, session, step, datetime(2021, 6, 1, 13, 0))
        with pytest.raises(NaiveDatetimeError) as naive_at:
            queue_wave(db, app.settings, session, step, INVITATION_AT, at=datetime(2021, 6, 1, 14, 0))
    assert str(naive_now.value) == "now must be timezone-aware, got naive 2021-06-01T13:00:00"
    assert str(naive_at.value) == "--at must be timezone-aware, got naive 2021-06-01T14:00:00"


def test_the_parts_of_queuing_refuse_naive_times_by_name(app: App) -> None:
    series = app.settings.series
    session, step = series.session("africa-2021"), series.step("invitation")
    naive = datetime(2021, 6, 1, 13, 0)
    wave_deadline = message_deadline(series, session, step, None)
    with pytest.raises(NaiveDatetimeError) as plan_now:
        zone_plan(series, session, step, "Africa/Lagos", None, wave_deadline, naive)
    with pytest.raises(NaiveDatetimeError) as plan_base:
        zone_plan(series, session, step, "Africa/Lagos", naive, wave_deadline, INVITATION_AT)
    with pytest.raises(NaiveDatetimeError) as audience_now:
        audience_query(series, session, step, session.region, naive)
    with transaction(app.factory) as db, pytest.raises(NaiveDatetimeError) as log_now:
        log_new_messages(db, 1, 0, MessageStatus.QUEUED, naive)
    refusal = "{} must be timezone-aware, got naive 2021-06-01T13:00:00"
    assert [str(raised.value) for raised in (plan_now, plan_base, audience_now, log_now)] == [
        refusal.format("now"),
        refusal.format("base"),
        refusal.format("now"),
        refusal.format("now"),
    ]


def test_a_zone_plan_is_skipped_from_exactly_its_deadline(app: App) -> None:
    # A wave's step (not recipient-local) keeps the wave's deadline; a message due at it, or planned at it,
    # is skipped: due exactly at the deadline for its send window, planned at it for the deadline's reason.
    series = app.settings.series
    session, step = series.session("africa-2021"), series.step("invitation")

    def plan(deadline_at: datetime, now: datetime) -> tuple[datetime, datetime, str]:
        wave_deadline = Deadline(deadline_at, SkipReason.SESSION_STARTED)
        planned = zone_plan(series, session, step, "Africa/Lagos", None, wave_deadline, now)
        return planned.due_at, planned.deadline_at, planned.reason

    due, _, _ = plan(INVITATION_AT + timedelta(days=60), INVITATION_AT)
    second = timedelta(seconds=1)
    before = due - timedelta(hours=1)
    assert plan(due + second, before) == (due, due + second, "")
    assert plan(due, before) == (due, due, "send window opens after the deadline")
    assert plan(due + second, due) == (due, due + second, "")
    assert plan(due + second, due + second) == (due, due + second, "session started")


def test_queued_times_are_stored_as_the_store_compares_them(app: App) -> None:
    # The due time and deadline come from one VALUES row per zone; stored in the column's own form, a query
    # bound with that column's type finds them (SQLite compares timestamps as text).
    _seed(app, 3)
    series = app.settings.series
    session, step = series.session("africa-2021"), series.step("invitation")
    with transaction(app.factory) as db:
        result = queue_wave(db, app.settings, session, step, INVITATION_AT)
        due, deadline = db.execute(select(Message.due_at, Message.deadline_at).limit(1)).one()
        matching = db.scalar(
            select(func.count())
            .select_from(Message)
            .where(Message.due_at == due, Message.deadline_at == deadline, Message.worker == "")
        )
        arrivals = db.scalars(select(DeliveryEvent.detail).where(DeliveryEvent.kind == "queued")).all()
    assert (result.added, matching, deadline) == (3, 3, result.deadline)
    assert due == step_time(session, step)
    assert arrivals == [f"wave {result.wave.id}"] * 3  # each message's arrival names its wave


def test_a_change_notice_may_go_until_thirty_days_after_it_was_meant_and_other_steps_keep_their_deadline(
    app: App,
) -> None:
    # A session change's notice is not on the timeline: its deadline counts from when it was meant to go (or
    # the session's start), not from a step time it does not have.
    series = app.settings.series
    session = series.session("africa-2021")
    notice = notice_step("date-changed", 2)
    meant = INVITATION_AT + timedelta(days=3)
    assert message_deadline(series, session, notice, meant) == Deadline(
        meant + timedelta(days=30), SkipReason.TOO_LATE
    )
    assert message_deadline(series, session, notice, None) == Deadline(
        datetime(2021, 8, 12, 13, 0, tzinfo=UTC),
        SkipReason.TOO_LATE,  # the session starts 13 July 13:00 UTC
    )
    # Other steps keep theirs, on the timeline or not: a reminder 10 minutes before the start ends there.
    reminder = series.step("reminder-1h")
    near_start = datetime(2021, 7, 13, 12, 50, tzinfo=UTC)
    for step in (reminder, dataclasses.replace(reminder, name="reminder-unlisted")):
        assert message_deadline(series, session, step, near_start) == Deadline(
            datetime(2021, 7, 13, 13, 0, tzinfo=UTC), SkipReason.SESSION_STARTED
        )


def test_a_cancelled_wave_queued_again_adds_nobody(app: App) -> None:
    series = app.settings.series
    session, step = series.session("africa-2021"), series.step("invitation")
    _seed(app, 2)
    with transaction(app.factory) as db:
        first = queue_wave(db, app.settings, session, step, INVITATION_AT)
        summary = _summary(first)
    with transaction(app.factory) as db:
        set_wave_status(db, summary[0], WaveStatus.CANCELLED, INVITATION_AT + timedelta(minutes=1))
        add_contact(db, "late@example.org")
    with transaction(app.factory) as db:
        again = queue_wave(db, app.settings, session, step, INVITATION_AT + timedelta(minutes=2))
        assert _summary(again) == (summary[0], False, 0, 0, summary[4])
        assert again.wave.status == WaveStatus.CANCELLED
    assert summary[1:4] == (True, 2, 0)
    assert _messages(app) == 2


def test_a_wave_queued_again_at_exactly_its_deadline_adds_nobody(app: App) -> None:
    series = app.settings.series
    session, step = series.session("africa-2021"), series.step("invitation")
    _seed(app, 2)
    with transaction(app.factory) as db:
        summary = _summary(queue_wave(db, app.settings, session, step, INVITATION_AT))
    deadline = summary[4]
    with transaction(app.factory) as db:
        add_contact(db, "late@example.org")
    with transaction(app.factory) as db:
        again = queue_wave(db, app.settings, session, step, deadline)
        assert _summary(again) == (summary[0], False, 0, 0, deadline)
    assert _messages(app) == 2
    with transaction(app.factory) as db:  # a second before the deadline the late contact is still added
        before = queue_wave(db, app.settings, session, step, deadline - timedelta(seconds=1))
        assert _summary(before) == (summary[0], False, 1, 0, deadline)


def test_an_organisers_time_is_kept_as_an_offset_and_sets_the_deadline(app: App) -> None:
    series = app.settings.series
    session, step = series.session("africa-2021"), series.step("invitation")
    _seed(app, 1)
    at = INVITATION_AT + timedelta(hours=2, seconds=30)
    with transaction(app.factory) as db:
        result = queue_wave(db, app.settings, session, step, INVITATION_AT, at=at, created_by="cli")
        wave = result.wave
        assert (wave.scheduled_at.astimezone(UTC), wave.created_by, wave.audience, wave.status) == (
            at,
            "cli",
            session.region,
            WaveStatus.ACTIVE,
        )
        assert wave.offset_seconds == round((at - session.start).total_seconds())
        expected = message_deadline(series, session, step, at).at
        assert result.deadline == expected != message_deadline(series, session, step, None).at
        due = db.scalars(select(Message.due_at)).one()
    assert (due if due.tzinfo else due.replace(tzinfo=UTC)) == at


def test_a_step_another_process_is_queuing_is_left_to_it(app: App) -> None:
    if app.settings.database_url.startswith("sqlite"):
        pytest.skip("advisory locks are PostgreSQL's")
    series = app.settings.series
    session, step = series.session("africa-2021"), series.step("invitation")
    _seed(app, 2)
    with transaction(app.factory) as db:
        summary = _summary(queue_wave(db, app.settings, session, step, INVITATION_AT))
        scheduled = db.scalars(select(Wave.scheduled_at)).one()
    key = f"{session.id}/{step.name}/{session.region}"
    with transaction(app.factory) as holder:
        holder.execute(select(func.pg_advisory_xact_lock(func.hashtext(key))))
        with transaction(app.factory) as db:
            db.execute(text("SET LOCAL lock_timeout = '20s'"))  # a wait for the holder fails, not hangs
            add_contact(db, "late@example.org")
            busy = queue_wave(db, app.settings, session, step, INVITATION_AT + timedelta(minutes=1))
            assert _summary(busy) == (summary[0], False, 0, 0, scheduled)
    assert _messages(app) == 2


def test_a_busy_step_returns_its_own_wave_not_another_sessions_steps_or_audiences(app: App) -> None:
    if app.settings.database_url.startswith("sqlite"):
        pytest.skip("advisory locks are PostgreSQL's")
    series = app.settings.series
    africa, caribbean = series.session("africa-2021"), series.session("caribbean-2021")
    invitation, follow_up = series.step("invitation"), series.step("follow-up")
    with transaction(app.factory) as db:
        add_contact(db, "islands@example.org", region="caribbean")
    # The other waves come first both as stored and in the (session, step, audience) index: "africa-2021"
    # before "caribbean-2021", "follow-up" before "invitation", the audience "africa" before "caribbean";
    # and the same step and audience of another session, another step of the same session and audience.
    with transaction(app.factory) as db:
        queue_wave(db, app.settings, africa, invitation, INVITATION_AT, audience="caribbean")
        announcement = dataclasses.replace(invitation, name="announcement")  # before "invitation" both ways
        queue_wave(db, app.settings, caribbean, announcement, INVITATION_AT)
        queue_wave(db, app.settings, africa, invitation, INVITATION_AT)
        queue_wave(db, app.settings, caribbean, follow_up, INVITATION_AT)
        queue_wave(db, app.settings, caribbean, invitation, INVITATION_AT, audience="africa")
        own = queue_wave(db, app.settings, caribbean, invitation, INVITATION_AT).wave.id
    key = f"{caribbean.id}/{invitation.name}/{caribbean.region}"
    with transaction(app.factory) as holder:
        holder.execute(select(func.pg_advisory_xact_lock(func.hashtext(key))))
        with transaction(app.factory) as db:
            db.execute(text("SET LOCAL lock_timeout = '20s'"))  # a wait for the holder fails, not hangs
            busy = queue_wave(db, app.settings, caribbean, invitation, INVITATION_AT + timedelta(minutes=1))
            assert (busy.wave.id, busy.wave.session_id, busy.wave.step, busy.created, busy.added) == (
                own,
                "caribbean-2021",
                "invitation",
                False,
                0,
            )
            assert busy.deadline == step_time(caribbean, invitation)


def test_a_busy_step_without_a_wave_yet_waits_for_the_other_process(app: App) -> None:
    if app.settings.database_url.startswith("sqlite"):
        pytest.skip("advisory locks are PostgreSQL's")
    series = app.settings.series
    session, step = series.session("africa-2021"), series.step("invitation")
    _seed(app, 1)
    key = f"{session.id}/{step.name}/{session.region}"
    with transaction(app.factory) as holder:
        holder.execute(select(func.pg_advisory_xact_lock(func.hashtext(key))))
        with pytest.raises(OperationalError) as waited, transaction(app.factory) as db:
            # The other process may be inserting this very wave: the wait for its lock is what ends here.
            db.execute(text("SET LOCAL lock_timeout = '1s'"))
            queue_wave(db, app.settings, session, step, INVITATION_AT)
    assert getattr(waited.value.orig, "sqlstate", None) == "55P03"  # lock_not_available
    assert "pg_advisory_xact_lock" in str(waited.value.statement)
    with transaction(app.factory) as db:
        assert db.scalar(select(func.count()).select_from(Wave)) == 0
    assert _messages(app) == 0


def test_a_timeline_wave_follows_the_sessions_current_time(app: App) -> None:
    series = app.settings.series
    session, step = series.session("africa-2021"), series.step("invitation")
    _seed(app, 1)
    with transaction(app.factory) as db:
        first = queue_wave(db, app.settings, session, step, INVITATION_AT)
    moved = dataclasses.replace(session, start=session.start + timedelta(days=1))
    with transaction(app.factory) as db:  # the session moved, its waves not yet re-timed: a contact comes
        late = add_contact(db, "late@example.org")
    with transaction(app.factory) as db:
        again = queue_wave(db, app.settings, moved, step, INVITATION_AT + timedelta(minutes=1))
        assert (again.wave.id, again.created, again.added) == (first.wave.id, False, 1)
        # Stored when first queued, the wave's time is the old one; the timeline's rule is the step's time now.
        assert again.wave.scheduled_at.astimezone(UTC) == INVITATION_AT
        expected = message_deadline(series, moved, step, None).at
        assert (
            again.deadline
            == expected
            == message_deadline(series, moved, step, INVITATION_AT + timedelta(days=1)).at
        )
        assert expected != message_deadline(series, moved, step, INVITATION_AT).at
        due, deadline = db.execute(
            select(Message.due_at, Message.deadline_at).where(Message.contact_id == late.id)
        ).one()
    meant = step_time(moved, step)
    assert meant == INVITATION_AT + timedelta(days=1)
    assert (due.astimezone(UTC), deadline.astimezone(UTC)) == (meant, expected)


def test_each_message_id_is_made_from_its_key(app: App) -> None:
    series = app.settings.series
    session, step = series.session("africa-2021"), series.step("invitation")
    _seed(app, 2)
    with transaction(app.factory) as db:
        queue_wave(db, app.settings, session, step, INVITATION_AT)
        rows = db.execute(select(Message.contact_id, Message.message_id).order_by(Message.contact_id)).all()
    assert message_key("s1", "sess-2", "invitation", 7) == "s1/sess-2/invitation/7"
    domain = app.settings.sender.domain
    assert [message_id for _, message_id in rows] == [
        make_message_id(message_key(series.id, session.id, step.name, contact_id), domain)
        for contact_id, _ in rows
    ]


def test_the_default_audience_is_the_region_or_the_registrants(app: App) -> None:
    series = app.settings.series
    session = series.session("africa-2021")
    registrants = next(step for step in series.steps if step.audience is Audience.REGISTRANTS)
    assert default_audience(session, series.step("invitation")) == session.region == "africa"
    assert default_audience(session, registrants) == "registrants"


def test_a_step_of_one_session_or_audience_never_counts_for_another(app: App) -> None:
    series = app.settings.series
    africa, caribbean = series.session("africa-2021"), series.session("caribbean-2021")
    step = series.step("invitation")
    _seed(app, 2)
    with transaction(app.factory) as db:
        add_contact(db, "islands@example.org", region="caribbean")
    with transaction(app.factory) as db:
        first = queue_wave(db, app.settings, africa, step, INVITATION_AT)
        assert (first.wave.audience, first.created, first.added) == ("africa", True, 2)
    with transaction(app.factory) as db:  # the same contacts, the same step, another session: all of them
        other = queue_wave(db, app.settings, caribbean, step, INVITATION_AT, audience="africa")
        assert (other.wave.session_id, other.wave.audience, other.created, other.added) == (
            "caribbean-2021",
            "africa",
            True,
            2,
        )
    with transaction(app.factory) as db:  # the same session and step for another audience: its own wave
        islands = queue_wave(db, app.settings, africa, step, INVITATION_AT, audience="caribbean")
        assert (islands.wave.audience, islands.created, islands.added) == ("caribbean", True, 1)
        assert islands.wave.id not in {first.wave.id, other.wave.id}
    assert _messages(app) == 5


def _status_sample(app: App) -> str | None:
    """What PostgreSQL's planner statistics say the messages' statuses are (None: no sample)."""
    with transaction(app.factory) as db:
        return db.scalar(
            text(
                "SELECT CAST(most_common_vals AS text) FROM pg_stats "
                "WHERE tablename = 'messages' AND attname = 'status'"
            )
        )


def test_a_large_wave_leaves_the_planner_a_sample_of_its_messages(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    if app.settings.database_url.startswith("sqlite"):
        pytest.skip("planner statistics are sampled on PostgreSQL only")
    monkeypatch.setattr(batch, "ANALYZE_AFTER", 3)
    series = app.settings.series
    session = series.session("africa-2021")
    _seed(app, 2)
    with transaction(app.factory) as db:
        assert queue_wave(db, app.settings, session, series.step("invitation"), INVITATION_AT).added == 2
    assert _status_sample(app) is None
    with transaction(app.factory) as db:
        add_contact(db, "late@example.org")
    with transaction(app.factory) as db:
        second = queue_wave(db, app.settings, session, series.step("invitation-2"), INVITATION_AT)
        assert (second.added, second.skipped) == (3, 0)
    assert _status_sample(app) == "{queued}"


def test_refreshing_statistics_does_nothing_on_sqlite_or_for_a_small_wave(app: App) -> None:
    with transaction(app.factory) as db:
        small = batch.refresh_statistics(db, Message, batch.ANALYZE_AFTER - 1)
        large = batch.refresh_statistics(db, Message, batch.ANALYZE_AFTER)
    assert (small, large) == (False, app.settings.database_url.startswith("postgresql"))


def test_a_queuing_with_messages_skipped_on_arrival_is_refused_until_confirmed(app: App) -> None:
    """The shared rule of ``waves queue`` and the API: a queuing with messages skipped on arrival raises,
    naming the counts, the deadline and the caller's way to confirm, and the caller's rollback leaves nothing
    queued; one with none skipped passes."""
    series = app.settings.series
    session, step = series.session("africa-2021"), series.step("invitation")
    _seed(app, 3)
    deadline = message_deadline(series, session, step, None).at
    with pytest.raises(LateMessagesError) as refused, transaction(app.factory) as db:
        late = queue_wave(db, app.settings, session, step, deadline + timedelta(seconds=1))
        assert (late.added, late.skipped) == (3, 3)
        refuse_late_messages(late, session, step, how_to_confirm="add --queue-late")
    assert str(refused.value) == (
        f"3 of the 3 new messages of africa-2021 / invitation would be past the step's deadline"
        f" ({late.deadline:%Y-%m-%d %H:%M} UTC) and skipped for good: nothing was queued. Check the send time"
        " and the session's date; to queue them as skipped anyway, add --queue-late"
    )
    assert _messages(app) == 0
    with transaction(app.factory) as db:
        on_time = queue_wave(db, app.settings, session, step, INVITATION_AT)
        refuse_late_messages(on_time, session, step, how_to_confirm="add --queue-late")
    assert (on_time.added, on_time.skipped, _messages(app)) == (3, 0, 3)
