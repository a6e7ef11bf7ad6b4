"""Exactly once under crashes (SIGKILL), clean SIGTERM, and several processes on PostgreSQL.

Bounded: a few thousand messages to a loopback aiosmtpd server, at most ~a minute per test.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from pathlib import Path

from sqlalchemy import func, select

from mailer.app import open_app
from mailer.config import load_settings
from mailer.store.engine import transaction
from mailer.store.models import DeliveryEvent, Message, Wave
from tests import service_processes as live
from tests.conftest import RunningServer

CONTACTS = 2000
SIGTERM_CONTACTS = 600
KILLS = 10


def _received(server: RunningServer) -> Counter[str]:
    return Counter(rcpt for message in server.messages for rcpt in message.rcpt_tos)


def test_sigkill_at_random_moments_loses_nothing(
    tmp_path: Path, database_url: str, smtp_server: RunningServer
) -> None:
    config = live.write_live_config(tmp_path)
    settings = load_settings(config, database_url=database_url)
    app = open_app(settings)
    live.add_contacts(app, CONTACTS)
    rng = random.Random(20210713)
    kills = 0
    for round_number in range(KILLS):
        process = live.ServiceProcess(
            config, database_url, smtp_server.port, tmp_path / f"service-{round_number}.log"
        )
        # Let it start (about 1-2 s) and send for a random while before the kill.
        started = live.wait_until(
            lambda p=process: len(smtp_server.messages) > 0 or p.process.poll() is not None, 60
        )
        assert started and process.process.poll() is None, process.log_path.read_text()[-2000:]
        time.sleep(rng.uniform(0.05, 0.6))
        process.kill()
        kills += 1
        if live.pending_count(app) == 0 and live.message_count(app) == CONTACTS:
            break
    final = live.ServiceProcess(config, database_url, smtp_server.port, tmp_path / "service-final.log")
    assert live.wait_until(
        lambda: live.message_count(app) == CONTACTS and live.pending_count(app) == 0,
        90,
    ), final.log_path.read_text()[-3000:]
    assert final.terminate() == 0

    received = _received(smtp_server)
    expected = {f"person{i:05d}@example.org" for i in range(CONTACTS)}
    assert set(received) == expected, "every contact got the invitation"
    duplicates = sum(count - 1 for count in received.values())
    with transaction(app.factory) as db:
        statuses = dict(db.execute(select(Message.status, func.count()).group_by(Message.status)).all())
        reclaimed = db.scalar(
            select(func.count()).select_from(DeliveryEvent).where(DeliveryEvent.kind == "reclaimed")
        )
        message_ids = db.scalars(select(Message.message_id)).all()
    assert statuses == {"sent": CONTACTS}
    # A duplicate can only come from the window between the server's 250 and the commit recording it:
    # at most one claimed batch per kill, and each resend carries the same Message-ID.
    assert duplicates <= kills * 100
    # ... and only a message whose lease was reclaimed goes twice, once more per reclaim at most.
    with transaction(app.factory) as db:
        reclaims = dict(
            db.execute(
                select(Message.recipient, func.count())
                .join(DeliveryEvent, DeliveryEvent.message_pk == Message.id)
                .where(DeliveryEvent.kind == "reclaimed")
                .group_by(Message.recipient)
            ).all()
        )
    extra = {address: count - 1 for address, count in received.items() if count > 1}
    assert all(times <= reclaims.get(address, 0) for address, times in extra.items()), (extra, reclaims)
    resent_ids = Counter(m.parsed()["Message-ID"] for m in smtp_server.messages)
    assert set(resent_ids) == set(message_ids)
    print(
        f"\n[crash test] {kills} SIGKILLs, {CONTACTS} contacts, {duplicates} duplicate deliveries, "
        f"{reclaimed} messages reclaimed after lease expiry"
    )
    app.close()


def test_sigterm_returns_in_flight_work_and_resumes(
    tmp_path: Path, database_url: str, smtp_server: RunningServer
) -> None:
    config = live.write_live_config(tmp_path)
    app = open_app(load_settings(config, database_url=database_url))
    live.add_contacts(app, SIGTERM_CONTACTS)
    first = live.ServiceProcess(config, database_url, smtp_server.port, tmp_path / "first.log")
    assert live.wait_until(lambda: len(smtp_server.messages) >= 100, 30), first.log_path.read_text()[-2000:]
    assert first.terminate() == 0
    log = first.log_path.read_text()
    assert "stopped" in log
    with transaction(app.factory) as db:
        in_flight = db.scalar(select(func.count()).select_from(Message).where(Message.status == "sending"))
        wave_status = db.scalar(select(Wave.status))
    assert in_flight == 0
    assert wave_status == "active"
    assert live.pending_count(app) > 0, "stopped before the wave ended"
    second = live.ServiceProcess(config, database_url, smtp_server.port, tmp_path / "second.log")
    assert live.wait_until(lambda: live.pending_count(app) == 0, 90), second.log_path.read_text()[-2000:]
    assert second.terminate() == 0
    received = _received(smtp_server)
    assert len(received) == SIGTERM_CONTACTS
    assert max(received.values()) == 1, "a clean stop never duplicates"
    app.close()


def test_three_processes_share_the_work_on_postgresql(
    tmp_path: Path, postgres_url: str, smtp_server: RunningServer
) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(postgres_url)
    with engine.begin() as connection:
        connection.execute(text("DROP SCHEMA public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    config = live.write_live_config(tmp_path)
    app = open_app(load_settings(config, database_url=postgres_url))
    live.add_contacts(app, CONTACTS)
    processes = [
        live.ServiceProcess(config, postgres_url, smtp_server.port, tmp_path / f"worker-{n}.log")
        for n in range(3)
    ]
    try:
        assert live.wait_until(
            lambda: live.message_count(app) == CONTACTS and live.pending_count(app) == 0,
            90,
        ), processes[0].log_path.read_text()[-2000:]
    finally:
        codes = [process.terminate() for process in processes]
    assert codes == [0, 0, 0]
    received = _received(smtp_server)
    assert len(received) == CONTACTS and max(received.values()) == 1
    with transaction(app.factory) as db:
        workers = dict(db.execute(select(Message.worker, func.count()).group_by(Message.worker)).all())
        waves = db.scalar(
            select(func.count())
            .select_from(Wave)
            .where(Wave.session_id == "africa-2021", Wave.step == "invitation")
        )
        queued_events = db.scalar(
            select(func.count()).select_from(DeliveryEvent).where(DeliveryEvent.kind == "queued")
        )
    assert waves == 1
    assert queued_events == CONTACTS, "exactly one process materialised the step"
    print(f"\n[multi-process] messages per worker: {sorted(workers.values())}")
    assert len(workers) >= 2, f"work was shared: {workers}"
    app.close()


def test_kills_of_processes_holding_a_batch_resend_at_most_the_connections_in_flight(
    tmp_path: Path, postgres_url: str
) -> None:
    """The bench/crash_duplicates.py scenario with fewer kills: 3 processes on PostgreSQL, each kill hitting
    one that holds claimed messages; the same bounds as the README's guarantee."""
    from tests.crash_runs import drop_database, fresh_database, kill_run

    url = fresh_database(postgres_url, postgres_url.rsplit("/", 1)[-1] + "_kills")
    try:
        run = kill_run(tmp_path, url, contacts=3000, kills=5)
    finally:
        drop_database(url)
    print(f"\n[kills] {run.summary()}")
    assert run.kills >= 3, "the wave lasted for at least three kills of a process holding a batch"
    assert run.lost == 0
    assert run.most <= 2, "no message received more than twice"
    assert run.per_kill <= run.connections, "mean duplicates per kill within the connections in flight"
    assert run.statuses.get("sent", 0) + run.statuses.get("held", 0) == 3000
