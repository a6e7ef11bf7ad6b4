"""How a recipient stands towards a session, for the wording of notices and whether a calendar goes along.

A notice ("date changed", "cancelled") reaches people in different positions: registrants, invitees who
have not answered, people who declined. Each needs its own words (a non-registrant must not read "your
registration remains valid"), and a calendar CANCEL (RFC 5546 sec. 3.2.5) only makes sense for someone who
was sent the event in a REQUEST before.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, and_, exists, or_, select
from sqlalchemy.orm import Session as DbSession
from sqlalchemy.orm import aliased

from mailer.config import Series, StepKind
from mailer.store.models import Message, MessageStatus, Registration, RegistrationStatus


class Relationship(StrEnum):
    """A contact's position towards one session."""

    REGISTERED = "registered"  # registered (and not refused by the organiser)
    INVITED = "invited"  # invited or on the list, no answer (or a registration the organiser refused)
    DECLINED = "declined"  # said they cannot attend


@dataclass(frozen=True)
class Standing:
    """A recipient's relationship to the session, and whether they were sent its calendar event."""

    relationship: Relationship
    has_calendar: bool


def calendar_request_sent(series: Series, message: Any = Message) -> ColumnElement[bool]:
    """SQL condition on a ``messages`` row (``message``, an alias of Message): sent, and of a step whose
    message carries a calendar REQUEST: invitations, reminders and configured notices, and the
    ``date-changed-N`` notices of reschedules; not follow-ups, not ``cancelled-N`` notices."""
    names = [step.name for step in series.steps if step.kind is not StepKind.FOLLOW_UP]
    return and_(
        message.status == MessageStatus.SENT,
        or_(message.step.in_(names), message.step.like("date-changed-%")),
    )


def standings(db: DbSession, series: Series, message_pks: Collection[int]) -> dict[int, Standing]:
    """The recipient's :class:`Standing` for each message of ``message_pks`` (by primary key), towards the
    message's session, as the store says now. Unknown keys are left out."""
    if not message_pks:
        return {}
    earlier = aliased(Message)
    had_calendar = exists().where(
        earlier.contact_id == Message.contact_id,
        earlier.session_id == Message.session_id,
        calendar_request_sent(series, earlier),
    )
    rows: Sequence[Any] = db.execute(
        select(Message.id, Registration.status, had_calendar)
        .outerjoin(
            Registration,
            and_(
                Registration.contact_id == Message.contact_id, Registration.session_id == Message.session_id
            ),
        )
        .where(Message.id.in_(list(message_pks)))
    ).all()
    return {pk: Standing(_relationship(status), bool(calendar)) for pk, status, calendar in rows}


def _relationship(status: str | None) -> Relationship:
    if status == RegistrationStatus.REGISTERED:
        return Relationship.REGISTERED
    if status == RegistrationStatus.DECLINED:
        return Relationship.DECLINED
    return Relationship.INVITED
