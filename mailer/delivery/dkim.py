"""DKIM signing (RFC 6376) of finished message bytes with dkimpy, when ``[dkim]`` is configured.

Relaxed/relaxed canonicalisation, so a relay re-folding header fields does not break the signature.
RSA (``rsa-sha256``) or Ed25519 (``ed25519-sha256``, RFC 8463) keys; the algorithm follows the key.
Signing costs about 1 ms a message with a 2048-bit RSA key: it is the hot path's largest cost when on.
"""

from __future__ import annotations

import dkim

from mailer.config import DkimSettings
from mailer.errors import ConfigError


class DkimSigner:
    """Signs messages for one domain and selector. Raises ConfigError when the key is missing or unusable."""

    def __init__(self, settings: DkimSettings) -> None:
        self.settings = settings
        key = settings.private_key()
        self._ed25519 = b"BEGIN" not in key  # dkimpy takes Ed25519 keys as raw base64, RSA keys as PEM
        self._key = key.strip() if self._ed25519 else key
        self._selector = settings.selector.encode("ascii")
        self._domain = settings.domain.encode("ascii")
        self._headers = [name.encode("ascii") for name in settings.headers]
        try:
            self.sign(b"From: a@example.org\r\nSubject: key check\r\n\r\nbody\r\n")
        except dkim.DKIMException as exc:
            raise ConfigError(
                "mailer.toml", "dkim", f"DKIM key unusable: {exc}", "give a PEM RSA key or a raw Ed25519 key"
            ) from None

    def sign(self, data: bytes) -> bytes:
        """``data`` with a DKIM-Signature field prepended."""
        return self.signature(data) + data

    def signature(self, data: bytes) -> bytes:
        """The DKIM-Signature field (folded, CRLF-ended) of message ``data``, to go before its first line."""
        signature: bytes = dkim.sign(
            data,
            self._selector,
            self._domain,
            self._key,
            canonicalize=(b"relaxed", b"relaxed"),
            signature_algorithm=b"ed25519-sha256" if self._ed25519 else b"rsa-sha256",
            include_headers=self._headers,
            linesep=b"\r\n",
        )
        return signature
