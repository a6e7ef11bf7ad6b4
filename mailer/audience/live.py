"""Applying a pushed registration event to the store: once per event id, in the order events happened, the
registrant made a contact as the file import does, and the reminders that are still due queued at once.

Rules:

- **Idempotent.** ``webhook_events`` holds each (source, event id) once; a second delivery changes nothing
  and says ``duplicate``.
- **Out of order.** An event older than one already applied for the same person and session is recorded
  as ``stale`` and changes nothing (a ``created`` arriving after its ``cancelled`` leaves it cancelled).
- **Same logic as the file import.** :func:`mailer.audience.registrations.store_registrants` creates the
  contact (language and zone from the country, else the region's) and stores the registration.
- **Late registrants.** After a registration, every automatic registrant step of the session whose time has
  come is queued again (:func:`mailer.store.outbox.queue_wave`, idempotent): the lateness rules
  (:mod:`mailer.timeline.plan`) decide which one still goes, so the latest reminder that is due goes out
  and earlier ones, superseded or too late, do not.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import exists, select
from sqlalchemy.orm import Session as DbSession
from sqlalchemy.orm import sessionmaker

from mailer.audience.contacts import normalise_address
from mailer.audience.locales import country_code
from mailer.audience.pushed import RegistrationEvent
from mailer.audience.registrations import Registrant, StoreCounts, store_registrants
from mailer.config import Audience, Settings
from mailer.errors import NotFoundError
from mailer.store.engine import transaction
from mailer.store.models import Contact, RegistrationStatus, WebhookEvent
from mailer.store.outbox import queue_wave
from mailer.store.outbox.batch import insert_ignoring_conflicts
from mailer.timeline.clock import require_aware
from mailer.timeline.plan import due_steps


class EventOutcome(StrEnum):
    """What applying an event did."""

    APPLIED = "applied"  # the registration now has the event's status
    DUPLICATE = "duplicate"  # this event id was received before: nothing changed
    STALE = "stale"  # a later event for the same person and session came first: nothing changed
    IGNORED = "ignored"  # nothing to store (a registration awaiting approval)


@dataclass(frozen=True)
class EventResult:
    """The outcome, the registration's status when applied, whether a contact was created, and how many
    messages were queued for the registrant right away."""

    outcome: EventOutcome
    status: RegistrationStatus | None = None
    new_contact: bool = False
    queued: int = 0


def apply_event(
    factory: sessionmaker[DbSession], settings: Settings, event: RegistrationEvent, now: datetime
) -> EventResult:
    """Apply ``event`` in one transaction (rules in the module docstring).

    Raises :class:`NotFoundError` for an unknown session, :class:`mailer.audience.contacts.InvalidAddressError`
    for an address that is not one, NaiveDatetimeError for a naive ``now``.
    """
    now = require_aware(now, "now")
    try:
        session = settings.series.session(event.session_id)
    except KeyError:
        raise NotFoundError(f"no session {event.session_id!r}") from None
    address = normalise_address(event.email)
    with transaction(factory) as db:
        later = exists().where(
            WebhookEvent.session_id == session.id,
            WebhookEvent.email_key == address.key,
            WebhookEvent.outcome == EventOutcome.APPLIED.value,
            WebhookEvent.occurred_at > event.occurred_at,
        )
        outcome = EventOutcome.IGNORED if event.pending else EventOutcome.APPLIED
        if outcome is EventOutcome.APPLIED and db.scalar(select(later)):
            outcome = EventOutcome.STALE
        row: dict[str, object] = {
            "source": event.source,
            "event_id": event.event_id,
            "action": event.action.value,
            "session_id": session.id,
            "email_key": address.key,
            "occurred_at": event.occurred_at,
            "received_at": now,
            "outcome": outcome.value,
        }
        if not insert_ignoring_conflicts(db, WebhookEvent, [row]):
            return EventResult(EventOutcome.DUPLICATE)
        if outcome is not EventOutcome.APPLIED:
            return EventResult(outcome)
        status = event.action.status
        known = db.scalar(select(Contact.id).where(Contact.email_key == address.key)) is not None
        person = Registrant(
            line=0,
            source=f"{event.source}:{event.event_id}",
            address=address,
            status=status,
            registered_at=min(event.occurred_at, now) if status is RegistrationStatus.REGISTERED else None,
            name=" ".join(part for part in (event.first_name, event.last_name) if part),
            institution=event.institution,
            country=country_code(event.country) or "",
        )
        store_registrants(db, [person], settings, session.id, now, StoreCounts())
        queued = 0
        if status is RegistrationStatus.REGISTERED:
            for planned in due_steps(settings.series, now):
                if planned.session.id == session.id and planned.step.audience is Audience.REGISTRANTS:
                    result = queue_wave(db, settings, planned.session, planned.step, now)
                    queued += result.added - result.skipped
        return EventResult(EventOutcome.APPLIED, status, not known, queued)


__all__ = ["EventOutcome", "EventResult", "apply_event"]
