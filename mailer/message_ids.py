"""Stable identifiers of messages and lists: RFC 5322 msg-id, RFC 2919 list-id, ASCII host names."""

from __future__ import annotations

import hashlib
import re


def make_message_id(key: str, domain: str) -> str:
    """A stable RFC 5322 msg-id: the same ``key`` (e.g. the outbox row's key) always gives the same id.

    ``<32 hex digits of BLAKE2b(key)@domain>``; an IDN ``domain`` is written as its A-label.
    Raises ValueError for a domain that is not a host name.
    """
    host = ascii_domain(domain)
    return f"<{hashlib.blake2b(key.encode('utf-8'), digest_size=16).hexdigest()}@{host}>"


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
