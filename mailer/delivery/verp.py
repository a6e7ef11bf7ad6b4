"""The signed return path (VERP): each message's envelope sender names that message, so a bounce finds it.

    bounces+<token>@<bounce domain>        token = <message pk, base 36> "-" <8 characters of HMAC>

The token is short (a 64-bit-ish signature keeps it under 25 characters for any realistic table) and
lower-case only, since some MTAs fold the case of local parts. It is signed with HMAC-SHA256 under a key of
its own (derived from the service's signing key), so a report cannot be forged to bounce someone else's
message, and nobody learns anything from it but a row number. The ``+`` sub-address separator is the one
Postfix (``recipient_delimiter``), Exim and Dovecot deliver to the base mailbox by default, as Mailman's VERP
does.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass

from mailer.compose.links import derived_key
from mailer.config import Settings

_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"
_TOKEN = re.compile(r"^([0-9a-z]{1,13})-([a-z2-7]{8})$")


def _base36(number: int) -> str:
    text = ""
    while True:
        number, digit = divmod(number, 36)
        text = _DIGITS[digit] + text
        if number == 0:
            return text


@dataclass(frozen=True)
class ReturnPath:
    """Makes and reads signed return paths for one bounce mailbox.

    ``local`` is the mailbox's local part (``bounces``), ``domain`` the bounce domain, ``key`` at least
    16 bytes. Raises ValueError at construction for an empty local part or domain, a local part holding the
    separator, or a short key.
    """

    local: str
    domain: str
    key: bytes

    def __post_init__(self) -> None:
        if not self.local or not self.domain or "+" in self.local or "@" in self.local + self.domain:
            raise ValueError(
                f"return path {self.local!r}@{self.domain!r}: needs a plain local part and domain"
            )
        if len(self.key) < 16:
            raise ValueError("return path signing key: at least 16 bytes")

    def _signature(self, number: str) -> str:
        digest = hmac.new(self.key, b"verp:" + number.encode("ascii"), hashlib.sha256).digest()
        return base64.b32encode(digest[:5]).decode("ascii").lower()

    def token(self, message_pk: int) -> str:
        """The token for outbox row ``message_pk`` (a positive integer; ValueError otherwise)."""
        if message_pk < 0:
            raise ValueError(f"message pk {message_pk}: not a row number")
        number = _base36(message_pk)
        return f"{number}-{self._signature(number)}"

    def address(self, message_pk: int) -> str:
        """The envelope sender for outbox row ``message_pk``: ``bounces+<token>@<domain>``."""
        return f"{self.local}+{self.token(message_pk)}@{self.domain}"

    def message_pk(self, address: str) -> int | None:
        """The outbox row an address made by :meth:`address` names; None for any other address.

        Case-insensitive; angle brackets and surrounding spaces are ignored. A token whose signature does not
        match (forged, truncated, made with another key) gives None; nothing here raises.
        """
        text = address.strip().strip("<>").strip().lower()
        local, at, domain = text.rpartition("@")
        if not at or domain.rstrip(".") != self.domain.lower():
            return None
        base, plus, token = local.partition("+")
        if not plus or base != self.local.lower():
            return None
        match = _TOKEN.match(token)
        if match is None:
            return None
        number, signature = match.groups()
        if not hmac.compare_digest(signature, self._signature(number)):
            return None
        return int(number, 36)


def return_path_for(settings: Settings) -> ReturnPath | None:
    """The configured return path (``[bounces] return_path``), signed with the service's own derived key,
    or None when VERP is off. Raises ValueError or OSError as :func:`mailer.compose.links.signing_key`."""
    address = settings.bounces.return_path
    if not address:
        return None
    local, _, domain = address.rpartition("@")
    return ReturnPath(local, domain.lower(), derived_key(settings, "verp"))
