"""The pass over an export's rows that every import shares: parse, reject, de-duplicate, store in chunks.

Shapes
    import_rows(factory, table, parse, writer, rejects_path=..., progress=...) -> RowOutcome
    parse(record) -> row | Rejected              the import's own reading of one record
    writer.begin(db); writer.write(db, chunk)    the import's own storing, chunk by chunk (ChunkWriter)

Each chunk of rows is stored in its own short transaction, bounded by rows (1000 to 5000) and by time (a
chunk whose write took longer than 0.25 s halves the one after the next, down to 1000 rows; one that took
less than half that doubles it), so a long import never holds the store for long (SQLite has one writer);
a chunk is written by a thread while the next one is read. If parsing, reading or storing raises, the
chunks before stay stored and importing the file again (idempotent) completes the import. The first
row of an address (by its case-folded key) wins; later ones are :class:`Duplicate` and never reach the writer.
Rejected rows are written, after the commit, to a rejects CSV with their original cells, ``line`` and ``reason``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Generic, Protocol, TypeVar

from sqlalchemy import Connection
from sqlalchemy.orm import Session as DbSession
from sqlalchemy.orm import sessionmaker

from mailer.audience.addresses import Address
from mailer.audience.seen import close_seen, open_seen, take_keys
from mailer.audience.table import Record, Table, check_rejects_path, write_rejects
from mailer.config import Settings
from mailer.errors import ImportFileError, ImportStoppedError
from mailer.store.engine import transaction

#: Called now and then during an import with (physical lines read so far, total physical lines).
ProgressCallback = Callable[[int, int], None]

_FIRST_CHUNK = 1000  # accepted rows in the first write: a few statements each, memory bounded
_MAX_CHUNK = 5000  # accepted rows per write (one transaction) at most
_MIN_CHUNK = 1000  # never fewer: each write costs a dozen statements whatever its size
_CHUNK_SECONDS = 0.25  # a write's transaction aims to last at most this long (wall-clock seconds)
_PROGRESS_ROWS = 1000  # progress is reported after every so many rows read


@dataclass(frozen=True, slots=True)
class Rejected:
    """A row not imported: its physical ``line``, the ``reason`` and the address cell as written."""

    line: int
    reason: str
    raw_email: str


@dataclass(frozen=True, slots=True)
class Duplicate:
    """A row whose address (case-insensitively) already came earlier in the file: that one (``kept_line``) wins."""

    line: int
    email: str
    kept_line: int


class KeyedRow(Protocol):
    """An accepted row: the physical line it starts on and its address, whose key de-duplicates the file."""

    @property
    def line(self) -> int: ...

    @property
    def address(self) -> Address: ...


Row = TypeVar("Row", bound=KeyedRow)


class ChunkWriter(Protocol[Row]):
    """Stores accepted rows for one import, one transaction per chunk, and counts what it did."""

    def begin(self, db: DbSession) -> None:
        """Called once before the first chunk (also when no row is accepted)."""

    def write(self, db: DbSession, chunk: list[Row]) -> Mapping[str, int]:
        """Store one chunk of rows of distinct addresses, in file order, except those whose address an
        earlier chunk of the import took (:mod:`mailer.audience.seen`, open on the connection); returns
        {their key: the line that took it}."""


class RowWriter(Protocol[Row]):
    """Stores rows of distinct addresses, every one of them (see :class:`KeysTakenFirst`)."""

    def begin(self, db: DbSession) -> None:
        """Called once before the first chunk."""

    def write(self, db: DbSession, chunk: list[Row]) -> None:
        """Store one chunk of rows, in file order."""


@dataclass
class KeysTakenFirst(Generic[Row]):
    """A :class:`ChunkWriter` made of a :class:`RowWriter`: each chunk's keys are taken first
    (:func:`mailer.audience.seen.take_keys`), then the rows whose address no earlier chunk took are written."""

    writer: RowWriter[Row]

    def begin(self, db: DbSession) -> None:
        self.writer.begin(db)

    def write(self, db: DbSession, chunk: list[Row]) -> Mapping[str, int]:
        earlier = take_keys(db, [(row.address.key, row.line) for row in chunk])
        rows = [row for row in chunk if row.address.key not in earlier] if earlier else chunk
        if rows:
            self.writer.write(db, rows)
        return earlier


@dataclass(frozen=True)
class RowOutcome:
    """What the pass saw: ``rows`` read after the header, rejected and duplicate rows, where rejects went."""

    rows: int
    rejected: tuple[Rejected, ...]
    duplicates: tuple[Duplicate, ...]
    rejects_path: Path | None  # None when nothing was rejected


@contextmanager
def _rolled_back(factory: sessionmaker[DbSession]) -> Iterator[DbSession]:
    """A transaction that is always rolled back."""
    with factory() as db, db.begin() as outer:
        yield db
        outer.rollback()


def default_rejects_path(settings: Settings, path: Path) -> Path:
    """``var/rejects/<file stem>-rejects.csv`` under the project root."""
    return settings.base_dir / "var" / "rejects" / f"{path.stem}-rejects.csv"


def import_rows(
    factory: sessionmaker[DbSession],
    table: Table,
    parse: Callable[[Record], Row | Rejected],
    writer: ChunkWriter[Row],
    *,
    rejects_path: Path,
    progress: ProgressCallback | None = None,
    dry_run: bool = False,
) -> RowOutcome:
    """Parse every record of ``table`` and hand accepted, first-of-their-address rows to ``writer`` in chunks
    bounded by rows and time (see the module's docstring), one transaction per chunk (so the service and the
    web pages wait at most one chunk for the store); then write rejected rows to ``rejects_path`` (only if
    there are any).

    The addresses taken by earlier chunks are kept in the store (:mod:`mailer.audience.seen`), those of the
    chunk being read in memory, so the importing process's memory does not grow with the file: every
    transaction of the import runs on one connection.
    ``progress`` gets (lines read, total lines) after every 1000 rows read and (total, total) at the end.
    ``dry_run`` runs every chunk in ONE transaction rolled back at the end: the outcome and the writer's
    counts say what the import would do, and nothing is stored (the rejects file is written all the same).
    Raises what reading the table (:class:`mailer.errors.ImportFileError`), ``parse`` or ``writer`` raise; the
    chunks before stay stored, and importing the file again (idempotent) completes it (a file that stops
    being readable part-way: :class:`mailer.errors.ImportStoppedError`, saying how many rows are stored);
    :class:`mailer.errors.ImportFileError` before anything is stored when ``rejects_path`` cannot be written.
    """
    check_rejects_path(rejects_path)
    with ExitStack() as stack:
        if dry_run:
            unit = _dry_unit(stack.enter_context(_rolled_back(factory)))
        else:
            unit = _committed(factory, stack.enter_context(_connection(factory)))
        try:
            outcome = _pass(unit, table, parse, writer, rejects_path, progress)
        except _StoppedError as stopped:
            reason, accepted = stopped.args
            raise ImportStoppedError(
                f"{reason} (nothing was imported)"
                if dry_run or not accepted
                else f"{reason}: the {accepted} accepted rows before that line are imported, and importing the"
                " corrected file completes the import (the rows already in are not doubled)",
                0 if dry_run else accepted,
            ) from None
    return outcome


class _StoppedError(Exception):
    """Reading the table failed part-way: (the reader's reason, accepted rows handed to the store before)."""


@contextmanager
def _connection(factory: sessionmaker[DbSession]) -> Iterator[Connection]:
    """One connection of the factory's engine for the whole import."""
    bind = factory.kw["bind"]
    with bind.connect() as connection:
        yield connection


def _committed(
    factory: sessionmaker[DbSession], connection: Connection
) -> Callable[[], AbstractContextManager[DbSession]]:
    """Each unit is a transaction of its own on ``connection``, committed at its end (rolled back on error)."""
    return lambda: transaction(factory, bind=connection)


def _dry_unit(db: DbSession) -> Callable[[], AbstractContextManager[DbSession]]:
    """Every "transaction" of a dry run is the one rolled-back session."""

    @contextmanager
    def same() -> Iterator[DbSession]:
        yield db
        db.flush()

    return same


def _next_limit(limit: int, seconds: float) -> int:
    """Rows for the next chunk after one of ``limit`` rows took ``seconds`` to write."""
    if seconds > _CHUNK_SECONDS:
        return max(_MIN_CHUNK, limit // 2)
    if seconds < _CHUNK_SECONDS / 2:
        return min(_MAX_CHUNK, limit * 2)
    return limit


@dataclass
class _Chunk(Generic[Row]):
    """The accepted rows read since the last write, first of their address in the chunk, and the chunk's
    later rows of the same addresses (their ``kept_line`` provisional: an earlier chunk may have had it)."""

    rows: list[Row] = field(default_factory=list)
    first_line: dict[str, int] = field(default_factory=dict)
    repeats: list[tuple[str, Duplicate]] = field(default_factory=list)

    def add(self, row: Row) -> None:
        address = row.address
        kept = self.first_line.setdefault(address.key, row.line)
        if kept == row.line:
            self.rows.append(row)
        else:
            self.repeats.append((address.key, Duplicate(row.line, address.email, kept)))

    def write(self, db: DbSession, writer: ChunkWriter[Row]) -> list[Duplicate]:
        """Store the rows whose address no earlier chunk took; the chunk's duplicates, in file order."""
        earlier = writer.write(db, self.rows) if self.rows else {}
        duplicates = [replace(dup, kept_line=earlier.get(key, dup.kept_line)) for key, dup in self.repeats]
        if earlier:
            duplicates += [
                Duplicate(row.line, row.address.email, earlier[row.address.key])
                for row in self.rows
                if row.address.key in earlier
            ]
            duplicates.sort(key=lambda dup: dup.line)
        return duplicates


def _written(
    unit: Callable[[], AbstractContextManager[DbSession]], chunk: _Chunk[Row], writer: ChunkWriter[Row]
) -> tuple[list[Duplicate], float]:
    """Write ``chunk`` in a transaction of its own: (its duplicates, wall-clock seconds the write took)."""
    started = time.monotonic()
    with unit() as db:  # one short transaction per chunk: other writers wait little
        duplicates = chunk.write(db, writer)
    return duplicates, time.monotonic() - started


def _pass(
    unit: Callable[[], AbstractContextManager[DbSession]],
    table: Table,
    parse: Callable[[Record], Row | Rejected],
    writer: ChunkWriter[Row],
    rejects_path: Path,
    progress: ProgressCallback | None,
) -> RowOutcome:
    rows = 0
    rejected: list[Rejected] = []
    rejected_cells: list[tuple[Sequence[str], int, str]] = []
    duplicates: list[Duplicate] = []
    with unit() as db:
        open_seen(db)
        writer.begin(db)
    chunk: _Chunk[Row] = _Chunk()
    limit = _FIRST_CHUNK
    # Each chunk is written by a thread of its own while the next one is read (the store works meanwhile:
    # PostgreSQL's server, or SQLite's C code without the GIL); one write at a time, in file order. Leaving
    # the block waits for the write under way, whatever raised.
    handed = 0  # accepted rows handed to the store
    with ThreadPoolExecutor(1, thread_name_prefix="import-writer") as writing:
        pending: Future[tuple[list[Duplicate], float]] | None = None
        records = iter(table.records)
        while True:
            try:
                record = next(records)
            except StopIteration:
                break
            except (
                ImportFileError
            ) as exc:  # the chunks handed over are stored (once the write under way ends)
                if pending is not None:
                    pending.result()
                raise _StoppedError(str(exc), handed) from None
            rows += 1
            if progress and rows % _PROGRESS_ROWS == 0:
                progress(table.lines_read(), table.total_lines)
            parsed = parse(record)
            if isinstance(parsed, Rejected):
                rejected.append(parsed)
                rejected_cells.append((record.cells, parsed.line, parsed.reason))
                continue
            chunk.add(parsed)
            if len(chunk.rows) >= limit:
                if pending is not None:
                    found, seconds = pending.result()  # raises what the write raised
                    duplicates += found
                    limit = _next_limit(limit, seconds)
                pending = writing.submit(_written, unit, chunk, writer)
                handed += len(chunk.rows)
                chunk = _Chunk()
        if pending is not None:
            duplicates += pending.result()[0]
    with unit() as db:
        duplicates += chunk.write(db, writer)
        close_seen(db)
    if progress:
        progress(table.total_lines, table.total_lines)
    written = None
    if rejected_cells:
        written = rejects_path
        write_rejects(written, table.header, rejected_cells)
    return RowOutcome(rows, tuple(rejected), tuple(duplicates), written)


__all__ = [
    "ChunkWriter",
    "Duplicate",
    "KeyedRow",
    "KeysTakenFirst",
    "ProgressCallback",
    "Rejected",
    "RowOutcome",
    "RowWriter",
    "default_rejects_path",
    "import_rows",
]
