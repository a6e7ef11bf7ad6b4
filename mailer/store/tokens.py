"""API tokens (``mailer api-tokens``): made once, shown once, stored only as their SHA-256.

A token is ``mlr_`` and 43 URL-safe characters (32 random bytes); the prefix lets log masking
(:mod:`mailer.logformat`) and secret scanners recognise one. A token is looked up by its hash, so the
comparison never depends on how much of a guess was right. Revoked tokens stay listed with their date.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session as DbSession

from mailer.errors import NotFoundError
from mailer.store.models import ApiToken, TokenScope
from mailer.timeline.clock import require_aware

TOKEN_PREFIX = "mlr_"


def token_hash(token: str) -> str:
    """The hex SHA-256 stored for ``token``."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class TokenInfo:
    """A token as listed: never the token itself."""

    name: str
    scope: TokenScope
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


def create_token(db: DbSession, name: str, scope: TokenScope, now: datetime) -> str:
    """Make a token for client ``name`` and return it (the only time it is seen); caller commits.

    Raises ValueError when ``name`` is blank, longer than 100 characters or already used.
    """
    name = name.strip()
    if not name or len(name) > 100:
        raise ValueError("give the client a name of 1 to 100 characters")
    if db.scalar(select(ApiToken.id).where(ApiToken.name == name)) is not None:
        raise ValueError(f"a token named {name!r} exists (revoke it, or choose another name)")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    db.add(ApiToken(name=name, scope=scope, token_hash=token_hash(token), created_at=require_aware(now)))
    return token


def revoke_token(db: DbSession, name: str, now: datetime) -> None:
    """Revoke the token named ``name`` (again: no change); caller commits. NotFoundError when unknown,
    NaiveDatetimeError for a naive ``now``."""
    now = require_aware(now)
    row = db.scalars(select(ApiToken).where(ApiToken.name == name)).first()
    if row is None:
        raise NotFoundError(f"no API token named {name!r} (see `mailer api-tokens list`)")
    if row.revoked_at is None:
        row.revoked_at = now


def list_tokens(db: DbSession) -> list[TokenInfo]:
    """Every token, by name."""
    rows = db.scalars(select(ApiToken).order_by(ApiToken.name))
    return [
        TokenInfo(row.name, TokenScope(row.scope), row.created_at, row.last_used_at, row.revoked_at)
        for row in rows
    ]


def authenticate(db: DbSession, token: str, now: datetime) -> TokenInfo | None:
    """The live token ``token`` is, with its last use stamped ``now``; None when unknown or revoked.
    Raises NaiveDatetimeError for a naive ``now``."""
    now = require_aware(now)
    if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        return None
    row = db.scalars(select(ApiToken).where(ApiToken.token_hash == token_hash(token))).first()
    if row is None or row.revoked_at is not None:
        return None
    row.last_used_at = now
    return TokenInfo(row.name, TokenScope(row.scope), row.created_at, row.last_used_at, None)


__all__ = [
    "TOKEN_PREFIX",
    "TokenInfo",
    "authenticate",
    "create_token",
    "list_tokens",
    "revoke_token",
    "token_hash",
]
