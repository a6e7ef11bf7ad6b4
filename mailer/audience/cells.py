"""Cells of an export read into values: text on one line, a title split from a name, a column's length, a
row's language and time zone (from its own cells, else its country, else the region's defaults).

Shapes
    clean_text(cell) -> str                        "Smith\\r\\nBcc: x" -> "Smith Bcc: x"
    split_title("Mr. Russell Brown") -> ("Mr.", "Russell Brown")
    fit_column(text, column) -> str                cut to the contacts column's length
    language_and_zone(language cell, zone cell, country, defaults) -> (language, explicit?, zone, explicit?)

Nothing here raises on a bad cell: what cannot be used falls back to a default, and the caller reports it.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from mailer.audience.locales import country_language, country_zone, fold, language_tag
from mailer.config import Region, Settings
from mailer.store.models import Contact
from mailer.zones import canonical_zone_name, is_known_zone

#: Honorifics recognised at the start of a single "Name" cell (folded, dots removed).
_TITLES = frozenset(
    [
        "mr",
        "mrs",
        "ms",
        "miss",
        "mx",
        "dr",
        "prof",
        "professor",
        "hon",
        "honourable",
        "honorable",
        "rt",
        "right",
        "senator",
        "sen",
        "rep",
        "representative",
        "deputy",
        "dep",
        "dip",
        "diputado",
        "diputada",
        "senador",
        "senadora",
        "sr",
        "sra",
        "srta",
        "don",
        "dona",
        "m",
        "mme",
        "mlle",
        "me",
        "he",
        "excellency",
        "his",
        "her",
        "minister",
        "ambassador",
        "judge",
        "justice",
        "sir",
        "dame",
        "lord",
        "lady",
    ]
)
_BREAKS = re.compile(r"[\s\x00-\x1f\x7f-\x9f]+")


def clean_text(text: str) -> str:
    """``text`` on one line: every run of whitespace or control characters (line breaks too) -> one space."""
    if not text.isascii():
        text = unicodedata.normalize("NFC", text)
    elif text.isprintable() and "  " not in text and text[:1] != " " and text[-1:] != " ":
        return text  # printable ASCII, single spaces inside: nothing to replace
    return _BREAKS.sub(" ", text).strip()


def split_title(full_name: str) -> tuple[str, str]:
    """("Mr. Russell Brown") -> ("Mr.", "Russell Brown"); leading honorifics only, at least one name word kept."""
    words = full_name.split()
    count = 0
    while count < len(words) - 1 and fold(words[count], accents=False).replace(" ", "") in _TITLES:
        count += 1
    return " ".join(words[:count]), " ".join(words[count:])


_LENGTHS: dict[str, int | None] = {c.name: getattr(c.type, "length", None) for c in Contact.__table__.columns}


def column_length(column: str) -> int | None:
    """How many characters the contacts table's ``column`` keeps (None: no limit)."""
    return _LENGTHS[column]


def fit_column(text: str, column: str) -> str:
    """``text`` cut to the length of the contacts column (a very long name must not break PostgreSQL)."""
    length = _LENGTHS[column]
    return text[:length] if length else text


@dataclass(frozen=True)
class Defaults:
    """Where blanks are filled from: the region's language and zone, configured zones, offered languages."""

    language: str
    zone: str
    offered: tuple[str, ...]
    country_zones: dict[str, str]

    @classmethod
    def of(cls, settings: Settings, region: Region) -> Defaults:
        """The defaults for rows imported into ``region``."""
        return cls(region.default_language, region.default_zone, settings.languages, settings.country_zones)


def language_and_zone(
    language_cell: str, zone_cell: str, country: str, defaults: Defaults
) -> tuple[str, bool, str, bool]:
    """(language, from the file?, zone, from the file or the file's country?) for one row.

    Language: the cell's if :func:`mailer.audience.locales.language_tag` recognises it, else the country's
    (preferring offered languages), else the region's. Zone: the cell's if a known zone, else the country's,
    else the region's.
    """
    tag = language_tag(language_cell)
    language = tag or (country and country_language(country, defaults.offered)) or defaults.language
    zone_cell = zone_cell.strip()
    if zone_cell and is_known_zone(zone_cell):
        return language, tag is not None, canonical_zone_name(zone_cell), True
    zone = country_zone(country, defaults.country_zones) if country else None
    return language, tag is not None, zone or defaults.zone, zone is not None


__all__ = ["Defaults", "clean_text", "fit_column", "language_and_zone", "split_title"]
