"""Excel workbooks (.xlsx, Office Open XML) read as the lines of a CSV file, one spreadsheet row per line.

Shapes
    is_workbook(path) -> bool              a ZIP holding ``xl/workbook.xml`` (whatever the file is named)
    check_workbook(path) -> None           refuses an archive that would unpack beyond the limits below
    workbook_lines(path) -> Iterator[str]  the first worksheet as CSV lines, streamed (openpyxl read-only mode)
    sheet_rows(path) -> int                the row count the sheet declares, for progress only

Line N of the text is row N of the sheet (cells' own line breaks become spaces, blank rows stay blank lines),
so the line numbers an import reports are the row numbers the organiser sees in the spreadsheet. Dates are
written ISO 8601 ("2021-06-20 15:14:15"), whole numbers without ".0", formulas as their cached values.

Bounds, so that a small file cannot cost unbounded time or memory (a "zip bomb"): the archive's parts may
unpack to at most :data:`MAX_UNPACKED_BYTES` together and, for a part over 1 MiB, to at most
:data:`MAX_RATIO` times their packed size (ZIP headers' sizes are checked before anything is parsed: Python's
zipfile never reads a member past the size its header declares). The sheet's declared dimension is ignored
(read-only mode would pad every row to it), so rows and cells absent from the file cost nothing; a cell
beyond column :data:`MAX_COLUMNS` holding a value, or longer than :data:`MAX_CELL_CHARS`, is refused.

Errors: :class:`mailer.errors.ImportFileError` for a damaged, password-protected or out-of-bounds workbook.
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Generator
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

from mailer.errors import ImportFileError

_ZIP_MAGIC = b"PK\x03\x04"
_MAX_ROWS = 2_000_000
MAX_UNPACKED_BYTES = 128 * 1024 * 1024  # about 500,000 rows of a few columns; CSV has no such limit
MAX_RATIO = 100  # real sheets pack 5 to 30 times; a zip bomb over a thousand times
_RATIO_FROM = 1024 * 1024  # parts smaller than this are not held to the ratio (tiny parts pack very well)
MAX_COLUMNS = 1024  # a contact list has a few dozen at most
MAX_CELL_CHARS = 1024 * 1024  # also the CSV reader's; a spreadsheet program keeps at most 32,767
_RESAVE = "open it in a spreadsheet program and save it again as .xlsx or as CSV (UTF-8)"


def is_workbook(path: Path) -> bool:
    """True when the file at ``path`` is an .xlsx/.xlsm workbook (a ZIP with ``xl/workbook.xml``)."""
    try:
        with path.open("rb") as handle:
            if handle.read(len(_ZIP_MAGIC)) != _ZIP_MAGIC:
                return False
        with zipfile.ZipFile(path) as archive:
            return "xl/workbook.xml" in archive.namelist()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError):
        return False


def check_workbook(path: Path) -> None:
    """Refuse (:class:`ImportFileError`) a workbook whose parts unpack beyond the module's limits.

    Only the ZIP directory is read: nothing is decompressed.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            parts = archive.infolist()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise ImportFileError(f"this is not a readable Excel workbook ({exc}); {_RESAVE}") from None
    total = sum(part.file_size for part in parts)
    if total > MAX_UNPACKED_BYTES:
        raise ImportFileError(
            f"this workbook unpacks to {total:,} bytes, more than the {MAX_UNPACKED_BYTES:,} read from a"
            " workbook; save it as CSV (UTF-8), which has no such limit, or split it"
        )
    for part in parts:
        if part.file_size > _RATIO_FROM and part.file_size > MAX_RATIO * max(part.compress_size, 1):
            raise ImportFileError(
                f"this workbook's part {part.filename} unpacks to {part.file_size:,} bytes from"
                f" {part.compress_size:,}, more than {MAX_RATIO} times: no spreadsheet program writes that"
                f" (it is what a 'zip bomb' does); {_RESAVE}"
            )


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


def _column_letters(number: int) -> str:
    letters = ""
    while number:
        number, rest = divmod(number - 1, 26)
        letters = chr(65 + rest) + letters
    return letters


def _row_cells(number: int, row: tuple[Any, ...]) -> list[str]:
    """The row's cells as text, trailing empty ones dropped; refuses values beyond the limits."""
    if len(row) > MAX_COLUMNS:
        beyond = row[MAX_COLUMNS:]
        if beyond.count(None) != len(beyond):  # tuple.count: no Python loop over a 16,384-cell row
            column = MAX_COLUMNS + next(i for i, value in enumerate(beyond) if value is not None) + 1
            raise ImportFileError(
                f"cell {_column_letters(column)}{number} holds a value, beyond column"
                f" {_column_letters(MAX_COLUMNS)} ({MAX_COLUMNS:,}), the last one read: move the list's"
                " columns to the left or delete what is beyond, then import it again (nothing was imported)"
            )
        row = row[:MAX_COLUMNS]
    cells = [_cell_text(value) for value in row]
    for index, cell in enumerate(cells):
        if len(cell) > MAX_CELL_CHARS:
            raise ImportFileError(
                f"cell {_column_letters(index + 1)}{number} holds {len(cell):,} characters, more than the"
                f" {MAX_CELL_CHARS:,} read (a spreadsheet program keeps at most 32,767 in a cell): shorten"
                " it, then import it again (nothing was imported)"
            )
    while cells and not cells[-1]:
        cells.pop()
    return cells


def sheet_rows(path: Path) -> int:
    """The number of rows the first sheet declares (its dimension), at least 1: an estimate for progress."""
    from openpyxl import load_workbook

    try:
        book = load_workbook(path, read_only=True, data_only=True)
    except Exception:  # noqa: BLE001 - only an estimate: workbook_lines reports the damage
        return 1
    try:
        declared = book.worksheets[0].max_row if book.worksheets else None
        return max(1, min(int(declared or 1), _MAX_ROWS))
    finally:
        book.close()


def workbook_lines(path: Path) -> Generator[str, None, None]:
    """The first worksheet as CSV lines ("\\n"-ended, comma-delimited, minimal quoting), one per row.

    Call :func:`check_workbook` first. Rows are parsed as they are asked for; the workbook is closed when the
    lines end or the iterator is closed. Raises :class:`ImportFileError` for a damaged workbook, naming the
    row after which the damage was found.
    """
    from openpyxl import load_workbook  # imported here: only workbook imports pay for it

    try:
        book = load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # noqa: BLE001 - openpyxl raises many kinds for a damaged file
        raise ImportFileError(
            f"this Excel workbook cannot be read ({type(exc).__name__}: {exc}); {_RESAVE}"
        ) from None
    number = 0
    try:
        if not book.worksheets:
            raise ImportFileError(f"this Excel workbook has no worksheet; {_RESAVE}")
        sheet = book.worksheets[0]
        sheet.reset_dimensions()  # read-only sheets: pad rows to the cells present
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        for number, row in enumerate(sheet.iter_rows(values_only=True), start=1):
            if number > _MAX_ROWS:
                raise ImportFileError(f"the workbook has more than {_MAX_ROWS:,} rows: split it")
            if not row:
                yield "\n"
                continue
            writer.writerow(_row_cells(number, row))
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    except ImportFileError:
        raise
    except Exception as exc:  # noqa: BLE001 - XML or ZIP damage inside a part, found while reading
        raise ImportFileError(
            f"this is not a readable Excel workbook: the sheet is damaged after row {number}"
            f" ({type(exc).__name__}: {exc}); {_RESAVE} (nothing was imported)"
        ) from None
    finally:
        book.close()


__all__ = [
    "MAX_CELL_CHARS",
    "MAX_COLUMNS",
    "MAX_RATIO",
    "MAX_UNPACKED_BYTES",
    "check_workbook",
    "is_workbook",
    "sheet_rows",
    "workbook_lines",
]
