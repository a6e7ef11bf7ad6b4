"""What came in from outside: webinar platforms' registration events and organisers' file imports."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from mailer.store.models.base import Base


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
    # no foreign key: only the import a row names writes it (one per contact, membership or registration, where
    # a check per row cost about as much as the row), and imports are never deleted
    import_id: Mapped[int] = mapped_column(Integer, index=True)
    change: Mapped[ImportChangeKind] = mapped_column(String(20))
    contact_id: Mapped[int] = mapped_column(Integer)  # no foreign key: the contact may be gone since
    list_id: Mapped[int | None]
    session_id: Mapped[str] = mapped_column(String(100), default="")
    previous_status: Mapped[str] = mapped_column(String(20), default="")
    previous_registered_at: Mapped[datetime | None]


class ImportRun(Base):
    """An organiser's upload being imported, or imported, by its upload token: kept in the store so that every
    web process shows its progress and a second confirm of the same upload (a double click, another process
    behind the proxy) starts nothing.

    ``lines_done`` of ``lines_total`` (the file's lines) as last noted; ``updated_at`` (wall-clock UTC) is
    when the importing process last noted progress, so a run whose process died is seen as stopped.
    ``import_id`` names the stored import once it is done; ``error`` says what stopped it.
    """

    __tablename__ = "import_runs"

    token: Mapped[str] = mapped_column(String(64), primary_key=True)
    file_name: Mapped[str] = mapped_column(String(255))
    started_by: Mapped[str] = mapped_column(String(100))
    started_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    lines_done: Mapped[int] = mapped_column(Integer, default=0)
    lines_total: Mapped[int] = mapped_column(Integer, default=0)
    import_id: Mapped[int | None]
    error: Mapped[str] = mapped_column(Text, default="")
