"""Contact import against the organisers' real exports: every count and every defect from manifest.json."""

from __future__ import annotations

import csv
import dataclasses
import json
from datetime import UTC, datetime, timedelta
from email.utils import parseaddr
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from mailer.app import App
from mailer.audience.contacts import (
    InvalidAddressError,
    clean_text,
    contact_by_email,
    find_contacts,
    import_contacts,
    normalise_address,
    split_title,
)
from mailer.audience.locales import country_language
from mailer.errors import ImportFileError, NaiveDatetimeError, NotFoundError
from mailer.store.engine import transaction
from mailer.store.models import Contact, ContactList, ListMembership
from tests.cli_run import run_cli
from tests.conftest import CONTACTS_DIR

MANIFEST: dict[str, Any] = json.loads((CONTACTS_DIR / "manifest.json").read_text(encoding="utf-8"))
FILES = sorted(name for name in MANIFEST if name.endswith(".csv"))
NOW = datetime(2021, 6, 1, 9, 0, tzinfo=UTC)


def region_of(file_name: str) -> str:
    return file_name.removesuffix(".csv")


def expected_address(raw: str) -> str:
    """The normalised form the manifest's valid defect addresses must be stored as (independent of the code)."""
    return parseaddr(raw)[1] if "<" in raw else raw.strip()


def contact(app: App, address: str) -> Contact:
    with app.factory() as db:
        found = db.scalars(
            select(Contact).where(Contact.email_key == address.strip().casefold())
        ).one_or_none()
    assert found is not None, f"{address!r} was not imported"
    return found


def scalar(app: App, query: Any) -> Any:
    with app.factory() as db:
        return db.execute(query).scalar_one()


def count(app: App, query: Any) -> int:
    return int(scalar(app, query))


def list_size(app: App, region: str) -> int:
    return count(
        app,
        select(func.count())
        .select_from(ListMembership)
        .join(ContactList, ContactList.id == ListMembership.list_id)
        .where(ContactList.region == region),
    )


@pytest.mark.parametrize("file_name", FILES)
def test_import_matches_manifest(app: App, tmp_path: Path, file_name: str) -> None:
    expected = MANIFEST[file_name]
    region = region_of(file_name)
    rejects = tmp_path / "rejects.csv"

    report = import_contacts(
        app.factory, app.settings, CONTACTS_DIR / file_name, region, NOW, rejects_path=rejects
    )

    assert report.encoding == expected["encoding"]
    assert report.delimiter == expected["delimiter"]
    assert report.rows == expected["rows"]
    assert (report.new, report.updated, report.unchanged) == (expected["expected_contacts"], 0, 0)
    assert report.memberships_added == expected["expected_contacts"]
    assert len(report.rejected) == expected["expected_rejected"]
    assert len(report.duplicates) == expected["expected_duplicates"]
    assert count(app, select(func.count()).select_from(Contact)) == expected["expected_contacts"]
    assert list_size(app, region) == expected["expected_contacts"]
    with app.factory() as db:
        assert db.scalars(select(ContactList.name).where(ContactList.region == region)).one() == (
            app.settings.region(region).name
        )

    rejected_at = {row.line: row for row in report.rejected}
    for defect in expected["defects"]:
        outcome, line, raw = defect["expected"], defect["line"], defect["email"]
        if outcome == "rejected":
            assert line in rejected_at, f"{defect['defect']} not rejected at line {line}"
            assert rejected_at[line].raw_email == raw
            assert rejected_at[line].reason
        elif outcome == "duplicate":
            (duplicate,) = report.duplicates
            assert line in (duplicate.line, duplicate.kept_line)
            assert duplicate.kept_line < duplicate.line
            assert contact(app, raw).email_key == raw.strip().casefold()
        else:
            stored = contact(app, expected_address(raw))
            assert stored.email == expected_address(raw)
            assert stored.needs_smtputf8 is (outcome == "valid-needs-smtputf8")
            for value in (stored.name, stored.title, stored.institution, stored.country, stored.language):
                assert "\n" not in value and "\r" not in value
    assert len(rejected_at) == expected["expected_rejected"]


@pytest.mark.parametrize("file_name", FILES)
def test_defect_rows_are_stored_as_meant(app: App, tmp_path: Path, file_name: str) -> None:
    region = region_of(file_name)
    import_contacts(
        app.factory, app.settings, CONTACTS_DIR / file_name, region, NOW, rejects_path=tmp_path / "r.csv"
    )
    defects = {d["defect"]: d for d in MANIFEST[file_name]["defects"]}

    eve = contact(app, defects["newline and header text in name"]["email"])
    assert eve.name.startswith("Eve Smith") and "Bcc: victim@mail.example.com" in eve.name
    assert not any(ch in eve.name for ch in "\r\n\x0b\x0c\x85\u2028")

    formula = contact(app, defects["formula in name"]["email"])
    assert formula.name.startswith('=HYPERLINK("http://bad.example")')

    idn = contact(app, defects["IDN domain"]["email"])
    assert idn.email == "aicha.toure@assemblée.example" and not idn.needs_smtputf8

    unicode_local = contact(app, defects["unicode local part (SMTPUTF8)"]["email"])
    assert unicode_local.email == "josé.núñez@mail.example.com" and unicode_local.needs_smtputf8

    angle = contact(app, expected_address(defects["angle-bracket form"]["email"]))
    assert angle.email == "nadia.haddad@mail.example.com" and angle.name == "Nadia Haddad"

    institution = contact(app, defects["multi-line institution"]["email"]).institution
    assert institution == "Committee on Justice and Legal Affairs"

    long_name = contact(app, defects["very long name"]["email"]).name
    assert long_name == "Maria" * 40 + " Long"

    unknown_language = contact(app, defects["unknown language value"]["email"])
    region_default = app.settings.region(region).default_language
    assert unknown_language.country, "the defect rows name a country"
    assert unknown_language.language == country_language(unknown_language.country, app.settings.languages)
    assert unknown_language.language in app.settings.languages
    assert unknown_language.language == ("es" if region == "latin-america" else region_default)


def test_rows_read_as_written_per_layout(app: App, tmp_path: Path) -> None:
    """Headers in four styles, names split or with the title inside, countries, languages and zones resolved."""
    for file_name in FILES:
        import_contacts(
            app.factory,
            app.settings,
            CONTACTS_DIR / file_name,
            region_of(file_name),
            NOW,
            rejects_path=tmp_path / file_name,
        )
    russell = contact(app, "russell.brown486@lc.parliament.example")  # caribbean: "Mr. Russell Brown", cp1252
    assert (russell.title, russell.name, russell.country, russell.language, russell.time_zone) == (
        "Mr.",
        "Russell Brown",
        "LC",
        "en",
        "America/St_Lucia",
    )
    ines = contact(app, "ines.torres424@ht.parliament.example")  # "Mme Inès Torres", "Français"
    assert (ines.title, ines.name, ines.country, ines.language) == ("Mme", "Inès Torres", "HT", "fr")
    assert (
        contact(app, "jacqueline.chandler792@assembly-tt.example.org").country == "TT"
    )  # "Trinidad & Tobago"
    brisbane = contact(app, "jonathan.peters316@assembly-au.example.org")  # asia-pacific zone column
    assert (brisbane.country, brisbane.time_zone) == ("AU", "Australia/Brisbane")
    lucia = contact(app, "lucia.canas257@assembly-py.example.org")  # Spanish header, ';'
    assert (lucia.title, lucia.name, lucia.institution, lucia.language, lucia.time_zone) == (
        "Dr.",
        "Lucía Cañas",
        "Ministerio de Justicia",
        "es",
        "America/Asuncion",
    )
    nieves = contact(app, "nieves.lasa569@assembly-cr.example.org")  # "Inglés"
    assert (nieves.country, nieves.language) == ("CR", "en")
    arabic = contact(app, "elizabeth.rivera672@assembly-ma.example.org")  # "العربية", UTF-8 with BOM
    assert (arabic.name, arabic.country, arabic.language, arabic.time_zone) == (
        "واصف الحويطات",
        "MA",
        "ar",
        "Africa/Casablanca",
    )
    blank_language = contact(app, "victoria.akinwale774@ng.parliament.example")  # Nigeria, language blank
    assert blank_language.language == "en"


@pytest.mark.parametrize("file_name", FILES)
def test_reimport_changes_nothing(app: App, tmp_path: Path, file_name: str) -> None:
    region = region_of(file_name)
    path = CONTACTS_DIR / file_name
    first = import_contacts(app.factory, app.settings, path, region, NOW, rejects_path=tmp_path / "1.csv")
    later = NOW + timedelta(days=3)
    second = import_contacts(app.factory, app.settings, path, region, later, rejects_path=tmp_path / "2.csv")

    assert (second.new, second.updated, second.memberships_added) == (0, 0, 0)
    assert second.unchanged == first.imported == MANIFEST[file_name]["expected_contacts"]
    assert [r.line for r in second.rejected] == [r.line for r in first.rejected]
    assert second.duplicates == first.duplicates
    assert count(app, select(func.count()).select_from(Contact)) == first.new
    assert scalar(app, select(func.max(Contact.updated_at))) == NOW
    assert list_size(app, region) == first.new
    assert (tmp_path / "1.csv").read_bytes() == (tmp_path / "2.csv").read_bytes()


def test_one_contact_on_several_lists(app: App, tmp_path: Path) -> None:
    africa, caribbean = "africa.csv", "caribbean.csv"
    first = import_contacts(
        app.factory, app.settings, CONTACTS_DIR / africa, "africa", NOW, rejects_path=tmp_path / "a.csv"
    )
    second = import_contacts(
        app.factory, app.settings, CONTACTS_DIR / caribbean, "caribbean", NOW, rejects_path=tmp_path / "c.csv"
    )

    def valid_defects(name: str) -> set[str]:
        return {
            expected_address(d["email"]).casefold()
            for d in MANIFEST[name]["defects"]
            if d["expected"].startswith("valid")
        }

    shared = valid_defects(africa) & valid_defects(caribbean)
    assert len(shared) == 8
    assert second.new == MANIFEST[caribbean]["expected_contacts"] - len(shared)
    assert second.updated + second.unchanged == len(shared)
    assert second.memberships_added == MANIFEST[caribbean]["expected_contacts"]
    total = first.new + second.new
    assert count(app, select(func.count()).select_from(Contact)) == total
    assert list_size(app, "africa") == MANIFEST[africa]["expected_contacts"]
    assert list_size(app, "caribbean") == MANIFEST[caribbean]["expected_contacts"]
    for address in shared:
        assert contact_by_email(app.factory, address).regions == ("africa", "caribbean")
    nadia = contact(app, "nadia.haddad@mail.example.com")
    # Another region's file only fills blanks: a shared contact keeps the country, language and zone of
    # the list that brought them first, whatever order the files are imported in afterwards.
    assert (nadia.country, nadia.time_zone) == ("NG", "Africa/Lagos")
    assert second.updated == 0
    for name, region in ((africa, "africa"), (caribbean, "caribbean"), (africa, "africa")):
        again = import_contacts(
            app.factory, app.settings, CONTACTS_DIR / name, region, NOW, rejects_path=tmp_path / "again.csv"
        )
        assert (again.new, again.updated) == (0, 0)
    nadia = contact(app, "nadia.haddad@mail.example.com")
    assert (nadia.country, nadia.time_zone) == ("NG", "Africa/Lagos")


def test_rejects_file_keeps_original_columns(app: App, tmp_path: Path) -> None:
    settings = dataclasses.replace(app.settings, base_dir=tmp_path)
    report = import_contacts(app.factory, settings, CONTACTS_DIR / "latin-america.csv", "latin-america", NOW)
    assert report.rejects_path == tmp_path / "var" / "rejects" / "latin-america-rejects.csv"
    with report.rejects_path.open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == [
        "Tratamiento",
        "Nombre",
        "Apellidos",
        "Correo electrónico",
        "País",
        "Institución",
        "Idioma",
        "line",
        "reason",
    ]
    assert [int(row[-2]) for row in rows[1:]] == [r.line for r in report.rejected]
    assert [row[-1] for row in rows[1:]] == [r.reason for r in report.rejected]
    by_line = {int(row[-2]): row for row in rows[1:]}
    assert by_line[57][3] == "'@mail.example.com"  # a spreadsheet would read "@..." as a formula
    assert by_line[140][3] == "omar.said@mail.example.com."


def test_other_layouts(app: App, tmp_path: Path) -> None:
    """Tab-separated, French header, Windows-1252, a quoted cell over three lines, blank lines, no title column."""
    text = (
        "Courriel\tPrénom\tNom\tPays\tLangue\tFuseau horaire\r\n"
        "\r\n"
        "marie.dupont@senat.example\tMarie\tDupont\tSénégal\tFrançais\t\r\n"
        'paul.mbeki@senat.example\t"Paul\r\nJean\r\nBaptiste"\tMbeki\tCôte d’Ivoire\t\tGMT+1\r\n'
        "\t\t\t\t\t\r\n"
        "jo@@senat.example\tJo\tX\t\t\t\r\n"
        "ana@senat.example\tAna\tLima\tAtlantis\tKlingon\tNowhere/City\r\n"
    )
    path = tmp_path / "francophone.txt"
    path.write_bytes(text.replace("’", "'").encode("cp1252"))
    report = import_contacts(app.factory, app.settings, path, "africa", NOW, rejects_path=tmp_path / "r.csv")
    assert (report.encoding, report.delimiter, report.rows, report.new) == ("cp1252", "\t", 4, 3)
    assert [(r.line, r.raw_email) for r in report.rejected] == [(8, "jo@@senat.example")]
    for email, expected in [
        ("marie.dupont@senat.example", ("Marie Dupont", "SN", "fr", "Africa/Dakar")),
        ("paul.mbeki@senat.example", ("Paul Jean Baptiste Mbeki", "CI", "fr", "UTC+01:00")),
    ]:
        person = contact(app, email)
        assert (person.name, person.country, person.language, person.time_zone) == expected
    ana = contact(app, "ana@senat.example")  # nothing recognised: the region's defaults
    region = app.settings.region("africa")
    assert (ana.country, ana.language, ana.time_zone) == ("", region.default_language, region.default_zone)


def test_file_errors(app: App, tmp_path: Path) -> None:
    no_email = tmp_path / "people.csv"
    no_email.write_text("Name,Country\nAna,Peru\n", encoding="utf-8")
    with pytest.raises(ImportFileError, match="no header row with an email column"):
        import_contacts(app.factory, app.settings, no_email, "africa", NOW)
    with pytest.raises(ImportFileError, match="cannot read"):
        import_contacts(app.factory, app.settings, tmp_path / "missing.csv", "africa", NOW)
    with pytest.raises(NotFoundError, match=r"unknown region 'atlantis' \(known: africa, asia-pacific"):
        import_contacts(app.factory, app.settings, CONTACTS_DIR / "africa.csv", "atlantis", NOW)
    with pytest.raises(NaiveDatetimeError):
        import_contacts(
            app.factory, app.settings, CONTACTS_DIR / "africa.csv", "africa", datetime(2021, 6, 1)
        )
    assert count(app, select(func.count()).select_from(Contact)) == 0


@pytest.mark.parametrize(
    ("cell", "email", "smtputf8"),
    [
        ("  A.Person@Example.ORG ", "A.Person@example.org", False),
        ("Nadia Haddad <nadia.haddad@mail.example.com>", "nadia.haddad@mail.example.com", False),
        ("mailto:ana@example.org", "ana@example.org", False),
        ("josé@example.org", "josé@example.org", True),
        ("ana@ASSEMBLÉE.example", "ana@assemblée.example", False),
    ],
)
def test_normalise_address(cell: str, email: str, smtputf8: bool) -> None:
    address = normalise_address(cell)
    assert (address.email, address.key, address.needs_smtputf8) == (email, email.casefold(), smtputf8)


@pytest.mark.parametrize(
    ("cell", "reason"),
    [
        ("", "blank"),
        ("a@example.org, b@example.org", "more than one address"),
        ("a@example.org b@example.org", "more than one address"),
        ("n/a", "@-sign"),
        ("a..b@example.org", "two periods"),
        ("a@example.org.", "period"),
        ("Ana <>", "malformed"),
    ],
)
def test_normalise_address_refuses(cell: str, reason: str) -> None:
    with pytest.raises(InvalidAddressError, match=reason):
        normalise_address(cell)


@pytest.mark.parametrize(
    ("full", "title", "name"),
    [
        ("Mr. Russell Brown", "Mr.", "Russell Brown"),
        ("Senator James Sanchez", "Senator", "James Sanchez"),
        ("Rt. Hon. Ana Lima", "Rt. Hon.", "Ana Lima"),
        ("Mme Inès Torres", "Mme", "Inès Torres"),
        ("Russell Brown", "", "Russell Brown"),
        ("Dr", "", "Dr"),
        ("", "", ""),
    ],
)
def test_split_title(full: str, title: str, name: str) -> None:
    assert split_title(full) == (title, name)


def test_clean_text_never_keeps_a_line_break() -> None:
    assert clean_text("Smith\r\nBcc: x@example.org\x00\u2028end\t ") == "Smith Bcc: x@example.org end"


def test_find_contacts(app: App, tmp_path: Path) -> None:
    import_contacts(
        app.factory, app.settings, CONTACTS_DIR / "africa.csv", "africa", NOW, rejects_path=tmp_path / "r"
    )
    views, total = find_contacts(app.factory, region="africa", search="HADDAD")
    assert total == 1 and views[0].email == "nadia.haddad@mail.example.com"
    views, total = find_contacts(app.factory, region="caribbean")
    assert (views, total) == ([], 0)
    views, total = find_contacts(app.factory, limit=5)
    assert len(views) == 5 and total == MANIFEST["africa.csv"]["expected_contacts"]
    with pytest.raises(NotFoundError):
        contact_by_email(app.factory, "nobody@example.org")


# --- the command line ------------------------------------------------------------------------------------------


def test_cli_import_prints_summary_and_lines(app: App, tmp_path: Path) -> None:
    expected = MANIFEST["africa.csv"]
    rejects = tmp_path / "africa-rejects.csv"
    command = (
        "contacts",
        "import",
        str(CONTACTS_DIR / "africa.csv"),
        "--region",
        "africa",
        "--rejects",
        str(rejects),
    )
    result = run_cli(app, *command)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert f"{expected['rows']} rows read" in out
    accepted = expected["expected_contacts"]
    assert (
        f"\n  {accepted} rows accepted: {accepted} new, 0 updated, 0 unchanged; {accepted} added to the list\n"
        in out
    )
    assert f"rejected   {expected['expected_rejected']:6d}  (written to {rejects})" in out
    assert f"duplicates {expected['expected_duplicates']:6d}" in out
    for defect in expected["defects"]:
        if defect["expected"] == "rejected":
            assert f"line {defect['line']}: " in out
            assert f"({defect['email'] or 'blank'})" in out
        if defect["expected"] == "duplicate":
            assert f"line {defect['line']}: " in out
    assert rejects.is_file()

    again = run_cli(app, *command)
    assert (
        f"\n  {accepted} rows accepted: 0 new, 0 updated, {accepted} unchanged; 0 added to the list\n"
        in again.stdout
    )
    assert "imported " not in again.stdout


def test_cli_unknown_region_exits_2(app: App) -> None:
    result = run_cli(app, "contacts", "import", str(CONTACTS_DIR / "africa.csv"), "--region", "atlantis")
    assert result.exit_code == 2
    assert (
        "unknown region 'atlantis' (known: africa, asia-pacific, caribbean, latin-america)" in result.output
    )
    assert count(app, select(func.count()).select_from(Contact)) == 0


def test_cli_list_and_show(app: App, tmp_path: Path) -> None:
    run_cli(
        app,
        "contacts",
        "import",
        str(CONTACTS_DIR / "caribbean.csv"),
        "--region",
        "caribbean",
        "--rejects",
        str(tmp_path / "r.csv"),
    )
    listed = run_cli(app, "contacts", "list", "--region", "caribbean", "--search", "Russell.Brown")
    assert listed.exit_code == 0
    assert "russell.brown486@lc.parliament.example" in listed.stdout and "Mr. Russell Brown" in listed.stdout
    assert "1 of 1 contacts shown" in listed.stdout
    shown = run_cli(app, "contacts", "show", "JOSÉ.NÚÑEZ@mail.example.com")
    assert shown.exit_code == 0
    assert "josé.núñez@mail.example.com" in shown.stdout
    assert "needs SMTPUTF8  yes" in shown.stdout and "lists           caribbean" in shown.stdout
    missing = run_cli(app, "contacts", "show", "nobody@example.org")
    assert missing.exit_code == 2 and "no contact with address 'nobody@example.org'" in missing.output
    bad_region = run_cli(app, "contacts", "list", "--region", "mars")
    assert bad_region.exit_code == 2 and "unknown region 'mars'" in bad_region.output


def test_big_file_in_chunks_with_progress(app: App, tmp_path: Path) -> None:
    """More rows than one chunk: every row stored once, progress reported in growing physical lines."""
    path = tmp_path / "big.csv"
    rows = [f'person{i}@big.example,"Person\n{i}",Kenya' for i in range(2500)]
    path.write_text("email,name,country\n" + "\n".join(rows) + "\n", encoding="utf-8")
    seen: list[tuple[int, int]] = []
    report = import_contacts(
        app.factory, app.settings, path, "africa", NOW, progress=lambda d, t: seen.append((d, t))
    )
    assert (report.rows, report.new, report.rejected) == (2500, 2500, ())
    assert seen[-1] == (5001, 5001) and len(seen) >= 3
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)
    person = contact(app, "person2499@big.example")
    assert (person.name, person.country, person.time_zone) == ("Person 2499", "KE", "Africa/Nairobi")
    assert list_size(app, "africa") == 2500


def test_cells_not_understood_are_reported_with_what_was_used(app: App, tmp_path: Path) -> None:
    path = tmp_path / "odd.csv"
    path.write_text(
        "email,name,country,language,time_zone\n"
        "k@example.org,Kirk,Narnia,Klingon,Mars/Base\n"
        "l@example.org,Lee,FR,fr,Europe/Paris\n",
        encoding="utf-8",
    )
    report = import_contacts(app.factory, app.settings, path, "africa", NOW, rejects_path=tmp_path / "r.csv")
    assert report.imported == 2 and not report.rejected
    assert [(r.line, r.column, r.value) for r in report.replaced] == [
        (2, "country", "Narnia"),
        (2, "language", "Klingon"),
        (2, "time zone", "Mars/Base"),
    ]
    used = {r.column: r.used for r in report.replaced}
    assert used["language"] == "en" and used["time zone"] == "Africa/Lagos"  # the region's defaults


def test_an_unclosed_quote_stops_the_import_at_its_line_and_imports_nothing(app: App, tmp_path: Path) -> None:
    path = tmp_path / "quote.csv"
    path.write_text(
        'email,name,country\nann@example.org,Ann,GH\nana@example.org,"Ana,Mexico\nbob@example.org,Bob,Peru\n',
        encoding="utf-8",
    )
    with pytest.raises(ImportFileError, match=r"line 3: .*a quote opened on this line is never closed"):
        import_contacts(app.factory, app.settings, path, "africa", NOW, rejects_path=tmp_path / "r.csv")
    with transaction(app.factory) as db:
        assert db.scalar(select(func.count()).select_from(Contact)) == 0
