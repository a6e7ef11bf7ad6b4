"""Tabular exports as organisers and platforms save them: decoded, delimiter found, header mapped, rows by line.

Shapes
    read_table(path, aliases) -> Table          header found, ``Table.records`` streamed once
    Table.value(record, field) -> str           one cell by field name ("" when absent)
    write_rejects(path, header, rows)           rejected rows back out as CSV, with ``line`` and ``reason``

Files are read as they come: Excel workbooks named .xlsx or .xlsm through :mod:`mailer.audience.workbook`
(a workbook named .csv is refused, naming what it is), text as UTF-8 with or without BOM (UTF-16 with BOM), else Windows-1252; delimiter sniffed
among ``, ; TAB |``; header names matched after :func:`mailer.audience.locales.fold` without accents, so English,
snake_case, Spanish or French aliases all work; quoted cells spanning lines; blank lines skipped. Line numbers
are PHYSICAL lines of the file (header = line 1 when it is the first line), counting the lines inside quoted
multi-line cells, so an organiser can find the row in a text editor.

Errors: :class:`mailer.errors.ImportFileError` when a file cannot be read at all (missing, undecodable, no
header with the required column, broken quoting).
"""

from __future__ import annotations

import codecs
import csv
import io
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import IO, Any, NamedTuple

from mailer.audience.locales import fold
from mailer.audience.workbook import is_workbook, workbook_text
from mailer.errors import ImportFileError

_DELIMITERS = ",;\t|"
WORKBOOK_SUFFIXES = (".xlsx", ".xlsm")  # read as workbooks; any other name is read as text
_HEADER_SEARCH_RECORDS = 100
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


class Record(NamedTuple):
    """One CSV record: ``line`` is the physical line it starts on (1-based), ``cells`` as read.
    (A named tuple: one is made per row, at a third of a frozen dataclass's cost.)"""

    line: int
    cells: tuple[str, ...]


@dataclass
class Table:
    """An export opened by :func:`read_table`: header found, ``records`` (after the header) streamed once.

    ``columns`` maps field names to cell positions; ``preamble`` holds the records before the header
    (a webinar report's title lines); ``total_lines`` counts physical lines, for progress.
    """

    path: Path
    encoding: str
    delimiter: str
    header: tuple[str, ...]
    header_line: int
    columns: dict[str, int]
    preamble: tuple[Record, ...]
    records: Iterator[Record]
    total_lines: int
    lines_read: Callable[[], int] = field(repr=False)  # physical lines consumed so far

    def value(self, record: Record, name: str) -> str:
        """The cell of field ``name`` in ``record``, or "" when the file has no such column or the row is short."""
        index = self.columns.get(name)
        if index is None or index >= len(record.cells):
            return ""
        return record.cells[index]


def decode(raw: bytes) -> tuple[str, str]:
    """(text, encoding name): UTF-8 with BOM, UTF-16 with BOM, strict UTF-8, else strict Windows-1252.

    Raises :class:`ImportFileError` when none of them decodes the bytes, or when they are a spreadsheet
    workbook (an .xlsx or .ods is a ZIP archive, an .xls an OLE2 compound file), whatever the file's name.
    """
    workbook = _workbook_kind(raw)
    if workbook:
        raise ImportFileError(
            f"this is {workbook}, not a CSV file: open it in Excel or LibreOffice and save it as"
            ' "CSV UTF-8 (comma delimited)", then import the .csv'
        )
    if raw.startswith(codecs.BOM_UTF8):
        candidates = ["utf-8-sig"]
    elif raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        candidates = ["utf-16"]
    else:
        candidates = ["utf-8", "cp1252"]
    for encoding in candidates:
        try:
            return raw.decode(encoding), encoding
        except UnicodeDecodeError:
            continue
    raise ImportFileError(f"cannot decode the file as {' or '.join(candidates)}: save it as UTF-8 and retry")


_ZIP_SIGNATURE = b"PK\x03\x04"  # a ZIP archive's first local file header (APPNOTE.TXT 4.3.7)
_OLE2_SIGNATURE = bytes.fromhex("d0cf11e0a1b11ae1")  # an OLE2 compound file ([MS-CFB] 2.2): .xls, .doc


def _workbook_kind(raw: bytes) -> str:
    """What kind of workbook ``raw`` is ("an Excel workbook (.xlsx)" ...), or "" for anything else."""
    if raw.startswith(_OLE2_SIGNATURE):
        return "an Excel 97-2003 workbook (.xls)"
    if not raw.startswith(_ZIP_SIGNATURE):
        return ""
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as archive:
            names = set(archive.namelist())
            mimetype = archive.read("mimetype").decode("ascii", "replace") if "mimetype" in names else ""
    except (zipfile.BadZipFile, KeyError, OSError):
        return "a ZIP archive"
    if any(name.startswith("xl/") for name in names):
        return "an Excel workbook (.xlsx)"
    if "spreadsheet" in mimetype:
        return "an OpenDocument spreadsheet (.ods)"
    return "a ZIP archive"


_BLOCK = 1 << 20  # bytes decoded at a time when a file's encoding is checked


def _text_encoding(path: Path, start: bytes) -> tuple[str, int]:
    """(encoding, physical lines) of a text file, chosen as :func:`decode` does and checked over the whole
    file block by block, so that the file is never held in memory. ``start`` is the file's first bytes.
    Raises :class:`ImportFileError` when no candidate decodes it, OSError when it cannot be read."""
    if start.startswith(codecs.BOM_UTF8):
        candidates = ["utf-8-sig"]
    elif start.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        candidates = ["utf-16"]
    else:
        candidates = ["utf-8", "cp1252"]
    for encoding in candidates:
        decoder = codecs.getincrementaldecoder(encoding)()  # strict
        newlines, last = 0, ""
        try:
            with path.open("rb") as handle:
                while True:
                    block = handle.read(_BLOCK)
                    text = decoder.decode(block, final=not block)
                    newlines += text.count("\n")
                    last = text[-1:] or last
                    if not block:
                        break
        except UnicodeDecodeError:
            continue
        return encoding, newlines + (0 if last == "\n" else 1)
    raise ImportFileError(f"cannot decode the file as {' or '.join(candidates)}: save it as UTF-8 and retry")


def _records(open_text: Callable[[], IO[str]], delimiter: str) -> tuple[Iterator[Record], Callable[[], int]]:
    """Non-blank records with their first physical line, and a function telling how many lines were read.

    ``open_text`` opens the text with lines split on "\n" only (ends kept: a CRLF file gives lines ending
    "\r\n"); it is opened when the first record is asked for and closed when the records end.
    """
    state: dict[str, Any] = {"reader": None}

    def generate() -> Iterator[Record]:
        with open_text() as handle:
            reader = csv.reader(handle, delimiter=delimiter, strict=True)  # an unclosed quote is an error
            state["reader"] = reader
            previous = 0
            for_each = iter(reader)
            while True:
                try:
                    cells = next(for_each)
                except StopIteration:
                    return
                except csv.Error as exc:
                    hint = (
                        ": a quote opened on this line is never closed" if "end of data" in str(exc) else ""
                    )
                    raise ImportFileError(
                        f"line {previous + 1}: unreadable CSV ({exc}){hint}; fix the quoting in the file "
                        "and import it again"
                    ) from None
                line, previous = previous + 1, reader.line_num
                if "".join(cells).strip():  # not blank: some cell holds more than whitespace
                    yield Record(line, tuple(cells))

    return generate(), lambda: state["reader"].line_num if state["reader"] else 0


def map_columns(header: Sequence[str], aliases: dict[str, tuple[str, ...]]) -> dict[str, int]:
    """Field name -> position for each header cell matching an alias (first matching column wins)."""
    lookup = {alias: name for name, names in aliases.items() for alias in names}
    columns: dict[str, int] = {}
    for index, cell in enumerate(header):
        name = lookup.get(fold(cell, accents=False))
        if name and name not in columns:
            columns[name] = index
    return columns


def _sniff(sample: str) -> list[str]:
    """Delimiters to try, the sniffed one first, judged from the file's first 65,536 characters."""
    order = list(_DELIMITERS)
    try:
        sniffed = (
            csv.Sniffer().sniff(sample[: sample.rfind("\n") + 1] or sample, delimiters=_DELIMITERS).delimiter
        )
        order.remove(sniffed)
        order.insert(0, sniffed)
    except csv.Error:
        counts = {d: sample.count(d) for d in _DELIMITERS}
        order.sort(key=lambda d: -counts[d])
    return order


def read_table(
    path: Path, aliases: dict[str, tuple[str, ...]], *, required: str = "email", name: str = ""
) -> Table:
    """Open an export and find its header: the first of the first 100 records holding a ``required`` column.

    ``name`` is the file's name in error messages, as the organiser named it (default: the path's name; a web
    upload is stored under a random one).
    Raises :class:`ImportFileError` if the file is missing, undecodable or has no such header.
    """
    shown_name = name or path.name
    try:
        with path.open("rb") as handle:
            start = handle.read(len(_OLE2_SIGNATURE))
        if path.suffix.lower() in WORKBOOK_SUFFIXES or start.startswith((_ZIP_SIGNATURE, _OLE2_SIGNATURE)):
            raw = path.read_bytes()  # a workbook (or refused as one): read whole
            if path.suffix.lower() in WORKBOOK_SUFFIXES and is_workbook(raw):
                text, encoding = workbook_text(raw), "xlsx"
            else:
                text, encoding = decode(raw)
            del raw
            total_lines = text.count("\n") + (0 if text.endswith("\n") else 1)

            def open_text() -> IO[str]:
                return io.StringIO(text, newline="\n")

        else:  # text, streamed: never held whole in memory
            encoding, total_lines = _text_encoding(path, start)

            def open_text() -> IO[str]:
                return path.open(encoding=encoding, newline="\n")

    except OSError as exc:
        raise ImportFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    except ImportFileError as exc:  # a workbook, or no encoding fits: name the file, as the errors below do
        raise ImportFileError(f"{shown_name}: {exc}") from None
    with open_text() as opened:
        sample = opened.read(65536)
    first_cells: tuple[str, ...] = ()
    for delimiter in _sniff(sample):
        records, lines_read = _records(open_text, delimiter)
        preamble: list[Record] = []
        try:
            for record in islice(records, _HEADER_SEARCH_RECORDS):
                columns = map_columns(record.cells, aliases)
                if required in columns:
                    return Table(
                        path,
                        encoding,
                        delimiter,
                        record.cells,
                        record.line,
                        columns,
                        tuple(preamble),
                        records,
                        total_lines,
                        lines_read,
                    )
                preamble.append(record)
        except ImportFileError:
            continue  # unreadable with this delimiter: try the next one
        if preamble and not first_cells:
            first_cells = preamble[0].cells
    shown = (
        f"first row: {', '.join(repr(c) for c in first_cells[:12])}"
        if first_cells
        else "the file has no rows"
    )
    accepted = ", ".join(repr(alias) for alias in aliases[required][:8])
    raise ImportFileError(
        f"{shown_name}: no header row with an {required} column found ({shown}); name that "
        f"column one of {accepted} (any case, accents ignored)"
    )


def write_rejects(path: Path, header: Sequence[str], rows: Sequence[tuple[Sequence[str], int, str]]) -> None:
    """Write rejected rows as UTF-8 CSV (with BOM, for spreadsheets): original columns, then ``line``, ``reason``.

    Cells that a spreadsheet would run as a formula (starting with = + - @) are prefixed with ``'``.
    Creates the folder. Raises OSError if the file cannot be written.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([*header, "line", "reason"])
        for cells, line, reason in rows:
            padded = [*cells, *[""] * (len(header) - len(cells))]
            writer.writerow([_neutralise(cell) for cell in padded] + [str(line), reason])


def check_rejects_path(path: Path) -> None:
    """Raise :class:`ImportFileError` when rejected rows could not be written to ``path`` (a folder that cannot
    be made, a file that cannot be opened for writing), before anything is imported. The folder is made, as
    :func:`write_rejects` would; the file is opened to append and, if it was not there, removed again."""
    existed = path.exists()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8"):
            pass
        if not existed:
            path.unlink()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ImportFileError(
            f"cannot write rejected rows to {path}: {reason}. Nothing was imported: name a rejects file in a"
            " folder you can write to"
        ) from None


def _neutralise(cell: str) -> str:
    return "'" + cell if cell.startswith(_FORMULA_START) else cell


__all__ = [
    "WORKBOOK_SUFFIXES",
    "Record",
    "Table",
    "check_rejects_path",
    "decode",
    "map_columns",
    "read_table",
    "write_rejects",
]
