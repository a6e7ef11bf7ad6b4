"""Registration reports of the webinar platform: counts from manifest.json, times, idempotence, the CLI."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from mailer.app import App
from mailer.audience.contacts import contact_by_email, import_contacts
from mailer.audience.registrations import import_registrations, parse_registration_time, report_zone
from mailer.errors import ImportFileError, NotFoundError
from mailer.store.models import Contact, ContactList, ListMembership, Registration, RegistrationStatus
from mailer.zones import resolve_zone
from tests.cli_run import run_cli
from tests.conftest import CONTACTS_DIR

MANIFEST: dict[str, Any] = json.loads((CONTACTS_DIR / "manifest.json").read_text(encoding="utf-8"))
REGIONS = sorted(name.removesuffix(".csv") for name in MANIFEST if name.endswith(".csv"))
NOW = datetime(2021, 6, 25, 12, 0, tzinfo=UTC)


def session_of(app: App, region: str) -> str:
    (session,) = [s.id for s in app.settings.series.sessions if s.region == region]
    return session


def _region_report(app: App, region: str, tmp_path: Path) -> tuple[dict[str, Any], Path, str]:
    """The manifest's expectations for ``region``'s registration report, its path and session, after its
    contact list is imported."""
    expected = MANIFEST[f"{region}.csv"]["registrations"]
    import_region_contacts(app, region, tmp_path)
    return expected, CONTACTS_DIR / expected["file"], session_of(app, region)


def line_of(path: Path, text: str) -> int:
    """Physical line holding ``text`` (the reports have no multi-line cells), read independently of the code."""
    for number, line in enumerate(path.read_text(encoding="utf-8-sig").split("\n"), start=1):
        if text in line:
            return number
    raise AssertionError(f"{text!r} not in {path}")


def scalar(app: App, query: Any) -> Any:
    with app.factory() as db:
        return db.execute(query).scalar_one()


def registrations(app: App, session_id: str, status: RegistrationStatus) -> int:
    return int(
        scalar(
            app,
            select(func.count())
            .select_from(Registration)
            .where(Registration.session_id == session_id, Registration.status == status),
        )
    )


def import_region_contacts(app: App, region: str, tmp_path: Path) -> None:
    import_contacts(
        app.factory,
        app.settings,
        CONTACTS_DIR / f"{region}.csv",
        region,
        NOW,
        rejects_path=tmp_path / f"{region}-contacts-rejects.csv",
    )


@pytest.mark.parametrize("region", REGIONS)
def test_import_matches_manifest(app: App, tmp_path: Path, region: str) -> None:
    expected, path, session_id = _region_report(app, region, tmp_path)
    contacts_before = scalar(app, select(func.count()).select_from(Contact))

    report = import_registrations(
        app.factory, app.settings, path, session_id, NOW, rejects_path=tmp_path / "rejects.csv"
    )

    assert report.registered == expected["expected_registered"]
    assert report.denied == expected["expected_denied_not_registered"]
    assert report.new_contacts == expected["expected_new_contacts"]
    assert len(report.rejected) == expected["expected_rejected"]
    assert report.created == expected["expected_registered"] + expected["expected_denied_not_registered"]
    assert report.zone_name == "America/Argentina/Buenos_Aires"  # "Buenos Aires, Georgetown": UTC-03:00
    assert registrations(app, session_id, RegistrationStatus.REGISTERED) == expected["expected_registered"]
    assert (
        registrations(app, session_id, RegistrationStatus.DENIED)
        == expected["expected_denied_not_registered"]
    )
    assert (
        scalar(app, select(func.count()).select_from(Contact))
        == contacts_before + expected["expected_new_contacts"]
    )

    (rejected,) = report.rejected
    assert (rejected.line, rejected.raw_email) == (line_of(path, "not-an-address"), "not-an-address")
    assert (tmp_path / "rejects.csv").read_text(encoding="utf-8-sig").splitlines()[0] == (
        "First Name,Last Name,Email,Country/Region Name,Organization,Registration Time,Approval Status,line,reason"
    )

    # registrants who were not contacts: contacts now, with the session region's defaults, on no list
    guest = contact_by_email(app.factory, f"guest0.{region}@mail.example.net")
    region_settings = app.settings.region(region)
    assert (guest.name, guest.institution, guest.regions) == ("Guest0 Registrant", "NGO", ())
    assert (guest.language, guest.time_zone) == (
        region_settings.default_language,
        region_settings.default_zone,
    )
    assert guest.registrations == ((session_id, "registered"),)
    on_list = scalar(
        app,
        select(func.count())
        .select_from(ListMembership)
        .join(ContactList)
        .where(ContactList.region == region),
    )
    assert on_list == MANIFEST[f"{region}.csv"]["expected_contacts"]


def test_times_are_read_in_the_report_zone(app: App, tmp_path: Path) -> None:
    import_region_contacts(app, "africa", tmp_path)
    import_registrations(
        app.factory,
        app.settings,
        CONTACTS_DIR / "registrations-africa.csv",
        "africa-2021",
        NOW,
        rejects_path=tmp_path / "r.csv",
    )
    with app.factory() as db:
        stored = set(db.scalars(select(Registration.registered_at)))
    assert stored == {  # the list's registrants, then the guests a day later
        datetime(2021, 6, 20, 18, 14, 15, tzinfo=UTC),  # 2021-06-20 03:14:15 PM at UTC-03:00
        datetime(2021, 6, 21, 13, 0, 0, tzinfo=UTC),  # 2021-06-21 10:00:00 AM
    }


@pytest.mark.parametrize("region", REGIONS)
def test_reimport_changes_nothing(app: App, tmp_path: Path, region: str) -> None:
    expected, path, session_id = _region_report(app, region, tmp_path)
    first = import_registrations(
        app.factory, app.settings, path, session_id, NOW, rejects_path=tmp_path / "1.csv"
    )
    second = import_registrations(
        app.factory, app.settings, path, session_id, NOW + timedelta(days=1), rejects_path=tmp_path / "2.csv"
    )
    assert (second.new_contacts, second.created, second.updated) == (0, 0, 0)
    assert second.unchanged == first.created
    assert (second.registered, second.denied) == (first.registered, first.denied)
    assert registrations(app, session_id, RegistrationStatus.REGISTERED) == expected["expected_registered"]


def report_file(tmp_path: Path, rows: list[str], preamble: list[str] | None = None) -> Path:
    lines = (
        preamble
        if preamble is not None
        else [
            "Registration Report",
            "Topic,Webinar ID,Scheduled Time,Time Zone",
            'Budapest Convention webinar: Latin America,1,2022-03-07 10:00 AM,"(GMT-05:00) Bogota, Lima, Quito"',
            "",
            "Attendee Details",
        ]
    )
    lines = [
        *lines,
        "First Name,Last Name,Email,Country/Region Name,Organization,Registration Time,Approval Status",
        *rows,
    ]
    path = tmp_path / f"report-{len(list(tmp_path.iterdir()))}.csv"
    path.write_text("\r\n".join(lines) + "\r\n", encoding="utf-8")
    return path


def test_status_changes_and_new_people(app: App, tmp_path: Path) -> None:
    first = report_file(
        tmp_path,
        [
            "Ana,Lima,ana@example.org,Perú,Senado,2021-06-20 09:00:00 AM,denied",
            "Rafael,Oso,RAFAEL@example.org,Chile,Senado,2021-06-20 09:30:00 AM,approved",
            "Rafael,Oso,rafael@EXAMPLE.org,Chile,Senado,2021-06-20 09:31:00 AM,approved",
            "Tom,Kay,tom@example.org,,,2021-06-20 10:00:00 AM,cancelled",
            "Pat,Roe,pat@example.org,,,2021-06-20 10:00:00 AM,waitlisted",
        ],
    )
    report = import_registrations(
        app.factory, app.settings, first, "latin-america-2022", NOW, rejects_path=tmp_path / "r.csv"
    )
    assert report.zone_name == "UTC-05:00"
    assert (report.rows, report.registered, report.denied, report.declined, report.new_contacts) == (
        5,
        1,
        1,
        1,
        3,
    )
    assert [(d.line, d.kept_line) for d in report.duplicates] == [(9, 8)]
    assert [(r.line, r.reason) for r in report.rejected] == [(11, "Unknown approval status 'waitlisted'.")]
    ana = contact_by_email(app.factory, "ana@example.org")
    assert (ana.country, ana.language, ana.time_zone, ana.registrations) == (
        "PE",
        "es",
        "America/Lima",
        (("latin-america-2022", "denied"),),
    )
    assert contact_by_email(app.factory, "tom@example.org").registrations == (
        ("latin-america-2022", "declined"),
    )
    with app.factory() as db:
        at = db.scalars(
            select(Registration.registered_at).join(Contact).where(Contact.email_key == "rafael@example.org")
        ).one()
    assert at == datetime(2021, 6, 20, 14, 30, tzinfo=UTC)

    later = report_file(tmp_path, ["Ana,Lima,Ana@Example.org,Perú,Senado,2021-06-22 09:00:00 AM,approved"])
    again = import_registrations(
        app.factory, app.settings, later, "latin-america-2022", NOW, rejects_path=tmp_path / "r2.csv"
    )
    assert (again.created, again.updated, again.new_contacts) == (0, 1, 0)
    assert contact_by_email(app.factory, "ana@example.org").registrations == (
        ("latin-america-2022", "registered"),
    )


def test_header_found_anywhere_and_session_zone_fallback(app: App, tmp_path: Path) -> None:
    path = report_file(
        tmp_path, ["Ana,Lima,ana@example.org,Perú,Senado,2021-06-20 09:00,approved"], preamble=[]
    )
    report = import_registrations(app.factory, app.settings, path, "africa-2021", NOW)
    session = app.settings.series.session("africa-2021")
    assert report.zone_name == session.zone_name
    assert (report.registered, report.rejects_path) == (1, None)
    with app.factory() as db:
        assert db.scalars(select(Registration.registered_at)).one() == datetime(2021, 6, 20, 12, tzinfo=UTC)


def test_errors(app: App, tmp_path: Path) -> None:
    path = CONTACTS_DIR / "registrations-africa.csv"
    with pytest.raises(NotFoundError, match=r"unknown session 'nope' \(known: africa-2021"):
        import_registrations(app.factory, app.settings, path, "nope", NOW)
    no_table = tmp_path / "summary.csv"
    no_table.write_text("Registration Report\nTopic,Webinar ID\nX,1\n", encoding="utf-8")
    with pytest.raises(ImportFileError):
        import_registrations(app.factory, app.settings, no_table, "africa-2021", NOW)
    # A contact list given by mistake is refused whole: it would register everyone on it.
    with pytest.raises(ImportFileError, match=r"no Approval Status column.*contacts import"):
        import_registrations(app.factory, app.settings, CONTACTS_DIR / "africa.csv", "africa-2021", NOW)
    with app.factory() as db:
        assert db.scalar(select(func.count()).select_from(Registration)) == 0


@pytest.mark.parametrize(
    ("label", "zone"),
    [
        ("Buenos Aires, Georgetown", "America/Argentina/Buenos_Aires"),
        ("(GMT-03:00) Buenos Aires, Georgetown", "UTC-03:00"),
        ("GMT-3", "UTC-03:00"),
        ("UTC+05:30", "UTC+05:30"),
        ("Europe/Paris", "Europe/Paris"),
        ("Port of Spain", "America/Port_of_Spain"),
        ("Nairobi", "Africa/Nairobi"),
        ("Somewhere", None),
        ("", None),
    ],
)
def test_report_zone(label: str, zone: str | None) -> None:
    assert report_zone(label) == zone


@pytest.mark.parametrize(
    ("text", "zone", "utc"),
    [
        ("2021-06-20 03:14:15 PM", "UTC-03:00", datetime(2021, 6, 20, 18, 14, 15, tzinfo=UTC)),
        ("2021-06-20 15:14", "America/Argentina/Buenos_Aires", datetime(2021, 6, 20, 18, 14, tzinfo=UTC)),
        ("Jun 20, 2021 03:14 PM", "Europe/Paris", datetime(2021, 6, 20, 13, 14, tzinfo=UTC)),
        ("06/20/2021 03:14:15 PM", "UTC", datetime(2021, 6, 20, 15, 14, 15, tzinfo=UTC)),
        ("2021-06-20T15:14:15+02:00", "UTC-03:00", datetime(2021, 6, 20, 13, 14, 15, tzinfo=UTC)),
        ("", "UTC", None),
        ("yesterday", "UTC", None),
    ],
)
def test_parse_registration_time(text: str, zone: str, utc: datetime | None) -> None:
    assert parse_registration_time(text, resolve_zone(zone)) == utc


def test_parse_registration_time_keeps_dst() -> None:
    winter = parse_registration_time("2022-01-10 10:00", ZoneInfo("Europe/Paris"))
    assert winter == datetime(2022, 1, 10, 9, 0, tzinfo=UTC)


def test_cli_import(app: App, tmp_path: Path) -> None:
    expected = MANIFEST["caribbean.csv"]["registrations"]
    path = CONTACTS_DIR / expected["file"]
    import_region_contacts(app, "caribbean", tmp_path)
    result = run_cli(
        app,
        "registrations",
        "import",
        str(path),
        "--session",
        "caribbean-2021",
        "--rejects",
        str(tmp_path / "r.csv"),
    )
    assert result.exit_code == 0, result.output
    assert f"registered   {expected['expected_registered']:6d}" in result.stdout
    assert f"denied       {expected['expected_denied_not_registered']:6d}" in result.stdout
    assert f"new contacts {expected['expected_new_contacts']:6d}" in result.stdout
    assert (
        f"line {line_of(path, 'not-an-address')}: An email address must have an @-sign. (not-an-address)"
        in (result.stdout)
    )

    unknown = run_cli(app, "registrations", "import", str(path), "--session", "mars-2030")
    assert unknown.exit_code == 2
    assert "unknown session 'mars-2030' (known: africa-2021, caribbean-2021" in unknown.output
