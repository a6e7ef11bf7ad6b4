"""The outbox's tables: messages and their append-only delivery log (DESIGN invariant 5)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    ColumnElement,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    literal_column,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from mailer.store.models.audience import Contact
from mailer.store.models.base import Base


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
