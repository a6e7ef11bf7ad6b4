"""One record of a contact export read as a contact: the header names of each field, the address, the name
(split columns or one "Name" cell with a title inside), the country, language and time zone.

Shapes
    CONTACT_COLUMNS: field -> header aliases     for :func:`mailer.audience.table.read_table`
    contact_parser(table, defaults) -> parse(record) -> ContactRow | Rejected     one file's reading
    row_address(table, record) -> Address | Rejected       shared with registration reports
    row_name(table, record) -> (title found in a "Name" cell, name)

A row is rejected only for its address; a country, language or zone cell the import cannot use is replaced
by a default and reported as :class:`Replaced`, never silently.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from operator import itemgetter

from mailer.audience.addresses import Address, InvalidAddressError, normalise_address
from mailer.audience.cells import (
    Defaults,
    clean_text,
    column_length,
    fit_column,
    language_and_zone,
    split_title,
)
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
    return _title_and_name(
        table.value(record, "first_name"), table.value(record, "last_name"), table.value(record, "name")
    )


def _title_and_name(first: str, last: str, full: str) -> tuple[str, str]:
    name = clean_text(f"{first} {last}")
    if name:
        return "", name
    return split_title(clean_text(full))


_FIELDS = (
    "email",
    "first_name",
    "last_name",
    "name",
    "title",
    "country",
    "institution",
    "language",
    "time_zone",
)
_END = ("",)  # added after a record's cells: what a column the file lacks reads
_CACHED = 4096  # distinct (country, language, zone) cells remembered per import


@dataclass(frozen=True, slots=True)
class _Place:
    """What a row's country, language and zone cells give, the same for every row with the same cells."""

    country: str
    language: str
    language_explicit: bool
    zone: str
    zone_explicit: bool
    replaced: tuple[tuple[str, str, str], ...]  # (column, value, used) of each cell replaced


def _place(country_cell: str, language_cell: str, zone_cell: str, defaults: Defaults) -> _Place:
    country_text = clean_text(country_cell)
    country = country_code(country_text) or ""
    language, language_explicit, zone, zone_explicit = language_and_zone(
        language_cell, zone_cell, country, defaults
    )
    replaced = []  # cells with something the import could not use: reported, never silently
    if country_text and not country:
        replaced.append(("country", country_text, "(blank)"))
    if language_cell.strip() and not language_explicit:
        replaced.append(("language", language_cell.strip(), language))
    if zone_cell.strip() and not is_known_zone(zone_cell.strip()):
        replaced.append(("time zone", zone_cell.strip(), zone))
    return _Place(country, language, language_explicit, zone, zone_explicit, tuple(replaced))


def contact_parser(table: Table, defaults: Defaults) -> Callable[[Record], ContactRow | Rejected]:
    """The reading of ``table``'s records as contacts, blanks filled from their country and ``defaults``:
    ``parse(record) -> ContactRow | Rejected``. Built once per file: the cells are picked by position (a
    column the file lacks reads as a blank), and what a (country, language, zone) triple of cells gives is
    worked out once per distinct triple."""
    width = max(table.columns.values()) + 1
    pick = itemgetter(*(table.columns.get(name, -1) for name in _FIELDS))  # -1: the "" added after the cells
    pads = [("",) * (width + 1 - length) for length in range(width)]  # by the record's length

    places: dict[tuple[str, str, str], _Place] = {}
    name_length, title_length, institution_length = (
        column_length("name"),
        column_length("title"),
        column_length("institution"),
    )

    def parse(record: Record) -> ContactRow | Rejected:
        cells = record.cells
        raw_email, first, last, full, title_cell, country, institution, language, zone = pick(
            cells + pads[len(cells)] if len(cells) < width else cells + _END
        )
        try:
            address = normalise_address(raw_email)
        except InvalidAddressError as exc:
            return Rejected(record.line, str(exc), raw_email)
        name_title, name = _title_and_name(first, last, full)
        title = clean_text(title_cell) or name_title
        key = (country, language, zone)
        place = places.get(key)
        if place is None:
            if len(places) >= _CACHED:
                places.clear()
            place = places[key] = _place(country, language, zone, defaults)
        institution = clean_text(institution)
        line = record.line
        replaced: tuple[Replaced, ...] = ()
        if (
            place.replaced
            or len(name) > (name_length or len(name))
            or len(title) > (title_length or len(title))
            or len(institution) > (institution_length or len(institution))
        ):
            replaced, (name, title, institution) = _replaced(line, place, name, title, institution)
        return ContactRow(
            line,
            address,
            name,
            title,
            institution,
            place.country,
            place.language,
            place.language_explicit,
            place.zone,
            place.zone_explicit,
            replaced,
        )

    return parse


def _replaced(
    line: int, place: _Place, name: str, title: str, institution: str
) -> tuple[tuple[Replaced, ...], tuple[str, str, str]]:
    """The cells of a row the import replaces (its place's, then over-long texts cut to their column) and
    the (name, title, institution) kept."""
    replaced = [Replaced(line, column, shown, used) for column, shown, used in place.replaced]
    kept = []
    for column, text in (("name", name), ("title", title), ("institution", institution)):
        cut = fit_column(text, column)
        if cut != text:
            replaced.append(
                Replaced(
                    line,
                    column,
                    text[:_SHOWN] + "…",
                    f"the first {len(cut)} characters",
                    problem=f"is {len(text):,} characters long, more than the {len(cut)} kept",
                )
            )
        kept.append(cut)
    return tuple(replaced), (kept[0], kept[1], kept[2])


__all__ = [
    "CONTACT_COLUMNS",
    "ContactRow",
    "Replaced",
    "contact_parser",
    "row_address",
    "row_name",
]
