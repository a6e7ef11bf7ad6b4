"""Contact import: organisers' spreadsheet exports -> contacts on a region's contact list.

Shapes
    read_table(path, aliases) -> Table        any CSV export: encoding, delimiter and header found, physical lines
    normalise_address(cell) -> Address        one address, validated and normalised; InvalidAddressError if not
    import_contacts(factory, settings, path, region, now) -> ImportReport
    find_contacts(factory, ...) / contact_by_email(factory, email)   read-only queries for the CLI

Files are read as they come: UTF-8 with or without BOM, else Windows-1252; delimiter sniffed among ``, ; TAB |``;
header names in English, snake_case, Spanish or French; quoted cells spanning lines; blank lines. Line numbers
are PHYSICAL lines of the file (header = line 1 when it is the first line), counting the lines inside quoted
multi-line cells, so an organiser can find the row in a text editor.

Errors: :class:`mailer.errors.ImportFileError` when a file cannot be read at all (undecodable, no header with
an email column, broken quoting); :class:`mailer.errors.NotFoundError` for an unknown region. A bad row never
raises: it is reported as :class:`Rejected` and written to a rejects CSV.
"""

from __future__ import annotations

import codecs
import csv
import re
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import parseaddr
from functools import lru_cache
from itertools import islice
from pathlib import Path
from typing import Any

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import bindparam, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session as DbSession
from sqlalchemy.orm import sessionmaker

from mailer.audience.locales import country_code, country_language, country_zone, fold, language_tag
from mailer.config import Settings
from mailer.errors import ImportFileError, NotFoundError
from mailer.store.engine import transaction
from mailer.store.models import Contact, ContactList, ContactStatus, ListMembership, Registration
from mailer.timeline.clock import require_aware
from mailer.zones import canonical_zone_name, is_known_zone

#: Called now and then during an import with (physical lines read so far, total physical lines).
ProgressCallback = Callable[[int, int], None]

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

_DELIMITERS = ",;\t|"
_HEADER_SEARCH_RECORDS = 100
_CHUNK = 1000
_ADDRESS_SEPARATORS = re.compile(r"[;,\s]+")
_BREAKS = re.compile(r"[\s\x00-\x1f\x7f-\x9f]+")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


# --- reading exports -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Record:
    """One CSV record: ``line`` is the physical line it starts on (1-based), ``cells`` as read."""

    line: int
    cells: tuple[str, ...]


@dataclass
class Table:
    """An export opened by :func:`read_table`: header found, ``records`` (after the header) streamed once.

    ``columns`` maps field names to cell positions; ``preamble`` holds the records before the header
    (a webinar report's title lines); ``total_lines`` counts physical lines, for progress.
    """

    path: Path
    encoding: str
    delimiter: str
    header: tuple[str, ...]
    header_line: int
    columns: dict[str, int]
    preamble: tuple[Record, ...]
    records: Iterator[Record]
    total_lines: int
    lines_read: Callable[[], int] = field(repr=False)  # physical lines consumed so far

    def value(self, record: Record, name: str) -> str:
        """The cell of field ``name`` in ``record``, or "" when the file has no such column or the row is short."""
        index = self.columns.get(name)
        if index is None or index >= len(record.cells):
            return ""
        return record.cells[index]


def decode(raw: bytes) -> tuple[str, str]:
    """(text, encoding name): UTF-8 with BOM, UTF-16 with BOM, strict UTF-8, else strict Windows-1252.

    Raises :class:`ImportFileError` when none of them decodes the bytes.
    """
    if raw.startswith(codecs.BOM_UTF8):
        candidates = ["utf-8-sig"]
    elif raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        candidates = ["utf-16"]
    else:
        candidates = ["utf-8", "cp1252"]
    for encoding in candidates:
        try:
            return raw.decode(encoding), encoding
        except UnicodeDecodeError:
            continue
    raise ImportFileError(f"cannot decode the file as {' or '.join(candidates)}: save it as UTF-8 and retry")


def _physical_lines(text: str) -> Iterator[str]:
    """The text's lines split on "\\n" only, ends kept (a CRLF file gives lines ending "\\r\\n")."""
    start = 0
    length = len(text)
    while start < length:
        end = text.find("\n", start)
        if end < 0:
            yield text[start:]
            return
        yield text[start : end + 1]
        start = end + 1


def _records(text: str, delimiter: str) -> tuple[Iterator[Record], Callable[[], int]]:
    """Non-blank records with their first physical line, and a function telling how many lines were read."""
    reader = csv.reader(
        _physical_lines(text), delimiter=delimiter, strict=True
    )  # an unclosed quote is an error

    def generate() -> Iterator[Record]:
        previous = 0
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                hint = ": a quote opened on this line is never closed" if "end of data" in str(exc) else ""
                raise ImportFileError(
                    f"line {previous + 1}: unreadable CSV ({exc}){hint}; fix the quoting in the file "
                    "and import it again (nothing was imported)"
                ) from None
            line, previous = previous + 1, reader.line_num
            if any(cell.strip() for cell in cells):
                yield Record(line, tuple(cells))

    return generate(), lambda: reader.line_num


def map_columns(header: Sequence[str], aliases: dict[str, tuple[str, ...]]) -> dict[str, int]:
    """Field name -> position for each header cell matching an alias (first matching column wins)."""
    lookup = {alias: name for name, names in aliases.items() for alias in names}
    columns: dict[str, int] = {}
    for index, cell in enumerate(header):
        name = lookup.get(fold(cell, accents=False))
        if name and name not in columns:
            columns[name] = index
    return columns


def _sniff(text: str) -> list[str]:
    """Delimiters to try, the sniffed one first."""
    sample = text[:65536]
    order = list(_DELIMITERS)
    try:
        sniffed = (
            csv.Sniffer().sniff(sample[: sample.rfind("\n") + 1] or sample, delimiters=_DELIMITERS).delimiter
        )
        order.remove(sniffed)
        order.insert(0, sniffed)
    except csv.Error:
        counts = {d: sample.count(d) for d in _DELIMITERS}
        order.sort(key=lambda d: -counts[d])
    return order


def read_table(path: Path, aliases: dict[str, tuple[str, ...]], *, required: str = "email") -> Table:
    """Open an export and find its header: the first of the first 100 records holding a ``required`` column.

    Raises :class:`ImportFileError` if the file is missing, undecodable or has no such header.
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ImportFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    text, encoding = decode(raw)
    del raw
    total_lines = text.count("\n") + (0 if text.endswith("\n") else 1)
    first_cells: tuple[str, ...] = ()
    for delimiter in _sniff(text):
        records, lines_read = _records(text, delimiter)
        preamble: list[Record] = []
        try:
            for record in islice(records, _HEADER_SEARCH_RECORDS):
                columns = map_columns(record.cells, aliases)
                if required in columns:
                    return Table(
                        path,
                        encoding,
                        delimiter,
                        record.cells,
                        record.line,
                        columns,
                        tuple(preamble),
                        records,
                        total_lines,
                        lines_read,
                    )
                preamble.append(record)
        except ImportFileError:
            continue  # unreadable with this delimiter: try the next one
        if preamble and not first_cells:
            first_cells = preamble[0].cells
    shown = (
        f"first row: {', '.join(repr(c) for c in first_cells[:12])}"
        if first_cells
        else "the file has no rows"
    )
    accepted = ", ".join(repr(alias) for alias in aliases[required][:8])
    raise ImportFileError(
        f"{path.name}: no header row with an {required} column found ({shown}); name that "
        f"column one of {accepted} (any case, accents ignored)"
    )


def write_rejects(path: Path, header: Sequence[str], rows: Sequence[tuple[Sequence[str], int, str]]) -> None:
    """Write rejected rows as UTF-8 CSV (with BOM, for spreadsheets): original columns, then ``line``, ``reason``.

    Cells that a spreadsheet would run as a formula (starting with = + - @) are prefixed with ``'``.
    Creates the folder. Raises OSError if the file cannot be written.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([*header, "line", "reason"])
        for cells, line, reason in rows:
            padded = [*cells, *[""] * (len(header) - len(cells))]
            writer.writerow([_neutralise(cell) for cell in padded] + [str(line), reason])


def _neutralise(cell: str) -> str:
    return "'" + cell if cell.startswith(_FORMULA_START) else cell


# --- values ----------------------------------------------------------------------------------------------------


class InvalidAddressError(ValueError):
    """A cell that is not exactly one valid email address; the message says why, for the organiser."""


@dataclass(frozen=True, slots=True)
class Address:
    """A validated address: ``email`` normalised (IDN domain in Unicode), ``key`` case-folded for uniqueness."""

    email: str
    key: str
    needs_smtputf8: bool  # non-ASCII local part: only an SMTPUTF8 server can take it


def clean_text(text: str) -> str:
    """``text`` on one line: every run of whitespace or control characters (line breaks too) -> one space."""
    if not text.isascii():
        text = unicodedata.normalize("NFC", text)
    return _BREAKS.sub(" ", text).strip()


def email_key(address: str) -> str:
    """The uniqueness key of a normalised address: case-folded (``Contact.email_key``, suppressions)."""
    return address.strip().casefold()


def normalise_address(cell: str) -> Address:
    """Validate one address as written in a cell ("  A@B.org ", "Name <a@b.org>", "josé@b.org", "a@bé.org").

    Raises :class:`InvalidAddressError` for a blank cell, two addresses in one cell, or anything
    email-validator refuses (no @, empty local part, consecutive dots, trailing dot...).
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
    return Address(email, email_key(email), smtputf8)


_VALIDATION: dict[str, Any] = {"check_deliverability": False, "allow_smtputf8": True}
_SHORT_DOMAIN = "a.io"  # a valid domain that costs little to check


@lru_cache(maxsize=65536)
def _valid_domain(domain: str) -> str:
    """The normalised (Unicode) form of a valid domain, checked once per distinct domain."""
    return str(validate_email(f"a@{domain}", **_VALIDATION).domain)


def _validate(text: str) -> tuple[str, bool]:
    """(normalised address, needs SMTPUTF8) by email-validator; raises EmailNotValidError.

    A list holds many addresses at few domains, and the domain check (IDNA/UTS-46) is the costly half:
    the local part is checked against a short domain and each distinct domain once. Anything unusual
    (no local part, quotes, long) goes through one plain call, so the outcome and message are the library's.
    """
    local, at, domain = text.rpartition("@")
    if not at or not local or not domain or '"' in text or len(text) > 200:
        result = validate_email(text, **_VALIDATION)
        return str(result.normalized), bool(result.smtputf8)
    local_result = validate_email(f"{local}@{_SHORT_DOMAIN}", **_VALIDATION)
    return f"{local_result.local_part}@{_valid_domain(domain)}", bool(local_result.smtputf8)


def split_title(full_name: str) -> tuple[str, str]:
    """("Mr. Russell Brown") -> ("Mr.", "Russell Brown"); leading honorifics only, at least one name word kept."""
    words = full_name.split()
    count = 0
    while count < len(words) - 1 and fold(words[count], accents=False).replace(" ", "") in _TITLES:
        count += 1
    return " ".join(words[:count]), " ".join(words[count:])


_LENGTHS: dict[str, int | None] = {c.name: getattr(c.type, "length", None) for c in Contact.__table__.columns}


def fit_column(text: str, column: str) -> str:
    """``text`` cut to the length of the contacts column (a very long name must not break PostgreSQL)."""
    length = _LENGTHS[column]
    return text[:length] if length else text


# --- import ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rejected:
    """A row not imported: its physical ``line``, the ``reason`` and the address cell as written."""

    line: int
    reason: str
    raw_email: str


@dataclass(frozen=True, slots=True)
class Replaced:
    """A cell the import could not use and replaced (the row itself was kept): what was in it, what is used."""

    line: int
    column: str
    value: str
    used: str


@dataclass(frozen=True, slots=True)
class Duplicate:
    """A row whose address (case-insensitively) already came earlier in the file: that one (``kept_line``) wins."""

    line: int
    email: str
    kept_line: int


@dataclass(frozen=True)
class ImportReport:
    """What an import did. Counts are rows of the file; ``new + updated + unchanged`` rows were accepted.

    ``updated``: existing contacts whose fields changed; ``memberships_added``: contacts newly put on the
    region's list (a contact already on another region's list counts here, not in ``new``).
    ``rejects_path`` is where rejected rows were written (None when there were none).
    """

    path: Path
    region: str
    encoding: str
    delimiter: str
    rows: int
    new: int
    updated: int
    unchanged: int
    memberships_added: int
    rejected: tuple[Rejected, ...]
    duplicates: tuple[Duplicate, ...]
    rejects_path: Path | None
    replaced: tuple[Replaced, ...] = ()

    @property
    def imported(self) -> int:
        """Rows accepted: new, updated and unchanged contacts."""
        return self.new + self.updated + self.unchanged


@dataclass(frozen=True)
class _Defaults:
    """Where blanks are filled from: the region's language and zone, configured zones, offered languages."""

    language: str
    zone: str
    offered: tuple[str, ...]
    country_zones: dict[str, str]


@dataclass(slots=True)
class _Row:
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


def _language_and_zone(
    language_cell: str, zone_cell: str, country: str, defaults: _Defaults
) -> tuple[str, bool, str, bool]:
    """(language, from the file?, zone, from the file or the file's country?) for one row."""
    tag = language_tag(language_cell)
    language = tag or (country and country_language(country, defaults.offered)) or defaults.language
    zone_cell = zone_cell.strip()
    if zone_cell and is_known_zone(zone_cell):
        return language, tag is not None, canonical_zone_name(zone_cell), True
    zone = country_zone(country, defaults.country_zones) if country else None
    return language, tag is not None, zone or defaults.zone, zone is not None


def _parse_row(table: Table, record: Record, defaults: _Defaults) -> _Row | Rejected:
    raw_email = table.value(record, "email")
    try:
        address = normalise_address(raw_email)
    except InvalidAddressError as exc:
        return Rejected(record.line, str(exc), raw_email)
    title = clean_text(table.value(record, "title"))
    name = clean_text(f"{table.value(record, 'first_name')} {table.value(record, 'last_name')}")
    if not name:
        name_title, name = split_title(clean_text(table.value(record, "name")))
        title = title or name_title
    country_cell = clean_text(table.value(record, "country"))
    country = country_code(country_cell) or ""
    language_cell, zone_cell = table.value(record, "language"), table.value(record, "time_zone")
    language, language_explicit, zone, zone_explicit = _language_and_zone(
        language_cell, zone_cell, country, defaults
    )
    replaced = []  # cells with something the import could not use: reported, never silently
    if country_cell and not country:
        replaced.append(Replaced(record.line, "country", country_cell, "(blank)"))
    if language_cell.strip() and not language_explicit:
        replaced.append(Replaced(record.line, "language", language_cell.strip(), language))
    if zone_cell.strip() and not is_known_zone(zone_cell.strip()):
        replaced.append(Replaced(record.line, "time zone", zone_cell.strip(), zone))
    return _Row(
        line=record.line,
        address=address,
        name=fit_column(name, "name"),
        title=fit_column(title, "title"),
        institution=fit_column(clean_text(table.value(record, "institution")), "institution"),
        country=country,
        language=language,
        language_explicit=language_explicit,
        time_zone=zone,
        zone_explicit=zone_explicit,
        replaced=tuple(replaced),
    )


def insert_ignoring_conflicts(
    db: DbSession, table: Any, rows: list[dict[str, Any]], keys: Sequence[str]
) -> None:
    """Bulk INSERT ``rows`` (one executemany), skipping those that clash on the unique ``keys``.

    SQLite and PostgreSQL (``ON CONFLICT DO NOTHING``); raises ValueError on any other store. No RETURNING:
    SQLAlchemy would then build multi-row statements, which costs more here than the driver's executemany.
    """
    if not rows:
        return
    dialect = db.get_bind().dialect.name
    if dialect == "postgresql":
        stmt: Any = postgresql.insert(table).on_conflict_do_nothing(index_elements=list(keys))
    elif dialect == "sqlite":
        stmt = sqlite.insert(table).on_conflict_do_nothing(index_elements=list(keys))
    else:
        raise ValueError(f"bulk import supports SQLite and PostgreSQL, not {dialect}")
    db.execute(stmt, rows)


def literal_in(column: Any, values: Sequence[Any]) -> Any:
    """``column IN (...)`` with the values written into the SQL text (quoted by the dialect) at execution.

    Each chunk's statement text then differs, so psycopg never turns it into a prepared statement whose
    generic plan, made while the table was nearly empty, PostgreSQL would keep using: a sequential scan per
    lookup, quadratic over a big file. Constants also let PostgreSQL hash the list.
    """
    return column.in_(bindparam(None, list(values), expanding=True, literal_execute=True))


def ensure_list(db: DbSession, settings: Settings, region: str) -> int:
    """Id of the region's ContactList, creating it (named from settings) when missing."""
    name = settings.region(region).name
    insert_ignoring_conflicts(db, ContactList.__table__, [{"region": region, "name": name}], ["region"])
    return int(db.execute(select(ContactList.id).where(ContactList.region == region)).scalar_one())


_COMPARED = ("name", "title", "institution", "country", "language", "time_zone")


def _changes(existing: Any, row: _Row, *, home: bool = True) -> dict[str, Any]:
    """Fields of an existing contact that the row changes: non-blank values; language/zone only if explicit.

    A row from a list other than the contact's own (``home`` False: the contact is already on another
    region's list) only fills blanks, so a contact on several lists does not change country, language or
    zone with the order in which the regions' files are imported.
    """
    wanted: dict[str, Any] = {}
    for column in ("name", "title", "institution", "country"):
        value = getattr(row, column)
        if value and value != getattr(existing, column) and (home or not getattr(existing, column)):
            wanted[column] = value
    if not home:
        return wanted
    if row.language_explicit and row.language != existing.language:
        wanted["language"] = row.language
    if row.zone_explicit and row.time_zone != existing.time_zone:
        wanted["time_zone"] = row.time_zone
    return wanted


@dataclass
class _Counts:
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    memberships: int = 0


def _store_chunk(
    db: DbSession, chunk: list[_Row], list_id: int, source: str, now: datetime, counts: _Counts
) -> None:
    """Upsert one chunk of de-duplicated rows and put them on the list: at most three SELECTs, two
    executemany INSERTs and one bulk UPDATE. A contact another process inserts meanwhile counts as new."""
    keys = [row.address.key for row in chunk]
    columns = [getattr(Contact, name) for name in ("id", "email_key", *_COMPARED)]
    existing = {
        r.email_key: r for r in db.execute(select(*columns).where(literal_in(Contact.email_key, keys)))
    }
    fresh = [
        {
            "email": row.address.email,
            "email_key": row.address.key,
            "name": row.name,
            "title": row.title,
            "institution": row.institution,
            "country": row.country,
            "language": row.language,
            "time_zone": row.time_zone,
            "needs_smtputf8": row.address.needs_smtputf8,
            "status": ContactStatus.ACTIVE.value,
            "created_at": now,
            "updated_at": now,
        }
        for row in chunk
        if row.address.key not in existing
    ]
    insert_ignoring_conflicts(db, Contact.__table__, fresh, ["email_key"])
    other_lists = (
        set(
            db.scalars(
                select(ListMembership.contact_id).where(
                    literal_in(ListMembership.contact_id, [r.id for r in existing.values()]),
                    ListMembership.list_id != list_id,
                )
            )
        )
        if existing
        else set()
    )
    updates = []
    for row in chunk:
        if row.address.key in existing:
            contact = existing[row.address.key]
            changes = _changes(contact, row, home=contact.id not in other_lists)
            if changes:
                updates.append({"id": contact.id, **changes, "updated_at": now})
    if updates:
        db.execute(update(Contact), updates)
    counts.new += len(fresh)
    counts.updated += len(updates)
    counts.unchanged += len(chunk) - len(fresh) - len(updates)

    ids = {key: row.id for key, row in existing.items()}
    if fresh:
        found = db.execute(select(Contact.email_key, Contact.id).where(literal_in(Contact.email_key, keys)))
        ids = {key: contact_id for key, contact_id in found}
    on_list: set[int] = set()
    if existing:  # contacts created just now are on no list yet
        on_list = set(
            db.scalars(
                select(ListMembership.contact_id).where(
                    ListMembership.list_id == list_id,
                    literal_in(ListMembership.contact_id, [row.id for row in existing.values()]),
                )
            )
        )
    members = [
        {
            "contact_id": ids[row.address.key],
            "list_id": list_id,
            "source": f"{source}:{row.line}",
            "added_at": now,
        }
        for row in chunk
        if ids[row.address.key] not in on_list
    ]
    insert_ignoring_conflicts(db, ListMembership.__table__, members, ["contact_id", "list_id"])
    counts.memberships += len(members)


def default_rejects_path(settings: Settings, path: Path) -> Path:
    """``var/rejects/<file stem>-rejects.csv`` under the project root."""
    return settings.base_dir / "var" / "rejects" / f"{path.stem}-rejects.csv"


def import_contacts(
    factory: sessionmaker[DbSession],
    settings: Settings,
    path: Path,
    region: str,
    now: datetime,
    *,
    rejects_path: Path | None = None,
    progress: ProgressCallback | None = None,
) -> ImportReport:
    """Import one export into ``region``'s contact list, in ONE transaction; idempotent.

    Each accepted row becomes a contact (or updates the existing one with the same case-folded address:
    non-blank cells overwrite, blanks never erase, defaults never overwrite) and a member of the region's list
    (created, named from settings, if missing). The first row of an address wins; later ones are duplicates.
    Language: the row's if recognised, else the country's default, else the region's. Time zone: the row's if
    valid, else the country's, else the region's. Rejected rows go to ``rejects_path`` (default
    :func:`default_rejects_path`) with their original cells plus ``line`` and ``reason``.

    ``now`` (aware) stamps created/updated/added times. ``progress`` gets (lines read, total lines) per chunk.
    Raises :class:`NotFoundError` for an unknown region, :class:`ImportFileError` for an unreadable file,
    :class:`mailer.errors.NaiveDatetimeError` for a naive ``now``; nothing is stored when it raises.
    """
    now = require_aware(now, "import time")
    try:
        region_settings = settings.region(region)
    except KeyError as exc:
        raise NotFoundError(exc.args[0]) from None
    defaults = _Defaults(
        region_settings.default_language,
        region_settings.default_zone,
        settings.languages,
        settings.country_zones,
    )
    table = read_table(Path(path), CONTACT_COLUMNS)
    rows = 0
    rejected: list[Rejected] = []
    rejected_cells: list[tuple[Sequence[str], int, str]] = []
    duplicates: list[Duplicate] = []
    replaced: list[Replaced] = []
    first_line: dict[str, int] = {}
    counts = _Counts()
    with transaction(factory) as db:
        list_id = ensure_list(db, settings, region)
        chunk: list[_Row] = []
        for record in table.records:
            rows += 1
            parsed = _parse_row(table, record, defaults)
            if isinstance(parsed, Rejected):
                rejected.append(parsed)
                rejected_cells.append((record.cells, parsed.line, parsed.reason))
                continue
            kept = first_line.setdefault(parsed.address.key, parsed.line)
            if kept != parsed.line:
                duplicates.append(Duplicate(parsed.line, parsed.address.email, kept))
                continue
            replaced.extend(parsed.replaced)
            chunk.append(parsed)
            if len(chunk) >= _CHUNK:
                _store_chunk(db, chunk, list_id, table.path.name, now, counts)
                chunk = []
                if progress:
                    progress(table.lines_read(), table.total_lines)
        if chunk:
            _store_chunk(db, chunk, list_id, table.path.name, now, counts)
    if progress:
        progress(table.total_lines, table.total_lines)
    written = None
    if rejected_cells:
        written = rejects_path or default_rejects_path(settings, table.path)
        write_rejects(written, table.header, rejected_cells)
    return ImportReport(
        path=table.path,
        region=region,
        encoding=table.encoding,
        delimiter=table.delimiter,
        rows=rows,
        new=counts.new,
        updated=counts.updated,
        unchanged=counts.unchanged,
        memberships_added=counts.memberships,
        rejected=tuple(rejected),
        duplicates=tuple(duplicates),
        rejects_path=written,
        replaced=tuple(replaced),
    )


# --- queries ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ContactView:
    """A contact as shown to staff, with the regions of its lists and its (session, status) registrations."""

    email: str
    name: str
    title: str
    institution: str
    country: str
    language: str
    time_zone: str
    needs_smtputf8: bool
    status: str
    created_at: datetime
    updated_at: datetime
    regions: tuple[str, ...]
    registrations: tuple[tuple[str, str], ...] = ()


def _views(db: DbSession, contacts: Sequence[Contact], with_registrations: bool = False) -> list[ContactView]:
    ids = [c.id for c in contacts]
    regions: dict[int, list[str]] = {i: [] for i in ids}
    for contact_id, region in db.execute(
        select(ListMembership.contact_id, ContactList.region)
        .join(ContactList, ContactList.id == ListMembership.list_id)
        .where(ListMembership.contact_id.in_(ids))
        .order_by(ContactList.region)
    ):
        regions[contact_id].append(region)
    registrations: dict[int, list[tuple[str, str]]] = {i: [] for i in ids}
    if with_registrations:
        for contact_id, session_id, status in db.execute(
            select(Registration.contact_id, Registration.session_id, Registration.status)
            .where(Registration.contact_id.in_(ids))
            .order_by(Registration.session_id)
        ):
            registrations[contact_id].append((session_id, str(status)))
    return [
        ContactView(
            c.email,
            c.name,
            c.title,
            c.institution,
            c.country,
            c.language,
            c.time_zone,
            c.needs_smtputf8,
            str(c.status),
            c.created_at,
            c.updated_at,
            tuple(regions[c.id]),
            tuple(registrations[c.id]),
        )
        for c in contacts
    ]


def find_contacts(
    factory: sessionmaker[DbSession], *, region: str | None = None, search: str | None = None, limit: int = 50
) -> tuple[list[ContactView], int]:
    """(first ``limit`` contacts by address, total matching): on ``region``'s list, and/or whose address,
    name or institution contains ``search`` (case-insensitive). Read-only."""
    query = select(Contact)
    if region:
        query = (
            query.join(ListMembership, ListMembership.contact_id == Contact.id)
            .join(ContactList, ContactList.id == ListMembership.list_id)
            .where(ContactList.region == region)
        )
    if search:
        needle = search.strip().casefold()
        query = query.where(
            or_(
                *(
                    func.lower(column).contains(needle, autoescape=True)
                    for column in (Contact.email_key, Contact.name, Contact.institution)
                )
            )
        )
    with factory() as db:
        total = int(db.execute(select(func.count()).select_from(query.subquery())).scalar_one())
        contacts = list(db.scalars(query.order_by(Contact.email_key).limit(limit)))
        return _views(db, contacts), total


def contact_by_email(factory: sessionmaker[DbSession], email: str) -> ContactView:
    """The contact with this address (any case, ``Name <address>`` accepted), with lists and registrations.

    Raises :class:`NotFoundError` when there is none (or the text is not an address).
    """
    try:
        key = normalise_address(email).key
    except InvalidAddressError:
        key = email_key(email)
    with factory() as db:
        contact = db.scalars(select(Contact).where(Contact.email_key == key)).first()
        if contact is None:
            raise NotFoundError(f"no contact with address {email.strip()!r}")
        return _views(db, [contact], with_registrations=True)[0]


__all__ = [
    "CONTACT_COLUMNS",
    "Address",
    "ContactView",
    "Duplicate",
    "ImportReport",
    "InvalidAddressError",
    "Record",
    "Rejected",
    "Table",
    "clean_text",
    "contact_by_email",
    "decode",
    "email_key",
    "find_contacts",
    "fit_column",
    "import_contacts",
    "normalise_address",
    "read_table",
    "split_title",
    "write_rejects",
]
