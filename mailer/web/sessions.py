"""Server-side sessions of dashboard accounts: started at sign-in, checked on every request, revocable.

The browser's signed cookie holds a random token; the store holds its SHA-256 in ``staff_sessions`` with
the account, the start, the last request, and the client's address and browser. A session ends when:

- its owner signs out, changes password, gets another role, is disabled or removed
  (:mod:`mailer.web.users`), or an operator ends it (``mailer users sessions --end``);
- it has been idle longer than ``idle``, or open longer than ``longest`` (:class:`SessionPolicy`).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session as DbSession

from mailer.store.models import StaffSession, StaffUser
from mailer.timeline.clock import require_aware

TOUCH_EVERY = timedelta(minutes=1)  # last_seen_at is written at most this often per session


@dataclass(frozen=True)
class SessionPolicy:
    """How long a session lasts without a request (``idle``) and at most (``longest``)."""

    idle: timedelta = timedelta(hours=2)
    longest: timedelta = timedelta(hours=12)


def session_key(token: str) -> str:
    """The stored id of the session whose cookie token is ``token`` (hex SHA-256)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def start_session(
    db: DbSession,
    user: StaffUser,
    now: datetime,
    client: str = "",
    agent: str = "",
    policy: SessionPolicy | None = None,
) -> str:
    """Record a new session of ``user``; returns the token for the cookie. Sessions of anybody that have
    expired under ``policy`` (default :class:`SessionPolicy`) are deleted on the way. Caller commits."""
    token = secrets.token_urlsafe(32)
    at = require_aware(now, "now")
    rules = policy or SessionPolicy()
    db.execute(
        delete(StaffSession).where(
            (StaffSession.last_seen_at < at - rules.idle) | (StaffSession.created_at < at - rules.longest)
        )
    )
    db.add(
        StaffSession(
            id=session_key(token),
            user_id=user.id,
            created_at=at,
            last_seen_at=at,
            client=client[:64],
            agent=agent[:200],
        )
    )
    return token


def session_user(db: DbSession, token: str, now: datetime, policy: SessionPolicy) -> StaffUser | None:
    """The active account of the session ``token``, else None (unknown, ended, expired: an expired or
    disabled account's session is deleted). Marks the session used. Caller commits.
    Raises :class:`mailer.errors.NaiveDatetimeError` for a naive ``now``."""
    now = require_aware(now, "now")
    row = db.get(StaffSession, session_key(token))
    if row is None:
        return None
    user = db.get(StaffUser, row.user_id)
    expired = now - row.last_seen_at > policy.idle or now - row.created_at > policy.longest
    if user is None or not user.active or expired:
        db.delete(row)
        return None
    if now - row.last_seen_at >= TOUCH_EVERY:
        row.last_seen_at = now
    return user


def end_session(db: DbSession, token: str) -> None:
    """End the session ``token`` (sign-out). Caller commits."""
    db.execute(delete(StaffSession).where(StaffSession.id == session_key(token)))


def end_sessions(db: DbSession, user_id: int) -> int:
    """End every session of one account; returns how many. Caller commits."""
    result = db.execute(delete(StaffSession).where(StaffSession.user_id == user_id))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class SessionInfo:
    """One open session, for ``mailer users sessions`` (``ref``: the first 12 characters of its id)."""

    ref: str
    username: str
    created_at: datetime
    last_seen_at: datetime
    client: str
    agent: str


def list_sessions(db: DbSession, username: str | None = None) -> list[SessionInfo]:
    """Open sessions, newest use first, of every account or of ``username``."""
    query = select(StaffSession, StaffUser.username).join(StaffUser, StaffUser.id == StaffSession.user_id)
    if username is not None:
        query = query.where(StaffUser.username == username)
    rows = db.execute(query.order_by(StaffSession.last_seen_at.desc(), StaffSession.id)).all()
    return [
        SessionInfo(row.id[:12], name, row.created_at, row.last_seen_at, row.client, row.agent)
        for row, name in rows
    ]


def end_session_ref(db: DbSession, ref: str) -> int:
    """End the session whose id starts with ``ref`` (at least 8 hex characters); returns 0 or 1.
    Raises ValueError when ``ref`` is too short or matches several sessions. Caller commits."""
    ref = ref.strip().lower()
    if len(ref) < 8 or any(c not in "0123456789abcdef" for c in ref):
        raise ValueError(f"session reference {ref!r}: give at least 8 hex characters from the list")
    ids = db.scalars(select(StaffSession.id).where(StaffSession.id.startswith(ref))).all()
    if len(ids) > 1:
        raise ValueError(f"session reference {ref!r} matches {len(ids)} sessions: give more characters")
    for found in ids:
        db.execute(delete(StaffSession).where(StaffSession.id == found))
    return len(ids)


__all__ = [
    "SessionInfo",
    "SessionPolicy",
    "end_session",
    "end_session_ref",
    "end_sessions",
    "list_sessions",
    "session_key",
    "session_user",
    "start_session",
]
