"""Benchmark the contact import: rows per second beside a reference of the same run, and peak memory.

usage: .venv/bin/python bench/import_contacts.py [--sizes 50000,200000] [--stores sqlite,postgresql]
           [--postgresql URL] [--runs 3] [--region africa] [--data DIR] [--tools DIR]

For each size, one region's export of about that many rows is generated with ../shared/tools/make_contacts.py
(the ``bench`` extra: faker; kept in ``--data``, default var/bench-contacts, and reused). Each run is a process
of its own on a fresh store (a temporary SQLite file; on PostgreSQL the ``--postgresql`` database, whose name
must end in ``_bench``: it is DROPPED and created again), and measures, on the same file:

    import     ``import_contacts`` into the empty store (every row new), then ``again`` (every row unchanged)
    reference  the floor of any import on the same machine at the same moment: the csv module reading the
               file, then the rows' cells bulk-loaded with no checks into an unindexed table (PostgreSQL:
               COPY; SQLite: the driver's executemany), one commit per 5000 rows
    floor      the schema's own floor: the imported contacts written again, as new ones, into the emptied
               tables with nothing but set-based SQL (INSERT ... SELECT of the contacts, their memberships and
               two journal rows each, with the real keys, indexes and foreign keys), 5000 rows a commit;
               rows/s (no import of as many new rows can be faster than this on the same store)
    CPU        per row of the first import: this process's and, on PostgreSQL, its server processes'
               (from /proc), in microseconds: what the import costs whatever else the machine runs
    peak RSS   of the import's process (the reference runs after the import), VmHWM in MiB

and prints, per store and size, the median of ``--runs`` runs: rows/s of both passes and of the reference,
their ratio (import / reference: what a loaded machine changes little) and the peak RSS.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ROOT.parent / "shared" / "tools"  # the shared tools beside the project checkout
ROWS_PER_SCALE = 40  # make_contacts.py writes 40 rows per region per --scale unit
TARGETS = {"postgresql": 50_000, "sqlite": 30_000}  # rows/s, issue 15


def peak_rss_mib() -> float:
    """The process's peak resident set size so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def generated(data: Path, tools: Path, rows: int) -> Path:
    """The folder of make_contacts.py exports of about ``rows`` rows per region, made when missing."""
    scale = max(1, rows // ROWS_PER_SCALE)
    folder = data / f"scale-{scale}"
    if not (folder / "manifest.json").is_file():
        script = tools / "make_contacts.py"
        if not script.is_file():
            sys.exit(f"{script} not found: pass --tools DIR (the folder holding make_contacts.py)")
        try:
            import faker  # noqa: F401  (what make_contacts.py needs)
        except ImportError:
            sys.exit("faker is missing: install the bench extra first: .venv/bin/pip install -e '.[bench]'")
        made = subprocess.run([sys.executable, str(script), str(folder), "--scale", str(scale)], check=False)
        if made.returncode:
            sys.exit(f"{script} failed (exit {made.returncode}); its error is above")
    return folder


def fresh_postgresql(url: str) -> None:
    """Drop and create the database ``url`` names (refused unless its name ends in ``_bench``)."""
    from sqlalchemy import create_engine, make_url, text

    parsed = make_url(url)
    name = parsed.database or ""
    if not name.endswith("_bench"):
        sys.exit(
            f"--postgresql: the database is dropped and created again, so its name must end in _bench, not {name!r}"
        )
    admin = create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()


def server_cpu(engine: Any) -> dict[int, float]:
    """CPU seconds (user + system) so far of each PostgreSQL backend serving the bench's database, by pid
    (read from /proc: the server runs on this machine), the one answering this query included (the pool
    hands the import the same connection); {} for SQLite, which runs in this process."""
    if engine.dialect.name != "postgresql":
        return {}
    from sqlalchemy import text

    with engine.connect() as connection:
        pids = connection.execute(
            text("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
        ).scalars()
        found = {}
        for pid in pids:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            found[pid] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return found


def reference(engine: Any, path: Path, encoding: str, delimiter: str) -> float:
    """Seconds to read ``path`` with the csv module and bulk-load its cells into an unindexed table."""
    started = time.perf_counter()
    with path.open(encoding=encoding, newline="") as handle:
        reader = csv.reader(handle, delimiter=delimiter)
        width = len(next(reader))
        raw = engine.raw_connection()
        try:
            cursor = raw.cursor()
            columns = ", ".join(f"c{i} TEXT" for i in range(width))
            cursor.execute(f"CREATE TABLE reference_rows ({columns})")
            batch: list[list[str]] = []
            for cells in reader:
                batch.append((cells + [""] * width)[:width])
                if len(batch) == 5000:
                    _load(engine.dialect.name, cursor, batch, width)
                    raw.commit()
                    batch = []
            _load(engine.dialect.name, cursor, batch, width)
            raw.commit()
        finally:
            raw.close()
    return time.perf_counter() - started


#: The schema's own writes of new contacts, set-based (what ``floor`` times per chunk): the imported contacts
#: written again into the emptied tables, each put on the list and journalled twice (created, joined), with
#: the tables' real keys, indexes and foreign keys.
_FLOOR_CHUNK = 5000
_FLOOR = (
    "INSERT INTO contacts (email, email_key, name, title, institution, country, language, time_zone,"
    " needs_smtputf8, status, created_at, updated_at) SELECT email, email_key, name, title, institution,"
    " country, language, time_zone, needs_smtputf8, status, created_at, updated_at"
    " FROM floor_source WHERE n > :low AND n <= :high ORDER BY n",
    "INSERT INTO list_memberships (contact_id, list_id, source, added_at)"
    " SELECT id, :list, 'floor:' || CAST(id AS VARCHAR), updated_at FROM contacts WHERE id > :mark ORDER BY id",
    "INSERT INTO import_changes (import_id, change, contact_id, list_id, session_id, previous_status)"
    " SELECT :import, 'contact', id, NULL, '', '' FROM contacts WHERE id > :mark"
    " UNION ALL SELECT :import, 'membership', id, :list, '', '' FROM contacts WHERE id > :mark",
)


def floor(engine: Any) -> tuple[int, float]:
    """(rows, seconds): the store's time to write the imported contacts again, as new ones, into the emptied
    tables (contacts, memberships, journal) with nothing but set-based SQL, in chunks of 5000 rows committed
    as the import commits them (PostgreSQL: without waiting for the disk): the least any import of that many
    new rows can cost on this schema, whatever its parsing and merging. Empties the store's contacts."""
    from sqlalchemy import text

    with engine.connect() as connection:
        connection.execute(
            text(
                "CREATE TEMPORARY TABLE floor_source AS SELECT ROW_NUMBER() OVER (ORDER BY id) AS n, email,"
                " email_key, name, title, institution, country, language, time_zone, needs_smtputf8, status,"
                " created_at, updated_at FROM contacts"
            )
        )
        rows, list_id, import_id = connection.execute(
            text(
                "SELECT (SELECT count(*) FROM floor_source), (SELECT min(id) FROM contact_lists),"
                " (SELECT min(id) FROM imports)"
            )
        ).one()
        if engine.dialect.name == "postgresql":  # new files: no dead index entries of the same addresses
            connection.execute(text("TRUNCATE import_changes, list_memberships, contacts CASCADE"))
        else:  # SQLite: DELETE without WHERE is its truncate optimisation
            for table in ("import_changes", "list_memberships", "contacts"):
                connection.execute(text(f"DELETE FROM {table}"))
        connection.commit()
        started = time.perf_counter()
        for low in range(0, rows, _FLOOR_CHUNK):
            if engine.dialect.name == "postgresql":
                connection.execute(text("SET LOCAL synchronous_commit = off"))
            mark = connection.execute(text("SELECT coalesce(max(id), 0) FROM contacts")).scalar_one()
            values = {
                "low": low,
                "high": low + _FLOOR_CHUNK,
                "mark": mark,
                "list": list_id,
                "import": import_id,
            }
            for statement in _FLOOR:
                connection.execute(text(statement), values)
            connection.commit()
        return rows, time.perf_counter() - started


def _load(dialect: str, cursor: Any, batch: list[list[str]], width: int) -> None:
    if dialect == "postgresql":
        with cursor.copy("COPY reference_rows FROM STDIN") as copy:
            for cells in batch:
                copy.write_row(cells)
    else:
        cursor.executemany(f"INSERT INTO reference_rows VALUES ({', '.join('?' * width)})", batch)


def child(args: argparse.Namespace) -> None:
    """One run in this process: import twice, then the reference; prints one JSON line."""
    sys.path.insert(0, str(ROOT))
    from mailer.app import open_app
    from mailer.audience.contacts import import_contacts
    from mailer.config import load_settings
    from mailer.timeline.clock import SystemClock

    path = Path(args.child)
    manifest = json.loads((path.parent / "manifest.json").read_text(encoding="utf-8"))[path.name]
    with tempfile.TemporaryDirectory(prefix="mailer-bench-") as temp:
        url = args.postgresql if args.store == "postgresql" else f"sqlite:///{Path(temp) / 'bench.db'}"
        if args.store == "postgresql":
            fresh_postgresql(url)
        settings = dataclasses.replace(load_settings(ROOT / "config", database_url=url), base_dir=Path(temp))
        app = open_app(settings)
        result: dict[str, Any] = {}
        try:
            for attempt in ("first", "again"):
                server = server_cpu(app.engine)
                started, cpu = time.perf_counter(), time.process_time()
                report = import_contacts(app.factory, settings, path, args.region, SystemClock().now())
                result[attempt] = report.rows / (time.perf_counter() - started)
                spent = (
                    time.process_time()
                    - cpu
                    + sum(seconds - server.get(pid, 0.0) for pid, seconds in server_cpu(app.engine).items())
                )
                result[f"{attempt}_cpu"] = spent / report.rows * 1e6
                if attempt == "first":
                    assert report.imported == manifest["expected_contacts"], "counts differ from the manifest"
            result["rows"] = report.rows
            result["rss"] = peak_rss_mib()
            seconds = reference(app.engine, path, report.encoding, report.delimiter)
            result["reference"] = report.rows / seconds
            written, seconds = floor(app.engine)
            result["floor"] = written / seconds
        finally:
            app.close()
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="50000,200000", help="rows per file, comma-separated")
    parser.add_argument("--stores", default="sqlite,postgresql")
    parser.add_argument(
        "--postgresql", default="postgresql+psycopg://postgres@127.0.0.1:5432/mailer_import_bench"
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--region", default="africa")
    parser.add_argument("--data", type=Path, default=ROOT / "var" / "bench-contacts")
    parser.add_argument("--tools", type=Path, default=TOOLS, help="folder holding make_contacts.py")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--store", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    print(
        f"{'store':10} {'rows':>8} {'import':>8} {'again':>8} {'reference':>9} {'ratio':>6} {'floor':>8}"
        f" {'CPU us/row':>10} {'peakRSS':>8}  target (rows/s, import)"
    )
    for store in args.stores.split(","):
        for size in (int(n) for n in args.sizes.split(",")):
            path = generated(args.data, args.tools, size) / f"{args.region}.csv"
            runs = []
            for _ in range(args.runs):
                command = [sys.executable, __file__, "--child", str(path), "--store", store]
                command += ["--region", args.region, "--postgresql", args.postgresql]
                output = subprocess.run(command, check=False, capture_output=True, text=True, env=os.environ)
                if output.returncode:  # the child's own message (a refused database name, no server) says why
                    sys.stderr.write(output.stderr)
                    sys.exit(f"the {store} run of {path.name} failed (exit {output.returncode})")
                runs.append(json.loads(output.stdout.strip().splitlines()[-1]))

            def median(key: str, runs: list[dict[str, Any]] = runs) -> float:
                return statistics.median(run[key] for run in runs)

            ratio = statistics.median(run["first"] / run["reference"] for run in runs)
            met = "met" if median("first") >= TARGETS[store] else "NOT met"
            print(
                f"{store:10} {runs[0]['rows']:8d} {median('first'):8.0f} {median('again'):8.0f}"
                f" {median('reference'):9.0f} {ratio:6.2f} {median('floor'):8.0f} {median('first_cpu'):10.1f}"
                f" {median('rss'):5.0f}MiB  >= {TARGETS[store]:,}: {met}",
                flush=True,
            )


if __name__ == "__main__":
    main()
