"""When :class:`mailer.store.recorder.OutcomeRecorder` commits: by group size, and (without a size or a wait,
as bench/throughput.py's batch-end comparison runs it) only when flushed."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from sqlalchemy import func, select

from mailer.app import App
from mailer.store.engine import transaction
from mailer.store.models import DeliveryEvent, EventKind, Message, MessageStatus
from mailer.store.outbox import ClaimedMessage, Outcome, claim_due, queue_wave
from mailer.store.recorder import OutcomeRecorder, store_busy
from mailer.timeline.clock import VirtualClock
from tests.factories import add_contact, refuse_delivery_events

INVITATION_AT = datetime(2021, 6, 1, 13, 0, tzinfo=UTC)


def _claimed(app: App, count: int) -> list[ClaimedMessage]:
    series = app.settings.series
    with transaction(app.factory) as db:
        for i in range(count):
            add_contact(db, f"person{i}@example.org")
    with transaction(app.factory) as db:
        queue_wave(db, app.settings, series.session("africa-2021"), series.step("invitation"), INVITATION_AT)
    with transaction(app.factory) as db:
        claimed, _ = claim_due(
            db, app.settings, INVITATION_AT, worker="w", limit=count, lease=timedelta(minutes=5)
        )
    return claimed


def _statuses(app: App) -> dict[str, int]:
    with transaction(app.factory) as db:
        return dict(db.execute(select(Message.status, func.count()).group_by(Message.status)).all())  # type: ignore[arg-type]


def _recorder(app: App, group_size: int | None) -> OutcomeRecorder:
    return OutcomeRecorder(
        app.factory,
        app.settings,
        VirtualClock(INVITATION_AT),
        worker="w",
        group_size=group_size,
        max_wait=None,
    )


def test_without_a_group_size_or_a_wait_outcomes_are_committed_only_when_flushed(app: App) -> None:
    claimed = _claimed(app, 3)

    async def run() -> None:
        async with _recorder(app, None) as recorder:
            for message in claimed:
                recorder.add(Outcome(message.pk, MessageStatus.SENT, 250, "ok", "en"))
            await asyncio.sleep(0.3)
            assert (recorder.commits, _statuses(app)) == (0, {"sending": 3})
            await recorder.flush()
            assert (recorder.commits, _statuses(app)) == (1, {"sent": 3})
        with transaction(app.factory) as db:
            events = db.execute(
                select(DeliveryEvent.message_pk, DeliveryEvent.detail, DeliveryEvent.reply_code)
                .where(DeliveryEvent.kind == EventKind.SENT)
                .order_by(DeliveryEvent.message_pk)
            ).all()
        assert [tuple(event) for event in events] == [
            (message.pk, "ok (attempt 1 by w)", 250) for message in sorted(claimed, key=lambda m: m.pk)
        ]

    asyncio.run(run())


def test_a_full_group_is_committed_without_waiting_for_the_rest(app: App) -> None:
    claimed = _claimed(app, 3)

    async def run() -> None:
        async with _recorder(app, 2) as recorder:
            done = [recorder.add(Outcome(m.pk, MessageStatus.SENT, 250, "ok", "en")) for m in claimed[:2]]
            await asyncio.wait_for(asyncio.gather(*done), timeout=60)
            last = recorder.add(Outcome(claimed[2].pk, MessageStatus.SENT, 250, "ok", "en"))
            await asyncio.sleep(0.3)
            assert (recorder.commits, _statuses(app), last.done()) == (1, {"sent": 2, "sending": 1}, False)
        assert _statuses(app) == {"sent": 3}  # leaving the block flushes

    asyncio.run(run())


def test_a_group_of_replies_survives_its_dropped_connection_and_a_mixed_group_goes_in_one_transaction(
    app: App, caplog: pytest.LogCaptureFixture
) -> None:
    """PostgreSQL: a group of 2xx replies is one autocommit statement on the recorder's connection; when the
    server drops that connection, the error (psycopg's own, not SQLAlchemy's) counts as a busy store and the
    group is written again on a new connection. A group with a deferral takes the general path."""
    if app.engine.dialect.name != "postgresql":
        pytest.skip("the recorder's driver statement is PostgreSQL's")
    claimed = _claimed(app, 3)
    assert store_busy(psycopg.OperationalError("server closed the connection unexpectedly"))
    assert not store_busy(psycopg.ProgrammingError("syntax error"))

    async def run() -> None:
        async with _recorder(app, None) as recorder:
            recorder.add(Outcome(claimed[0].pk, MessageStatus.SENT, 250, "ok", "en"))
            await recorder.flush()
            with app.engine.connect() as connection:  # the recorder's backend is ended by the server
                pids = connection.exec_driver_sql(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
                ).scalars()
                for pid in pids:
                    connection.exec_driver_sql(f"SELECT pg_terminate_backend({int(pid)})")
            await asyncio.sleep(0.3)
            recorder.add(Outcome(claimed[1].pk, MessageStatus.SENT, 250, "ok", "en"))
            await asyncio.wait_for(recorder.flush(), timeout=60)
            assert (recorder.commits, _statuses(app)) == (2, {"sent": 2, "sending": 1})
            recorder.add(Outcome(claimed[2].pk, MessageStatus.DEFERRED, 451, "later", "en"))
            await asyncio.wait_for(recorder.flush(), timeout=60)
            assert (recorder.commits, _statuses(app)) == (3, {"sent": 2, "deferred": 1})

    with caplog.at_level(logging.WARNING, logger="mailer.store.recorder"):
        asyncio.run(run())
    assert [
        record.getMessage().split(" (")[0] for record in caplog.records if record.levelno >= logging.WARNING
    ] == ["recording 1 outcomes failed"]


def test_after_a_commit_that_cannot_be_made_no_outcome_and_no_flush_waits_for_ever(app: App) -> None:
    """A commit that fails for a reason other than a busy store ends the recorder: that group's futures, the
    outcomes added while it was written and every outcome added after carry the error, and a flush raises
    it (before, an outcome added after the failure was never settled and the service's flush hung)."""
    claimed = _claimed(app, 4)
    refuse_delivery_events(app)

    async def run() -> None:
        async with _recorder(app, 1) as recorder:
            first = recorder.add(Outcome(claimed[0].pk, MessageStatus.SENT, 250, "ok", "en"))
            during = recorder.add(Outcome(claimed[1].pk, MessageStatus.SENT, 250, "ok", "en"))
            with pytest.raises(Exception, match="events refused"):
                await asyncio.wait_for(first, timeout=60)
            with pytest.raises(Exception, match="events refused"):
                await asyncio.wait_for(during, timeout=60)
            after = recorder.add(Outcome(claimed[2].pk, MessageStatus.SENT, 250, "ok", "en"), urgent=True)
            assert after.done()
            with pytest.raises(Exception, match="events refused"):
                await after
            recorder.add(Outcome(claimed[3].pk, MessageStatus.DEFERRED, 451, "later", "en"))
            with pytest.raises(Exception, match="events refused"):
                await asyncio.wait_for(recorder.flush(), timeout=60)
            assert (recorder.commits, _statuses(app)) == (0, {"sending": 4})

    with pytest.raises(Exception, match="events refused"):  # leaving the block flushes: the error again
        asyncio.run(run())
