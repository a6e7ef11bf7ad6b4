"""Start-up cost of the ``mailer`` command: CPU seconds (user + system) of whole processes.

usage: .venv/bin/python bench/startup.py [--runs 5]

Runs, in the same process tree and one after another: ``python -c pass`` (the interpreter alone),
``python -c "import sqlalchemy.orm"`` (the floor of any command that reads the store), ``mailer --help``,
``mailer log`` and ``mailer report`` on a scratch SQLite store holding one queued wave (made first, in a
temporary folder). Each is run once to warm the file cache and write bytecode, then ``--runs`` times; prints
the median and the smallest CPU time, the median wall time, and the targets (``--help`` under 0.3 s,
``log`` under 0.6 s of CPU). CPU time comes from ``os.wait4`` per child, so other processes on a busy
machine slow the wall time more than the CPU time; compare each line with ``python -c pass`` of the same run.
Bytecode caching is on for the children even when ``PYTHONDONTWRITEBYTECODE`` is set here, as it is for an
installed package.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
MAILER = str(Path(PYTHON).with_name("mailer"))
TARGETS = {"mailer --help": 0.3, "mailer log": 0.6}


def child_cpu(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Run ``argv`` to the end; (CPU seconds user + system, wall seconds). Raises CalledProcessError on failure."""
    started = time.perf_counter()
    process = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        stderr = process.stderr.read().decode() if process.stderr else ""
        raise subprocess.CalledProcessError(process.returncode, argv, stderr=stderr)
    if process.stderr:
        process.stderr.close()
    return usage.ru_utime + usage.ru_stime, wall


def make_store(env: dict[str, str]) -> None:
    """A store with the Latin America contacts and one queued invitation wave."""
    contacts = ROOT.parent / "shared" / "data" / "contacts" / "latin-america.csv"
    if contacts.exists():
        subprocess.run(
            [MAILER, "contacts", "import", str(contacts), "--region", "latin-america"],
            env=env,
            cwd=ROOT,
            check=True,
            stdout=subprocess.DEVNULL,
        )
    subprocess.run(
        [MAILER, "waves", "queue", "--session", "latin-america-2022", "--step", "invitation"],
        env=env,
        cwd=ROOT,
        check=True,
        stdout=subprocess.DEVNULL,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs per command after one warm-up")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
        env["DATABASE_URL"] = f"sqlite:///{Path(scratch) / 'mailer.db'}"
        make_store(env)
        cases = {
            "python -c pass": [PYTHON, "-c", "pass"],
            "python -c 'import sqlalchemy.orm'": [PYTHON, "-c", "import sqlalchemy.orm"],
            "mailer --help": [MAILER, "--help"],
            "mailer log": [MAILER, "log"],
            "mailer report": [MAILER, "report"],
        }
        print(f"{'command':<36} {'CPU median':>10} {'CPU min':>8} {'wall median':>11}  target (CPU)")
        for label, argv in cases.items():
            child_cpu(argv, env)
            runs = [child_cpu(argv, env) for _ in range(args.runs)]
            cpu = [run[0] for run in runs]
            wall = statistics.median(run[1] for run in runs)
            target = TARGETS.get(label)
            verdict = ""
            if target is not None:
                verdict = f"< {target:.1f} s: {'met' if statistics.median(cpu) < target else 'NOT met'}"
            print(
                f"{label:<36} {statistics.median(cpu):9.3f}s {min(cpu):7.3f}s {wall:10.3f}s  {verdict}",
                flush=True,
            )
        print(f"load average (1, 5, 15 min): {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
