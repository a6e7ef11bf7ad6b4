"""SQLAlchemy 2.0 typed models: the store is the source of truth (DESIGN invariant 1).

Every timestamp column is :class:`UTCDateTime`: aware datetimes in, aware UTC datetimes out, naive refused.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar

from sqlalchemy import (
    ColumnElement,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    literal_column,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from mailer.timeline.clock import require_aware


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC. Binding a naive datetime raises :class:`mailer.errors.NaiveDatetimeError`."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        aware = require_aware(value, "stored timestamp")
        # SQLite has no time zone type: store naive UTC text; PostgreSQL keeps timestamptz.
        return aware.replace(tzinfo=None) if dialect.name == "sqlite" else aware

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base of every table."""

    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime()}


class ContactStatus(StrEnum):
    """Whether a contact may be mailed."""

    ACTIVE = "active"  # mailable
    UNSUBSCRIBED = "unsubscribed"  # asked to stop; also in suppressions
    BOUNCED = "bounced"  # hard bounce; also in suppressions


class RegistrationStatus(StrEnum):
    """A contact's answer for one session."""

    REGISTERED = "registered"  # gets reminders and follow-up
    DECLINED = "declined"  # said they cannot attend: no more invitations for this session
    DENIED = "denied"  # the platform's organiser refused the registration


class WaveStatus(StrEnum):
    """An organiser's handle on one materialised step."""

    ACTIVE = "active"  # messages go out when due
    PAUSED = "paused"  # messages wait; resume puts them back
    CANCELLED = "cancelled"  # pending messages skipped with reason "cancelled"


class MessageStatus(StrEnum):
    """The outbox state machine (DESIGN invariant 5)."""

    QUEUED = "queued"  # waiting for its due time
    SENDING = "sending"  # claimed by a worker until lease_until
    SENT = "sent"  # the server answered 2xx for this recipient
    DEFERRED = "deferred"  # temporary failure; retried at due_at until the deadline
    FAILED = "failed"  # permanent failure other than a bounce, or retries ran out
    BOUNCED = "bounced"  # 5xx for the recipient: address suppressed
    SUPPRESSED = "suppressed"  # address on the suppression list at send time
    SKIPPED = "skipped"  # not sent on purpose: reason in the last event
    HELD = "held"  # its lease expired twice (perhaps delivered twice already): waits for staff review

    @property
    def is_final(self) -> bool:
        return self not in (MessageStatus.QUEUED, MessageStatus.SENDING, MessageStatus.DEFERRED)


PENDING_STATUSES = (MessageStatus.QUEUED, MessageStatus.DEFERRED)
_PENDING_SQL = "status IN ('queued', 'deferred')"  # PENDING_STATUSES, for partial indexes
_SENDING_SQL = "status = 'sending'"


class EventKind(StrEnum):
    """Entries of the append-only delivery log."""

    QUEUED = "queued"
    ATTEMPT = "attempt"
    SENT = "sent"
    DEFERRED = "deferred"
    FAILED = "failed"
    BOUNCED = "bounced"
    SUPPRESSED = "suppressed"
    SKIPPED = "skipped"
    RECLAIMED = "reclaimed"  # lease expired; back to queued
    HELD = "held"  # lease expired a second time: held for staff review instead of sent a third time
    PAUSED = "paused"
    RESUMED = "resumed"
    REPORTED = "reported"  # a report about a sent message arrived (delay, soft bounce, complaint): see detail
    DELIVERED = "delivered"  # the sending provider reports the receiving server accepted it (webhook)


class Contact(Base):
    """A person on one or more regional lists. ``email_key`` is the case-folded address, unique."""

    __tablename__ = "contacts"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320))
    email_key: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(300), default="")
    title: Mapped[str] = mapped_column(String(100), default="")
    institution: Mapped[str] = mapped_column(String(300), default="")
    country: Mapped[str] = mapped_column(String(2), default="")  # ISO 3166-1 alpha-2
    language: Mapped[str] = mapped_column(String(35), default="en")  # BCP 47 tag
    time_zone: Mapped[str] = mapped_column(String(64), default="UTC")  # IANA name
    needs_smtputf8: Mapped[bool] = mapped_column(default=False)
    status: Mapped[ContactStatus] = mapped_column(String(20), default=ContactStatus.ACTIVE)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    memberships: Mapped[list[ListMembership]] = relationship(back_populates="contact")


class ContactList(Base):
    """A region's contact list."""

    __tablename__ = "contact_lists"

    id: Mapped[int] = mapped_column(primary_key=True)
    region: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))


class ListMembership(Base):
    """A contact on a list; ``source`` says which file and line brought them."""

    __tablename__ = "list_memberships"

    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"), primary_key=True)
    list_id: Mapped[int] = mapped_column(ForeignKey("contact_lists.id", ondelete="CASCADE"), primary_key=True)
    source: Mapped[str] = mapped_column(String(400), default="")
    added_at: Mapped[datetime]

    contact: Mapped[Contact] = relationship(back_populates="memberships")


class SessionRow(Base):
    """A session as last synced from config; ``sequence`` is the iCalendar SEQUENCE, raised on each change."""

    __tablename__ = "sessions"

    id: Mapped[str] = mapped_column(String(100), primary_key=True)
    region: Mapped[str] = mapped_column(String(64))
    starts_at: Mapped[datetime]
    previous_starts_at: Mapped[datetime | None]  # before the last reschedule, for "date changed" notices
    time_zone: Mapped[str] = mapped_column(String(64))
    duration_minutes: Mapped[int] = mapped_column(Integer)
    sequence: Mapped[int] = mapped_column(Integer, default=0)
    cancelled: Mapped[bool] = mapped_column(default=False)
    updated_at: Mapped[datetime]


class Registration(Base):
    """A contact's registration (or refusal) for one session."""

    __tablename__ = "registrations"
    __table_args__ = (UniqueConstraint("contact_id", "session_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"))
    session_id: Mapped[str] = mapped_column(String(100))
    status: Mapped[RegistrationStatus] = mapped_column(String(20))
    registered_at: Mapped[datetime | None]
    source: Mapped[str] = mapped_column(String(400), default="")


class Wave(Base):
    """One step materialised for an audience. Unique per (session, step, audience)."""

    __tablename__ = "waves"
    __table_args__ = (UniqueConstraint("session_id", "step", "audience"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[str] = mapped_column(String(100))
    step: Mapped[str] = mapped_column(String(100))
    audience: Mapped[str] = mapped_column(String(100))  # region id or "registrants"
    status: Mapped[WaveStatus] = mapped_column(String(20), default=WaveStatus.ACTIVE)
    scheduled_at: Mapped[datetime]
    created_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(String(100), default="timeline")
    # An organiser's explicit time as seconds from the session start (negative = before): a reschedule
    # moves the wave with the session. None for timeline waves and notices, which are timed otherwise.
    offset_seconds: Mapped[int | None] = mapped_column(default=None)
    # Why the store holds the wave (paused) without the organiser asking, "" when it does not.
    hold_reason: Mapped[str] = mapped_column(Text, default="")


class Message(Base):
    """The outbox row: one email to one contact for one (session, step)."""

    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("contact_id", "session_id", "step"),
        # Only pending rows are indexed for the claim query (due_at, id order): the index stays as small as
        # the queue, and claiming or recording a message (it leaves "queued") adds no entry to it.
        Index(
            "ix_messages_pending",
            "due_at",
            "id",
            postgresql_where=text(_PENDING_SQL),
            sqlite_where=text(_PENDING_SQL),
        ),
        # Only leased rows, by lease end, for reaping expired leases: as small as the messages in flight.
        Index(
            "ix_messages_leased",
            "lease_until",
            postgresql_where=text(_SENDING_SQL),
            sqlite_where=text(_SENDING_SQL),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[str] = mapped_column(String(255), unique=True)  # RFC 5322 Message-ID, stable
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"))
    session_id: Mapped[str] = mapped_column(String(100))
    step: Mapped[str] = mapped_column(String(100))
    wave_id: Mapped[int] = mapped_column(ForeignKey("waves.id", ondelete="CASCADE"))
    recipient: Mapped[str] = mapped_column(String(320))
    language: Mapped[str] = mapped_column(String(35), default="")  # the language actually used
    status: Mapped[MessageStatus] = mapped_column(String(20), default=MessageStatus.QUEUED)
    due_at: Mapped[datetime]
    deadline_at: Mapped[datetime]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # Times its lease expired while claimed (a worker died or stalled after claiming it): from the first the
    # message is sent carefully, alone on its connection; at the second it is held.
    expiries: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    handed_at: Mapped[datetime | None]  # a careful message handed to SMTP under its current claim
    lease_until: Mapped[datetime | None]
    worker: Mapped[str] = mapped_column(String(100), default="")
    reply_code: Mapped[int | None]
    reply_text: Mapped[str] = mapped_column(Text, default="")
    sent_at: Mapped[datetime | None]
    # the sending provider's id for the message, from the relay's 250 reply ("Ok <id>", "queued as <id>"):
    # webhook events name it (mailer.delivery.providers)
    provider_id: Mapped[str | None] = mapped_column(String(255), index=True)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    contact: Mapped[Contact] = relationship()
    events: Mapped[list[DeliveryEvent]] = relationship(order_by="DeliveryEvent.id")


def message_status_is(*statuses: MessageStatus) -> ColumnElement[bool]:
    """``messages.status IN (...)`` with the values written into the SQL, not bound: a partial index
    (``ix_messages_pending``, ``ix_messages_leased``) serves a query only when its planner sees that the
    query's condition implies the index's, which neither SQLite nor a generic PostgreSQL plan can see
    through a bound value. One status is written ``status = '...'``, as the indexes' conditions are."""
    values = [literal_column(f"'{status.value}'", String) for status in statuses]
    return Message.status == values[0] if len(values) == 1 else Message.status.in_(values)


class DeliveryEvent(Base):
    """Append-only log of what happened to a message."""

    __tablename__ = "delivery_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    message_pk: Mapped[int] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime]
    kind: Mapped[EventKind] = mapped_column(String(20))
    reply_code: Mapped[int | None]
    detail: Mapped[str] = mapped_column(Text, default="")


class Suppression(Base):
    """An address that must not be mailed."""

    __tablename__ = "suppressions"

    email_key: Mapped[str] = mapped_column(String(320), primary_key=True)
    reason: Mapped[str] = mapped_column(String(40))  # unsubscribed | hard-bounce | complaint | manual
    detail: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime]


class StaffRole(StrEnum):
    """What a signed-in person may do in the web dashboard."""

    STAFF = "staff"  # read the delivery log and wave progress, export, resend failed messages
    ORGANISER = "organiser"  # also preview steps, send tests, queue, pause, resume and cancel waves


class StaffUser(Base):
    """A dashboard account (``mailer users add``). ``password_hash`` is an argon2id PHC string."""

    __tablename__ = "staff_users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(100), unique=True)
    email: Mapped[str] = mapped_column(String(320), default="")  # where "send a test to yourself" goes
    role: Mapped[StaffRole] = mapped_column(String(20), default=StaffRole.STAFF)
    password_hash: Mapped[str] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime]
    last_login_at: Mapped[datetime | None]


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


class StaffSession(Base):
    """A signed-in browser of a dashboard account. The cookie carries a random token; only its SHA-256 is
    stored (``id``), so a copy of the store opens no session. Deleted by sign-out, a password or role
    change, disabling or removing the account, ``mailer users sessions --end``, or on expiry."""

    __tablename__ = "staff_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # hex SHA-256 of the cookie's token
    user_id: Mapped[int] = mapped_column(ForeignKey("staff_users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    client: Mapped[str] = mapped_column(String(64), default="")  # address at sign-in
    agent: Mapped[str] = mapped_column(String(200), default="")  # browser's User-Agent at sign-in


class WebhookEvent(Base):
    """A registration event pushed by a webinar platform, kept once per (source, event id).

    ``outcome`` says what it did: ``applied``, ``stale`` (an event about the same registrant and session
    that happened later was applied first) or ``ignored`` (nothing to do, e.g. a pending approval).
    """

    __tablename__ = "webhook_events"
    __table_args__ = (
        UniqueConstraint("source", "event_id"),
        Index("ix_webhook_events_registrant", "session_id", "email_key", "occurred_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(String(20))  # generic | zoom
    event_id: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(20))  # created | approved | denied | cancelled
    session_id: Mapped[str] = mapped_column(String(100))
    email_key: Mapped[str] = mapped_column(String(320))
    occurred_at: Mapped[datetime]
    received_at: Mapped[datetime]
    outcome: Mapped[str] = mapped_column(String(20))


class TokenScope(StrEnum):
    """What an API token may do."""

    READ = "read"  # GET only
    WRITE = "write"  # also queue, pause, resume and cancel waves, import, add and suppress contacts


class ApiToken(Base):
    """A JSON API client's token (``mailer api-tokens``); only its SHA-256 is stored."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    scope: Mapped[TokenScope] = mapped_column(String(10))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)  # hex SHA-256 of the token
    created_at: Mapped[datetime]
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class ImportKind(StrEnum):
    """What an organiser's file fed."""

    CONTACTS = "contacts"  # a region's contact list
    REGISTRATIONS = "registrations"  # one session's registrations


class ImportRecord(Base):
    """One import of an organiser's file: who, when, which file (name and SHA-256), into what, what it did.

    ``undone_at`` is set when it was taken back (``mailer imports undo``); ``forced`` when a registration
    report whose title or date did not match the session was imported anyway.
    """

    __tablename__ = "imports"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[ImportKind] = mapped_column(String(20))
    target: Mapped[str] = mapped_column(String(100))  # region id or session id
    file_name: Mapped[str] = mapped_column(String(255))
    sha256: Mapped[str] = mapped_column(String(64))
    imported_by: Mapped[str] = mapped_column(String(100))
    imported_at: Mapped[datetime]
    forced: Mapped[bool] = mapped_column(default=False)
    rows: Mapped[int] = mapped_column(Integer, default=0)
    accepted: Mapped[int] = mapped_column(Integer, default=0)
    rejected: Mapped[int] = mapped_column(Integer, default=0)
    duplicates: Mapped[int] = mapped_column(Integer, default=0)
    summary: Mapped[str] = mapped_column(Text, default="")  # the counts in words, as reported
    undone_at: Mapped[datetime | None]
    undone_by: Mapped[str] = mapped_column(String(100), default="")
    undo_summary: Mapped[str] = mapped_column(Text, default="")


class ImportChangeKind(StrEnum):
    """One thing an import did that undoing it takes back."""

    CONTACT = "contact"  # created the contact
    MEMBERSHIP = "membership"  # put the contact on the list
    REGISTRATION = "registration"  # created the registration
    REGISTRATION_CHANGE = "registration-change"  # changed it: previous status and time kept


class ImportChange(Base):
    """What one import created or changed, row by row, so that it can be undone."""

    __tablename__ = "import_changes"

    id: Mapped[int] = mapped_column(primary_key=True)
    import_id: Mapped[int] = mapped_column(ForeignKey("imports.id", ondelete="CASCADE"), index=True)
    change: Mapped[ImportChangeKind] = mapped_column(String(20))
    contact_id: Mapped[int] = mapped_column(Integer)  # no foreign key: the contact may be gone since
    list_id: Mapped[int | None]
    session_id: Mapped[str] = mapped_column(String(100), default="")
    previous_status: Mapped[str] = mapped_column(String(20), default="")
    previous_registered_at: Mapped[datetime | None]


class RateSlot(Base):
    """The next free sending slot of one relay (``host:port``), in seconds since the epoch on the database
    server's clock: the evenly spaced rate limit that every process of a PostgreSQL store shares when no
    Redis is configured (:mod:`mailer.store.rate_slots`)."""

    __tablename__ = "rate_slots"

    relay: Mapped[str] = mapped_column(String(300), primary_key=True)  # host:port
    next_free: Mapped[float] = mapped_column(Double)
