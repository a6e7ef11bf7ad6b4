"""Webinar-platform registration reports -> registrations for one session.

Shapes
    import_registrations(factory, settings, path, session_id, now) -> RegistrationReport
    report_zone(label) -> IANA/offset zone name or None       "Buenos Aires, Georgetown" -> Buenos Aires' zone
    parse_registration_time(text, zone) -> aware UTC datetime or None

A report is a preamble of report lines (title, topic, webinar id, scheduled time, time zone), a blank line,
"Attendee Details", then a table (First Name, Last Name, Email, Country/Region Name, Organization,
Registration Time, Approval Status). The table's header is found by its column names, wherever it is.
Registration times are local wall-clock times in the zone the preamble names (else the session's zone).

Outcome per row: approved (or blank status) -> registered; denied/rejected -> denied (recorded, never
registered); declined/cancelled -> declined; a bad address or an unknown status -> rejected with its physical
line and reason, and written to a rejects CSV. People not yet contacts become contacts (language and zone from
their country, else the session region's defaults) but are NOT put on the region's list. Idempotent.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import available_timezones

from sqlalchemy import select, update
from sqlalchemy.orm import Session as DbSession
from sqlalchemy.orm import sessionmaker

from mailer.audience.contacts import (
    CONTACT_COLUMNS,
    Address,
    Duplicate,
    InvalidAddressError,
    ProgressCallback,
    Record,
    Rejected,
    Table,
    clean_text,
    default_rejects_path,
    fit_column,
    insert_ignoring_conflicts,
    literal_in,
    normalise_address,
    read_table,
    split_title,
    write_rejects,
)
from mailer.audience.locales import country_code, country_language, country_zone, fold
from mailer.config import Region, Settings
from mailer.errors import ImportFileError, NotFoundError
from mailer.store.engine import transaction
from mailer.store.models import Contact, ContactStatus, Registration, RegistrationStatus
from mailer.timeline.clock import require_aware
from mailer.zones import UnknownZoneError, canonical_zone_name, is_known_zone, resolve_zone

#: Header names recognised in a registration report (contact fields plus the platform's own columns).
REGISTRATION_COLUMNS: dict[str, tuple[str, ...]] = {
    **{
        name: CONTACT_COLUMNS[name]
        for name in ("email", "first_name", "last_name", "name", "country", "institution")
    },
    "registered_at": (
        "registration time",
        "registration date",
        "registered at",
        "registered on",
        "date registered",
        "fecha de registro",
        "hora de registro",
        "date d inscription",
        "heure d inscription",
    ),
    "approval": ("approval status", "approval", "status", "registration status", "estado", "statut"),
}

#: Approval statuses as platforms write them (folded) -> what they mean here.
_STATUSES: dict[str, RegistrationStatus] = {
    "": RegistrationStatus.REGISTERED,
    "approved": RegistrationStatus.REGISTERED,
    "registered": RegistrationStatus.REGISTERED,
    "aprobado": RegistrationStatus.REGISTERED,
    "approuve": RegistrationStatus.REGISTERED,
    "denied": RegistrationStatus.DENIED,
    "rejected": RegistrationStatus.DENIED,
    "rechazado": RegistrationStatus.DENIED,
    "refuse": RegistrationStatus.DENIED,
    "declined": RegistrationStatus.DECLINED,
    "cancelled": RegistrationStatus.DECLINED,
    "canceled": RegistrationStatus.DECLINED,
}

_ZONE_KEYS = frozenset({"time zone", "timezone", "zona horaria", "fuseau horaire"})
_OFFSET_IN_LABEL = re.compile(r"(?:GMT|UTC)\s*([+-])\s*(\d{1,2})(?::?(\d{2}))?", re.IGNORECASE)
_ZONE_AREAS = (
    "Africa",
    "America",
    "Antarctica",
    "Asia",
    "Atlantic",
    "Australia",
    "Europe",
    "Indian",
    "Pacific",
)
_TIME_FORMATS = (
    "%Y-%m-%d %I:%M:%S %p",
    "%Y-%m-%d %I:%M %p",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%d %H:%M",
    "%b %d, %Y %I:%M:%S %p",
    "%b %d, %Y %I:%M %p",
    "%m/%d/%Y %I:%M:%S %p",
    "%m/%d/%Y %I:%M %p",
    "%m/%d/%Y %H:%M:%S",
    "%m/%d/%Y %H:%M",
)
_CHUNK = 1000


@lru_cache(maxsize=1)
def _city_zones() -> dict[str, str]:
    """Folded city name -> IANA zone ("buenos aires" -> "America/Argentina/Buenos_Aires")."""
    cities: dict[str, str] = {}
    for name in sorted(available_timezones()):
        if name.startswith(_ZONE_AREAS):
            cities.setdefault(fold(name.rsplit("/", 1)[-1].replace("_", " "), accents=False), name)
    return cities


def report_zone(label: str) -> str | None:
    """The zone a report's "Time Zone" label means, as a storable name, or ``None`` when it means nothing.

    Accepts an IANA name or an offset ("GMT-3", "(GMT-03:00) Buenos Aires" -> "UTC-03:00"), else the first
    comma-separated part naming a zone's city ("Buenos Aires, Georgetown" -> "America/Argentina/Buenos_Aires").
    """
    text = label.strip()
    if not text:
        return None
    if is_known_zone(text):
        return canonical_zone_name(text)
    match = _OFFSET_IN_LABEL.search(text)
    if match:
        sign, hours, minutes = match.group(1), int(match.group(2)), int(match.group(3) or 0)
        name = f"UTC{sign}{hours:02d}:{minutes:02d}"
        return name if is_known_zone(name) else None
    for part in re.split(r"[,;/()]", text):
        zone = _city_zones().get(fold(part, accents=False))
        if zone:
            return zone
    return None


def parse_registration_time(text: str, zone: tzinfo) -> datetime | None:
    """A report's local registration time ("2021-06-20 03:14:15 PM") in ``zone`` -> aware UTC; ``None`` if blank
    or in no known format. ISO 8601 text with an offset keeps its own offset."""
    text = clean_text(text)
    if not text:
        return None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        parsed = None
        for layout in _TIME_FORMATS:
            try:
                parsed = datetime.strptime(text, layout)
                break
            except ValueError:
                continue
    if parsed is None:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zone)
    return require_aware(parsed, "registration time")


def _preamble_zone_label(preamble: Sequence[Record]) -> str:
    """The value under (or beside) a "Time Zone" cell in the report's preamble, or ""."""
    for index, record in enumerate(preamble):
        for column, cell in enumerate(record.cells):
            if fold(cell, accents=False) not in _ZONE_KEYS:
                continue
            below = preamble[index + 1].cells if index + 1 < len(preamble) else ()
            beside = record.cells[column + 1] if column + 1 < len(record.cells) else ""
            is_key_row = sum(1 for c in record.cells if c.strip()) >= 3
            if is_key_row and column < len(below) and below[column].strip():
                return below[column].strip()
            if beside.strip():
                return beside.strip()
            if column < len(below):
                return below[column].strip()
    return ""


@dataclass(frozen=True)
class RegistrationReport:
    """What a registration import did, per row of the report.

    ``registered``/``denied``/``declined``: accepted rows by outcome; ``new_contacts``: people who were not
    contacts yet; ``created``/``updated``/``unchanged``: registration rows stored for the session;
    ``zone_name``: the zone registration times were read in; ``rejects_path``: None when nothing was rejected.
    """

    path: Path
    session_id: str
    zone_name: str
    rows: int
    registered: int
    denied: int
    declined: int
    new_contacts: int
    created: int
    updated: int
    unchanged: int
    rejected: tuple[Rejected, ...]
    duplicates: tuple[Duplicate, ...]
    rejects_path: Path | None


@dataclass(slots=True)
class Registrant:
    """One person's answer for a session, from a report row or a pushed event.

    ``source`` is recorded on the registration ("report.csv:12", "zoom:<event id>"); ``country`` an ISO
    3166-1 alpha-2 code or ""; ``registered_at`` aware UTC or None (unknown).
    """

    source: str
    address: Address
    status: RegistrationStatus
    registered_at: datetime | None
    name: str
    institution: str
    country: str


@dataclass
class StoreCounts:
    """What :func:`store_registrants` did: contacts created, registrations created, updated or unchanged."""

    new_contacts: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0


def _parse(table: Table, record: Record, zone: tzinfo) -> Registrant | Rejected:
    raw_email = table.value(record, "email")
    status_cell = table.value(record, "approval")
    status = _STATUSES.get(fold(status_cell, accents=False))
    if status is None:
        return Rejected(record.line, f"Unknown approval status {status_cell.strip()!r}.", raw_email)
    try:
        address = normalise_address(raw_email)
    except InvalidAddressError as exc:
        return Rejected(record.line, str(exc), raw_email)
    name = clean_text(f"{table.value(record, 'first_name')} {table.value(record, 'last_name')}")
    if not name:
        name = split_title(clean_text(table.value(record, "name")))[1]
    return Registrant(
        source=f"{table.path.name}:{record.line}",
        address=address,
        status=status,
        registered_at=parse_registration_time(table.value(record, "registered_at"), zone),
        name=name,
        institution=clean_text(table.value(record, "institution")),
        country=country_code(clean_text(table.value(record, "country"))) or "",
    )


def _new_contact(person: Registrant, settings: Settings, region: Region, now: datetime) -> dict[str, Any]:
    country = person.country
    language = (country and country_language(country, settings.languages)) or region.default_language
    zone = (country and country_zone(country, settings.country_zones)) or region.default_zone
    return {
        "email": person.address.email,
        "email_key": person.address.key,
        "name": fit_column(person.name, "name"),
        "title": "",
        "institution": fit_column(person.institution, "institution"),
        "country": country,
        "language": language,
        "time_zone": zone,
        "needs_smtputf8": person.address.needs_smtputf8,
        "status": ContactStatus.ACTIVE.value,
        "created_at": now,
        "updated_at": now,
    }


def store_registrants(
    db: DbSession,
    chunk: Sequence[Registrant],
    settings: Settings,
    session_id: str,
    now: datetime,
    counts: StoreCounts | None = None,
) -> StoreCounts:
    """Create the contacts missing among ``chunk`` (language and zone from their country, else the session
    region's defaults; not put on any list), then insert or update their registrations for ``session_id``
    (bulk statements, one address at most once per chunk). Caller commits. Adds to ``counts`` (or a new one)
    and returns it. Raises KeyError for an unknown session.
    """
    counts = counts if counts is not None else StoreCounts()
    region = settings.region(settings.series.session(session_id).region)
    keys = [person.address.key for person in chunk]
    lookup = select(Contact.email_key, Contact.id).where(literal_in(Contact.email_key, keys))
    ids = {key: contact_id for key, contact_id in db.execute(lookup)}
    fresh = [_new_contact(p, settings, region, now) for p in chunk if p.address.key not in ids]
    if fresh:
        insert_ignoring_conflicts(db, Contact.__table__, fresh, ["email_key"])
        counts.new_contacts += len(fresh)
        ids = {key: contact_id for key, contact_id in db.execute(lookup)}
    existing = {
        row.contact_id: row
        for row in db.execute(
            select(
                Registration.id, Registration.contact_id, Registration.status, Registration.registered_at
            ).where(
                Registration.session_id == session_id, literal_in(Registration.contact_id, list(ids.values()))
            )
        )
    }
    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    for person in chunk:
        contact_id = ids[person.address.key]
        old = existing.get(contact_id)
        if old is None:
            inserts.append(
                {
                    "contact_id": contact_id,
                    "session_id": session_id,
                    "status": person.status.value,
                    "registered_at": person.registered_at,
                    "source": person.source[:400],
                }
            )
            continue
        changes: dict[str, Any] = {}
        if old.status != person.status.value:
            changes["status"] = person.status.value
        if person.registered_at is not None and old.registered_at != person.registered_at:
            changes["registered_at"] = person.registered_at
        if changes:
            updates.append({"id": old.id, **changes, "source": person.source[:400]})
    insert_ignoring_conflicts(db, Registration.__table__, inserts, ["contact_id", "session_id"])
    if updates:
        db.execute(update(Registration), updates)
    counts.created += len(inserts)
    counts.updated += len(updates)
    counts.unchanged += len(chunk) - len(inserts) - len(updates)
    return counts


def import_registrations(
    factory: sessionmaker[DbSession],
    settings: Settings,
    path: Path,
    session_id: str,
    now: datetime,
    *,
    rejects_path: Path | None = None,
    progress: ProgressCallback | None = None,
) -> RegistrationReport:
    """Import a platform's registration report for ``session_id`` in ONE transaction; importing it again
    changes nothing. The first row of an address wins; later rows are reported as duplicates.

    ``now`` (aware) stamps new contacts. Rejected rows go to ``rejects_path`` (default
    ``var/rejects/<file stem>-rejects.csv`` under the project root). ``progress`` gets (lines read, total lines).
    Raises :class:`NotFoundError` for an unknown session, :class:`mailer.errors.ImportFileError` for an
    unreadable file or one without an Email column, :class:`mailer.errors.NaiveDatetimeError` for a naive ``now``.
    """
    now = require_aware(now, "import time")
    try:
        session = settings.series.session(session_id)
    except KeyError as exc:
        raise NotFoundError(exc.args[0]) from None
    table = read_table(Path(path), REGISTRATION_COLUMNS)
    if "approval" not in table.columns:
        raise ImportFileError(
            f"{path}: no Approval Status column in the header at line {table.header_line}"
            f" ({', '.join(table.header)}): this looks like a contact list, not a registration report;"
            " import it with `mailer contacts import`, or export the platform's registration report"
        )
    zone_name = report_zone(_preamble_zone_label(table.preamble)) or session.zone_name
    try:
        zone = resolve_zone(zone_name)
    except UnknownZoneError:  # pragma: no cover - report_zone only returns resolvable names
        zone_name, zone = session.zone_name, session.zone
    rows = 0
    outcomes = {status: 0 for status in RegistrationStatus}
    rejected: list[Rejected] = []
    rejected_cells: list[tuple[Sequence[str], int, str]] = []
    duplicates: list[Duplicate] = []
    first_line: dict[str, int] = {}
    counts = StoreCounts()
    with transaction(factory) as db:
        chunk: list[Registrant] = []
        for record in table.records:
            rows += 1
            parsed = _parse(table, record, zone)
            if isinstance(parsed, Rejected):
                rejected.append(parsed)
                rejected_cells.append((record.cells, parsed.line, parsed.reason))
                continue
            kept = first_line.setdefault(parsed.address.key, record.line)
            if kept != record.line:
                duplicates.append(Duplicate(record.line, parsed.address.email, kept))
                continue
            outcomes[parsed.status] += 1
            chunk.append(parsed)
            if len(chunk) >= _CHUNK:
                store_registrants(db, chunk, settings, session.id, now, counts)
                chunk = []
                if progress:
                    progress(table.lines_read(), table.total_lines)
        if chunk:
            store_registrants(db, chunk, settings, session.id, now, counts)
    if progress:
        progress(table.total_lines, table.total_lines)
    written = None
    if rejected_cells:
        written = rejects_path or default_rejects_path(settings, table.path)
        write_rejects(written, table.header, rejected_cells)
    return RegistrationReport(
        path=table.path,
        session_id=session.id,
        zone_name=zone_name,
        rows=rows,
        registered=outcomes[RegistrationStatus.REGISTERED],
        denied=outcomes[RegistrationStatus.DENIED],
        declined=outcomes[RegistrationStatus.DECLINED],
        new_contacts=counts.new_contacts,
        created=counts.created,
        updated=counts.updated,
        unchanged=counts.unchanged,
        rejected=tuple(rejected),
        duplicates=tuple(duplicates),
        rejects_path=written,
    )


__all__ = [
    "REGISTRATION_COLUMNS",
    "Registrant",
    "RegistrationReport",
    "StoreCounts",
    "import_registrations",
    "parse_registration_time",
    "report_zone",
    "store_registrants",
]
