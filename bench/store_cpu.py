"""CPU per message of the dispatch's store work alone, in the worker and in PostgreSQL.

    .venv/bin/python bench/store_cpu.py [-n 4000] [--root PATH] \
        [--database-url postgresql+psycopg://postgres@127.0.0.1:5432/store_bench]

What ``Service.dispatch`` asks of the store for each batch, without rendering or sending: claim 500 messages
(``claim_due``), mark them handed to SMTP a window of 32 at a time (:class:`~mailer.store.handover.HandOver`)
and record a 2xx outcome for each in groups of 4 (:class:`~mailer.store.recorder.OutcomeRecorder`, as a
worker with 8 connections does). ``N`` contacts are seeded and their invitation wave queued and analysed
first (not measured). Prints this process's CPU (all its threads) and the CPU of the PostgreSQL backends of
the bench database (``/proc``, sampled every 20 ms) per message. The database is dropped and created.

``--root`` runs the code of another checkout (e.g. a reference worktree) with this script, so that two
versions can be compared in alternation on a shared machine. Not a test: prints figures.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

PARSER = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
PARSER.add_argument("-n", "--messages", type=int, default=4000)
PARSER.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent)
PARSER.add_argument("--database-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/store_bench")
ARGS = PARSER.parse_args()
sys.path.insert(0, str(ARGS.root.resolve()))

from sqlalchemy import create_engine, insert, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from mailer.app import open_app  # noqa: E402
from mailer.config import load_settings  # noqa: E402
from mailer.store.engine import transaction  # noqa: E402
from mailer.store.handover import HandOver  # noqa: E402
from mailer.store.models import Contact, ContactList, ListMembership, MessageStatus  # noqa: E402
from mailer.store.outbox import Outcome, claim_due, queue_wave  # noqa: E402
from mailer.store.recorder import OutcomeRecorder  # noqa: E402
from mailer.timeline.clock import VirtualClock  # noqa: E402

AT = datetime(2021, 6, 1, 13, 0, tzinfo=UTC)
TICK = os.sysconf("SC_CLK_TCK")


def backend_seconds(database: str) -> dict[str, float]:
    """CPU seconds so far of each PostgreSQL backend serving ``database``, by PID."""
    seconds: dict[str, float] = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
            if not command.startswith(b"postgres: ") or f" {database} ".encode() not in command:
                continue
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        seconds[pid] = (int(fields[11]) + int(fields[12])) / TICK
    return seconds


def main() -> None:
    url = make_url(ARGS.database_url)
    database = str(url.database)
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        connection.execute(text(f'CREATE DATABASE "{database}"'))
    admin.dispose()
    os.environ.setdefault("MAILER_SECRET_KEY", "bench-secret-key-not-for-production")
    settings = load_settings(ARGS.root / "config", database_url=ARGS.database_url)
    app = open_app(settings)
    with transaction(app.factory) as db:
        list_id = db.scalar(
            insert(ContactList).values(region="africa", name="africa").returning(ContactList.id)
        )
        rows = [
            {
                "email": f"person{i:06d}@example.org",
                "email_key": f"person{i:06d}@example.org",
                "name": "Amina Diallo",
                "title": "",
                "institution": "Parliament",
                "country": "NG",
                "language": "en",
                "time_zone": "Africa/Lagos",
                "needs_smtputf8": False,
                "status": "active",
                "created_at": AT,
                "updated_at": AT,
            }
            for i in range(ARGS.messages)
        ]
        ids = db.scalars(insert(Contact).returning(Contact.id), rows).all()
        db.execute(
            insert(ListMembership),
            [{"contact_id": i, "list_id": list_id, "source": "bench", "added_at": AT} for i in ids],
        )
    with transaction(app.factory) as db:
        series = settings.series
        queue_wave(db, settings, series.session("africa-2021"), series.step("invitation"), AT)
        db.execute(text("ANALYZE messages"))
    clock = VirtualClock(AT + timedelta(minutes=1))

    async def dispatch() -> int:
        done = 0
        async with OutcomeRecorder(app.factory, settings, clock, worker="w", group_size=4) as recorder:
            while True:
                with transaction(app.factory) as db:
                    claimed, _ = claim_due(
                        db, settings, clock.now(), worker="w", limit=500, lease=timedelta(minutes=5)
                    )
                if not claimed:
                    return done
                handover = HandOver(app.factory, clock, worker="w", claimed=claimed, window=32)
                for index, message in enumerate(claimed):
                    await handover.before(index)
                    reply = f"2.0.0 Ok: queued as {message.pk:X}"
                    recorder.add(
                        Outcome(
                            message.pk, MessageStatus.SENT, 250, reply, "en", provider_id=f"{message.pk:X}"
                        )
                    )
                    if index % 4 == 3:
                        await asyncio.sleep(0)  # the replies of a group arrive while the loop goes on
                await recorder.flush()
                await handover.close()
                done += len(claimed)

    before = backend_seconds(database)
    seen: dict[str, float] = {}
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.02):
            seen.update(backend_seconds(database))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    cpu, wall = time.process_time(), time.perf_counter()
    sent = asyncio.run(dispatch())
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    stop.set()
    sampler.join()
    seen.update(backend_seconds(database))
    postgres = sum(seconds - before.get(pid, 0.0) for pid, seconds in seen.items())
    app.close()
    print(
        f"{ARGS.root}: {sent} messages, store CPU per message {cpu / sent * 1e6:.0f} us in the worker, "
        f"{postgres / sent * 1e6:.0f} us in PostgreSQL ({wall / sent * 1e6:.0f} us wall)"
    )


if __name__ == "__main__":
    main()
