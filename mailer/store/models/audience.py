"""The audience's tables: contacts, regional lists and their members, sessions, registrations."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from mailer.store.models.base import Base


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
