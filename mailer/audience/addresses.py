"""Email addresses as written in a cell -> validated, normalised addresses with their uniqueness key.

Shapes
    normalise_address("  Ana <ANA@Example.org> ") -> Address("ANA@example.org", "ana@example.org", False)
    email_key(address) -> str                      the case-folded key contacts and suppressions are unique on

Validation is email-validator's (RFC 5321/5322 syntax, IDNA 2008 / UTS-46 for domains, SMTPUTF8 for
non-ASCII local parts), without DNS. Errors: :class:`InvalidAddressError` (a ValueError) with a message for
the organiser.
"""

from __future__ import annotations

import re
from email.utils import parseaddr
from functools import lru_cache
from typing import Any, NamedTuple

import email_validator
from email_validator import EmailNotValidError, validate_email
from email_validator.rfc_constants import CASE_INSENSITIVE_MAILBOX_NAMES, DOT_ATOM_TEXT
from email_validator.syntax import validate_email_domain_name, validate_email_local_part

from mailer.audience.cells import clean_text

_ADDRESS_SEPARATORS = re.compile(r"[;,\s]+")
MAX_KEY_LENGTH = 320  # RFC 3696's longest address, and the store's column for the address and its key


class InvalidAddressError(ValueError):
    """A cell that is not exactly one valid email address; the message says why, for the organiser."""


class Address(NamedTuple):
    """A validated address: ``email`` normalised (IDN domain in Unicode), ``key`` case-folded for uniqueness.
    (A named tuple: one is made per imported row, at a third of a frozen dataclass's cost.)"""

    email: str
    key: str
    needs_smtputf8: bool  # non-ASCII local part: only an SMTPUTF8 server can take it


def email_key(address: str) -> str:
    """The uniqueness key of a normalised address: case-folded (``Contact.email_key``, suppressions)."""
    return address.strip().casefold()


def normalise_address(cell: str) -> Address:
    """Validate one address as written in a cell ("  A@B.org ", "Name <a@b.org>", "josé@b.org", "a@bé.org").

    Raises :class:`InvalidAddressError` for a blank cell, two addresses in one cell, anything email-validator
    refuses (no @, empty local part, consecutive dots, trailing dot...), or an address whose case-folded key
    is longer than :data:`MAX_KEY_LENGTH` ("ΐ" folds to three characters: valid, yet no store could key it).
    """
    text = clean_text(cell)
    if not text:
        raise InvalidAddressError("The address cell is blank.")
    if text.count("@") > 1 and sum(1 for part in _ADDRESS_SEPARATORS.split(text) if "@" in part) > 1:
        raise InvalidAddressError("The cell holds more than one address.")
    if "<" in text or ">" in text:
        _, text = parseaddr(text)
        if not text:
            raise InvalidAddressError("The 'Name <address>' form is malformed.")
    if text[:7].lower() == "mailto:":
        text = text[7:]
    try:
        email, smtputf8 = _validate(text)
    except EmailNotValidError as exc:
        raise InvalidAddressError(str(exc)) from None
    key = email.strip().casefold()  # email_key(email)
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidAddressError(
            f"The address is too long: {len(key)} characters once its letters are case-folded, more than"
            f" the {MAX_KEY_LENGTH} an address may have."
        )
    return Address(email, key, smtputf8)


_VALIDATION: dict[str, Any] = {"check_deliverability": False, "allow_smtputf8": True}
_CASE_INSENSITIVE = frozenset(CASE_INSENSITIVE_MAILBOX_NAMES)  # RFC 2142 mailbox names, lower-cased


@lru_cache(maxsize=65536)
def _valid_domain(domain: str) -> str:
    """The normalised (Unicode) form of a valid domain name, checked once per distinct domain by the library's
    own domain check, as ``validate_email`` calls it (with the library's settings); raises EmailNotValidError."""
    checked = validate_email_domain_name(
        domain,
        test_environment=email_validator.TEST_ENVIRONMENT,
        globally_deliverable=email_validator.GLOBALLY_DELIVERABLE,
    )
    return str(checked["domain"])


def _validate(text: str) -> tuple[str, bool]:
    """(normalised address, needs SMTPUTF8) by email-validator; raises EmailNotValidError.

    A list holds many addresses at few domains, and the domain check (IDNA/UTS-46) is the costly half, so
    each distinct domain is checked once (cached). A plain ASCII dot-atom local part (RFC 5322 sec. 3.4.1) at
    a domain name, the usual case, is checked by the library's own local-part and domain checks, which is all
    ``validate_email`` does for such an address (no display name, quoting or Unicode normalisation apply; an
    address of at most 200 characters is within every length limit) except lower-casing the RFC 2142
    mailbox names, done here the same way. Anything else (a non-ASCII local part, quotes, a bracketed
    domain, a long address) goes through one plain call, so the outcome and message are the library's.
    """
    local, at, domain = text.rpartition("@")
    usual = at and local and domain[:1] not in ("", "[") and len(text) <= 200 and '"' not in text
    if usual and local.isascii() and DOT_ATOM_TEXT.match(local):
        checked = validate_email_local_part(local, allow_smtputf8=True)["local_part"]
        if checked.lower() in _CASE_INSENSITIVE:
            checked = checked.lower()
        return f"{checked}@{_valid_domain(domain)}", False
    result = validate_email(text, **_VALIDATION)
    return str(result.normalized), bool(result.smtputf8)


__all__ = ["Address", "InvalidAddressError", "email_key", "normalise_address"]
