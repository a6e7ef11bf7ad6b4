"""Dashboard accounts: create, verify, change. Passwords are hashed with argon2id (argon2-cffi).

Accounts are made from the command line only (``mailer users add``); the web pages never create one.
"""

from __future__ import annotations

import re
from datetime import datetime
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import select
from sqlalchemy.orm import Session as DbSession

from mailer.audience.addresses import InvalidAddressError, normalise_address
from mailer.errors import MailerError, NotFoundError
from mailer.store.models import StaffRole, StaffUser
from mailer.timeline.clock import require_aware
from mailer.web.sessions import end_sessions

_HASHER = PasswordHasher()  # argon2id with the library's current recommended parameters
_USERNAME = re.compile(r"^[A-Za-z0-9._@-]{2,100}$")
MIN_PASSWORD_LENGTH = 10


@cache
def _dummy_hash() -> str:
    """Verified against when the username is unknown, so both cases take the same time. Made on the first
    sign-in, not at import: an argon2id hash costs every command that imports this module a tenth of a second.
    """
    return _HASHER.hash("not a password of anybody")


class AccountError(MailerError, ValueError):
    """An account cannot be made or changed as asked (bad name, short password, name taken)."""


def hash_password(password: str) -> str:
    """An argon2id PHC string for ``password``. Raises AccountError when shorter than MIN_PASSWORD_LENGTH."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(f"password too short: at least {MIN_PASSWORD_LENGTH} characters")
    return _HASHER.hash(password)


def add_user(
    db: DbSession,
    username: str,
    password: str,
    now: datetime,
    *,
    role: StaffRole = StaffRole.STAFF,
    email: str = "",
) -> StaffUser:
    """Create an account; caller commits. Raises AccountError for a bad or taken name, a short password or an
    address (``email``) that is not one."""
    now = require_aware(now, "now")
    if not _USERNAME.match(username):
        raise AccountError(f"bad username {username!r}: 2-100 letters, digits, '.', '_', '@' or '-'")
    if db.scalar(select(StaffUser.id).where(StaffUser.username == username)) is not None:
        raise AccountError(f"user {username!r} exists (change the password with `mailer users passwd`)")
    user = StaffUser(
        username=username,
        email=_account_email(email),
        role=role,
        password_hash=hash_password(password),
        active=True,
        created_at=require_aware(now, "now"),
    )
    db.add(user)
    db.flush()
    return user


def _account_email(email: str) -> str:
    """An account's own address ("send a test to yourself" goes there), normalised; "" for none. Raises
    AccountError for one that is not an address, so that it fails when given, not at the first test sent."""
    if not email.strip():
        return ""
    try:
        return normalise_address(email).email
    except InvalidAddressError as exc:
        raise AccountError(f"email {email!r} is not an email address: {exc}") from None


def get_user(db: DbSession, username: str) -> StaffUser:
    """The account called ``username``; NotFoundError otherwise."""
    user = db.scalar(select(StaffUser).where(StaffUser.username == username))
    if user is None:
        raise NotFoundError(f"no user {username!r} (see `mailer users list`)")
    return user


def authenticate(db: DbSession, username: str, password: str, now: datetime) -> StaffUser | None:
    """The active account whose password matches, else None (same work either way). Caller commits.

    A hash made with older parameters is upgraded on a successful sign-in.
    """
    now = require_aware(now, "now")
    user = db.scalar(select(StaffUser).where(StaffUser.username == username.strip()))
    try:
        _HASHER.verify(user.password_hash if user else _dummy_hash(), password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return None
    if user is None or not user.active:
        return None
    if _HASHER.check_needs_rehash(user.password_hash):
        user.password_hash = _HASHER.hash(password)
    user.last_login_at = require_aware(now, "now")
    return user


def set_password(db: DbSession, username: str, password: str) -> StaffUser:
    """Change a password and end the account's sessions (signed out everywhere). Caller commits."""
    user = get_user(db, username)
    user.password_hash = hash_password(password)
    end_sessions(db, user.id)
    return user


def change_user(
    db: DbSession,
    username: str,
    *,
    role: StaffRole | None = None,
    email: str | None = None,
    active: bool | None = None,
) -> StaffUser:
    """Change an account's role, address or whether it may sign in. A new role or disabling ends its
    sessions (it signs in again to get the new rights). NotFoundError for an unknown name, AccountError for an
    address that is not one. Caller commits."""
    user = get_user(db, username)
    if role is not None and role != user.role:
        user.role = role
        end_sessions(db, user.id)
    if email is not None:
        user.email = _account_email(email)
    if active is not None:
        user.active = active
        if not active:
            end_sessions(db, user.id)
    return user


def remove_user(db: DbSession, username: str) -> None:
    """Delete an account and its sessions. NotFoundError for an unknown name. Caller commits."""
    user = get_user(db, username)
    end_sessions(db, user.id)
    db.delete(user)


__all__ = [
    "MIN_PASSWORD_LENGTH",
    "AccountError",
    "add_user",
    "authenticate",
    "change_user",
    "get_user",
    "hash_password",
    "remove_user",
    "set_password",
]
