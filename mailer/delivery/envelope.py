"""Envelope addresses as MAIL FROM and RCPT TO carry them: A-labels, SMTPUTF8, no control characters."""

from __future__ import annotations

import re

import idna

_CONTROL = re.compile(r"[\x00-\x20\x7f<>]")  # never in an envelope address: no SMTP command injection


def envelope_address(address: str) -> str:
    """The address as it goes in MAIL FROM / RCPT TO: an internationalised domain becomes its
    A-label form (IDNA 2008 with UTS 46 mapping, RFC 5891), as email-validator computes it."""
    local, _, domain = address.rpartition("@")
    if not domain.isascii():
        domain = idna.encode(domain, uts46=True).decode("ascii")
    return f"{local}@{domain}"


def needs_smtputf8(address: str) -> bool:
    """True when the local part is not ASCII (RFC 6531): only a server offering SMTPUTF8 can take it."""
    return not address.rpartition("@")[0].isascii()


def unsendable(envelope_from: str, recipient: str, *, utf8: bool, offers_smtputf8: bool) -> str | None:
    """Why this envelope can never go to this server (the reason, for a failed message), or None.

    ``utf8``: the envelope or the message needs SMTPUTF8 (RFC 6531); ``offers_smtputf8``: the server's EHLO.
    """
    if utf8 and not offers_smtputf8:
        return "the address has a non-ASCII local part and the server does not offer SMTPUTF8 (RFC 6531)"
    if _CONTROL.search(envelope_from) or _CONTROL.search(recipient):
        return "control character in an envelope address: never sent to SMTP"
    return None


def envelope_commands(
    envelope_from: str, recipient: str, *, utf8: bool, eight_bit: bool
) -> tuple[bytes, bytes]:
    """The MAIL FROM and RCPT TO command lines (CRLF-terminated) of one single-recipient transaction.

    ``utf8`` adds SMTPUTF8 (RFC 6531) and encodes the addresses as UTF-8; ``eight_bit`` adds BODY=8BITMIME
    (RFC 6152).
    """
    options = [b"SMTPUTF8"] if utf8 else []
    encoding = "utf-8" if utf8 else "ascii"
    if eight_bit:
        options.append(b"BODY=8BITMIME")
    mail = (
        b"MAIL FROM:<"
        + envelope_address(envelope_from).encode(encoding)
        + b">"
        + b"".join(b" " + option for option in options)
        + b"\r\n"
    )
    rcpt = b"RCPT TO:<" + envelope_address(recipient).encode(encoding) + b">\r\n"
    return mail, rcpt
