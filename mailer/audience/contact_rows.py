"""One record of a contact export read as a contact: the header names of each field, the address, the name
(split columns or one "Name" cell with a title inside), the country, language and time zone.

Shapes
    CONTACT_COLUMNS: field -> header aliases     for :func:`mailer.audience.table.read_table`
    parse_contact_row(table, record, defaults) -> ContactRow | Rejected
    row_address(table, record) -> Address | Rejected       shared with registration reports
    row_name(table, record) -> (title found in a "Name" cell, name)

A row is rejected only for its address; a country, language or zone cell the import cannot use is replaced
by a default and reported as :class:`Replaced`, never silently.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailer.audience.addresses import Address, InvalidAddressError, normalise_address
from mailer.audience.cells import Defaults, clean_text, fit_column, language_and_zone, split_title
from mailer.audience.locales import country_code
from mailer.audience.row_import import Rejected
from mailer.audience.table import Record, Table
from mailer.zones import is_known_zone

#: Header names (after :func:`mailer.audience.locales.fold` without accents) recognised for each contact field.
CONTACT_COLUMNS: dict[str, tuple[str, ...]] = {
    "email": (
        "email",
        "e mail",
        "email address",
        "e mail address",
        "mail",
        "correo",
        "correo electronico",
        "courriel",
        "adresse email",
        "adresse e mail",
        "adresse electronique",
    ),
    "title": ("title", "salutation", "honorific", "prefix", "tratamiento", "titulo", "civilite", "titre"),
    "first_name": (
        "first name",
        "first",
        "given name",
        "forename",
        "firstname",
        "nombre",
        "nombres",
        "prenom",
    ),
    "last_name": (
        "last name",
        "last",
        "surname",
        "family name",
        "lastname",
        "apellido",
        "apellidos",
        "nom de famille",
        "nom",
    ),
    "name": ("name", "full name", "contact name", "nombre completo", "nom complet"),
    "country": ("country", "country region", "country region name", "pais", "pays"),
    "institution": (
        "institution",
        "organisation",
        "organization",
        "org",
        "affiliation",
        "institucion",
        "organizacion",
        "entidad",
        "organisme",
    ),
    "language": (
        "language",
        "preferred language",
        "lang",
        "idioma",
        "idioma preferido",
        "lengua",
        "langue",
        "langue preferee",
    ),
    "time_zone": ("timezone", "time zone", "tz", "zona horaria", "fuseau horaire"),
}


_SHOWN = 40  # characters of an over-long cell shown in the report


@dataclass(frozen=True, slots=True)
class Replaced:
    """A cell the import could not use and replaced (the row itself was kept): what was in it, what is used."""

    line: int
    column: str
    value: str  # the cell, or its beginning when it was too long to show
    used: str
    problem: str = "not recognised"  # what was wrong with it, e.g. "is 10,001 characters long, ..."


@dataclass(slots=True)
class ContactRow:
    """An accepted row. ``*_explicit``: the value came from the file, so it may overwrite an existing contact."""

    line: int
    address: Address
    name: str
    title: str
    institution: str
    country: str
    language: str
    language_explicit: bool
    time_zone: str
    zone_explicit: bool
    replaced: tuple[Replaced, ...] = ()


def row_address(table: Table, record: Record) -> Address | Rejected:
    """The record's address, or the row :class:`Rejected` with the reason it is not one valid address."""
    raw_email = table.value(record, "email")
    try:
        return normalise_address(raw_email)
    except InvalidAddressError as exc:
        return Rejected(record.line, str(exc), raw_email)


def row_name(table: Table, record: Record) -> tuple[str, str]:
    """(title, name): first and last name columns joined (title ""), else the "Name" cell's leading
    honorifics and the rest (see :func:`mailer.audience.cells.split_title`); text cleaned, not cut."""
    name = clean_text(f"{table.value(record, 'first_name')} {table.value(record, 'last_name')}")
    if name:
        return "", name
    return split_title(clean_text(table.value(record, "name")))


def parse_contact_row(table: Table, record: Record, defaults: Defaults) -> ContactRow | Rejected:
    """The contact a record describes, with blanks filled from its country and ``defaults``; or Rejected."""
    address = row_address(table, record)
    if isinstance(address, Rejected):
        return address
    name_title, name = row_name(table, record)
    title = clean_text(table.value(record, "title")) or name_title
    country_cell = clean_text(table.value(record, "country"))
    country = country_code(country_cell) or ""
    language_cell, zone_cell = table.value(record, "language"), table.value(record, "time_zone")
    language, language_explicit, zone, zone_explicit = language_and_zone(
        language_cell, zone_cell, country, defaults
    )
    replaced = []  # cells with something the import could not use: reported, never silently
    if country_cell and not country:
        replaced.append(Replaced(record.line, "country", country_cell, "(blank)"))
    if language_cell.strip() and not language_explicit:
        replaced.append(Replaced(record.line, "language", language_cell.strip(), language))
    if zone_cell.strip() and not is_known_zone(zone_cell.strip()):
        replaced.append(Replaced(record.line, "time zone", zone_cell.strip(), zone))
    texts = {"name": name, "title": title, "institution": clean_text(table.value(record, "institution"))}
    kept = {column: fit_column(text, column) for column, text in texts.items()}
    for column, text in texts.items():
        if kept[column] != text:
            replaced.append(
                Replaced(
                    record.line,
                    column,
                    text[:_SHOWN] + "…",
                    f"the first {len(kept[column])} characters",
                    problem=f"is {len(text):,} characters long, more than the {len(kept[column])} kept",
                )
            )
    return ContactRow(
        line=record.line,
        address=address,
        name=kept["name"],
        title=kept["title"],
        institution=kept["institution"],
        country=country,
        language=language,
        language_explicit=language_explicit,
        time_zone=zone,
        zone_explicit=zone_explicit,
        replaced=tuple(replaced),
    )


__all__ = ["CONTACT_COLUMNS", "ContactRow", "Replaced", "parse_contact_row", "row_address", "row_name"]
