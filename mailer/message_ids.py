"""Stable identifiers of messages and lists: RFC 5322 msg-id, RFC 2919 list-id, ASCII host names."""

from __future__ import annotations

import hashlib
import re


def make_message_id(key: str, domain: str) -> str:
    """A stable RFC 5322 msg-id: the same ``key`` (e.g. the outbox row's key) always gives the same id.

    ``<the first 32 hex digits of SHA-256(UTF-8 key)@domain>``; an IDN ``domain`` is written as its A-label.
    SHA-256 because both stores compute it too (PostgreSQL's ``sha256()``; a function registered on SQLite),
    so a wave is queued in one statement: :func:`message_id_digest` is the digest part.
    Raises ValueError for a domain that is not a host name.
    """
    return f"<{message_id_digest(key)}@{ascii_domain(domain)}>"


def message_id_digest(key: str) -> str:
    """The 32 lower-case hex digits of a msg-id's left part: the first 128 bits of SHA-256(UTF-8 ``key``)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]


def make_list_id(series_id: str, domain: str) -> str:
    """An RFC 2919 list identifier for a series: ``<series-id>.<domain>`` with unsafe characters as "-"."""
    label = re.sub(r"[^A-Za-z0-9-]+", "-", series_id).strip("-").lower() or "list"
    return f"{label}.{ascii_domain(domain)}"


def ascii_domain(domain: str) -> str:
    """``domain`` as an ASCII host name: IDNA A-label for a U-label, trailing dot dropped.

    Raises ValueError for anything that is not a host name.
    """
    host = domain.strip().rstrip(".")
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            raise ValueError(f"not a host name: {domain!r}") from None
    if not re.fullmatch(r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?", host):
        raise ValueError(f"not a host name: {domain!r}")
    return host
