"""The pure view of a contact that rendering and message building need (no database object)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Recipient:
    """Who a message is for.

    ``email``: normalised address (may need SMTPUTF8); ``language``: BCP 47 tag; ``time_zone``: IANA name;
    ``country``: ISO 3166-1 alpha-2 or "".
    """

    email: str
    name: str = ""
    title: str = ""
    institution: str = ""
    country: str = ""
    language: str = "en"
    time_zone: str = "UTC"
    region: str = ""

    @property
    def display_name(self) -> str:
        """Name for the To: header: title and name on one line, never a line break."""
        text = " ".join(part for part in (self.title, self.name) if part)
        return " ".join(text.split())


def recipient_of(contact: Any, region: str) -> Recipient:
    """The pure view of a contact: ``contact`` is a Contact row, or any row with its columns
    (email, name, title, institution, country, language, time_zone)."""
    return Recipient(
        email=contact.email,
        name=contact.name,
        title=contact.title,
        institution=contact.institution,
        country=contact.country,
        language=contact.language,
        time_zone=contact.time_zone,
        region=region,
    )
