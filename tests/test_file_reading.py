"""Files that cannot cost unbounded time or memory, and that are read or refused by name, not by traceback.

Every file here is written by the test: workbooks by openpyxl, then (for the hostile ones) their sheet part
rewritten with zipfile as a tool that is not a spreadsheet program could write it.
"""

from __future__ import annotations

import io
import time
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pytest
from openpyxl import Workbook

from mailer.app import App
from mailer.audience import workbook
from mailer.audience.contact_rows import CONTACT_COLUMNS
from mailer.audience.contacts import import_contacts
from mailer.audience.table import Table, read_table
from mailer.audience.workbook import MAX_CELL_CHARS
from mailer.errors import ImportFileError
from tests.conftest import ROOT
from tests.test_cli_inputs import Run, mailer

NOW = datetime(2021, 6, 25, 12, 0, tzinfo=UTC)
_SHEET = "xl/worksheets/sheet1.xml"
_NS = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"


def _cell(reference: str, text: str) -> str:
    return f'<c r="{reference}" t="inlineStr"><is><t>{text}</t></is></c>'


def write_workbook(path: Path, dimension: str, rows: dict[int, str]) -> Path:
    """An .xlsx made by openpyxl whose first sheet is replaced by ``rows`` (row number -> cells' XML)."""
    book = Workbook()
    book.active.append(["placeholder"])  # type: ignore[union-attr]
    buffer = io.BytesIO()
    book.save(buffer)
    sheet_data = "".join(f'<row r="{number}">{cells}</row>' for number, cells in sorted(rows.items()))
    sheet = f'<worksheet xmlns="{_NS}"><dimension ref="{dimension}"/><sheetData>{sheet_data}</sheetData></worksheet>'
    with zipfile.ZipFile(buffer) as source, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as target:
        for part in source.infolist():
            target.writestr(part.filename, sheet if part.filename == _SHEET else source.read(part.filename))
    return path


def cli(app: App, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: str) -> Run:
    """``mailer ARGS`` through the console entry point, as the shell runs it (errors become messages)."""
    base = ["--config", str(ROOT / "config"), "--database-url", app.settings.database_url]
    return mailer(capsys, monkeypatch, *base, *args)


def records(table: Table) -> list[tuple[int, tuple[str, ...]]]:
    return [(record.line, record.cells) for record in table.records]


# --- workbooks ---------------------------------------------------------------------------------------------------


def test_a_value_in_the_last_cell_of_a_sheet_is_refused_in_a_moment(tmp_path: Path) -> None:
    path = write_workbook(
        tmp_path / "bomb.xlsx",
        "A1:XFD1048576",
        {1: _cell("A1", "email"), 2: _cell("A2", "ann@example.org"), 1048576: _cell("XFD1048576", "end")},
    )
    began = time.monotonic()
    table = read_table(path, CONTACT_COLUMNS)
    with pytest.raises(ImportFileError, match=r"^cell XFD1048576 holds a value, beyond column AMJ \(1,024\)"):
        records(table)
    assert time.monotonic() - began < 10  # was about 16 minutes: every empty cell of the dimension was made


def test_rows_absent_from_the_sheet_cost_nothing_and_keep_their_numbers(tmp_path: Path) -> None:
    path = write_workbook(
        tmp_path / "gap.xlsx",
        "A1:XFD1048576",  # a dimension much wider than the cells: ignored
        {
            1: _cell("A1", "email") + '<c r="XFD1" s="0"/>',  # an empty styled cell far right: dropped
            2: _cell("A2", "ann@example.org"),
            1048576: _cell("A1048576", "end@example.org"),
        },
    )
    began = time.monotonic()
    table = read_table(path, CONTACT_COLUMNS)
    assert (table.header, records(table)) == (
        ("email",),
        [(2, ("ann@example.org",)), (1048576, ("end@example.org",))],
    )
    assert time.monotonic() - began < 10


@pytest.mark.parametrize("part", [_SHEET, "xl/sharedStrings.xml"])
def test_a_part_unpacking_over_100_times_its_size_is_refused_before_parsing(
    tmp_path: Path, part: str
) -> None:
    path = write_workbook(tmp_path / "cells.xlsx", "A1:B2", {1: _cell("A1", "email")})
    with zipfile.ZipFile(path, "a", zipfile.ZIP_DEFLATED) as archive:
        if part == _SHEET:
            archive.writestr("xl/worksheets/sheet2.xml", "a" * (8 << 20))  # any part: all are checked
        else:
            archive.writestr(part, f'<sst xmlns="{_NS}"><si><t>{"a" * (8 << 20)}</t></si></sst>')
    began = time.monotonic()
    with pytest.raises(ImportFileError, match=r"^cells\.xlsx: this workbook's part .* more than 100 times"):
        read_table(path, CONTACT_COLUMNS)
    assert time.monotonic() - began < 1


def test_a_workbook_unpacking_beyond_the_limit_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(workbook, "MAX_UNPACKED_BYTES", 10_000)  # the real one, 128 MiB, would be a slow test
    path = write_workbook(tmp_path / "big.xlsx", "A1:A2", {1: _cell("A1", "email")})
    with pytest.raises(
        ImportFileError, match=r"^big\.xlsx: this workbook unpacks to [\d,]+ bytes, more than the"
    ):
        read_table(path, CONTACT_COLUMNS)


def test_a_workbook_cell_over_the_cell_limit_is_refused_by_its_reference(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(workbook, "MAX_CELL_CHARS", 1000)
    path = write_workbook(
        tmp_path / "long.xlsx",
        "A1:B2",
        {1: _cell("A1", "email"), 2: _cell("A2", "a@example.org") + _cell("B2", "x" * 1001)},
    )
    with pytest.raises(ImportFileError, match=r"cell B2 holds 1,001 characters, more than the 1,000 read"):
        records(read_table(path, CONTACT_COLUMNS))


def test_a_damaged_workbook_is_named_on_the_cli_without_a_traceback(
    app: App, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = {n: _cell(f"A{n}", f"n{n}@example.org") for n in range(2, 30)}
    path = write_workbook(tmp_path / "broken.xlsx", "A1:A29", {1: _cell("A1", "email"), **rows})
    with zipfile.ZipFile(path) as source:
        parts = {part: source.read(part) for part in source.namelist()}
    parts[_SHEET] = parts[_SHEET].replace(b'<row r="24">', b'<row r="24"><<')
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as target:
        for part, data in parts.items():
            target.writestr(part, data)
    result = cli(app, capsys, monkeypatch, "contacts", "import", str(path), "--region", "africa")
    assert result.code == 2, result.err
    assert result.err.startswith(
        "error: broken.xlsx: this is not a readable Excel workbook: the sheet is damaged after row 23 (ParseError"
    )
    assert "Traceback" not in result.err
    not_a_zip = tmp_path / "fake.xlsx"
    not_a_zip.write_text("email\nann@example.org\n", encoding="utf-8")
    with pytest.raises(ImportFileError, match=r"^fake\.xlsx: this is not a readable Excel workbook"):
        read_table(not_a_zip, CONTACT_COLUMNS)


# --- text ----------------------------------------------------------------------------------------------------------


def test_a_200_kib_cell_is_read_then_cut_and_reported_as_the_readme_says(app: App, tmp_path: Path) -> None:
    path = tmp_path / "long.csv"
    path.write_text(f"email,first name\nann@example.org,{'A' * 200_000}\n", encoding="utf-8")
    report = import_contacts(app.factory, app.settings, path, "africa", NOW, rejects_path=tmp_path / "r.csv")
    assert report.new == 1
    assert [(r.line, r.column) for r in report.replaced] == [(2, "name")]


def test_a_cell_or_line_over_the_limits_is_named_with_its_cause(tmp_path: Path) -> None:
    cell = tmp_path / "cell.csv"
    cell.write_text(f'email,name\nann@example.org,"{"A" * (MAX_CELL_CHARS + 1)}"\n', encoding="utf-8")
    with pytest.raises(
        ImportFileError, match=r"^line 2: a cell is longer than 1,048,576 characters .* quote"
    ):
        records(read_table(cell, CONTACT_COLUMNS))
    quote = tmp_path / "quote.csv"  # a quote never closed: the cell runs on over the lines below
    quote.write_text(
        'email,name\nann@example.org,"Ann\n' + "bob@example.org,Bob\n" * 60_000, encoding="utf-8"
    )
    with pytest.raises(ImportFileError, match=r"^line 2: a cell is longer than 1,048,576 characters"):
        records(read_table(quote, CONTACT_COLUMNS))
    line = tmp_path / "line.csv"
    line.write_text(f"email,name\nann@example.org,{'A' * (3 * MAX_CELL_CHARS)}\n", encoding="utf-8")
    with pytest.raises(ImportFileError, match=r"^line\.csv: line 2 is longer than 2,097,152 characters"):
        records(read_table(line, CONTACT_COLUMNS))


def test_carriage_return_line_ends_of_old_mac_excel_are_read(tmp_path: Path) -> None:
    path = tmp_path / "mac.csv"
    path.write_bytes(b"email,name\rann@example.org,Ann\r\rbob@example.org,Bob\r")
    table = read_table(path, CONTACT_COLUMNS)
    assert (table.header, records(table), table.total_lines) == (
        ("email", "name"),
        [(2, ("ann@example.org", "Ann")), (4, ("bob@example.org", "Bob"))],
        4,
    )


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be"])
def test_utf16_without_a_bom_is_recognised(tmp_path: Path, encoding: str) -> None:
    path = tmp_path / "u16.csv"
    path.write_bytes("email,first name\njosé@example.org,José\n".encode(encoding))
    table = read_table(path, CONTACT_COLUMNS)
    assert (table.encoding, table.header, records(table)) == (
        encoding,
        ("email", "first name"),
        [(2, ("josé@example.org", "José"))],
    )


def test_binary_data_and_files_that_are_not_regular_are_refused_at_once(
    app: App, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    zeros = tmp_path / "zeros.csv"
    zeros.write_bytes(bytes(1 << 20))
    with pytest.raises(ImportFileError, match=r"^zeros\.csv: this is binary data, not a text \(CSV\) file"):
        read_table(zeros, CONTACT_COLUMNS)
    with pytest.raises(ImportFileError, match=r"not a regular file"):
        read_table(tmp_path, CONTACT_COLUMNS)
    began = time.monotonic()
    result = cli(app, capsys, monkeypatch, "contacts", "import", "/dev/zero", "--region", "africa")
    assert result.code == 2 and "cannot read /dev/zero: not a regular file" in result.err
    assert time.monotonic() - began < 10
