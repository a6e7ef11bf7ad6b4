"""Benchmark the contact import: rows per second and peak memory on big generated exports.

usage: .venv/bin/python bench/import_contacts.py [--scale 2500] [--regions africa,caribbean] [--data DIR]
                                                 [--database-url URL] [--tools DIR] [--tracemalloc]

Generates the four regional exports with ../shared/tools/make_contacts.py (the `bench` extra: faker; ``--scale 2500``
gives about 100,000 rows per region) into a temporary folder, imports the chosen regions into a fresh store
(a temporary SQLite file unless ``--database-url`` names an EMPTY database), then imports each file a second
time (nothing changes). ``--data DIR`` keeps the generated files there and reuses them on the next run. Prints, per file: rows, wall and CPU seconds, rows/s (wall), and the process's peak RSS; with
``--tracemalloc`` also the peak of Python allocations during the import (slower: tracing costs time).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mailer.app import open_app  # noqa: E402
from mailer.audience.contacts import import_contacts  # noqa: E402
from mailer.config import load_settings  # noqa: E402
from mailer.timeline.clock import SystemClock  # noqa: E402

DEFAULT_TOOLS = Path(os.environ.get("MAILER_TOOLS_DIR", ROOT.parent / "shared" / "tools"))


def peak_rss_mib() -> float:
    """The process's peak resident set size so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", type=int, default=2500, help="make_contacts.py --scale (40 rows per unit)")
    parser.add_argument("--regions", default="africa,caribbean,asia-pacific,latin-america")
    parser.add_argument("--database-url", help="an EMPTY database; default: a temporary SQLite file")
    parser.add_argument("--tools", type=Path, default=DEFAULT_TOOLS, help="folder holding make_contacts.py")
    parser.add_argument("--tracemalloc", action="store_true", help="also measure Python allocation peaks")
    parser.add_argument("--data", type=Path, help="keep generated files here and reuse them when present")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="mailer-bench-") as temp:
        folder = Path(temp)
        data = args.data or folder / "data"
        if not (data / "manifest.json").is_file():
            started = time.perf_counter()
            subprocess.run(
                [sys.executable, str(args.tools / "make_contacts.py"), str(data), "--scale", str(args.scale)],
                check=True,
            )
            print(f"generated in {time.perf_counter() - started:.1f} s into {data}")
        manifest = json.loads((data / "manifest.json").read_text(encoding="utf-8"))

        url = args.database_url or f"sqlite:///{folder / 'bench.db'}"
        settings = dataclasses.replace(load_settings(ROOT / "config", database_url=url), base_dir=folder)
        app = open_app(settings)
        print(f"store: {app.engine.dialect.name}; peak RSS before importing: {peak_rss_mib():.0f} MiB")
        print(
            f"{'file':22} {'pass':>5} {'rows':>8} {'new':>8} {'upd':>6} {'unch':>8} {'rej':>5} {'dup':>5}"
            f" {'seconds':>8} {'cpu s':>6} {'rows/s':>8} {'peakRSS':>8} {'pyPeak':>7}"
        )
        try:
            for region in args.regions.split(","):
                path = data / f"{region}.csv"
                for attempt in ("first", "again"):
                    if args.tracemalloc:
                        tracemalloc.start()
                    started, cpu_started = time.perf_counter(), time.process_time()
                    report = import_contacts(app.factory, settings, path, region, SystemClock().now())
                    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
                    python_peak = ""
                    if args.tracemalloc:
                        python_peak = f"{tracemalloc.get_traced_memory()[1] / 2**20:.0f}MiB"
                        tracemalloc.stop()
                    print(
                        f"{path.name:22} {attempt:>5} {report.rows:8d} {report.new:8d} {report.updated:6d}"
                        f" {report.unchanged:8d} {len(report.rejected):5d} {len(report.duplicates):5d}"
                        f" {seconds:8.2f} {cpu:6.2f} {report.rows / seconds:8.0f} {peak_rss_mib():6.0f}MiB {python_peak:>7}"
                    )
                    if attempt == "first":
                        assert report.imported == manifest[path.name]["expected_contacts"], "counts differ"
        finally:
            app.close()


if __name__ == "__main__":
    main()
