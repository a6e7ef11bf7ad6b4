"""The suppression list as staff see and correct it: list with the last report, lift with a record.

A suppression is lifted by deleting its row and writing a :class:`SuppressionLift` (what it was, who lifted it,
when, why), and the contact is made active again. Reports keep their rows: a later bounce suppresses again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session as DbSession

from mailer.errors import NotFoundError
from mailer.store.models import BounceReport, Contact, ContactStatus, Suppression, SuppressionLift
from mailer.timeline.clock import require_aware

REASONS = ("hard-bounce", "complaint", "soft-bounce", "unsubscribed", "manual")
"""Every ``Suppression.reason`` the service writes: bounce handling (RFC 3464 hard, repeated soft), complaints
(ARF, RFC 5965), a participant's unsubscribe (RFC 8058 one-click or the page), and the API's ``manual``."""


@dataclass(frozen=True)
class SuppressionView:
    """One suppressed address with its reason, since when, and the last report about its contact (if any)."""

    email_key: str
    reason: str
    detail: str
    created_at: datetime
    last_report: str = ""  # "5.1.1 smtp; 550 5.1.1 user unknown (relay.example.net, 2021-06-02 07:59 UTC)"


def _last_report(db: DbSession, email_key: str) -> str:
    row = db.scalars(
        select(BounceReport)
        .join(Contact, Contact.id == BounceReport.contact_id)
        .where(Contact.email_key == email_key)
        .order_by(BounceReport.received_at.desc(), BounceReport.id.desc())
        .limit(1)
    ).first()
    if row is None:
        return ""
    head = " ".join(part for part in (row.kind, row.status, row.diagnostic) if part)
    when = row.arrived_at or row.received_at
    where = ", ".join(part for part in (row.reporting_mta, f"{when:%Y-%m-%d %H:%M} UTC") if part)
    return f"{head} ({where})"


def suppression_of(db: DbSession, email_key: str) -> SuppressionView | None:
    """The suppression of ``email_key`` (a ``Contact.email_key``), or None."""
    row = db.get(Suppression, email_key)
    if row is None:
        return None
    return SuppressionView(row.email_key, row.reason, row.detail, row.created_at, _last_report(db, email_key))


def list_suppressions(db: DbSession, *, reason: str = "", limit: int = 100) -> list[SuppressionView]:
    """Suppressions, newest first, optionally of one ``reason`` (hard-bounce, complaint, soft-bounce, ...)."""
    query = select(Suppression).order_by(Suppression.created_at.desc(), Suppression.email_key).limit(limit)
    if reason:
        query = query.where(Suppression.reason == reason)
    return [
        SuppressionView(
            row.email_key, row.reason, row.detail, row.created_at, _last_report(db, row.email_key)
        )
        for row in db.scalars(query)
    ]


def lift_suppression(db: DbSession, email_key: str, *, by: str, note: str, now: datetime) -> SuppressionLift:
    """Lift the suppression of ``email_key`` and record who did it (caller commits).

    The contact with that key, if any, becomes active. Raises NotFoundError when the address is not suppressed.
    """
    now = require_aware(now, "now")
    row = db.get(Suppression, email_key)
    if row is None:
        raise NotFoundError(f"{email_key} is not on the suppression list")
    lift = SuppressionLift(
        email_key=email_key,
        reason=row.reason,
        detail=row.detail,
        suppressed_at=row.created_at,
        lifted_by=by,
        note=note,
        lifted_at=now,
    )
    db.add(lift)
    db.delete(row)
    contact = db.scalar(select(Contact).where(Contact.email_key == email_key))
    if contact is not None and contact.status != ContactStatus.ACTIVE:
        contact.status = ContactStatus.ACTIVE
        contact.updated_at = now
    db.flush()
    return lift
