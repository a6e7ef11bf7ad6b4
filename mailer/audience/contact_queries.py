"""Read-only contact queries for staff (the CLI and the dashboard): a page of contacts, one contact in full.

Shapes
    find_contacts(factory, region=..., search=..., limit=50) -> ([ContactView], total matching)
    contact_by_email(factory, email) -> ContactView          with lists and registrations
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session as DbSession
from sqlalchemy.orm import sessionmaker

from mailer.audience.addresses import InvalidAddressError, email_key, normalise_address
from mailer.errors import NotFoundError
from mailer.store.models import Contact, ContactList, ListMembership, Registration


@dataclass(frozen=True)
class ContactView:
    """A contact as shown to staff, with the regions of its lists and its (session, status) registrations."""

    email: str
    name: str
    title: str
    institution: str
    country: str
    language: str
    time_zone: str
    needs_smtputf8: bool
    status: str
    created_at: datetime
    updated_at: datetime
    regions: tuple[str, ...]
    registrations: tuple[tuple[str, str], ...] = ()


def _views(db: DbSession, contacts: Sequence[Contact], with_registrations: bool = False) -> list[ContactView]:
    ids = [c.id for c in contacts]
    regions: dict[int, list[str]] = {i: [] for i in ids}
    for contact_id, region in db.execute(
        select(ListMembership.contact_id, ContactList.region)
        .join(ContactList, ContactList.id == ListMembership.list_id)
        .where(ListMembership.contact_id.in_(ids))
        .order_by(ContactList.region)
    ):
        regions[contact_id].append(region)
    registrations: dict[int, list[tuple[str, str]]] = {i: [] for i in ids}
    if with_registrations:
        for contact_id, session_id, status in db.execute(
            select(Registration.contact_id, Registration.session_id, Registration.status)
            .where(Registration.contact_id.in_(ids))
            .order_by(Registration.session_id)
        ):
            registrations[contact_id].append((session_id, str(status)))
    return [
        ContactView(
            c.email,
            c.name,
            c.title,
            c.institution,
            c.country,
            c.language,
            c.time_zone,
            c.needs_smtputf8,
            str(c.status),
            c.created_at,
            c.updated_at,
            tuple(regions[c.id]),
            tuple(registrations[c.id]),
        )
        for c in contacts
    ]


def find_contacts(
    factory: sessionmaker[DbSession], *, region: str | None = None, search: str | None = None, limit: int = 50
) -> tuple[list[ContactView], int]:
    """(first ``limit`` contacts by address, total matching): on ``region``'s list, and/or whose address,
    name or institution contains ``search`` (case-insensitive). Read-only."""
    query = select(Contact)
    if region:
        query = (
            query.join(ListMembership, ListMembership.contact_id == Contact.id)
            .join(ContactList, ContactList.id == ListMembership.list_id)
            .where(ContactList.region == region)
        )
    if search:
        needle = search.strip().casefold()
        query = query.where(
            or_(
                *(
                    func.lower(column).contains(needle, autoescape=True)
                    for column in (Contact.email_key, Contact.name, Contact.institution)
                )
            )
        )
    with factory() as db:
        total = int(db.execute(select(func.count()).select_from(query.subquery())).scalar_one())
        contacts = list(db.scalars(query.order_by(Contact.email_key).limit(limit)))
        return _views(db, contacts), total


def contact_by_email(factory: sessionmaker[DbSession], email: str) -> ContactView:
    """The contact with this address (any case, ``Name <address>`` accepted), with lists and registrations.

    Raises :class:`NotFoundError` when there is none (or the text is not an address).
    """
    try:
        key = normalise_address(email).key
    except InvalidAddressError:
        key = email_key(email)
    with factory() as db:
        contact = db.scalars(select(Contact).where(Contact.email_key == key)).first()
        if contact is None:
            raise NotFoundError(f"no contact with address {email.strip()!r}")
        return _views(db, [contact], with_registrations=True)[0]


__all__ = ["ContactView", "contact_by_email", "find_contacts"]
