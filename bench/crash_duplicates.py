"""Duplicates after SIGKILLs: 3 service processes on PostgreSQL, a kill of a process holding a batch, 20 times.

    .venv/bin/python bench/crash_duplicates.py [-n 5000] [--kills 20] [--processes 3] \
        [--database-url postgresql+psycopg://postgres@127.0.0.1:5432/crash_bench]

Real ``schedule.py`` processes send one invitation wave to a counting aiosmtpd server on 127.0.0.1; each
kill hits a process at a moment it holds claimed messages, and a new process takes its place (the scenario of
``tests/crash_runs.py``). Prints the duplicates (copies beyond the first), their mean per kill, the most
copies one recipient received, the contacts who received nothing without their message being held for staff
review (lost), the held messages (and how many of them never reached the server), and the final statuses.
Not a test.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.crash_runs import fresh_database, kill_run  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=5000, help="contacts, one message each [5000]")
    parser.add_argument("--kills", type=int, default=20, help="SIGKILLs [20]")
    parser.add_argument("--processes", type=int, default=3, help="service processes at a time [3]")
    parser.add_argument(
        "--database-url",
        default="postgresql+psycopg://postgres@127.0.0.1:5432/crash_bench",
        help="PostgreSQL server and database name (dropped and created)",
    )
    args = parser.parse_args()
    name = args.database_url.rsplit("/", 1)[-1]
    url = fresh_database(args.database_url, name)
    with tempfile.TemporaryDirectory(prefix="crash-bench-") as directory:
        run = kill_run(Path(directory), url, contacts=args.n, kills=args.kills, processes=args.processes)
    print(run.summary())
    print(
        f"mean duplicates per kill {run.per_kill:.2f} (bound: {run.connections} connections in flight), "
        f"most copies of one message {run.most} (bound 2), lost {run.lost} (bound 0)"
    )
    return 0 if run.per_kill <= run.connections and run.most <= 2 and run.lost == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
