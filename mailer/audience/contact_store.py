"""Contact rows stored: new contacts inserted, existing ones merged, all put on one region's list, in bulk.

Shapes
    ContactWriter(settings, region, source, now)      a :class:`mailer.audience.row_import.ChunkWriter`
    contact_values(row, now) -> dict                  a ``contacts`` row for INSERT
    contact_ids(db, keys) -> {email_key: id}
    ensure_list(db, settings, region) -> list id

Merging (:meth:`ContactWriter.write`, in SQL, the one place of the rule): non-blank cells overwrite, blanks never
erase, defaults never overwrite (language and zone change only when the file gave them); a contact already on
another region's list only has its blanks filled, so that it does not change country, language or zone with
the order in which the regions' files are imported.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from psycopg.errors import DeadlockDetected
from sqlalchemy import CursorResult, TextClause, bindparam, column, select, table, text
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session as DbSession

from mailer.audience.bulk import fill_stage, insert_ignoring_conflicts, literal_in
from mailer.audience.contact_rows import ContactRow, Replaced
from mailer.audience.import_log import ImportJournal
from mailer.audience.seen import take_staged
from mailer.config import Settings
from mailer.store.models import Contact, ContactList, ContactStatus, ImportChangeKind, UTCDateTime
from mailer.timeline.clock import require_aware

_MERGE_ATTEMPTS = 5  # a chunk's merge on PostgreSQL: tries before a deadlock is raised
_DEADLOCK_PAUSE = 0.05  # seconds before a retry after a deadlock, times the attempt's number
_STAGE = "contact_import_stage"  # a temporary table: one chunk of accepted rows
_STAGE_COLUMNS = (
    ("line", "INTEGER"),
    ("email", "VARCHAR(320)"),
    ("email_key", "VARCHAR(320)"),
    ("name", "VARCHAR(300)"),
    ("title", "VARCHAR(100)"),
    ("institution", "VARCHAR(300)"),
    ("country", "VARCHAR(2)"),
    ("language", "VARCHAR(35)"),
    ("language_explicit", "BOOLEAN"),
    ("time_zone", "VARCHAR(64)"),
    ("zone_explicit", "BOOLEAN"),
    ("needs_smtputf8", "BOOLEAN"),
    ("contact_id", "INTEGER"),  # the contact, once found or created
    ("home", "BOOLEAN"),  # an existing contact on no list but this one
    ("fresh", "BOOLEAN DEFAULT FALSE"),  # created by this chunk
    ("joined", "BOOLEAN DEFAULT FALSE"),  # put on the list by this chunk
)
_LOADED = 12  # the columns filled from a row; the rest the merge fills
_stage = table(_STAGE, *(column(name) for name, _ in _STAGE_COLUMNS))


def _changed(field: str) -> str:
    """SQL: the staged row ``s`` changes this field of the existing contact (the merge rule above)."""
    if field == "language":
        return "(s.home AND s.language_explicit AND s.language <> contacts.language)"
    if field == "time_zone":
        return "(s.home AND s.zone_explicit AND s.time_zone <> contacts.time_zone)"
    return f"(s.{field} <> '' AND s.{field} <> contacts.{field} AND (s.home OR contacts.{field} = ''))"


_COMPARED = ("name", "title", "institution", "country", "language", "time_zone")
_FIND = text(
    f"UPDATE {_STAGE} SET contact_id = contacts.id, home = NOT EXISTS (SELECT 1 FROM list_memberships m"
    " WHERE m.contact_id = contacts.id AND m.list_id <> :list)"
    f" FROM contacts WHERE contacts.email_key = {_STAGE}.email_key"
)
_MERGE = text(
    "UPDATE contacts SET "
    + ", ".join(f"{f} = CASE WHEN {_changed(f)} THEN s.{f} ELSE contacts.{f} END" for f in _COMPARED)
    + f", updated_at = :now FROM {_STAGE} s WHERE contacts.id = s.contact_id AND ("
    + " OR ".join(_changed(f) for f in _COMPARED)
    + ")"
).bindparams(bindparam("now", type_=UTCDateTime()))
_CREATE = text(
    "INSERT INTO contacts (email, email_key, name, title, institution, country, language, time_zone,"
    " needs_smtputf8, status, created_at, updated_at)"
    " SELECT email, email_key, name, title, institution, country, language, time_zone, needs_smtputf8,"
    f" :status, :now, :now FROM {_STAGE} WHERE contact_id IS NULL ORDER BY line"
    " ON CONFLICT (email_key) DO NOTHING"
).bindparams(bindparam("now", type_=UTCDateTime()))
_CREATED = text(  # :joined when this chunk created every one of them: a contact just created is on no list
    f"UPDATE {_STAGE} SET fresh = TRUE, joined = :joined, contact_id = contacts.id FROM contacts"
    f" WHERE {_STAGE}.contact_id IS NULL AND contacts.email_key = {_STAGE}.email_key"
)
_JOINING = text(
    f"UPDATE {_STAGE} SET joined = TRUE WHERE NOT joined AND NOT EXISTS (SELECT 1 FROM list_memberships m"
    f" WHERE m.contact_id = {_STAGE}.contact_id AND m.list_id = :list)"
)
_JOIN = text(
    "INSERT INTO list_memberships (contact_id, list_id, source, added_at)"
    f" SELECT contact_id, :list, :source || CAST(line AS VARCHAR), :now FROM {_STAGE} WHERE joined"
    " ORDER BY line ON CONFLICT (contact_id, list_id) DO NOTHING"
).bindparams(bindparam("now", type_=UTCDateTime()))


def _merge_statement(guarded: bool) -> TextClause:
    """PostgreSQL: the whole merge of a staged chunk in one statement, its data-modifying CTEs seeing the store
    as it was before it (so nothing is written to the staging table): the contacts found and whether they are
    on another list (``home``) or this one (each a probe of the memberships' key for that contact: a correlated
    ``EXISTS`` would be planned as one hash of every membership of the list, rebuilt for each chunk, which makes a
    big import quadratic); the found ones merged; the others (the staged lines not found: a
    hashed list, not a second probe of the address index) created; the contacts not on the list put on it; the
    journal of both when ``:journal``. Returns (found, merged, joined).

    ``guarded``: the inserts skip what another process inserted meanwhile (a contact is returned by the no-op
    ``DO UPDATE`` and counts as new, as elsewhere; a membership is left out). Unguarded, they are plain inserts,
    which the ``found`` join has already decided (no speculative insertion per row, about a third of an
    insert's cost): one that meets a row inserted meanwhile raises IntegrityError instead.
    """
    contact_conflict = (
        " ON CONFLICT (email_key) DO UPDATE SET email_key = EXCLUDED.email_key" if guarded else ""
    )
    membership_conflict = " ON CONFLICT (contact_id, list_id) DO NOTHING" if guarded else ""
    return text(
        "WITH found AS MATERIALIZED (SELECT s.line, s.name, s.title, s.institution, s.country, s.language,"
        " s.language_explicit, s.time_zone, s.zone_explicit, contacts.id AS contact_id,"
        " other.contact_id IS NULL AS home, mine.contact_id IS NOT NULL AS member"
        f" FROM {_STAGE} s JOIN contacts ON contacts.email_key = s.email_key"
        " LEFT JOIN list_memberships mine ON mine.contact_id = contacts.id AND mine.list_id = :list"
        " LEFT JOIN LATERAL (SELECT m.contact_id FROM list_memberships m"
        " WHERE m.contact_id = contacts.id AND m.list_id <> :list LIMIT 1) other ON TRUE),"
        " merged AS (UPDATE contacts SET "
        + ", ".join(f"{f} = CASE WHEN {_changed(f)} THEN s.{f} ELSE contacts.{f} END" for f in _COMPARED)
        + ", updated_at = :now FROM found s WHERE contacts.id = s.contact_id AND ("
        + " OR ".join(_changed(f) for f in _COMPARED)
        + ") RETURNING contacts.id),"
        " created AS (INSERT INTO contacts (email, email_key, name, title, institution, country, language,"
        " time_zone, needs_smtputf8, status, created_at, updated_at)"
        " SELECT email, email_key, name, title, institution, country, language, time_zone, needs_smtputf8,"
        f" :status, :now, :now FROM {_STAGE} s"
        " WHERE s.line NOT IN (SELECT line FROM found) ORDER BY line"
        f"{contact_conflict} RETURNING id, email_key),"
        " joined AS (INSERT INTO list_memberships (contact_id, list_id, source, added_at)"
        " SELECT contact_id, :list, :source || CAST(line AS VARCHAR), :now FROM ("
        " SELECT contact_id, line FROM found WHERE NOT member"
        f" UNION ALL SELECT c.id, s.line FROM created c JOIN {_STAGE} s ON s.email_key = c.email_key) j"
        f" ORDER BY line{membership_conflict} RETURNING contact_id),"
        " journal AS (INSERT INTO import_changes (import_id, change, contact_id, list_id, session_id,"
        " previous_status)"
        " SELECT :import, :contact, id, NULL, '', '' FROM created WHERE :journal"
        " UNION ALL SELECT :import, :membership, contact_id, :list, '', '' FROM joined WHERE :journal)"
        " SELECT (SELECT count(*) FROM found), (SELECT count(*) FROM merged), (SELECT count(*) FROM joined)"
    ).bindparams(bindparam("now", type_=UTCDateTime()))


_MERGE_NEW = _merge_statement(guarded=False)  # tried first, in a savepoint
_MERGE_ALL = _merge_statement(guarded=True)  # when another process inserted one of the chunk's rows meanwhile


def ensure_list(db: DbSession, settings: Settings, region: str) -> int:
    """Id of the region's ContactList, creating it (named from settings) when missing."""
    name = settings.region(region).name
    insert_ignoring_conflicts(db, ContactList.__table__, [{"region": region, "name": name}], ["region"])
    return int(db.execute(select(ContactList.id).where(ContactList.region == region)).scalar_one())


def contact_values(row: ContactRow, now: datetime) -> dict[str, Any]:
    """The ``contacts`` columns of a new, active contact made from ``row``, created and updated ``now``.
    Raises NaiveDatetimeError for a naive ``now``."""
    now = require_aware(now, "now")
    return {
        "email": row.address.email,
        "email_key": row.address.key,
        "name": row.name,
        "title": row.title,
        "institution": row.institution,
        "country": row.country,
        "language": row.language,
        "time_zone": row.time_zone,
        "needs_smtputf8": row.address.needs_smtputf8,
        "status": ContactStatus.ACTIVE.value,
        "created_at": now,
        "updated_at": now,
    }


def contact_ids(db: DbSession, keys: Sequence[str]) -> dict[str, int]:
    """Email key -> contact id, for the keys that have a contact."""
    found = db.execute(select(Contact.email_key, Contact.id).where(literal_in(Contact.email_key, keys)))
    return {key: contact_id for key, contact_id in found}


@dataclass
class ContactWriter:
    """Stores contact rows from ``source`` (a file name) on ``region``'s list, and counts what it did.

    ``new``/``updated``/``unchanged``: rows by what happened to their contact; ``memberships``: contacts newly
    put on the list; ``replaced``: the unusable cells of the rows written, in file order. ``journal``, when
    given, records the contacts created and the memberships added (for undo).
    """

    settings: Settings
    region: str
    source: str
    now: datetime
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    memberships: int = 0
    replaced: list[Replaced] = field(default_factory=list)
    journal: ImportJournal | None = None
    _list_id: int = 0

    def begin(self, db: DbSession) -> None:
        """Find or create the region's list; open the journal."""
        self._list_id = ensure_list(db, self.settings, self.region)
        if self.journal is not None:
            self.journal.open(db)

    def write(self, db: DbSession, chunk: list[ContactRow]) -> dict[str, int]:
        """Upsert one chunk of de-duplicated rows and put them on the list, set-based: the rows go into a
        temporary table in one go (:func:`mailer.audience.bulk.fill_stage`), then, whatever the chunk's
        size, one statement merges them on PostgreSQL (``_MERGE_NEW``, else ``_MERGE_ALL``) and a few ``UPDATE ... FROM`` and
        ``INSERT ... SELECT`` statements on SQLite. A contact another process inserts meanwhile counts as new.

        The rows whose address an earlier chunk of the import took are left out (:func:`mailer.audience.seen.
        take_staged`: the import's set of taken addresses must be open on the connection); returns {their
        key: the line that took it}. The merge rule is the module's (see its docstring).
        """
        postgresql = db.get_bind().dialect.name == "postgresql"
        fill_stage(
            db,
            _STAGE,
            _STAGE_COLUMNS,
            _LOADED,
            (_staged(row) for row in chunk),
            key="email_key" if postgresql else "",
        )
        earlier = take_staged(db, _STAGE, len(chunk))
        if earlier:
            chunk = [row for row in chunk if row.address.key not in earlier]
        for row in chunk:
            self.replaced.extend(row.replaced)
        if postgresql:
            self._merge_all(db, len(chunk))
            return earlier
        existing = _rows(db, _FIND, {"list": self._list_id})
        updated = 0
        if existing:
            updated = _rows(db, _MERGE, {"now": self.now})
        fresh = len(chunk) - existing
        joined = 0
        if fresh:
            created = _rows(db, _CREATE, {"status": ContactStatus.ACTIVE.value, "now": self.now})
            joined = fresh if created == fresh else 0
            db.execute(_CREATED, {"joined": created == fresh})
        self.new += fresh
        self.updated += updated
        self.unchanged += len(chunk) - fresh - updated
        if joined < len(chunk):
            joined += _rows(db, _JOINING, {"list": self._list_id})
        if joined:
            db.execute(_JOIN, {"list": self._list_id, "source": f"{self.source}:", "now": self.now})
        self.memberships += joined
        if self.journal is not None:
            ids = select(_stage.c.contact_id)
            if fresh:
                self.journal.selected(db, ImportChangeKind.CONTACT, ids.where(_stage.c.fresh))
            if joined:
                self.journal.selected(
                    db, ImportChangeKind.MEMBERSHIP, ids.where(_stage.c.joined), self._list_id
                )
        return earlier

    def _merge_all(self, db: DbSession, staged: int) -> None:
        """PostgreSQL: merge the ``staged`` rows in one statement and count what it did: with plain inserts
        (``_MERGE_NEW``, in a savepoint), or, when one of them meets a row another process inserted meanwhile,
        again with inserts that skip such rows (``_MERGE_ALL``). Two imports of the same people at once wait
        for each other's uncommitted rows, in their files' orders, and PostgreSQL may end such a wait as a
        deadlock by aborting one statement: its savepoint is rolled back and the merge tried again (guarded),
        up to ``_MERGE_ATTEMPTS`` times in all."""
        parameters = {
            "list": self._list_id,
            "now": self.now,
            "status": ContactStatus.ACTIVE.value,
            "source": f"{self.source}:",
            "journal": self.journal is not None,
            "import": self.journal.import_id if self.journal is not None else 0,
            "contact": ImportChangeKind.CONTACT.value,
            "membership": ImportChangeKind.MEMBERSHIP.value,
        }
        statement = _MERGE_NEW
        for attempt in range(1, _MERGE_ATTEMPTS + 1):
            try:
                with db.begin_nested():
                    found, merged, joined = db.execute(statement, parameters).one()
                break
            except IntegrityError:
                statement = _MERGE_ALL
            except OperationalError as exc:
                if not isinstance(exc.orig, DeadlockDetected) or attempt == _MERGE_ATTEMPTS:
                    raise
                statement = _MERGE_ALL  # the other import's rows are committed by now, or soon
                time.sleep(_DEADLOCK_PAUSE * attempt)
        else:  # the last attempt met a row inserted meanwhile yet again
            found, merged, joined = db.execute(_MERGE_ALL, parameters).one()
        self.new += staged - found
        self.updated += merged
        self.unchanged += found - merged
        self.memberships += joined


def _rows(db: DbSession, statement: TextClause, parameters: dict[str, Any] | None = None) -> int:
    """How many rows an UPDATE changed."""
    return int(cast(CursorResult[Any], db.execute(statement, parameters or {})).rowcount)


def _staged(row: ContactRow) -> tuple[Any, ...]:
    """The row as the staging table's first columns, in order."""
    address = row.address
    return (
        row.line,
        address.email,
        address.key,
        row.name,
        row.title,
        row.institution,
        row.country,
        row.language,
        row.language_explicit,
        row.time_zone,
        row.zone_explicit,
        address.needs_smtputf8,
    )


__all__ = ["ContactWriter", "contact_ids", "contact_values", "ensure_list"]
