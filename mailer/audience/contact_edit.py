"""An organiser corrects one contact, or takes them off a region's list (the web's contact page).

Edits go through the same cell rules as an import: text cleaned to one line (``clean_text``), languages as
BCP 47 tags (``language_tag``), countries as ISO 3166 codes (``country_code``), zones as IANA names; a value
too long for its column is refused, not cut. Removing takes the contact off the list and skips their pending
messages of that list's waves; a contact then on no list, with no registration and never mailed is deleted
(the rule of an import's undo). A suppression is kept either way: it belongs to the address, so the address
stays unmailable if it comes back in a file.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session as DbSession

from mailer.audience.cells import clean_text, column_length
from mailer.audience.import_undo import remove_unheld_contacts
from mailer.audience.locales import country_code, language_tag
from mailer.errors import NotFoundError
from mailer.store.models import Contact, ContactList, ListMembership, Message, Wave
from mailer.store.outbox.waves import pending_messages, skip_messages
from mailer.timeline.clock import require_aware
from mailer.timeline.plan import SkipReason
from mailer.zones import UnknownZoneError, resolve_zone

EDITABLE = ("title", "name", "institution", "country", "language", "time_zone")


class ContactEditError(ValueError):
    """A field's new value cannot be stored; ``field`` names it. Nothing was changed."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


def _value(field: str, raw: str) -> str:
    text = clean_text(raw)
    if field == "language":
        tag = language_tag(text)
        if tag is None:
            raise ContactEditError(field, f"{text!r} is not a language (e.g. en, es, fr, ar, pt-BR)")
        return tag
    if field == "country" and text:
        code = country_code(text)
        if code is None:
            raise ContactEditError(field, f"{text!r} is not a country (e.g. AR, Argentina)")
        return code
    if field == "time_zone":
        try:
            resolve_zone(text)
        except UnknownZoneError:
            raise ContactEditError(field, f"{text!r} is not an IANA time zone (e.g. America/Lima)") from None
    length = column_length(field)
    if length and len(text) > length:
        raise ContactEditError(field, f"{len(text)} characters; at most {length}")
    return text


def edit_contact(db: DbSession, contact_id: int, values: dict[str, str], now: datetime) -> list[str]:
    """Set the given :data:`EDITABLE` fields of one contact; returns the names of the fields that changed.

    Raises NotFoundError for an unknown contact; ContactEditError (a ValueError) for a value that cannot be
    stored (nothing is changed then). Caller commits.
    """
    now = require_aware(now, "now")
    contact = db.get(Contact, contact_id)
    if contact is None:
        raise NotFoundError(f"no contact {contact_id}")
    clean = {field: _value(field, values[field]) for field in EDITABLE if field in values}
    changed = [field for field, value in clean.items() if getattr(contact, field) != value]
    for field in changed:
        setattr(contact, field, clean[field])
    if changed:
        contact.updated_at = now
    return changed


@dataclass(frozen=True)
class Removal:
    """What taking a contact off a list did."""

    skipped: int  # their pending messages of the list's waves, now skipped ("cancelled")
    deleted: bool  # the contact itself was deleted (on no list, no registration, never mailed)


def remove_from_list(db: DbSession, contact_id: int, region: str, now: datetime) -> Removal:
    """Take one contact off ``region``'s list (see the module docstring). Raises NotFoundError when the
    contact is not on that list. Caller commits."""
    now = require_aware(now, "now")
    list_id = db.scalar(select(ContactList.id).where(ContactList.region == region))
    membership = db.scalar(
        select(ListMembership.contact_id).where(
            ListMembership.contact_id == contact_id, ListMembership.list_id == list_id
        )
    )
    if list_id is None or membership is None:
        raise NotFoundError(f"contact {contact_id} is not on the {region} list")
    db.execute(
        delete(ListMembership).where(
            ListMembership.contact_id == contact_id, ListMembership.list_id == list_id
        )
    )
    removed, _ = remove_unheld_contacts(db, [contact_id])
    if removed:
        return Removal(0, True)
    waves = select(Wave.id).where(Wave.audience == region)
    pending = pending_messages(db, (Message.contact_id == contact_id) & Message.wave_id.in_(waves))
    skip_messages(db, pending, SkipReason.CANCELLED, now)
    return Removal(len(pending), False)
