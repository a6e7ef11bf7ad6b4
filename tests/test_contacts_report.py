"""What one contact import reports and records (mailer/audience/contacts.py): each count of a small export, the
summary in words, the import's record for undo, a dry run that stores nothing, and the errors that name the cause."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from mailer.app import App
from mailer.audience.contact_rows import Replaced
from mailer.audience.contacts import Duplicate, ImportReport, Rejected, import_contacts
from mailer.audience.import_log import import_view, list_imports
from mailer.errors import NaiveDatetimeError, NotFoundError
from mailer.store.engine import transaction
from mailer.store.models import Contact, ListMembership

NOW = datetime(2021, 6, 1, 9, 0, tzinfo=UTC)
HEADER = "Email,First name,Last name,Country,Preferred language\n"
ROWS = (
    "ana@example.org,Ana,Lima,Brazil,Portuguese\n"
    "not-an-address,Bad,Row,Chile,Spanish\n"
    "ANA@example.org,Ana,Again,Brazil,\n"
    "ben@example.org,Ben,Okafor,Nigeria,Klingon\n"
)
REJECTED = (Rejected(line=3, reason="An email address must have an @-sign.", raw_email="not-an-address"),)
DUPLICATES = (Duplicate(line=4, email="ANA@example.org", kept_line=2),)
REPLACED = (Replaced(line=5, column="language", value="Klingon", used="en", problem="not recognised"),)


@pytest.fixture
def export(tmp_path: Path) -> Path:
    path = tmp_path / "export.csv"
    path.write_text(HEADER + ROWS, encoding="utf-8")
    return path


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_report_counts_each_row_and_is_recorded_as_the_import(
    app: App, export: Path, tmp_path: Path
) -> None:
    progress: list[tuple[int, int]] = []
    rejects = tmp_path / "rejects.csv"
    report = import_contacts(
        app.factory,
        app.settings,
        export,
        "africa",
        NOW,
        rejects_path=rejects,
        progress=lambda done, total: progress.append((done, total)),
        by="sam",
        file_name="members.csv",
    )
    summary = (
        "2 rows accepted: 2 new, 0 updated, 0 unchanged; 2 added to the list; "
        "1 rejected, 1 duplicates, 1 cells replaced"
    )
    assert report == ImportReport(
        path=export,
        region="africa",
        encoding="utf-8",
        delimiter=",",
        rows=4,
        new=2,
        updated=0,
        unchanged=0,
        memberships_added=2,
        rejected=REJECTED,
        duplicates=DUPLICATES,
        rejects_path=rejects,
        replaced=REPLACED,
        import_id=report.import_id,
        file_name="members.csv",
    )
    assert (report.summary, report.imported, progress) == (summary, 2, [(5, 5)])
    assert report.import_id > 0
    record = import_view(app.factory, report.import_id)
    assert record is not None
    assert (record.kind, record.target, record.file_name, record.imported_by, record.imported_at) == (
        "contacts",
        "africa",
        "members.csv",
        "sam",
        NOW,
    )
    assert record.sha256 == hashlib.sha256(export.read_bytes()).hexdigest()
    assert (record.rows, record.accepted, record.rejected, record.duplicates, record.summary) == (
        4,
        2,
        1,
        1,
        summary,
    )
    with transaction(
        app.factory
    ) as db:  # each membership names the file as the organiser named it, and the line
        assert sorted(db.scalars(select(ListMembership.source))) == ["members.csv:2", "members.csv:5"]
    assert rejects.read_text("utf-8").splitlines()[1:] == [
        "not-an-address,Bad,Row,Chile,Spanish,3,An email address must have an @-sign."
    ]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_second_import_counts_updated_and_unchanged_contacts(
    app: App, export: Path, tmp_path: Path
) -> None:
    import_contacts(app.factory, app.settings, export, "africa", NOW, rejects_path=tmp_path / "1.csv")
    export.write_text(
        HEADER + "ana@example.org,Ana,Lima-Souza,Brazil,Portuguese\nben@example.org,Ben,Okafor,,\n"
    )
    again = import_contacts(app.factory, app.settings, export, "africa", NOW, rejects_path=tmp_path / "2.csv")
    assert (again.new, again.updated, again.unchanged, again.memberships_added, again.imported) == (
        0,
        1,
        1,
        0,
        2,
    )
    assert again.summary == (
        "2 rows accepted: 0 new, 1 updated, 1 unchanged; 0 added to the list; "
        "0 rejected, 0 duplicates, 0 cells replaced"
    )
    assert (again.file_name, again.rejects_path) == ("export.csv", None)
    record = import_view(app.factory, again.import_id)
    assert record is not None and (record.file_name, record.imported_by, record.accepted) == (
        "export.csv",
        "",
        2,
    )


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_dry_run_reports_the_counts_but_stores_and_records_nothing(
    app: App, export: Path, tmp_path: Path
) -> None:
    report = import_contacts(
        app.factory, app.settings, export, "africa", NOW, rejects_path=tmp_path / "r.csv", dry_run=True
    )
    assert (report.new, report.imported, report.import_id, report.file_name) == (2, 2, 0, "export.csv")
    assert list_imports(app.factory) == []
    with transaction(app.factory) as db:
        assert db.query(Contact).count() == 0


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_an_unknown_region_or_a_naive_time_is_refused_by_name(app: App, export: Path) -> None:
    with pytest.raises(NotFoundError, match="atlantis"):
        import_contacts(app.factory, app.settings, export, "atlantis", NOW)
    with pytest.raises(NaiveDatetimeError, match=r"^import time must be timezone-aware"):
        import_contacts(app.factory, app.settings, export, "africa", datetime(2021, 6, 1, 9, 0))
    assert list_imports(app.factory) == []
