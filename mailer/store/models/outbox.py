"""The outbox's tables: messages and their append-only delivery log (DESIGN invariant 5)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    and_,
    delete,
    event,
    insert,
    inspect,
    literal_column,
    select,
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
    # RFC 5322 Message-ID, stable; kept unique and looked up by MessageIdLookup (no index of it here)
    message_id: Mapped[str] = mapped_column(String(255))
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


class MessageIdLookup(Base):
    """The messages by Message-ID: one row per message (its ``message_id`` and ``id``), for matching a
    bounce, report or webhook event to its message; the primary key keeps Message-IDs unique.

    A table of its own, not a unique index on ``messages.message_id``, because Message-IDs are random
    (a hash): an index of them on ``messages`` took a key at a random place of its B-tree for every message
    queued, a page read and written back each once the index outgrew the cache (SQLite's 2 MB), so queuing
    cost more per message as the outbox grew. :func:`mailer.store.outbox.queue_wave` fills this table with
    one ``INSERT ... SELECT`` per wave in Message-ID order, a sweep through its B-tree (on SQLite the table
    is that B-tree: WITHOUT ROWID). For the same reason it has no foreign key: its check, and finding the
    rows of deleted messages, would need an index on ``message_pk``, whose keys come in random order when
    rows come in Message-ID order. Instead a message written or deleted through the ORM keeps its row here
    (the mapper events below), a bulk DELETE of messages deletes theirs first
    (:func:`mailer.audience.import_undo.remove_unheld_contacts`), and :func:`message_id_among` compares the
    message's own column too, so that a row left behind never names another message.
    """

    __tablename__ = "message_ids"
    __table_args__ = ({"sqlite_with_rowid": False},)

    message_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    message_pk: Mapped[int]


def message_id_among(message_ids: Sequence[str]) -> ColumnElement[bool]:
    """The condition on :class:`Message` "its Message-ID is one of ``message_ids``", found through
    :class:`MessageIdLookup`'s primary key, then the message's; the message's own ``message_id`` is compared
    too, so that a lookup row left behind never names another message."""
    found = select(MessageIdLookup.message_pk).where(MessageIdLookup.message_id.in_(message_ids))
    return and_(Message.id.in_(found), Message.message_id.in_(message_ids))


@event.listens_for(Message, "after_insert")
def _look_up_new(_mapper: Any, connection: Connection, message: Message) -> None:
    connection.execute(insert(MessageIdLookup).values(message_id=message.message_id, message_pk=message.id))


@event.listens_for(Message, "after_update")
def _look_up_changed(_mapper: Any, connection: Connection, message: Message) -> None:
    history = inspect(message).attrs.message_id.history
    if history.deleted:
        _forget(connection, message.id, history.deleted[0])
        _look_up_new(_mapper, connection, message)


@event.listens_for(Message, "after_delete")
def _look_up_deleted(_mapper: Any, connection: Connection, message: Message) -> None:
    _forget(connection, message.id, message.message_id)


def _forget(connection: Connection, pk: int, message_id: str) -> None:
    connection.execute(
        delete(MessageIdLookup).where(
            MessageIdLookup.message_id == message_id, MessageIdLookup.message_pk == pk
        )
    )


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
