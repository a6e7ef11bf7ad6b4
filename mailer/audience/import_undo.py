"""Taking an import back: what it created is withdrawn, what was already sent stays in the delivery log.

Shapes
    undo_import(factory, import_id, by, now) -> UndoReport

In ONE transaction, from the import's journal (:mod:`mailer.audience.import_log`):

- registrations it created are withdrawn (deleted); registrations it changed get their previous status and
  time back. Reminders still queued for a withdrawn registrant are skipped at send time ("not registered").
- contacts it put on a list are taken off that list; their pending messages of waves for that list are
  skipped ("cancelled").
- contacts it created are removed, with their still-queued messages, when nothing was ever sent or tried
  for them (no message past "queued") and no other import or list holds them; otherwise they are kept and
  counted as ``contacts_kept``, so the log of what was sent stays whole.

Changes a contact import made to the fields of contacts that existed before are not reverted.
Errors: :class:`mailer.errors.NotFoundError` for an unknown import; ValueError for one already undone.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, delete, select, update
from sqlalchemy.orm import Session as DbSession
from sqlalchemy.orm import sessionmaker

from mailer.audience.bulk import literal_in
from mailer.errors import NotFoundError
from mailer.store.engine import transaction
from mailer.store.models import (
    Contact,
    ContactList,
    DeliveryEvent,
    ImportChange,
    ImportChangeKind,
    ImportRecord,
    ListMembership,
    Message,
    MessageIdLookup,
    Registration,
    Wave,
)
from mailer.store.outbox.waves import pending_messages, skip_messages
from mailer.timeline.clock import require_aware
from mailer.timeline.plan import SkipReason


@dataclass(frozen=True)
class UndoReport:
    """What undoing an import did."""

    import_id: int
    registrations_withdrawn: int
    registrations_restored: int
    memberships_removed: int
    contacts_removed: int
    contacts_kept: int  # created by the import but mailed since (or held elsewhere): kept
    messages_skipped: int

    @property
    def summary(self) -> str:
        """The counts in words, as recorded with the import."""
        return (
            f"{self.registrations_withdrawn} registrations withdrawn, {self.registrations_restored} restored; "
            f"{self.memberships_removed} taken off the list; {self.contacts_removed} contacts removed, "
            f"{self.contacts_kept} kept (already mailed); {self.messages_skipped} pending messages skipped"
        )


def _changes(db: DbSession, import_id: int) -> dict[ImportChangeKind, list[ImportChange]]:
    grouped: dict[ImportChangeKind, list[ImportChange]] = defaultdict(list)
    for change in db.scalars(select(ImportChange).where(ImportChange.import_id == import_id)):
        grouped[ImportChangeKind(change.change)].append(change)
    return grouped


def _registrations(db: DbSession, changes: dict[ImportChangeKind, list[ImportChange]]) -> tuple[int, int]:
    withdrawn = restored = 0
    for change in changes[ImportChangeKind.REGISTRATION]:
        result = db.execute(
            delete(Registration).where(
                Registration.contact_id == change.contact_id, Registration.session_id == change.session_id
            )
        )
        withdrawn += result.rowcount or 0  # type: ignore[attr-defined]
    for change in changes[ImportChangeKind.REGISTRATION_CHANGE]:
        result = db.execute(
            update(Registration)
            .where(Registration.contact_id == change.contact_id, Registration.session_id == change.session_id)
            .values(status=change.previous_status, registered_at=change.previous_registered_at)
        )
        restored += result.rowcount or 0  # type: ignore[attr-defined]
    return withdrawn, restored


def _memberships(db: DbSession, changes: list[ImportChange], now: datetime) -> tuple[int, int]:
    """Take the contacts off the lists; skip their pending messages of waves for those lists."""
    removed = skipped = 0
    regions = {row.id: row.region for row in db.execute(select(ContactList.id, ContactList.region))}
    by_list: dict[int, list[int]] = defaultdict(list)
    for change in changes:
        if change.list_id is not None:
            by_list[change.list_id].append(change.contact_id)
    for list_id, contact_ids in by_list.items():
        result = db.execute(
            delete(ListMembership).where(
                ListMembership.list_id == list_id, literal_in(ListMembership.contact_id, contact_ids)
            )
        )
        removed += result.rowcount or 0  # type: ignore[attr-defined]
        region = regions.get(list_id)
        if region is None:
            continue
        waves = select(Wave.id).where(Wave.audience == region)
        pending = pending_messages(
            db, and_(literal_in(Message.contact_id, contact_ids), Message.wave_id.in_(waves))
        )
        skip_messages(db, pending, SkipReason.CANCELLED, now)
        skipped += len(pending)
    return removed, skipped


def remove_unheld_contacts(db: DbSession, contact_ids: list[int]) -> tuple[int, int]:
    """Remove those of ``contact_ids`` never mailed and held by nothing else (no list, no registration), with
    their messages; returns (removed, kept). Caller commits.

    Mailed means a message to the contact was attempted: claimed for SMTP (a claim counts the attempt before
    anything is sent, so a message in flight has one; a claim given back unsent takes it back). A message
    only queued, skipped or suppressed never reached a server, so it does not keep its contact."""
    if not contact_ids:
        return 0, 0
    mailed = set(
        db.scalars(
            select(Message.contact_id).where(
                literal_in(Message.contact_id, contact_ids),
                Message.attempts > 0,
            )
        )
    )
    held = set(
        db.scalars(
            select(ListMembership.contact_id).where(literal_in(ListMembership.contact_id, contact_ids))
        )
    )
    held |= set(
        db.scalars(select(Registration.contact_id).where(literal_in(Registration.contact_id, contact_ids)))
    )
    removable = [i for i in contact_ids if i not in mailed and i not in held]
    if removable:
        queued = select(Message.id).where(literal_in(Message.contact_id, removable))
        db.execute(delete(DeliveryEvent).where(DeliveryEvent.message_pk.in_(queued)))
        queued_ids = select(Message.message_id).where(literal_in(Message.contact_id, removable))
        db.execute(delete(MessageIdLookup).where(MessageIdLookup.message_id.in_(queued_ids)))
        db.execute(delete(Message).where(literal_in(Message.contact_id, removable)))
        db.execute(delete(Contact).where(literal_in(Contact.id, removable)))
    return len(removable), len(contact_ids) - len(removable)


def undo_import(factory: sessionmaker[DbSession], import_id: int, by: str, now: datetime) -> UndoReport:
    """Take import ``import_id`` back (see the module's notes), in one transaction, and mark it undone
    ``by`` whom at ``now`` (aware). Raises NotFoundError for an unknown import, ValueError if already undone."""
    now = require_aware(now, "now")
    with transaction(factory) as db:
        record = db.get(ImportRecord, import_id, with_for_update=True)
        if record is None:
            raise NotFoundError(f"no import {import_id} (see `mailer imports list`)")
        if record.undone_at is not None:
            raise ValueError(
                f"import {import_id} was already undone on {record.undone_at:%Y-%m-%d %H:%M} UTC "
                f"by {record.undone_by}"
            )
        changes = _changes(db, import_id)
        withdrawn, restored = _registrations(db, changes)
        memberships, skipped = _memberships(db, changes[ImportChangeKind.MEMBERSHIP], now)
        removed, kept = remove_unheld_contacts(db, [c.contact_id for c in changes[ImportChangeKind.CONTACT]])
        report = UndoReport(import_id, withdrawn, restored, memberships, removed, kept, skipped)
        record.undone_at = now
        record.undone_by = by[:100]
        record.undo_summary = report.summary
    return report


__all__ = ["UndoReport", "undo_import"]
