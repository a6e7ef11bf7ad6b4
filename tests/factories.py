"""Small helpers to put contacts and registrations in a test store without going through CSV import, and a
DKIM key to sign with."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timezone
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import bindparam, select, text
from sqlalchemy.orm import Session as DbSession

from mailer.app import App
from mailer.config import DkimSettings
from mailer.store.engine import transaction
from mailer.store.models import (
    Contact,
    ContactList,
    DeliveryEvent,
    ListMembership,
    Message,
    Registration,
    RegistrationStatus,
    UTCDateTime,
)
from mailer.store.outbox import queue_wave

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


def queue_invitations(app: App, *addresses: str) -> None:
    """Contacts on the africa list, then the africa-2021 invitation wave queued for them at
    2021-06-01 13:00 UTC (each message left queued; each in its own committed transaction)."""
    series = app.settings.series
    with transaction(app.factory) as db:
        for address in addresses:
            add_contact(db, address)
    with transaction(app.factory) as db:
        queue_wave(
            db,
            app.settings,
            series.session("africa-2021"),
            series.step("invitation"),
            datetime(2021, 6, 1, 13, tzinfo=UTC),
        )


def dkim_signing(folder: Path) -> tuple[DkimSettings, bytes]:
    """DKIM settings for example.org, selector s2021, with a fresh 2048-bit RSA key written under ``folder``,
    and the DNS TXT record (RFC 6376 sec. 3.6.1) that publishes its public half."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (folder / "dkim.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)
    return DkimSettings("example.org", "s2021", folder / "dkim.pem", "", ("From", "To", "Subject")), record


def add_contacts_in_bulk(
    db: DbSession, count: int, *, region: str = "africa", zones: tuple[str, ...] = ("Africa/Lagos",)
) -> None:
    """``count`` contacts person<i>@bulk.example (i from 1) on ``region``'s list, made by the store itself
    (a recursive CTE: no row passes through Python); time zones cycle through ``zones``."""
    contact_list = db.scalar(select(ContactList).where(ContactList.region == region))
    if contact_list is None:
        contact_list = ContactList(region=region, name=region)
        db.add(contact_list)
        db.flush()
    zone = "CASE n.i % :zones " + " ".join(f"WHEN {k} THEN :zone{k}" for k in range(len(zones))) + " END"
    stamp = bindparam("epoch", EPOCH, type_=UTCDateTime())
    db.execute(
        text(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :count) "
            "INSERT INTO contacts (email, email_key, name, title, institution, country, language, time_zone, "
            "needs_smtputf8, status, created_at, updated_at) "
            f"SELECT 'person' || n.i || '@bulk.example', 'person' || n.i || '@bulk.example', 'Person ' || n.i, "
            f"'', '', '', 'en', {zone}, false, 'active', :epoch, :epoch FROM n"
        ).bindparams(stamp),
        {"count": count, "zones": len(zones), **{f"zone{k}": name for k, name in enumerate(zones)}},
    )
    db.execute(
        text(
            "INSERT INTO list_memberships (contact_id, list_id, source, added_at) "
            "SELECT id, :list, 'test', :epoch FROM contacts WHERE email_key LIKE '%@bulk.example'"
        ).bindparams(stamp),
        {"list": contact_list.id},
    )


def logged(app: App, column: Any, address: str) -> list[Any]:
    """``column`` of every delivery event of the messages to ``address``, in the order they were logged."""
    with transaction(app.factory) as db:
        return list(
            db.scalars(
                select(column)
                .join(Message, Message.id == DeliveryEvent.message_pk)
                .where(Message.recipient == address)
                .order_by(DeliveryEvent.id)
            )
        )


def refuse_delivery_events(app: App) -> None:
    """A real fault of the store, not a busy one: a trigger that refuses every new delivery event."""
    with app.engine.begin() as connection:
        if app.engine.dialect.name == "postgresql":
            connection.exec_driver_sql(
                "CREATE FUNCTION refuse_event() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN RAISE EXCEPTION 'events refused'; END $$"
            )
            connection.exec_driver_sql(
                "CREATE TRIGGER refuse_event BEFORE INSERT ON delivery_events "
                "FOR EACH ROW EXECUTE FUNCTION refuse_event()"
            )
        else:
            connection.exec_driver_sql(
                "CREATE TRIGGER refuse_event BEFORE INSERT ON delivery_events "
                "BEGIN SELECT RAISE(ABORT, 'events refused'); END"
            )
