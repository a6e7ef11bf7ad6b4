"""Contacts and registrations in keyset pages (the JSON API): newest id first, ``before`` the last id seen."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session as DbSession

from mailer.store.models import Contact, ContactList, ListMembership, Registration


def contacts_before(
    db: DbSession, *, region: str = "", search: str = "", before: int | None = None, limit: int = 100
) -> list[Contact]:
    """Contacts (on ``region``'s list; whose address, name or institution holds ``search``), id below
    ``before``, newest first, at most ``limit``."""
    query = select(Contact)
    if region:
        query = query.where(
            Contact.id.in_(
                select(ListMembership.contact_id)
                .join(ContactList, ContactList.id == ListMembership.list_id)
                .where(ContactList.region == region)
            )
        )
    if search:
        needle = search.casefold()
        query = query.where(
            Contact.email_key.contains(needle, autoescape=True)
            | Contact.name.icontains(search, autoescape=True)
            | Contact.institution.icontains(search, autoescape=True)
        )
    if before is not None:
        query = query.where(Contact.id < before)
    return list(db.scalars(query.order_by(Contact.id.desc()).limit(limit)))


def contact_by_email(db: DbSession, email_key: str) -> Contact | None:
    """The contact whose case-folded address is ``email_key``."""
    return db.scalars(select(Contact).where(Contact.email_key == email_key)).first()


def registrations_before(
    db: DbSession, *, session_id: str = "", status: str = "", before: int | None = None, limit: int = 100
) -> list[tuple[Registration, str]]:
    """(registration, the contact's address) pairs, id below ``before``, newest first, at most ``limit``."""
    query = select(Registration, Contact.email).join(Contact, Contact.id == Registration.contact_id)
    if session_id:
        query = query.where(Registration.session_id == session_id)
    if status:
        query = query.where(Registration.status == status)
    if before is not None:
        query = query.where(Registration.id < before)
    return [(row[0], row[1]) for row in db.execute(query.order_by(Registration.id.desc()).limit(limit))]


__all__ = ["contact_by_email", "contacts_before", "registrations_before"]
