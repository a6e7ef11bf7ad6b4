"""Imports are recorded, checked against their session, listed and undone (issue 14, item 2)."""

from __future__ import annotations

import io
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from openpyxl import Workbook
from sqlalchemy import func, select, update

from mailer.app import App
from mailer.audience.contacts import ImportReport, contact_by_email, import_contacts
from mailer.audience.import_log import file_sha256, list_imports
from mailer.audience.import_undo import undo_import
from mailer.audience.registrations import import_registrations
from mailer.cli import cli, main
from mailer.errors import NotFoundError, ReportMismatchError
from mailer.store.models import (
    Contact,
    DeliveryEvent,
    ImportRecord,
    ListMembership,
    Message,
    MessageStatus,
    Registration,
    RegistrationStatus,
    Wave,
)
from mailer.store.outbox import queue_wave
from tests.conftest import CONTACTS_DIR, ROOT

MANIFEST: dict[str, Any] = json.loads((CONTACTS_DIR / "manifest.json").read_text(encoding="utf-8"))
NOW = datetime(2021, 6, 25, 12, 0, tzinfo=UTC)
AFRICA_REPORT = CONTACTS_DIR / "registrations-africa.csv"
LATAM_REPORT = CONTACTS_DIR / "registrations-latin-america.csv"


def count(app: App, model: Any, *where: Any) -> int:
    with app.factory() as db:
        return int(db.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def run(app: App, *args: str) -> Any:
    base = ["--config", str(ROOT / "config"), "--database-url", app.settings.database_url]
    return CliRunner().invoke(cli, [*base, *args], catch_exceptions=False)


def run_main(app: App, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """The console entry point as a user runs it: (exit code, stdout and stderr)."""
    base = ["mailer", "--config", str(ROOT / "config"), "--database-url", app.settings.database_url]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "argv", [*base, *args])
        with pytest.raises(SystemExit) as exited:
            main()
    captured = capsys.readouterr()
    return int(exited.value.code or 0), captured.out + captured.err


def import_caribbean(app: App, tmp_path: Path) -> ImportReport:
    """The shared Caribbean export imported into its list at NOW, rejects in ``tmp_path``."""
    return import_contacts(
        app.factory,
        app.settings,
        CONTACTS_DIR / "caribbean.csv",
        "caribbean",
        NOW,
        rejects_path=tmp_path / "c",
    )


def registered(app: App, session_id: str) -> int:
    return count(
        app,
        Registration,
        Registration.session_id == session_id,
        Registration.status == RegistrationStatus.REGISTERED,
    )


def test_a_report_of_another_session_is_refused_with_both_shown(
    app: App, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ReportMismatchError) as refused:
        import_registrations(
            app.factory,
            app.settings,
            AFRICA_REPORT,
            "latin-america-2022",
            NOW,
            rejects_path=tmp_path / "r.csv",
        )
    assert str(refused.value) == (
        "registrations-africa.csv does not look like a report of session latin-america-2022: the report's "
        "title 'Budapest Convention webinar: African Region' is not 'Parliamentary webinar on the Budapest "
        "Convention on Cybercrime: Latin America' (it names africa-2021: 'Parliamentary webinar on the "
        "Budapest Convention on Cybercrime: African Region'); the report's date 2021-07-13 is not the "
        "session's 2022-03-07. Nothing was imported: import it into the right session, or confirm that it "
        "belongs here"
    )
    assert (count(app, Registration), count(app, Contact), count(app, ImportRecord)) == (0, 0, 0)

    code, output = run_main(
        app, capsys, "registrations", "import", str(AFRICA_REPORT), "--session", "latin-america-2022"
    )
    assert code == 2
    assert output.startswith(
        "error: registrations-africa.csv does not look like a report of session latin-america"
    )
    assert output.endswith(
        "the report's date 2021-07-13 is not the session's 2022-03-07. Nothing was imported: import it into the"
        " right session, or confirm that it belongs here (--force)\n"
    )
    assert count(app, Registration) == 0

    # the right session takes it; --force takes it into the wrong one, and says so
    report = import_registrations(
        app.factory, app.settings, AFRICA_REPORT, "africa-2021", NOW, rejects_path=tmp_path / "r.csv"
    )
    assert (report.mismatch, report.registered) == (
        "",
        MANIFEST["africa.csv"]["registrations"]["expected_registered"],
    )
    forced = run(
        app,
        "registrations",
        "import",
        str(AFRICA_REPORT),
        "--session",
        "latin-america-2022",
        "--force",
        "--rejects",
        str(tmp_path / "f.csv"),
    )
    assert forced.exit_code == 0, forced.output
    assert "imported with --force although the report's title" in forced.output
    (latest, first) = list_imports(app.factory)
    assert (latest.target, latest.forced, first.target, first.forced) == (
        "latin-america-2022",
        True,
        "africa-2021",
        False,
    )


def test_undo_a_registration_import_keeps_what_was_sent(app: App, tmp_path: Path) -> None:
    expected = MANIFEST["latin-america.csv"]
    import_contacts(
        app.factory,
        app.settings,
        CONTACTS_DIR / "latin-america.csv",
        "latin-america",
        NOW,
        rejects_path=tmp_path / "c.csv",
        by="cli:tester",
    )
    contacts_before = count(app, Contact)
    report = import_registrations(
        app.factory,
        app.settings,
        LATAM_REPORT,
        "latin-america-2022",
        NOW,
        rejects_path=tmp_path / "r.csv",
        by="web:ana",
    )
    assert registered(app, "latin-america-2022") == expected["registrations"]["expected_registered"] == 71
    assert count(app, Contact) == contacts_before + 3

    (record, contacts_record) = list_imports(app.factory)
    assert (record.id, record.kind, record.target, record.file_name, record.imported_by) == (
        report.import_id,
        "registrations",
        "latin-america-2022",
        "registrations-latin-america.csv",
        "web:ana",
    )
    assert record.sha256 == file_sha256(LATAM_REPORT)
    assert (record.rows, record.accepted, record.rejected) == (84, 83, 1)
    assert record.changes == 83 + 3  # registrations created, contacts created
    assert (contacts_record.kind, contacts_record.imported_by, contacts_record.accepted) == (
        "contacts",
        "cli:tester",
        expected["expected_contacts"],
    )

    # one of the new contacts was mailed meanwhile: a sent reminder
    with app.factory() as db, db.begin():
        guest = db.scalars(
            select(Contact).where(Contact.email_key == "guest0.latin-america@mail.example.net")
        ).one()
        wave = Wave(
            session_id="latin-america-2022",
            step="reminder",
            audience="registrants",
            scheduled_at=NOW,
            created_at=NOW,
        )
        db.add(wave)
        db.flush()
        db.add(
            Message(
                message_id="<sent.1@mail.example.org>",
                contact_id=guest.id,
                session_id="latin-america-2022",
                step="reminder",
                wave_id=wave.id,
                recipient=guest.email,
                status=MessageStatus.SENT,
                due_at=NOW,
                deadline_at=NOW + timedelta(days=1),
                attempts=1,
                sent_at=NOW,
                created_at=NOW,
                updated_at=NOW,
            )
        )

    result = run(app, "imports", "undo", str(report.import_id))
    assert result.exit_code == 0, result.output
    assert result.output == (
        f"import {report.import_id} undone: 83 registrations withdrawn, 0 restored; 0 taken off the list; "
        "2 contacts removed, 1 kept (already mailed); 0 pending messages skipped\n"
    )
    assert count(app, Registration) == 0
    assert count(app, Contact) == contacts_before + 1
    assert count(app, Message, Message.status == MessageStatus.SENT) == 1  # the log keeps what was sent
    with pytest.raises(NotFoundError):
        contact_by_email(app.factory, "guest1.latin-america@mail.example.net")

    again = run(app, "imports", "undo", str(report.import_id))
    assert again.exit_code == 1
    assert f"import {report.import_id} was already undone on 20" in again.output
    missing = run(app, "imports", "undo", "999")
    assert (missing.exit_code, missing.output.strip()) == (
        2,
        "Error: no import 999 (see `mailer imports list`)",
    )

    listing = run(app, "imports", "list")
    assert listing.exit_code == 0
    assert "2 imports shown" in listing.output
    assert "2 contacts removed" in listing.output


def test_undo_restores_changed_registrations_and_removes_a_contact_import(app: App, tmp_path: Path) -> None:
    first = tmp_path / "first.csv"
    later = tmp_path / "later.csv"
    header = "First Name,Last Name,Email,Country/Region Name,Organization,Registration Time,Approval Status"
    for path, status in ((first, "denied"), (later, "approved")):
        path.write_text(
            "Topic,Webinar ID,Scheduled Time\nBudapest Convention webinar: Caribbean,1,2021-09-28 10:00 AM\n\n"
            f"{header}\n"
            f"Ana,Lima,ana@example.org,Jamaica,Senate,2021-06-20 09:00:00 AM,{status}\n",
            encoding="utf-8",
        )
    import_registrations(app.factory, app.settings, first, "caribbean-2021", NOW, rejects_path=tmp_path / "1")
    second = import_registrations(
        app.factory,
        app.settings,
        later,
        "caribbean-2021",
        NOW + timedelta(hours=1),
        rejects_path=tmp_path / "2",
    )
    assert contact_by_email(app.factory, "ana@example.org").registrations == (
        ("caribbean-2021", "registered"),
    )
    undone = undo_import(app.factory, second.import_id, "web:ana", NOW + timedelta(hours=2))
    assert (undone.registrations_withdrawn, undone.registrations_restored, undone.contacts_removed) == (
        0,
        1,
        0,
    )
    assert contact_by_email(app.factory, "ana@example.org").registrations == (("caribbean-2021", "denied"),)

    contacts = import_caribbean(app, tmp_path)
    members = count(app, ListMembership)
    assert members == MANIFEST["caribbean.csv"]["expected_contacts"]
    undone = undo_import(app.factory, contacts.import_id, "cli:tester", NOW + timedelta(hours=3))
    assert (undone.memberships_removed, undone.contacts_removed, undone.contacts_kept) == (
        members,
        contacts.new,
        0,
    )
    assert count(app, ListMembership) == 0
    assert count(app, Contact) == 1  # ana, from the registration report, stays
    assert count(app, DeliveryEvent) == 0


def test_a_dry_run_stores_and_records_nothing(app: App, tmp_path: Path) -> None:
    report = import_contacts(
        app.factory,
        app.settings,
        CONTACTS_DIR / "africa.csv",
        "africa",
        NOW,
        rejects_path=tmp_path / "r.csv",
        dry_run=True,
    )
    assert (report.new, report.import_id) == (MANIFEST["africa.csv"]["expected_contacts"], 0)
    assert (count(app, Contact), count(app, ImportRecord)) == (0, 0)


def workbook_bytes(rows: list[list[Any]]) -> bytes:
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    for row in rows:
        sheet.append(row)
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


@pytest.mark.parametrize("name", ["contacts.xlsx", "CONTACTS.XLSM"])
def test_an_excel_workbook_is_read(app: App, tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(
        workbook_bytes(
            [
                ["Email", "Name", "Country"],
                ["ana@example.org", "Ana\nLima", "Peru"],
                [None, None, None],
                ["not-an-address", "Bad", "Chile"],
                ["tom@example.org", 42, "Chile"],
            ]
        )
    )
    report = import_contacts(
        app.factory, app.settings, path, "latin-america", NOW, rejects_path=tmp_path / "r"
    )
    assert (report.encoding, report.new, [r.line for r in report.rejected]) == ("xlsx", 2, [4])
    ana = contact_by_email(app.factory, "ana@example.org")
    assert (ana.name, ana.country) == ("Ana Lima", "PE")
    assert contact_by_email(app.factory, "tom@example.org").name == "42"


def test_undo_removes_the_contacts_it_created_whose_messages_never_reached_a_server(
    app: App, tmp_path: Path
) -> None:
    """A contact counts as mailed once a message to it was attempted (claimed for SMTP), not because a
    message was queued, skipped or suppressed: those contacts are removed with their messages."""
    contacts = import_caribbean(app, tmp_path)
    series = app.settings.series
    with app.factory() as db, db.begin():
        queued = queue_wave(
            db, app.settings, series.session("caribbean-2021"), series.step("invitation"), NOW
        )
        first, second = db.scalars(select(Message.id).order_by(Message.id).limit(2)).all()
        db.execute(update(Message).where(Message.id == first).values(status=MessageStatus.SKIPPED))
        db.execute(
            update(Message)
            .where(Message.id == second)
            .values(status=MessageStatus.SENT, attempts=1, sent_at=NOW)
        )
    assert queued.added == contacts.new

    undone = undo_import(app.factory, contacts.import_id, "cli:tester", NOW + timedelta(hours=1))
    assert (undone.contacts_removed, undone.contacts_kept) == (contacts.new - 1, 1)
    assert count(app, Contact) == 1
    assert count(app, Message) == count(app, Message, Message.status == MessageStatus.SENT) == 1


def test_an_import_stopped_by_its_file_is_listed_as_not_finished_with_what_it_stored(
    app: App, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Rows are stored chunk by chunk as the file is read: a quote never closed near the end stops the import
    after earlier chunks were committed, and the record says so instead of showing an empty result."""
    broken = tmp_path / "late-quote.csv"
    good = "".join(f"p{i}@example.org,P{i}\n" for i in range(3000))
    broken.write_text(f'email,name\n{good}"never closed,x\n', encoding="utf-8")
    code, output = run_main(app, capsys, "contacts", "import", str(broken), "--region", "africa")
    stored = count(app, Contact)
    assert 0 < stored < 3000
    assert (code, output) == (
        2,
        "error: line 3002: unreadable CSV (unexpected end of data): a quote opened on this line"
        f" is never closed; fix the quoting in the file and import it again: the {stored} accepted rows before"
        " that line are imported, and importing the corrected file completes the import (the rows already in"
        " are not doubled)\n",
    )
    listing = run(app, "imports", "list")
    assert (
        f"not finished (stopped, or still under way): {2 * stored} changes stored so far; import the file again"
        in " ".join(listing.output.split())
    ), listing.output


@pytest.mark.parametrize("kind", ["contacts", "registrations"])
def test_an_import_stopped_before_anything_was_stored_leaves_no_record(
    app: App, tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    """A file that stops being readable before its first chunk was stored imported nothing: the error says so
    and no unfinished import is listed (nothing to complete or undo)."""
    broken = tmp_path / "early-quote.csv"
    if kind == "contacts":
        broken.write_text('email,name\nana@example.org,Ana\n"never closed,x\n', encoding="utf-8")
        args = ["contacts", "import", str(broken), "--region", "africa"]
    else:
        header = (CONTACTS_DIR / "registrations-africa.csv").read_text(encoding="utf-8").split("\n")
        start = next(
            i for i, line in enumerate(header) if line.lower().startswith("email") or ",email" in line.lower()
        )
        broken.write_text("\n".join(header[: start + 2]) + '\n"never closed,x\n', encoding="utf-8")
        args = ["registrations", "import", str(broken), "--session", "africa-2021"]
    code, output = run_main(app, capsys, *args)
    assert code == 2 and output.endswith(
        "is never closed; fix the quoting in the file and import it again (nothing was imported)\n"
    ), output
    assert count(app, ImportRecord) == 0
    assert "not finished" not in run(app, "imports", "list").output
