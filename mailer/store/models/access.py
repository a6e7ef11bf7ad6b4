"""Who may use the dashboard and the JSON API: staff accounts, their sessions, API tokens."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from mailer.store.models.base import Base


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
