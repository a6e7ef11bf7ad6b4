"""Contact rows stored: new contacts inserted, existing ones merged, all put on one region's list, in bulk.

Shapes
    ContactWriter(settings, region, source, now)      a :class:`mailer.audience.row_import.ChunkWriter`
    contact_values(row, now) -> dict                  a ``contacts`` row for INSERT
    contact_ids(db, keys) -> {email_key: id}
    ensure_list(db, settings, region) -> list id

Merging: non-blank cells overwrite, blanks never erase, defaults never overwrite; a contact already on another
region's list only has its blanks filled (see :func:`changes`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session as DbSession

from mailer.audience.bulk import insert_ignoring_conflicts, literal_in
from mailer.audience.contact_rows import ContactRow, Replaced
from mailer.audience.import_log import ImportJournal
from mailer.config import Settings
from mailer.store.models import Contact, ContactList, ContactStatus, ListMembership
from mailer.timeline.clock import require_aware

_COMPARED = ("name", "title", "institution", "country", "language", "time_zone")


def ensure_list(db: DbSession, settings: Settings, region: str) -> int:
    """Id of the region's ContactList, creating it (named from settings) when missing."""
    name = settings.region(region).name
    insert_ignoring_conflicts(db, ContactList.__table__, [{"region": region, "name": name}], ["region"])
    return int(db.execute(select(ContactList.id).where(ContactList.region == region)).scalar_one())


def changes(existing: Any, row: ContactRow, *, home: bool = True) -> dict[str, Any]:
    """Fields of an existing contact that the row changes: non-blank values; language/zone only if explicit.

    A row from a list other than the contact's own (``home`` False: the contact is already on another
    region's list) only fills blanks, so a contact on several lists does not change country, language or
    zone with the order in which the regions' files are imported.
    """
    wanted: dict[str, Any] = {}
    for column in ("name", "title", "institution", "country"):
        value = getattr(row, column)
        if value and value != getattr(existing, column) and (home or not getattr(existing, column)):
            wanted[column] = value
    if not home:
        return wanted
    if row.language_explicit and row.language != existing.language:
        wanted["language"] = row.language
    if row.zone_explicit and row.time_zone != existing.time_zone:
        wanted["time_zone"] = row.time_zone
    return wanted


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

    def write(self, db: DbSession, chunk: list[ContactRow]) -> None:
        """Upsert one chunk of de-duplicated rows and put them on the list: at most three SELECTs, two
        executemany INSERTs and one bulk UPDATE. A contact another process inserts meanwhile counts as new."""
        for row in chunk:
            self.replaced.extend(row.replaced)
        keys = [row.address.key for row in chunk]
        columns = [getattr(Contact, name) for name in ("id", "email_key", *_COMPARED)]
        existing = {
            r.email_key: r for r in db.execute(select(*columns).where(literal_in(Contact.email_key, keys)))
        }
        fresh = [contact_values(row, self.now) for row in chunk if row.address.key not in existing]
        insert_ignoring_conflicts(db, Contact.__table__, fresh, ["email_key"])
        updated = self._merge(db, chunk, existing)
        self.new += len(fresh)
        self.updated += updated
        self.unchanged += len(chunk) - len(fresh) - updated
        ids = contact_ids(db, keys) if fresh else {key: row.id for key, row in existing.items()}
        if self.journal is not None and fresh:
            self.journal.contacts(db, [ids[value["email_key"]] for value in fresh])
        self._join_list(db, chunk, ids, [row.id for row in existing.values()])

    def _merge(self, db: DbSession, chunk: list[ContactRow], existing: dict[str, Any]) -> int:
        """Update the existing contacts the rows change (one bulk UPDATE); how many changed."""
        other_lists = (
            set(
                db.scalars(
                    select(ListMembership.contact_id).where(
                        literal_in(ListMembership.contact_id, [r.id for r in existing.values()]),
                        ListMembership.list_id != self._list_id,
                    )
                )
            )
            if existing
            else set()
        )
        updates = []
        for row in chunk:
            if row.address.key in existing:
                contact = existing[row.address.key]
                wanted = changes(contact, row, home=contact.id not in other_lists)
                if wanted:
                    updates.append({"id": contact.id, **wanted, "updated_at": self.now})
        if updates:
            db.execute(update(Contact), updates)
        return len(updates)

    def _join_list(
        self, db: DbSession, chunk: list[ContactRow], ids: dict[str, int], existing_ids: list[int]
    ) -> None:
        """Put the chunk's contacts (``ids`` by key) on the list unless there already (one executemany)."""
        on_list: set[int] = set()
        if existing_ids:  # contacts created just now are on no list yet
            on_list = set(
                db.scalars(
                    select(ListMembership.contact_id).where(
                        ListMembership.list_id == self._list_id,
                        literal_in(ListMembership.contact_id, existing_ids),
                    )
                )
            )
        members = [
            {
                "contact_id": ids[row.address.key],
                "list_id": self._list_id,
                "source": f"{self.source}:{row.line}",
                "added_at": self.now,
            }
            for row in chunk
            if ids[row.address.key] not in on_list
        ]
        insert_ignoring_conflicts(db, ListMembership.__table__, members, ["contact_id", "list_id"])
        self.memberships += len(members)
        if self.journal is not None:
            joined = [ids[row.address.key] for row in chunk if ids[row.address.key] not in on_list]
            self.journal.memberships(db, self._list_id, joined)


__all__ = ["ContactWriter", "changes", "contact_ids", "contact_values", "ensure_list"]
