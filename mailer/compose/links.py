"""Signed personal links in messages: unsubscribe and RSVP. Pure functions of the settings and a message.

A link names one outbox message (its primary key); the message names the contact and the session, so a link
acts for exactly one person and one session. The token is the payload (kind, message, a digest of the
recipient's address, the answer) signed with HMAC-SHA256 (itsdangerous ``Signer``): nobody can make a valid
link for another message, nor enumerate people by counting.
Tokens carry no expiry: RFC 8058 asks that an unsubscribe link keep working, and an RSVP link is checked
against the session's start when used.

    /u/<token>       unsubscribe page (GET: a button; POST: done, also RFC 8058 one-click)
    /rsvp/<token>    RSVP page (GET: a button; POST: recorded); the token carries the answer

The signing key comes from the environment variable named by ``web.secret_env``; without it, from
``var/web-secret.key`` under the project root, created once with mode 0600. Separate keys for links and
for staff session cookies are derived from it (:func:`derived_key`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import secrets
import stat
import tempfile
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from itsdangerous import BadData, Signer

from mailer.config import Settings

if TYPE_CHECKING:
    from hashlib import _Hash as Hash

log = logging.getLogger(__name__)

KEY_FILE = Path("var") / "web-secret.key"


class Answer(StrEnum):
    """A participant's answer to an invitation."""

    YES = "yes"  # I will attend: registered for the session
    NO = "no"  # I cannot attend: declined, no more invitations for the session


class LinkKind(StrEnum):
    """What a signed link does."""

    UNSUBSCRIBE = "u"
    RSVP = "r"


class BadLinkError(ValueError):
    """A link token that was not made by this service (forged, truncated or signed with another key)."""


@dataclass(frozen=True)
class Link:
    """A verified link: what it does, for which message, and the answer of an RSVP link."""

    kind: LinkKind
    message_pk: int
    answer: Answer | None = None
    recipient: str = ""  # recipient_tag() of the address the message went to


@lru_cache(maxsize=4096)
def recipient_tag(email: str) -> str:
    """A short digest of the (case-folded) address a link was made for. Signed inside the token, it ties
    the link to that person: a token replayed against another store, whose message row of the same id
    belongs to someone else, is refused."""
    digest = hashlib.sha256(email.strip().casefold().encode("utf-8")).digest()
    return base64.urlsafe_b64encode(digest[:9]).decode("ascii")


def key_file(settings: Settings) -> Path:
    """Where the signing key is kept when no environment variable provides it."""
    return settings.base_dir / KEY_FILE


@lru_cache(maxsize=8)
def _read_or_create(path: Path) -> bytes:
    """Read the key file, or make it: written to a private temporary file, then linked into place, so
    several processes starting together agree on one key and none reads a half-written file."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(48).encode("ascii")
        fd, temporary = tempfile.mkstemp(prefix=".web-secret-", dir=path.parent)  # mode 0600
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(key + b"\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.link(temporary, path)
            log.warning(
                "made a new signing key for web links in %s (mode 0600); keep it: old links need it", path
            )
        except FileExistsError:
            pass  # another process made it first: use theirs
        finally:
            os.unlink(temporary)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        log.warning("%s is readable by others (mode %o); run: chmod 600 %s", path, mode, path)
    key = path.read_bytes().strip()
    if len(key) < 32:
        raise ValueError(f"{path}: the signing key is too short; delete the file to make a new one")
    return key


def signing_key(settings: Settings) -> bytes:
    """The master key: ``$<web.secret_env>`` if set, else the key file (made on first use, mode 0600).

    Raises ValueError when the key file holds fewer than 32 characters, OSError when it cannot be written.
    """
    secret = settings.web.secret
    if secret:
        return secret.encode("utf-8")
    return _read_or_create(key_file(settings).resolve())


def derived_key(settings: Settings, purpose: str) -> bytes:
    """A key for one purpose ("links", "sessions", ...), so one leaked derived key cannot forge the others."""
    return _derive(signing_key(settings), purpose)


@lru_cache(maxsize=16)
def _derive(master: bytes, purpose: str) -> bytes:
    return hmac.new(master, purpose.encode("ascii"), hashlib.sha256).digest()


def _signer(settings: Settings) -> Signer:
    return _signer_for(derived_key(settings, "links"))


_INNER_PAD = bytes(byte ^ 0x36 for byte in range(256))  # RFC 2104: the key XOR ipad, as a translation
_OUTER_PAD = bytes(byte ^ 0x5C for byte in range(256))  # and XOR opad


@lru_cache(maxsize=8)
def _mac_for(key: bytes) -> tuple[Hash, Hash]:
    """HMAC-SHA256 keyed with ``key`` (a derived key: 32 octets, at most the 64 of a SHA-256 block) and fed
    nothing yet, as its inner and outer SHA-256 states after the key's pads (RFC 2104): a token's MAC is
    :func:`_sign` of copies of them (the pads are hashed once, not once per token)."""
    block = key.ljust(64, b"\0")
    return hashlib.sha256(block.translate(_INNER_PAD)), hashlib.sha256(block.translate(_OUTER_PAD))


def _sign(inner: Hash, outer: Hash, payload: bytes) -> bytes:
    """``payload``, ".", and the HMAC of the pads' states ``inner`` (fed ``payload``'s start already, or
    not) and ``outer`` over the rest of ``payload``, in base64url without padding."""
    inner = inner.copy()
    inner.update(payload)
    mac = outer.copy()
    mac.update(inner.digest())
    return base64.urlsafe_b64encode(mac.digest()).rstrip(b"=")


@lru_cache(maxsize=8)
def _signer_for(key: bytes) -> Signer:
    # The key is already this purpose's own (derived_key), so itsdangerous derives nothing more from it.
    return Signer(key, key_derivation="none", digest_method=hashlib.sha256)


def make_token(settings: Settings, link: Link) -> str:
    """The URL-safe signed token of ``link`` (the same link always gives the same token):
    ``<kind>.<message pk>.<recipient tag>[.<answer>].<HMAC-SHA256, base64url>``."""
    return _token(_mac_for(derived_key(settings, "links")), link)


def _token(mac: tuple[Hash, Hash], link: Link) -> str:
    """What itsdangerous' ``Signer(key, key_derivation="none", digest_method=sha256).sign(payload)`` gives
    (:func:`read_token` verifies with it): the payload, ".", the HMAC in base64url without padding."""
    fields = [link.kind.value, str(link.message_pk), link.recipient]
    if link.answer is not None:
        fields.append(link.answer.value)
    payload = ".".join(fields).encode("utf-8")
    return (payload + b"." + _sign(*mac, payload)).decode("ascii")


def read_token(settings: Settings, token: str) -> Link:
    """Verify ``token`` and return its link. Raises :class:`BadLinkError` for anything not signed by us."""
    try:
        payload = _signer(settings).unsign(token).decode("ascii")
    except (BadData, UnicodeError):
        raise BadLinkError("link signature does not match") from None
    fields = payload.split(".")
    try:
        kind = LinkKind(fields[0])
        if not fields[1].isdigit() or len(fields) != (4 if kind is LinkKind.RSVP else 3):
            raise ValueError
        pk = int(fields[1])
        return Link(kind, pk, Answer(fields[3]) if kind is LinkKind.RSVP else None, fields[2])
    except (IndexError, ValueError):
        raise BadLinkError("signed payload has the wrong shape") from None


def unsubscribe_url(settings: Settings, message_pk: int, email: str) -> str:
    """The personal unsubscribe URL of a message to ``email`` (``List-Unsubscribe`` and the footer link)."""
    link = Link(LinkKind.UNSUBSCRIBE, message_pk, recipient=recipient_tag(email))
    return f"{settings.web.base_url}/u/{make_token(settings, link)}"


def rsvp_url(settings: Settings, message_pk: int, answer: Answer | str, email: str) -> str:
    """The personal "I will attend" (``yes``) or "I cannot attend" (``no``) URL of a message to ``email``."""
    link = Link(LinkKind.RSVP, message_pk, Answer(answer), recipient_tag(email))
    return f"{settings.web.base_url}/rsvp/{make_token(settings, link)}"


def message_links(settings: Settings, message_pk: int, email: str) -> dict[str, str]:
    """Template variables for one message to ``email``: ``unsubscribe_url``, ``rsvp_yes_url``, ``rsvp_no_url``
    (the URLs :func:`unsubscribe_url` and :func:`rsvp_url` give)."""
    inner, outer = _mac_for(derived_key(settings, "links"))
    tag, base = recipient_tag(email), settings.web.base_url
    # The payloads _token writes for the three links; both RSVP payloads start with the same fields, hashed once.
    unsubscribe = f"{LinkKind.UNSUBSCRIBE.value}.{message_pk}.{tag}".encode()
    rsvp = f"{LinkKind.RSVP.value}.{message_pk}.{tag}.".encode()
    answered = inner.copy()
    answered.update(rsvp)
    yes, no = Answer.YES.value.encode(), Answer.NO.value.encode()
    return {
        "unsubscribe_url": f"{base}/u/{unsubscribe.decode()}.{_sign(inner, outer, unsubscribe).decode()}",
        "rsvp_yes_url": f"{base}/rsvp/{(rsvp + yes).decode()}.{_sign(answered, outer, yes).decode()}",
        "rsvp_no_url": f"{base}/rsvp/{(rsvp + no).decode()}.{_sign(answered, outer, no).decode()}",
    }


__all__ = [
    "Answer",
    "BadLinkError",
    "Link",
    "LinkKind",
    "derived_key",
    "key_file",
    "make_token",
    "message_links",
    "read_token",
    "recipient_tag",
    "rsvp_url",
    "signing_key",
    "unsubscribe_url",
]
