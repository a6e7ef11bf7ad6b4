"""Two ``mailer contacts import`` processes of the same people into one list at once, their rows in different
orders: on PostgreSQL their chunks' inserts wait for each other's uncommitted rows and can deadlock (the
server then aborts one of them); the import retries the chunk, so both end, and the store holds each person
once, on the list once."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

from sqlalchemy import func, select

from mailer.app import App
from mailer.store.engine import transaction
from mailer.store.models import Contact, ListMembership
from tests.conftest import ROOT

PEOPLE = 100_000


def _write(path: Path, order: list[int]) -> None:
    lines = ["Email,First name,Last name,Country"]
    lines += [f"user{i:05d}@d{i % 50}.example,F{i},L{i},Ghana" for i in order]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_two_imports_of_the_same_people_at_once_both_end_and_store_each_once(
    app: App, tmp_path: Path
) -> None:
    order = list(range(PEOPLE))
    random.Random(7).shuffle(order)
    _write(tmp_path / "shuffled.csv", order)
    _write(tmp_path / "reversed.csv", list(reversed(range(PEOPLE))))
    base = [str(Path(sys.executable).parent / "mailer"), "--config", str(ROOT / "config")]
    base += ["--database-url", app.settings.database_url, "contacts", "import"]
    imports = [
        subprocess.Popen(
            [
                *base,
                str(tmp_path / name),
                "--region",
                "africa",
                "--rejects",
                str(tmp_path / f"{name}.rejects"),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for name in ("shuffled.csv", "reversed.csv")
    ]
    outputs = [process.communicate(timeout=300)[0] for process in imports]
    assert [process.returncode for process in imports] == [0, 0], outputs
    assert all(f"{PEOPLE} rows accepted" in output for output in outputs), outputs
    with transaction(app.factory) as db:
        contacts = db.scalar(select(func.count(func.distinct(Contact.email_key))))
        rows = db.scalar(select(func.count()).select_from(Contact))
        members = db.scalar(select(func.count()).select_from(ListMembership))
    assert (contacts, rows, members) == (PEOPLE, PEOPLE, PEOPLE)
