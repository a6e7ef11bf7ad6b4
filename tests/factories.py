"""Small helpers to put contacts and registrations in a test store without going through CSV import."""

from __future__ import annotations

from datetime import UTC, datetime, timezone

from sqlalchemy import select
from sqlalchemy.orm import Session as DbSession

from mailer.store.models import Contact, ContactList, ListMembership, Registration, RegistrationStatus

EPOCH = datetime(2021, 1, 1, tzinfo=UTC)


def add_contact(
    db: DbSession,
    email: str,
    *,
    region: str = "africa",
    language: str = "en",
    time_zone: str = "Africa/Lagos",
    name: str = "",
    country: str = "",
) -> Contact:
    """A contact on ``region``'s list (the list is created when missing)."""
    contact_list = db.scalar(select(ContactList).where(ContactList.region == region))
    if contact_list is None:
        contact_list = ContactList(region=region, name=region)
        db.add(contact_list)
        db.flush()
    contact = Contact(
        email=email,
        email_key=email.casefold(),
        name=name or email.split("@")[0].replace(".", " ").title(),
        language=language,
        time_zone=time_zone,
        country=country,
        needs_smtputf8=not email.split("@")[0].isascii(),
        created_at=EPOCH,
        updated_at=EPOCH,
    )
    db.add(contact)
    db.flush()
    db.add(ListMembership(contact_id=contact.id, list_id=contact_list.id, source="test", added_at=EPOCH))
    return contact


def register(
    db: DbSession,
    contact: Contact,
    session_id: str,
    status: RegistrationStatus = RegistrationStatus.REGISTERED,
    at: datetime = EPOCH,
) -> Registration:
    """Record ``contact``'s answer for ``session_id``."""
    registration = Registration(
        contact_id=contact.id, session_id=session_id, status=status, registered_at=at, source="test"
    )
    db.add(registration)
    return registration
