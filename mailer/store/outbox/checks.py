"""The send-time checks (DESIGN invariant 6): why a claimed message must not be sent now."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, String, select
from sqlalchemy.orm import Session as DbSession

from mailer.config import Audience, Step, StepKind
from mailer.store.models import (
    ContactStatus,
    Registration,
    RegistrationStatus,
    SessionRow,
    Suppression,
)
from mailer.store.outbox.batch import among
from mailer.timeline.clock import require_aware
from mailer.timeline.plan import (
    SkipReason,
)


@dataclass(frozen=True)
class SendTimeFacts:
    """What the checks look up once per claimed batch."""

    suppressed: set[str]  # email keys of the batch on the suppression list
    answers: dict[tuple[int, str], RegistrationStatus]  # (contact id, session id) -> registration answer
    cancelled_sessions: set[str]  # ids of sessions cancelled in the store


def load_facts(db: DbSession, rows: Sequence[Any]) -> SendTimeFacts:
    """Suppressions, registration answers and cancelled sessions for claimed ``rows`` (message and contact
    columns: ``email_key``, ``contact_id``, ``session_id``)."""
    keys = {row.email_key for row in rows}
    suppressed = set(
        db.scalars(select(Suppression.email_key).where(among(db, Suppression.email_key, keys, String)))
    )
    answers = {
        (contact_id, session_id): status
        for contact_id, session_id, status in db.execute(
            select(Registration.contact_id, Registration.session_id, Registration.status).where(
                among(db, Registration.contact_id, {row.contact_id for row in rows}, Integer),
                Registration.session_id.in_({row.session_id for row in rows}),
            )
        )
    }
    cancelled = set(db.scalars(select(SessionRow.id).where(SessionRow.cancelled.is_(True))))
    return SendTimeFacts(suppressed, answers, cancelled)


def skip_reason(row: Any, step: Step, facts: SendTimeFacts, now: datetime) -> SkipReason | None:
    """Why the claimed ``row`` (message and contact columns) must not be sent now, or None.

    In order: session cancelled (notices still go), address suppressed or contact not active, deadline
    passed, registrants-only step to someone not registered, invitation to someone who has answered.
    """
    now = require_aware(now, "now")
    answer = facts.answers.get((row.contact_id, row.session_id))
    if row.session_id in facts.cancelled_sessions and step.kind is not StepKind.NOTICE:
        return SkipReason.CANCELLED
    if row.email_key in facts.suppressed or row.contact_status != ContactStatus.ACTIVE:
        return SkipReason.SUPPRESSED
    if now >= row.deadline_at:
        return SkipReason.TOO_LATE
    if step.audience is Audience.REGISTRANTS and answer != RegistrationStatus.REGISTERED:
        return SkipReason.NOT_REGISTERED
    if step.kind is StepKind.INVITATION and answer is not None:
        if answer == RegistrationStatus.DECLINED:
            return SkipReason.DECLINED
        if step.audience is Audience.LIST_UNREGISTERED:
            return SkipReason.ALREADY_REGISTERED
    return None
