"""An export longer than a chunk: the first row of an address wins wherever the later ones are, in the same
chunk or thousands of lines further, and the duplicates are reported in file order with that first line,
on both stores, imported, imported again and dry-run alike."""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from mailer.app import App
from mailer.audience.contacts import import_contacts
from mailer.audience.row_import import Duplicate
from mailer.audience.seen import close_seen, open_seen
from mailer.store.models import Contact, ListMembership

NOW = datetime(2021, 6, 1, 9, 0, tzinfo=UTC)
ROWS = 14_000  # lines after the header: several chunks of at most 5,000 accepted rows


def _address(row: int) -> str:
    """The address written on data row ``row`` (0-based): repeats near and far, in another case."""
    if row >= 9_000:
        return f"Person{row - 9_000}@Example.org"  # the address of a row 9,000 lines earlier
    if row % 7 == 6:
        return f"person{row - 1}@example.org"  # the row just before's
    if row % 11 == 10:
        return f"person{row % 50}@example.ORG"  # one of the first fifty's, again and again
    return f"person{row}@example.org"


def _export(path: Path) -> list[Duplicate]:
    """Write the export; the duplicates a plain first-wins pass over it finds, in file order."""
    first: dict[str, int] = {}
    expected = []
    with path.open("w", encoding="utf-8", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["Email", "First name", "Last name", "Country"])
        for row in range(ROWS):
            email, line = _address(row), row + 2
            out.writerow([email, f"First{row}", f"Last{row}", "Kenya" if row % 3 else "Narnia"])
            kept = first.setdefault(email.casefold(), line)
            if kept != line:
                expected.append(Duplicate(line, email.split("@")[0] + "@example.org", kept))
    return expected


def _count(app: App, model: type[Contact] | type[ListMembership]) -> int:
    with app.factory() as db:
        return int(db.scalar(select(func.count()).select_from(model)) or 0)


def test_the_first_row_of_an_address_wins_across_chunks(app: App, tmp_path: Path) -> None:
    path = tmp_path / "long.csv"
    expected = _export(path)
    distinct = ROWS - len(expected)
    assert any(dup.line - dup.kept_line > 5_000 for dup in expected)  # some cross a chunk boundary

    dry = import_contacts(app.factory, app.settings, path, "africa", NOW, dry_run=True)
    first = import_contacts(app.factory, app.settings, path, "africa", NOW, rejects_path=tmp_path / "r.csv")
    again = import_contacts(app.factory, app.settings, path, "africa", NOW, rejects_path=tmp_path / "r.csv")

    for report in (dry, first, again):
        assert report.duplicates == tuple(expected)
        assert report.rows == ROWS and report.rejected == ()
        assert report.imported == distinct
        assert [r.line for r in report.replaced] == sorted(r.line for r in report.replaced)
        assert {r.line for r in report.replaced} == {
            row + 2 for row in range(0, ROWS, 3) if row + 2 not in {dup.line for dup in expected}
        }
    assert (dry.new, first.new, again.unchanged) == (distinct, distinct, distinct)
    assert (_count(app, Contact), _count(app, ListMembership)) == (distinct, distinct)


def test_an_import_gives_sqlites_page_caches_more_room_and_takes_it_back(app: App) -> None:
    """SQLite: while the import's set of taken addresses is open, its connection caches 32 MiB of the store's
    pages and 16 MiB of the temporary tables' (fixed bounds, whatever the file's size); closing the set puts
    SQLite's default (2,000 KiB) back on both."""
    if app.engine.dialect.name != "sqlite":
        pytest.skip("page caches are SQLite's")
    with app.engine.connect() as connection, Session(bind=connection) as db:

        def caches() -> tuple[int, int]:
            main = db.execute(text("PRAGMA main.cache_size")).scalar_one()
            temp = db.execute(text("PRAGMA temp.cache_size")).scalar_one()
            return int(main), int(temp)

        open_seen(db)
        assert caches() == (-32768, -16384)
        close_seen(db)
        assert caches() == (-2000, -2000)
