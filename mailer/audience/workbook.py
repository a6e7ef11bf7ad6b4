"""Excel workbooks (.xlsx, Office Open XML) read as the text of a CSV file, one spreadsheet row per line.

Shapes
    is_workbook(raw) -> bool               a ZIP holding ``xl/workbook.xml`` (whatever the file is named)
    workbook_text(raw) -> str              the first worksheet as CSV text

Line N of the text is row N of the sheet (cells' own line breaks become spaces, blank rows stay blank lines),
so the line numbers an import reports are the row numbers the organiser sees in the spreadsheet. Dates are
written ISO 8601 ("2021-06-20 15:14:15"), whole numbers without ".0", formulas as their cached values.

Errors: :class:`mailer.errors.ImportFileError` for a damaged or password-protected workbook.
"""

from __future__ import annotations

import csv
import io
import zipfile
from datetime import date, datetime, time
from typing import Any

from mailer.errors import ImportFileError

_ZIP_MAGIC = b"PK\x03\x04"
_MAX_ROWS = 2_000_000


def is_workbook(raw: bytes) -> bool:
    """True when ``raw`` is an .xlsx/.xlsm workbook (a ZIP with ``xl/workbook.xml``)."""
    if not raw.startswith(_ZIP_MAGIC):
        return False
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as archive:
            return "xl/workbook.xml" in archive.namelist()
    except zipfile.BadZipFile:
        return False


def _cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, time):
        return value.strftime("%H:%M:%S")
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return " ".join(str(value).split()) if isinstance(value, str) else str(value)


def workbook_text(raw: bytes) -> str:
    """The workbook's first worksheet as CSV text (comma-delimited, minimal quoting, "\\n" line ends)."""
    from openpyxl import load_workbook  # imported here: only workbook imports pay for it

    try:
        book = load_workbook(io.BytesIO(raw), read_only=True, data_only=True)
    except Exception as exc:  # noqa: BLE001 - openpyxl raises many kinds for a damaged file
        raise ImportFileError(
            f"this Excel workbook cannot be read ({type(exc).__name__}: {exc}); open it in a spreadsheet "
            "program and save it again as .xlsx or as CSV (UTF-8)"
        ) from None
    try:
        sheet = book.worksheets[0]
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        for number, row in enumerate(sheet.iter_rows(values_only=True), start=1):
            if number > _MAX_ROWS:
                raise ImportFileError(f"the workbook has more than {_MAX_ROWS} rows: split it")
            cells = [_cell_text(value) for value in row]
            while cells and not cells[-1]:
                cells.pop()
            writer.writerow(cells)
        return buffer.getvalue()
    finally:
        book.close()


__all__ = ["is_workbook", "workbook_text"]
