"""The record of organisers' imports: who imported which file into what, and what each row changed.

Shapes
    ImportJournal(kind, target, path, by, now, forced)   opened by the import's writer before its first chunk
    journal.contacts(db, ids) / memberships(db, list_id, ids) / registrations(db, session_id, ids)
    journal.selected(db, change, select of contact ids, list_id)   the same, from a query
    journal.registration_changes(db, session_id, [(contact id, previous status, previous time)])
    finish_import(factory, import_id, counts..., summary)   the counts, once the pass is over
    discarded_if_nothing_stored(factory, journal)          no record of an import whose file stopped at once
    list_imports(factory, limit) -> [ImportView]           newest first
    file_sha256(path) -> hex digest

The journal's rows (``import_changes``) are what :mod:`mailer.audience.import_undo` takes back.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence, Sized
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Integer, Select, delete, func, insert, literal, select, update
from sqlalchemy.orm import Session as DbSession
from sqlalchemy.orm import sessionmaker

from mailer.errors import ImportStoppedError
from mailer.store.engine import transaction
from mailer.store.models import ImportChange, ImportChangeKind, ImportKind, ImportRecord
from mailer.timeline.clock import require_aware

_HASH_BLOCK = 1 << 20


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of the file's bytes. Raises OSError if it cannot be read."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while block := handle.read(_HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class ImportJournal:
    """Records one import: :meth:`open` adds its ``imports`` row, the other methods what its rows did.

    ``by`` is who imported ("cli:USER", "web:USERNAME"); ``file_name`` as the organiser named the file.
    """

    kind: ImportKind
    target: str
    file_name: str
    sha256: str
    by: str
    now: datetime
    forced: bool = False
    import_id: int = 0

    def open(self, db: DbSession) -> None:
        """Add the import's row (its counts come with :func:`finish_import`); sets ``import_id``."""
        record = ImportRecord(
            kind=self.kind.value,
            target=self.target[:100],
            file_name=self.file_name[:255],
            sha256=self.sha256,
            imported_by=self.by[:100],
            imported_at=require_aware(self.now, "import time"),
            forced=self.forced,
            rows=0,
            accepted=0,
            rejected=0,
            duplicates=0,
            summary="",
            undone_by="",
            undo_summary="",
        )
        db.add(record)
        db.flush()
        self.import_id = record.id

    def _add(self, db: DbSession, rows: list[dict[str, Any]]) -> None:
        if rows:
            db.execute(insert(ImportChange), rows)

    def _row(self, change: ImportChangeKind, contact_id: int, **values: Any) -> dict[str, Any]:
        return {
            "import_id": self.import_id,
            "change": change.value,
            "contact_id": contact_id,
            "list_id": None,
            "session_id": "",
            "previous_status": "",
            "previous_registered_at": None,
            **values,
        }

    def contacts(self, db: DbSession, ids: Sequence[int]) -> None:
        """The import created these contacts."""
        self._add(db, [self._row(ImportChangeKind.CONTACT, i) for i in ids])

    def selected(
        self, db: DbSession, change: ImportChangeKind, ids: Select[tuple[int]], list_id: int | None = None
    ) -> None:
        """The import made ``change`` (a contact or a membership of ``list_id``) for each contact id that
        ``ids`` selects, in its order: one ``INSERT ... SELECT``, no row through Python."""
        rows = ids.subquery()
        db.execute(
            insert(ImportChange).from_select(
                ["import_id", "change", "contact_id", "list_id", "session_id", "previous_status"],
                select(
                    literal(self.import_id),
                    literal(change.value),
                    *rows.c,
                    literal(list_id, Integer),
                    literal(""),
                    literal(""),
                ),
            )
        )

    def memberships(self, db: DbSession, list_id: int, ids: Sequence[int]) -> None:
        """The import put these contacts on list ``list_id``."""
        self._add(db, [self._row(ImportChangeKind.MEMBERSHIP, i, list_id=list_id) for i in ids])

    def registrations(self, db: DbSession, session_id: str, ids: Sequence[int]) -> None:
        """The import created registrations of these contacts for ``session_id``."""
        self._add(db, [self._row(ImportChangeKind.REGISTRATION, i, session_id=session_id) for i in ids])

    def registration_changes(
        self, db: DbSession, session_id: str, previous: Sequence[tuple[int, str, datetime | None]]
    ) -> None:
        """The import changed these registrations: (contact id, previous status, previous time)."""
        self._add(
            db,
            [
                self._row(
                    ImportChangeKind.REGISTRATION_CHANGE,
                    contact_id,
                    session_id=session_id,
                    previous_status=status,
                    previous_registered_at=at,
                )
                for contact_id, status, at in previous
            ],
        )


class Counted(Protocol):
    """The counts of a finished import, as its report (contacts' or registrations') gives them."""

    @property
    def rows(self) -> int: ...
    @property
    def accepted(self) -> int: ...
    @property
    def rejected(self) -> Sized: ...
    @property
    def duplicates(self) -> Sized: ...
    @property
    def summary(self) -> str: ...


@contextmanager
def discarded_if_nothing_stored(
    factory: sessionmaker[DbSession], journal: ImportJournal | None
) -> Iterator[None]:
    """Around an import's pass: when its file stops before anything was stored (:class:`ImportStoppedError`
    with no stored row), remove the import's record, so that no unfinished import is listed for it, and
    re-raise; nothing to remove when it was never opened (or is a dry run's)."""
    try:
        yield
    except ImportStoppedError as stopped:
        if not stopped.stored_rows and journal is not None and journal.import_id:
            with transaction(factory) as db:
                db.execute(delete(ImportChange).where(ImportChange.import_id == journal.import_id))
                db.execute(delete(ImportRecord).where(ImportRecord.id == journal.import_id))
            journal.import_id = 0
        raise


def record_counts(factory: sessionmaker[DbSession], journal: ImportJournal | None, report: Counted) -> None:
    """Store ``report``'s counts with the import's record (:func:`finish_import`); nothing without a journal
    (a dry run records nothing)."""
    if journal is not None:
        finish_import(
            factory,
            journal.import_id,
            rows=report.rows,
            accepted=report.accepted,
            rejected=len(report.rejected),
            duplicates=len(report.duplicates),
            summary=report.summary,
        )


def finish_import(
    factory: sessionmaker[DbSession],
    import_id: int,
    *,
    rows: int,
    accepted: int,
    rejected: int,
    duplicates: int,
    summary: str,
) -> None:
    """Store the counts of a finished import (a short transaction of its own)."""
    with transaction(factory) as db:
        db.execute(
            update(ImportRecord)
            .where(ImportRecord.id == import_id)
            .values(rows=rows, accepted=accepted, rejected=rejected, duplicates=duplicates, summary=summary)
        )


@dataclass(frozen=True)
class ImportView:
    """One recorded import as listed: the record's fields and how many changes it can take back."""

    id: int
    kind: str
    target: str
    file_name: str
    sha256: str
    imported_by: str
    imported_at: datetime
    forced: bool
    rows: int
    accepted: int
    rejected: int
    duplicates: int
    summary: str
    undone_at: datetime | None
    undone_by: str
    undo_summary: str
    changes: int

    @property
    def finished(self) -> bool:
        """Its counts were recorded: the import ran to its end (an import stopped by an error or a kill, or
        one still under way, has none yet)."""
        return bool(self.summary)

    @property
    def result(self) -> str:
        """What it did, in words: its summary, or (not finished) what is stored so far and the way on."""
        if self.finished:
            return self.summary
        return (
            f"not finished (stopped, or still under way): {self.changes} changes stored so far; import the file"
            " again to complete it (nothing is doubled), or undo it"
        )


def _view(record: ImportRecord, changes: int) -> ImportView:
    return ImportView(
        record.id,
        record.kind,
        record.target,
        record.file_name,
        record.sha256,
        record.imported_by,
        record.imported_at,
        record.forced,
        record.rows,
        record.accepted,
        record.rejected,
        record.duplicates,
        record.summary,
        record.undone_at,
        record.undone_by,
        record.undo_summary,
        changes,
    )


def list_imports(factory: sessionmaker[DbSession], limit: int = 50) -> list[ImportView]:
    """The ``limit`` most recent imports, newest first."""
    with transaction(factory) as db:
        counts = (
            select(ImportChange.import_id, func.count().label("n"))
            .group_by(ImportChange.import_id)
            .subquery()
        )
        rows = db.execute(
            select(ImportRecord, func.coalesce(counts.c.n, 0))
            .outerjoin(counts, counts.c.import_id == ImportRecord.id)
            .order_by(ImportRecord.id.desc())
            .limit(max(1, limit))
        ).all()
        return [_view(record, int(n)) for record, n in rows]


def import_view(factory: sessionmaker[DbSession], import_id: int) -> ImportView | None:
    """One recorded import, or None."""
    with transaction(factory) as db:
        record = db.get(ImportRecord, import_id)
        if record is None:
            return None
        n = db.scalar(select(func.count()).where(ImportChange.import_id == import_id)) or 0
        return _view(record, int(n))


__all__ = [
    "ImportJournal",
    "ImportView",
    "file_sha256",
    "finish_import",
    "import_view",
    "list_imports",
]
