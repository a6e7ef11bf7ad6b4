"""The pure view of a contact that rendering and message building need (no database object)."""

from __future__ import annotations

from dataclasses import dataclass


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
