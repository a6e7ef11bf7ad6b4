"""Applying one received report: what it does to the message, the contact and the suppression list.

    hard bounce   the message -> bounced (the report's code and diagnostic become its reply), the contact
                  -> bounced, its address suppressed with reason ``hard-bounce``
    complaint     the contact -> unsubscribed, its address suppressed with reason ``complaint``
    soft bounce   logged on the message; after ``soft_limit`` soft bounces for the contact spread over at
                  least ``soft_period`` (since staff last lifted its suppression), suppressed with reason
                  ``soft-bounce``
    delayed       logged on the message, nothing else
    delivered     (a provider's event) logged on the message as delivered, nothing else
    auto-reply,   recorded only
    other
    unparsed      recorded with the parser's error; the raw report stays where it was found

Every report is recorded once in ``bounce_reports`` (keyed by the SHA-256 of its bytes, or of the provider's
event id for a webhook event, :func:`apply_report`): handling the same bytes or event again changes nothing,
except that a report recorded as unparsed is read again. Nothing is ever undone by a later report, so events
may arrive in any order: a delivery after a bounce leaves the message bounced, soft bounces are counted by
when they happened (``arrived_at``), not when they reached us.
Addresses a report names that are not the mailed contact's are logged and recorded, never suppressed.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session as DbSession

from mailer.config import Settings
from mailer.delivery.attribution import Attribution, attribute
from mailer.delivery.reports import Report, parse_report, storable, storable_report
from mailer.delivery.verp import ReturnPath, return_path_for
from mailer.store.models import (
    BounceReport,
    Contact,
    ContactStatus,
    EventKind,
    MessageStatus,
    ReportKind,
    Suppression,
    SuppressionLift,
)
from mailer.store.outbox import log_event, suppress
from mailer.timeline.clock import require_aware

log = logging.getLogger(__name__)

_ATTRIBUTED = (
    ReportKind.HARD,
    ReportKind.SOFT,
    ReportKind.DELAYED,
    ReportKind.COMPLAINT,
    ReportKind.DELIVERED,
)


@dataclass(frozen=True)
class Policy:
    """How reports are applied: the return path that reads VERP tokens (None: VERP off) and the soft-bounce rule.

    ``soft_limit`` soft bounces (at least 1) whose arrivals span at least ``soft_period`` suppress the contact.
    """

    return_path: ReturnPath | None = None
    soft_limit: int = 3
    soft_period: timedelta = timedelta(days=7)


@dataclass(frozen=True)
class Handled:
    """What handling one report did. ``suppressed`` is the email key newly suppressed, if any."""

    kind: ReportKind
    outcome: str
    suppressed: str | None = None
    reason: str = ""
    message_bounced: bool = False
    already: bool = False  # the contact was already suppressed
    duplicate: bool = False  # these bytes were handled before: nothing done
    error: str = ""


def fingerprint(raw: bytes) -> str:
    """The report's identity in ``bounce_reports``: SHA-256 of its bytes, hex."""
    return hashlib.sha256(raw).hexdigest()


def _describe(report: Report) -> str:
    """``5.1.1 smtp; 550 5.1.1 user unknown (relay.example.net, 2021-06-02 10:00 UTC)``."""
    head = " ".join(part for part in (report.status, report.diagnostic) if part) or report.kind.value
    where = ", ".join(
        part
        for part in (
            report.reporting_mta,
            report.arrived_at.strftime("%Y-%m-%d %H:%M UTC") if report.arrived_at else "",
        )
        if part
    )
    return f"{head} ({where})" if where else head


def _suppress(db: DbSession, contact: Contact, reason: str, detail: str, now: datetime) -> bool:
    """Suppress ``contact``'s address; False when it already was."""
    if db.get(Suppression, contact.email_key) is not None:
        return False
    suppress(db, contact.email_key, reason, detail, now)
    db.flush()
    return True


def _soft_bounces_due(db: DbSession, contact: Contact, policy: Policy) -> bool:
    """True when the contact's soft bounces reach the policy; those that happened before staff last lifted
    the address's suppression are not counted (staff judged them)."""
    when = func.coalesce(BounceReport.arrived_at, BounceReport.received_at)
    conditions = [BounceReport.contact_id == contact.id, BounceReport.kind == ReportKind.SOFT]
    lifted = db.scalar(
        select(func.max(SuppressionLift.lifted_at)).where(SuppressionLift.email_key == contact.email_key)
    )
    if lifted is not None:
        conditions.append(when > lifted)
    count, first, last = db.execute(
        select(func.count(BounceReport.id), func.min(when), func.max(when)).where(*conditions)
    ).one()
    return bool(count >= policy.soft_limit and first is not None and last - first >= policy.soft_period)


def _apply(
    db: DbSession, report: Report, found: Attribution, policy: Policy, now: datetime, source: str
) -> Handled:
    kind = report.kind
    message, contact = found.message, found.contact
    describe = _describe(report)
    if kind not in _ATTRIBUTED:
        return Handled(kind, f"{kind.value}: ignored")
    if contact is None:
        return Handled(kind, f"{kind.value} {describe}: names none of our messages or contacts")
    detail = f"{describe} via {found.matched_by} in {source}"
    if message is not None:
        detail += f" for {message.message_id}"
    if kind is ReportKind.HARD:
        bounced = False
        if message is not None and message.status == MessageStatus.SENT:
            message.status = MessageStatus.BOUNCED
            message.reply_code = report.smtp_code
            message.reply_text = describe
            message.updated_at = now
            log_event(db, message.id, EventKind.BOUNCED, now, code=report.smtp_code, detail=detail)
            bounced = True
        contact.status = ContactStatus.BOUNCED
        contact.updated_at = now
        new = _suppress(db, contact, "hard-bounce", detail, now)
        return Handled(
            kind,
            f"hard bounce: {contact.email} {'suppressed' if new else 'already suppressed'}",
            contact.email_key if new else None,
            "hard-bounce",
            bounced,
            already=not new,
        )
    if kind is ReportKind.DELIVERED:
        if message is not None:
            log_event(db, message.id, EventKind.DELIVERED, now, code=report.smtp_code, detail=detail)
        return Handled(kind, f"delivered to {contact.email}: {describe}")
    if message is not None:
        log_event(
            db, message.id, EventKind.REPORTED, now, code=report.smtp_code, detail=f"{kind.value}: {detail}"
        )
    if kind is ReportKind.COMPLAINT:
        if contact.status == ContactStatus.ACTIVE:
            contact.status = ContactStatus.UNSUBSCRIBED
            contact.updated_at = now
        new = _suppress(db, contact, "complaint", f"{report.feedback_type or 'abuse'} report: {detail}", now)
        outcome = f"complaint: {contact.email} {'suppressed' if new else 'already suppressed'}"
        return Handled(kind, outcome, contact.email_key if new else None, "complaint", already=not new)
    if kind is ReportKind.SOFT:
        return Handled(kind, f"soft bounce for {contact.email}: {describe}")
    return Handled(kind, f"delayed for {contact.email}: {describe}")


def handle_report(db: DbSession, raw: bytes, now: datetime, *, policy: Policy, source: str) -> Handled:
    """Parse ``raw`` (one received message), apply it (caller commits) and record it in ``bounce_reports``.

    Never raises for what the bytes hold; database errors propagate (the caller rolls back and keeps the
    report for the next run, mailer.delivery.bounces and mailer.delivery.mailbox).
    """
    now = require_aware(now, "now")
    key = fingerprint(raw)
    done = _handled_before(db, key)
    if done is not None:
        return done
    return apply_report(db, parse_report(raw), now, key=key, policy=policy, source=source)


def _handled_before(db: DbSession, key: str) -> Handled | None:
    row = db.scalar(select(BounceReport).where(BounceReport.fingerprint == key))
    if row is not None and row.kind != ReportKind.UNPARSED:
        return Handled(ReportKind(row.kind), f"already handled on {row.received_at:%Y-%m-%d}", duplicate=True)
    return None


def apply_report(
    db: DbSession, report: Report, now: datetime, *, key: str, policy: Policy, source: str
) -> Handled:
    """Apply ``report`` (read from a mailbox, or a provider's event in the same shape) and record it in
    ``bounce_reports`` under ``key`` (64 characters: :func:`fingerprint` of its bytes or of its event id);
    caller commits. A key recorded before (and not as unparsed) changes nothing: ``Handled.duplicate``.
    Database errors propagate.
    """
    now = require_aware(now, "now")
    done = _handled_before(db, key)
    if done is not None:
        return done
    report = storable_report(report)  # a provider's event too: nothing the store refuses
    source = storable(source)  # a file name need not be UTF-8
    row = db.scalar(select(BounceReport).where(BounceReport.fingerprint == key))
    if report.kind in _ATTRIBUTED:
        found = attribute(db, report, policy.return_path)
    else:
        found = Attribution(None, None, "", ())
    handled = _apply(db, report, found, policy, now, source)
    for stranger in found.strangers:
        log.info("bounce report names %s, not the contact who was mailed: not suppressed", stranger)
    if row is None:
        row = BounceReport(fingerprint=key, received_at=now)
        db.add(row)
    row.kind = report.kind
    row.status = report.status
    row.diagnostic = report.diagnostic[:2000]
    row.reporting_mta = report.reporting_mta[:255]
    row.named_address = (report.recipients[0].address if report.recipients else "")[:320]
    row.matched_by = found.matched_by
    row.message_pk = found.message.id if found.message is not None else None
    row.contact_id = found.contact.id if found.contact is not None else None
    row.source = source[:400]
    row.error = "; ".join(report.errors)[:2000]
    row.arrived_at = report.arrived_at
    row.received_at = now
    strangers = f"; not ours, not suppressed: {', '.join(found.strangers)}" if found.strangers else ""
    row.outcome = (handled.outcome + strangers)[:2000]
    db.flush()
    if report.kind is ReportKind.SOFT and found.contact is not None and handled.suppressed is None:
        contact = found.contact
        if _soft_bounces_due(db, contact, policy):
            detail = f"{policy.soft_limit} soft bounces over {policy.soft_period.days} days or more; last: {row.outcome}"
            if _suppress(db, contact, "soft-bounce", detail, now):
                contact.status = ContactStatus.BOUNCED
                contact.updated_at = now
                row.outcome += f"; {contact.email} suppressed (soft-bounce)"
                handled = Handled(handled.kind, row.outcome, contact.email_key, "soft-bounce")
    return Handled(
        handled.kind,
        row.outcome,
        handled.suppressed,
        handled.reason,
        handled.message_bounced,
        handled.already,
        error=row.error if report.kind is ReportKind.UNPARSED else "",
    )


def record_failure(db: DbSession, raw: bytes, now: datetime, *, source: str, error: str) -> None:
    """Record a report whose handling raised (kept as ``unparsed`` with the error; caller commits)."""
    now = require_aware(now, "now")
    key = fingerprint(raw)
    row = db.scalar(select(BounceReport).where(BounceReport.fingerprint == key))
    if row is None:
        row = BounceReport(fingerprint=key, received_at=now)
        db.add(row)
    row.kind = ReportKind.UNPARSED
    row.error = storable(error)[:2000]
    row.source = storable(source)[:400]
    row.outcome = "not applied: kept for another try"
    row.received_at = now


def policy_for(settings: Settings) -> Policy:
    """The handling policy ``settings`` describe (``[bounces]``)."""
    bounces = settings.bounces
    return Policy(return_path_for(settings), bounces.soft_limit, bounces.soft_period)
