"""Duplicates when the store is locked longer than the lease while several service processes send a wave.

    .venv/bin/python bench/locked_store.py [-n 1500] [--processes 2] [--hold 15] [--at 100] \
        [--database-url postgresql+psycopg://postgres@127.0.0.1:5432/locked_bench | --sqlite]

``--processes`` real ``schedule.py`` processes (the fast settings of ``tests/service_processes.py``: a 6 s
lease, 1 s polls) send an invitation to ``-n`` contacts through a counting SMTP server on 127.0.0.1 that
takes ``--slow`` seconds a message. Once it has received ``--at`` messages, another session locks the store
for ``--hold`` seconds: on PostgreSQL ``LOCK TABLE messages IN ACCESS EXCLUSIVE MODE``, on SQLite a write
transaction (``BEGIN IMMEDIATE``). Prints the copies each recipient got (a distribution), the recipients
never reached and the messages' statuses once nothing is pending. The PostgreSQL database, whose name must
end in ``_bench``, is dropped and created. Not a test: prints figures; every run stops by itself.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mailer.app import App, open_app  # noqa: E402
from mailer.config import load_settings  # noqa: E402
from mailer.delivery.capture import SmtpServer  # noqa: E402
from mailer.store.engine import transaction  # noqa: E402
from mailer.store.models import Message  # noqa: E402
from tests import service_processes as live  # noqa: E402
from tests.crash_runs import CountingHandler, fresh_database  # noqa: E402


def statuses(app: App) -> dict[str, int]:
    with transaction(app.factory) as db:
        rows = db.execute(select(Message.status, func.count()).group_by(Message.status)).all()
    return {str(status): int(count) for status, count in rows}


def lock_store(url: str, folder: Path, sqlite: bool) -> Any:
    """Another session holding the store's write lock until its ``commit``."""
    if sqlite:
        connection = sqlite3.connect(folder / "store.db", timeout=60, isolation_level=None)
        connection.execute("BEGIN IMMEDIATE")
        connection.execute("UPDATE contacts SET updated_at = updated_at WHERE id = 1")
        return connection
    held = psycopg.connect(make_url(url).set(drivername="postgresql").render_as_string(hide_password=False))
    held.execute("LOCK TABLE messages IN ACCESS EXCLUSIVE MODE")
    return held


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-n", "--contacts", type=int, default=1500)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--hold", type=float, default=15.0, help="seconds the store stays locked")
    parser.add_argument("--at", type=int, default=100, help="lock once the server received this many")
    parser.add_argument("--slow", type=float, default=0.01, help="seconds the server takes a message")
    parser.add_argument("--sqlite", action="store_true", help="one SQLite file instead of PostgreSQL")
    parser.add_argument("--database-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/locked_bench")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="locked-bench-") as temp:
        folder = Path(temp)
        if args.sqlite:
            url = f"sqlite:///{folder / 'store.db'}"
        else:
            name = str(make_url(args.database_url).database)
            if not name.endswith("_bench"):
                sys.exit(
                    f"{name}: the bench drops and creates its database; give one whose name ends in _bench"
                )
            url = fresh_database(args.database_url, name)
        config = live.write_live_config(folder)
        app = open_app(load_settings(config, database_url=url))
        live.add_contacts(app, args.contacts)
        handler = CountingHandler(args.slow)
        with SmtpServer(handler) as server:
            processes = [
                live.ServiceProcess(config, url, server.port, folder / f"service{i}.log")
                for i in range(args.processes)
            ]
            try:
                if not live.wait_until(lambda: handler.total() >= args.at, 90, 0.02):
                    sys.exit(f"the processes sent fewer than {args.at} messages in 90 s")
                held = lock_store(url, folder, args.sqlite)
                print(f"store locked at {handler.total()} received, for {args.hold:.0f} s")
                time.sleep(args.hold)
                held.commit()
                held.close()
                print(f"unlocked at {handler.total()} received")
                done = live.wait_until(
                    lambda: live.pending_count(app) == 0 and live.message_count(app) == args.contacts, 120, 1
                )
            finally:
                exits = [process.terminate(60) for process in processes]
        with handler.lock:
            copies = Counter(handler.received.values())
            reached = len(handler.received)
        duplicates = sum((count - 1) * people for count, people in copies.items())
        print(f"finished: {done}; exit codes {exits}")
        print(
            f"{args.contacts} contacts, {args.processes} processes, store locked {args.hold:.0f} s: "
            f"{duplicates} second copies; copies per recipient {dict(sorted(copies.items()))}; "
            f"never reached {args.contacts - reached}; statuses {statuses(app)}"
        )
        app.close()


if __name__ == "__main__":
    main()
