"""A wave at scale: seed N contacts, queue one invitation wave to them, send the first S, on PostgreSQL and SQLite.

    .venv/bin/python bench/scale.py [--sizes 20000,200000,1000000] [--send 20000] [--stores postgresql,sqlite] \
        [--database-url postgresql+psycopg://postgres@127.0.0.1:5432/mailer_scale_bench] [--sqlite-path /tmp/mailer_scale_bench.db]

For each store and each N, three phases, each in its own spawned process whose peak RSS (VmHWM) and CPU time
are printed (CPU: the process's own, plus on PostgreSQL that of the server processes serving its connections;
on a machine shared with other work, CPU per message varies much less than wall time):

1. seed: N contacts in four languages and five time zones on the African list, made by the store itself
   (a recursive CTE; no row passes through Python: this is the bench's set-up, not the import), then ANALYZE
   (what autovacuum does soon after a bulk change);
2. queue: ``queue_wave`` of the invitation (one ``INSERT ... SELECT ... ON CONFLICT DO NOTHING`` from the
   audience query, the arrival events the same way; on PostgreSQL it re-samples the messages' planner
   statistics itself, as it does for any wave of 10,000 messages or more);
3. send: ``Service.dispatch`` through Postfix's smtp-sink (one worker, 16 connections, batches of 500) until
   S messages went: the cost of sending while the outbox holds N rows, N - S of them still queued.

Then, per store, the cost per message at the largest N over the smallest, for queuing and for sending, in wall
time and in CPU time: 1.0 is linear in N (the target is <= 1.2). Not a test: prints figures.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import queue as queue_module
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from sqlalchemy import Engine, bindparam, event, select, text  # noqa: E402
from throughput import (  # noqa: E402
    INVITATION_AT,
    bench_settings,
    free_port,
    peak_rss_kib,
    prepare_database,
    process_seconds,
    start_sink,
)

from mailer.app import open_app, run_async  # noqa: E402
from mailer.config import Settings, StepKind  # noqa: E402
from mailer.delivery.forwarding import Forwarding, Transport  # noqa: E402
from mailer.store.engine import transaction  # noqa: E402
from mailer.store.models import ContactList, UTCDateTime  # noqa: E402
from mailer.store.outbox import queue_wave  # noqa: E402
from mailer.timeline.clock import VirtualClock  # noqa: E402

ZONES = ("Africa/Lagos", "Africa/Nairobi", "Africa/Johannesburg", "Africa/Cairo", "Atlantic/Cape_Verde")
SEED = (
    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :count) "
    "INSERT INTO contacts (email, email_key, name, title, institution, country, language, time_zone, "
    "needs_smtputf8, status, created_at, updated_at) "
    "SELECT 'person' || n.i || '@example.org', 'person' || n.i || '@example.org', 'Person ' || n.i, "
    "CASE WHEN n.i % 3 = 0 THEN 'Hon.' ELSE '' END, 'Parliament', 'NG', "
    "CASE n.i % 4 WHEN 0 THEN 'en' WHEN 1 THEN 'es' WHEN 2 THEN 'fr' ELSE 'ar' END, "
    "CASE n.i % 5 " + " ".join(f"WHEN {k} THEN '{zone}'" for k, zone in enumerate(ZONES)) + " END, "
    "false, 'active', :now, :now FROM n"
)
MEMBERS = (
    "INSERT INTO list_memberships (contact_id, list_id, source, added_at) "
    "SELECT id, :list, 'bench', :now FROM contacts"
)


def seed(settings: Settings, count: int) -> None:
    """``count`` contacts on the African list, made by the store (the database is empty)."""
    app = open_app(settings)
    now = bindparam("now", INVITATION_AT, type_=UTCDateTime())
    with transaction(app.factory) as db:
        contact_list = ContactList(region="africa", name="Africa")
        db.add(contact_list)
        db.flush()
        db.execute(text(SEED).bindparams(now), {"count": count})
        db.execute(text(MEMBERS).bindparams(now), {"list": contact_list.id})
    analyse(app)
    app.close()


def analyse(app: Any) -> None:
    """Planner statistics, as autovacuum (PostgreSQL) gathers them within a minute of a bulk change (SQLite:
    ANALYZE; the service itself never runs it)."""
    with app.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.exec_driver_sql("ANALYZE")


def queue(settings: Settings) -> int:
    """Queue the invitation wave; returns how many messages it added."""
    app = open_app(settings)
    series = settings.series
    with transaction(app.factory) as db:
        added = queue_wave(
            db, settings, series.session("africa-2021"), series.step("invitation"), INVITATION_AT
        )
    app.close()
    return added.added


class Counting(Forwarding):
    """A transport that passes messages on to ``inner`` and sets ``stop`` once ``limit`` have gone."""

    def __init__(self, inner: Transport, limit: int, stop: asyncio.Event) -> None:
        self.inner, self.limit, self.stop, self.sent = inner, limit, stop, 0

    def route(self, kind: StepKind | None) -> Transport:
        return self.inner

    def before_send(self, recipient: str) -> None:
        self.sent += 1
        if self.sent >= self.limit:
            self.stop.set()

    async def close(self) -> None:
        await self.inner.close()


def send(settings: Settings, limit: int) -> int:
    """Dispatch until ``limit`` messages went (the batch under way finishes); returns how many were recorded."""
    from mailer.delivery.pool import SmtpPool
    from mailer.service import Service

    app = open_app(settings)
    service = Service(app, VirtualClock(INVITATION_AT + timedelta(minutes=1)), worker="scale", batch_size=500)

    async def run() -> int:
        stop = asyncio.Event()
        async with SmtpPool(settings.smtp) as pool:
            report = await service.dispatch(Counting(pool, limit, stop), stop=stop)
        return report.total

    sent = run_async(run())
    app.close()
    return sent


class ServerCpu:
    """CPU seconds of the PostgreSQL server processes serving this process's connections: each backend's
    /proc/PID/stat read when its connection opens and just before it closes (the server runs on this machine)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.started: dict[int, tuple[int, float]] = {}  # id(connection) -> (backend pid, its CPU seconds)
        event.listen(Engine, "connect", self.opened)
        event.listen(Engine, "close", self.closing)

    def opened(self, connection: Any, _record: Any) -> None:
        if type(connection).__module__.startswith("psycopg"):
            pid = int(connection.info.backend_pid)  # known to the driver: no query, no transaction left open
            self.started[id(connection)] = pid, process_seconds(pid)

    def closing(self, connection: Any, _record: Any) -> None:
        started = self.started.pop(id(connection), None)
        if started is not None:
            pid, seconds = started
            try:
                self.seconds += process_seconds(pid) - seconds
            except FileNotFoundError:  # the server ended the backend first: its last figures are gone
                pass


def phase(target: Any, results: Any, *args: Any) -> None:
    """Run ``target(*args)`` and report (its result, wall seconds, CPU seconds, peak RSS KiB)."""
    server = ServerCpu()
    started, cpu = time.perf_counter(), time.process_time()
    value = target(*args)
    seconds = time.perf_counter() - started
    results.put((value, seconds, time.process_time() - cpu + server.seconds, peak_rss_kib()))


def in_process(target: Any, *args: Any) -> tuple[Any, float, float, int]:
    """``target(*args)`` in a fresh spawned process: (result, wall seconds, CPU seconds of it and of the
    PostgreSQL processes serving it, its peak RSS in KiB)."""
    spawn = multiprocessing.get_context("spawn")
    results = spawn.Queue()
    process = spawn.Process(target=phase, args=(target, results, *args))
    process.start()
    while True:
        try:
            value, seconds, cpu, rss = results.get(timeout=1)
            break
        except queue_module.Empty:
            if not process.is_alive():
                sys.exit(f"{target.__name__} failed (exit {process.exitcode})")
    process.join()
    return value, seconds, cpu, rss


def count_rows(settings: Settings) -> tuple[int, int]:
    """(messages, delivery events) in the store."""
    app = open_app(settings)
    with transaction(app.factory) as db:
        messages = db.scalar(select(text("count(*)")).select_from(text("messages")))
        events = db.scalar(select(text("count(*)")).select_from(text("delivery_events")))
    app.close()
    return int(messages or 0), int(events or 0)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="20000,200000,1000000", help="wave sizes N, comma-separated")
    parser.add_argument("--send", type=int, default=20_000, help="messages S sent at each N")
    parser.add_argument("--stores", default="postgresql,sqlite")
    parser.add_argument(
        "--database-url",
        default=os.environ.get(
            "BENCH_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/mailer_scale_bench"
        ),
    )
    parser.add_argument("--sqlite-path", default="/tmp/mailer_scale_bench.db")
    args = parser.parse_args()
    os.environ.setdefault("MAILER_SECRET_KEY", "bench-secret-key-not-for-production")
    sizes = [int(size) for size in args.sizes.split(",")]
    port = free_port()
    sink = start_sink(port)
    try:
        for store in args.stores.split(","):
            url = args.database_url if store == "postgresql" else f"sqlite:///{args.sqlite_path}"
            costs: dict[int, tuple[float, float, float, float]] = {}
            for size in sizes:
                settings = bench_settings(prepare_database(url), port, 16)
                _, seeded, _, seed_rss = in_process(seed, settings, size)
                added, queued, queue_cpu, queue_rss = in_process(queue, settings)
                sent, sending, send_cpu, send_rss = in_process(send, settings, min(args.send, size))
                messages, events = count_rows(settings)
                if added != size or messages != size:
                    sys.exit(f"{store} N={size}: queued {added}, {messages} messages in the store")
                costs[size] = (queued / size, sending / sent, queue_cpu / size, send_cpu / sent)
                print(
                    f"{store:10} N={size:>9,}  seed {seeded:7.1f} s ({seed_rss / 1024:4.0f} MiB)  "
                    f"queue {queued:6.1f} s = {queued / size * 1e6:5.1f} us/msg, "
                    f"CPU {queue_cpu / size * 1e6:5.1f} us/msg ({queue_rss / 1024:4.0f} MiB)  "
                    f"send {sent:,} in {sending:6.1f} s = {sent / sending:5.0f} msg/s, "
                    f"CPU {send_cpu / sent * 1e6:5.0f} us/msg ({send_rss / 1024:4.0f} MiB)  "
                    f"[{events:,} events]",
                    flush=True,
                )
            small, large = min(costs), max(costs)
            if small != large:
                ratios = [
                    large_cost / small_cost
                    for large_cost, small_cost in zip(costs[large], costs[small], strict=True)
                ]
                print(
                    f"{store:10} cost per message N={large:,} / N={small:,}: queue {ratios[0]:.2f} "
                    f"(CPU {ratios[2]:.2f}), send {ratios[1]:.2f} (CPU {ratios[3]:.2f}) (target <= 1.2)",
                    flush=True,
                )
    finally:
        sink.terminate()
        sink.wait()


if __name__ == "__main__":
    main()
