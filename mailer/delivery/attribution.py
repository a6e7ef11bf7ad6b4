"""Which of our messages, and so which contact, a report is about.

Tried in this order, the first that finds one of our messages wins:

1. the signed return path the report was delivered to (or that the returned headers or an ARF
   ``Original-Mail-From`` carry): it names the outbox row (mailer.delivery.verp);
2. one of our Message-IDs in the returned headers (or that a provider's event names);
3. the id the sending provider gave the message in its 250 reply (``Message.provider_id``), that its
   webhook events name (mailer.delivery.providers);
4. the addresses the report names, compared in one canonical form: case-folded, NFC, the domain's IDNA
   A-label and U-label forms the same (:func:`address_keys`). Only recipients the report's kind is about
   are asked (a failure report's recipients that were delivered, relayed or expanded are not; those whose
   own outcome is the report's come first), and of each its Original-Recipient (the address we sent to,
   RFC 3464 sec. 2.3.1) before its Final-Recipient (where a forwarding server sent it on).

The contact who was mailed is the message's contact, whatever address the report names. An address the
report names that is not that contact's (a forwarding target, a list expansion) is returned in
``Attribution.strangers``: logged by the caller, never suppressed.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import idna
from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session as DbSession

from mailer.audience.contacts import email_key
from mailer.delivery.reports import Report, recipient_kind
from mailer.delivery.verp import ReturnPath
from mailer.store.models import Contact, Message, MessageStatus, ReportKind, message_id_among


@dataclass(frozen=True)
class Attribution:
    """The message and contact a report is about (None when it names nothing of ours), and how they were found.

    ``matched_by`` is ``verp``, ``message-id``, ``provider-id``, ``address`` or ``""``.
    """

    message: Message | None
    contact: Contact | None
    matched_by: str
    strangers: tuple[str, ...]


def address_keys(address: str) -> tuple[str, ...]:
    """The keys an address may be stored under (``Contact.email_key`` form), one per spelling of its domain.

    ``"J@XN--BCHER-KVA.Example"`` -> ``("j@xn--bcher-kva.example", "j@bücher.example")``. An address without
    a local part or domain gives ``()``. Domains that are not valid IDNA keep their lower-cased form only.
    """
    local, at, domain = address.strip().strip("<>").strip().rpartition("@")
    if not at or not local or not domain:
        return ()
    local = unicodedata.normalize("NFC", local)
    domain = unicodedata.normalize("NFC", domain.rstrip(".").lower())
    forms = [domain]
    for convert in (
        lambda d: idna.encode(d, uts46=True).decode("ascii"),
        idna.decode,
    ):
        try:
            forms.append(convert(domain))
        except (idna.IDNAError, UnicodeError, ValueError):
            continue
    return tuple(dict.fromkeys(email_key(f"{local}@{form}") for form in forms))


_SUCCESS = frozenset({"delivered", "relayed", "expanded"})  # RFC 3464 actions that are no failure
_FAILURES = (ReportKind.HARD, ReportKind.SOFT, ReportKind.DELAYED)
MAX_IDS_PER_QUERY = 500  # ids asked for in one query: a report may hold any number (parameter limits)


def _named(report: Report) -> list[str]:
    names: list[str] = []
    for recipient in report.recipients:
        names.extend(a for a in (recipient.address, recipient.original) if a)
    return list(dict.fromkeys(names))


def _candidates(report: Report) -> list[str]:
    """The addresses a report is about, in the order they are looked up (see the module docstring, 4)."""
    recipients = list(report.recipients)
    if report.kind in _FAILURES:
        recipients = [r for r in recipients if r.action.lower() not in _SUCCESS]
        recipients.sort(key=lambda r: 0 if r.action == "" or recipient_kind(r) is report.kind else 1)
    names: list[str] = []
    for recipient in recipients:
        names.extend(a for a in (recipient.original, recipient.address) if a)
    return list(dict.fromkeys(names))


def _first_message(
    db: DbSession, condition: Callable[[Sequence[str]], ColumnElement[bool]], ids: Sequence[str]
) -> Message | None:
    """The first message (by row) meeting ``condition`` on a slice of ``ids``, asked a slice at a time."""
    for start in range(0, len(ids), MAX_IDS_PER_QUERY):
        chunk = ids[start : start + MAX_IDS_PER_QUERY]
        message = db.scalars(select(Message).where(condition(chunk)).order_by(Message.id).limit(1)).first()
        if message is not None:
            return message
    return None


def _last_message_to(db: DbSession, contact: Contact) -> Message | None:
    """The contact's most recently sent message (a report names an address, not a message)."""
    return db.scalars(
        select(Message)
        .where(
            Message.contact_id == contact.id,
            Message.status.in_((MessageStatus.SENT, MessageStatus.BOUNCED)),
        )
        .order_by(Message.sent_at.desc(), Message.id.desc())
        .limit(1)
    ).first()


def attribute(db: DbSession, report: Report, return_path: ReturnPath | None) -> Attribution:
    """Find the message and contact ``report`` is about; see the module docstring for the order."""
    message: Message | None = None
    matched_by = ""
    if return_path is not None:
        for address in report.sent_to:
            pk = return_path.message_pk(address)
            message = db.get(Message, pk) if pk is not None else None
            if message is not None:
                matched_by = "verp"
                break
    if message is None and report.message_ids:
        message = _first_message(db, message_id_among, report.message_ids)
        matched_by = "message-id" if message is not None else ""
    if message is None and report.provider_ids:
        message = _first_message(db, Message.provider_id.in_, report.provider_ids)
        matched_by = "provider-id" if message is not None else ""
    named = _named(report)
    contact = message.contact if message is not None else None
    if contact is None:
        for address in _candidates(report):
            keys = address_keys(address)
            contact = db.scalars(select(Contact).where(Contact.email_key.in_(keys)).limit(1)).first()
            if contact is not None:
                message = _last_message_to(db, contact)
                matched_by = "address"
                break
    strangers = tuple(
        address for address in named if contact is None or contact.email_key not in address_keys(address)
    )
    return Attribution(message, contact, matched_by, strangers)
