"""What comes back and what it stops: suppressions and their lifting, bounce reports, relay circuits and
the shared rate-limit slots."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Double, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from mailer.store.models.base import Base


class Suppression(Base):
    """An address that must not be mailed."""

    __tablename__ = "suppressions"

    email_key: Mapped[str] = mapped_column(String(320), primary_key=True)
    reason: Mapped[str] = mapped_column(String(40))  # unsubscribed | hard-bounce | complaint | manual
    detail: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime]


class SuppressionLift(Base):
    """A suppression lifted by staff (``mailer suppressions remove``): what it was, who lifted it and when."""

    __tablename__ = "suppression_lifts"

    id: Mapped[int] = mapped_column(primary_key=True)
    email_key: Mapped[str] = mapped_column(String(320), index=True)
    reason: Mapped[str] = mapped_column(String(40))  # the lifted suppression's reason
    detail: Mapped[str] = mapped_column(Text, default="")  # the lifted suppression's detail
    suppressed_at: Mapped[datetime]
    lifted_by: Mapped[str] = mapped_column(String(100))
    note: Mapped[str] = mapped_column(Text, default="")  # why, as staff wrote it
    lifted_at: Mapped[datetime]


class ReportKind(StrEnum):
    """What a message received at the bounce address turned out to be (mailer.delivery.reports)."""

    HARD = "hard"  # permanent failure (5.x.x, RFC 3464 Action: failed): the contact is suppressed at once
    SOFT = "soft"  # temporary failure (4.x.x, Action: failed): counted towards the soft-bounce policy
    DELAYED = "delayed"  # a warning (Action: delayed): logged, nothing suppressed
    COMPLAINT = "complaint"  # ARF feedback report (RFC 5965): suppressed at once with reason "complaint"
    AUTO_REPLY = "auto-reply"  # out-of-office and other RFC 3834 answers: logged, ignored
    OTHER = "other"  # an ordinary message (a person's reply): logged, ignored
    DELIVERED = "delivered"  # a provider's delivery event: logged on the message as delivered
    UNPARSED = "unparsed"  # a parser failed on it: the report is kept where it was found and counted


class BounceReport(Base):
    """One message received at the bounce address (mailbox, file import) or one event a sending provider
    posted to its webhook, as read and applied.

    ``fingerprint`` (SHA-256 of the raw bytes; of ``provider:event id`` for a webhook event) makes handling
    idempotent: the same report read twice, from IMAP after a failed move, from a file imported again or
    from a webhook retried, is applied once.
    """

    __tablename__ = "bounce_reports"

    id: Mapped[int] = mapped_column(primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[ReportKind] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20), default="")  # enhanced status code (RFC 3463), "5.1.1"
    diagnostic: Mapped[str] = mapped_column(Text, default="")  # Diagnostic-Code or the bounce's text line
    reporting_mta: Mapped[str] = mapped_column(String(255), default="")
    named_address: Mapped[str] = mapped_column(String(320), default="")  # Final-Recipient, as written
    matched_by: Mapped[str] = mapped_column(
        String(20), default=""
    )  # verp | message-id | provider-id | address | ""
    message_pk: Mapped[int | None] = mapped_column(ForeignKey("messages.id", ondelete="SET NULL"), index=True)
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id", ondelete="SET NULL"), index=True)
    outcome: Mapped[str] = mapped_column(Text, default="")  # what was done, for staff
    source: Mapped[str] = mapped_column(
        String(400), default=""
    )  # imap://host/INBOX, a file path, webhook:ses
    error: Mapped[str] = mapped_column(Text, default="")  # for kind "unparsed": the parser's error
    arrived_at: Mapped[datetime | None]  # Arrival-Date of the report, else its Date header
    received_at: Mapped[datetime]  # when this service read it


class RelayCircuit(Base):
    """The last known reachability of one SMTP relay, shared by every sending process of the store.

    ``open`` is true while the relay is considered down: no process's pool then connects to it, except one
    probe connection at ``next_probe_at``.
    """

    __tablename__ = "relay_circuits"

    relay: Mapped[str] = mapped_column(String(300), primary_key=True)  # host:port
    server: Mapped[str] = mapped_column(String(100))  # the [smtp] or [smtp.servers.NAME] name
    open: Mapped[bool]
    failures: Mapped[int]  # consecutive failed connections
    since: Mapped[datetime | None]  # when it was found unreachable (opened)
    next_probe_at: Mapped[datetime | None]
    last_error: Mapped[str] = mapped_column(Text, default="")
    updated_at: Mapped[datetime]


class RateSlot(Base):
    """The next free sending slot of one relay (``host:port``), in seconds since the epoch on the database
    server's clock: the evenly spaced rate limit that every process of a PostgreSQL store shares when no
    Redis is configured (:mod:`mailer.store.rate_slots`)."""

    __tablename__ = "rate_slots"

    relay: Mapped[str] = mapped_column(String(300), primary_key=True)  # host:port
    next_free: Mapped[float] = mapped_column(Double)
