"""Webinar-platform registration reports -> registrations for one session.

Shapes
    import_registrations(factory, settings, path, session_id, now) -> RegistrationReport
    report_zone(label) / parse_registration_time(text, zone)   see mailer.audience.report_times

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

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session as DbSession
from sqlalchemy.orm import sessionmaker

from mailer.audience.addresses import Address
from mailer.audience.bulk import insert_ignoring_conflicts, literal_in
from mailer.audience.cells import Defaults, clean_text, fit_column, language_and_zone
from mailer.audience.contact_rows import CONTACT_COLUMNS, ContactRow, row_address, row_name
from mailer.audience.contact_store import contact_ids, contact_values
from mailer.audience.import_log import ImportJournal, discarded_if_nothing_stored, file_sha256, record_counts
from mailer.audience.locales import country_code, fold
from mailer.audience.report_check import mismatch, report_heading
from mailer.audience.report_times import parse_registration_time, preamble_zone_label, report_zone
from mailer.audience.row_import import (
    Duplicate,
    KeysTakenFirst,
    ProgressCallback,
    Rejected,
    default_rejects_path,
    import_rows,
)
from mailer.audience.table import Record, Table, read_table
from mailer.config import Settings
from mailer.errors import (
    ImportFileError,
    InstantRangeError,
    NotFoundError,
    ReportMismatchError,
)
from mailer.store.models import Contact, ImportKind, Registration, RegistrationStatus
from mailer.timeline.clock import require_aware
from mailer.zones import UnknownZoneError, resolve_zone

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
    import_id: int = 0  # the import's record (0 for a dry run)
    mismatch: str = ""  # why the report does not look like the session, when imported with ``force``
    file_name: str = ""  # as the organiser named the file ("" = the path's name)

    @property
    def summary(self) -> str:
        """The counts in words, as recorded with the import."""
        return (
            f"{self.registered} registered, {self.denied} denied, {self.declined} declined; "
            f"{self.new_contacts} new contacts; {self.created} new, {self.updated} updated, "
            f"{self.unchanged} unchanged registrations; {len(self.rejected)} rejected, "
            f"{len(self.duplicates)} duplicates"
        )

    @property
    def accepted(self) -> int:
        """Rows accepted: registered, denied and declined."""
        return self.registered + self.denied + self.declined


@dataclass(slots=True)
class Registrant:
    """One person's registration for a session, from a report row or a platform's event."""

    line: int  # the report's physical line; 0 for a platform's event
    source: str  # where it came from: "file.csv:12", "zoom:<event id>"
    address: Address
    status: RegistrationStatus
    registered_at: datetime | None
    name: str
    institution: str
    country: str


def _parse(table: Table, record: Record, zone: tzinfo) -> Registrant | Rejected:
    status_cell = table.value(record, "approval")
    status = _STATUSES.get(fold(status_cell, accents=False))
    if status is None:
        return Rejected(
            record.line, f"Unknown approval status {status_cell.strip()!r}.", table.value(record, "email")
        )
    address = row_address(table, record)
    if isinstance(address, Rejected):
        return address
    try:
        registered_at = parse_registration_time(table.value(record, "registered_at"), zone)
    except InstantRangeError as exc:
        return Rejected(record.line, f"{str(exc)[:1].upper()}{str(exc)[1:]}.", table.value(record, "email"))
    return Registrant(
        line=record.line,
        source=f"{table.path.name}:{record.line}",
        address=address,
        status=status,
        registered_at=registered_at,
        name=row_name(table, record)[1],
        institution=clean_text(table.value(record, "institution")),
        country=country_code(clean_text(table.value(record, "country"))) or "",
    )


@dataclass
class _RegistrationWriter:
    """Stores one session's registrations, creating missing contacts (language and zone from their country,
    else ``defaults``), and counts rows by outcome and by what was stored."""

    defaults: Defaults
    session_id: str
    now: datetime
    outcomes: dict[RegistrationStatus, int] = field(
        default_factory=lambda: {status: 0 for status in RegistrationStatus}
    )
    new_contacts: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    journal: ImportJournal | None = None

    def begin(self, db: DbSession) -> None:
        """Open the journal, if any (registrants are not put on the region's list)."""
        if self.journal is not None:
            self.journal.open(db)

    def write(self, db: DbSession, chunk: Sequence[Registrant]) -> None:
        """Create missing contacts, then insert or update the chunk's registrations (bulk statements)."""
        for person in chunk:
            self.outcomes[person.status] += 1
        keys = [person.address.key for person in chunk]
        ids = contact_ids(db, keys)
        fresh = [contact_values(self._contact(p), self.now) for p in chunk if p.address.key not in ids]
        if fresh:
            insert_ignoring_conflicts(db, Contact.__table__, fresh, ["email_key"])
            self.new_contacts += len(fresh)
            ids = contact_ids(db, keys)
            if self.journal is not None:
                self.journal.contacts(db, [ids[value["email_key"]] for value in fresh])
        existing = {
            row.contact_id: row
            for row in db.execute(
                select(
                    Registration.id, Registration.contact_id, Registration.status, Registration.registered_at
                ).where(
                    Registration.session_id == self.session_id,
                    literal_in(Registration.contact_id, list(ids.values())),
                )
            )
        }
        inserts: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []
        previous: list[tuple[int, str, datetime | None]] = []
        for person in chunk:
            contact_id = ids[person.address.key]
            source = person.source[:400]
            old = existing.get(contact_id)
            if old is None:
                inserts.append(
                    {
                        "contact_id": contact_id,
                        "session_id": self.session_id,
                        "status": person.status.value,
                        "registered_at": person.registered_at,
                        "source": source,
                    }
                )
                continue
            changes: dict[str, Any] = {}
            if old.status != person.status.value:
                changes["status"] = person.status.value
            if person.registered_at is not None and old.registered_at != person.registered_at:
                changes["registered_at"] = person.registered_at
            if changes:
                updates.append({"id": old.id, **changes, "source": source})
                previous.append((contact_id, str(old.status), old.registered_at))
        insert_ignoring_conflicts(db, Registration.__table__, inserts, ["contact_id", "session_id"])
        if updates:
            db.execute(update(Registration), updates)
        if self.journal is not None:
            self.journal.registrations(db, self.session_id, [row["contact_id"] for row in inserts])
            self.journal.registration_changes(db, self.session_id, previous)
        self.created += len(inserts)
        self.updated += len(updates)
        self.unchanged += len(chunk) - len(inserts) - len(updates)

    def _contact(self, person: Registrant) -> ContactRow:
        """The contact a registrant becomes when not one yet: no title, language and zone by country."""
        language, _, zone, _ = language_and_zone("", "", person.country, self.defaults)
        return ContactRow(
            line=person.line,
            address=person.address,
            name=fit_column(person.name, "name"),
            title="",
            institution=fit_column(person.institution, "institution"),
            country=person.country,
            language=language,
            language_explicit=False,
            time_zone=zone,
            zone_explicit=False,
        )


@dataclass
class StoreCounts:
    """What :func:`store_registrants` did: contacts created, registrations created, updated or unchanged."""

    new_contacts: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0


def store_registrants(
    db: DbSession,
    chunk: Sequence[Registrant],
    settings: Settings,
    session_id: str,
    now: datetime,
    counts: StoreCounts | None = None,
) -> StoreCounts:
    """Store ``chunk`` for ``session_id`` as the file import does (one address at most once per chunk):
    missing contacts created (language and zone from their country, else the session region's defaults; not
    put on any list), registrations inserted or updated. Caller commits. Adds to ``counts`` (or a new one)
    and returns it. Raises KeyError for an unknown session, NaiveDatetimeError for a naive ``now``.
    """
    now = require_aware(now, "now")
    region = settings.region(settings.series.session(session_id).region)
    writer = _RegistrationWriter(Defaults.of(settings, region), session_id, now)
    writer.write(db, chunk)
    counts = counts if counts is not None else StoreCounts()
    counts.new_contacts += writer.new_contacts
    counts.created += writer.created
    counts.updated += writer.updated
    counts.unchanged += writer.unchanged
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
    by: str = "",
    force: bool = False,
    dry_run: bool = False,
    file_name: str = "",
) -> RegistrationReport:
    """Import a platform's registration report for ``session_id``, one transaction per chunk of rows; importing it again
    changes nothing. The first row of an address wins; later rows are reported as duplicates.

    The report's preamble (title, date) must fit the session (:mod:`mailer.audience.report_check`), else
    :class:`mailer.errors.ReportMismatchError` shows both (the interface adds how to confirm), unless ``force``. Each import is recorded
    (:mod:`mailer.audience.import_log`: ``by`` whom, ``file_name`` as the organiser named it, the file's
    SHA-256, the counts, what each row created or changed) so that it can be undone; a ``dry_run`` stores
    nothing and records nothing.

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
    region = settings.region(session.region)
    table = read_table(Path(path), REGISTRATION_COLUMNS, name=file_name)
    if "approval" not in table.columns:
        raise ImportFileError(
            f"{file_name or Path(path).name}: no Approval Status column in the header at line {table.header_line}"
            f" ({', '.join(table.header)}): this looks like a contact list, not a registration report;"
            " import it with `mailer contacts import`, or export the platform's registration report"
        )
    zone_name = report_zone(preamble_zone_label(table.preamble)) or session.zone_name
    try:
        zone = resolve_zone(zone_name)
    except UnknownZoneError:  # pragma: no cover - report_zone only returns resolvable names
        zone_name, zone = session.zone_name, session.zone
    region_names = {name: region.name for name, region in settings.regions.items()}
    problem = mismatch(report_heading(table.preamble), session, settings.series.sessions, region_names, zone)
    if problem and not force:
        raise ReportMismatchError(
            f"{file_name or Path(path).name} does not look like a report of session {session.id}: {problem}."
            " Nothing was imported: import it into the right session, or confirm that it belongs here"
        )
    name = file_name or table.path.name
    writer = _RegistrationWriter(Defaults.of(settings, region), session.id, now)
    if not dry_run:
        writer.journal = ImportJournal(
            ImportKind.REGISTRATIONS, session.id, name, file_sha256(table.path), by, now, forced=bool(problem)
        )
    rejects = rejects_path or default_rejects_path(settings, table.path)

    def parse(record: Record) -> Registrant | Rejected:
        return _parse(table, record, zone)

    with discarded_if_nothing_stored(factory, writer.journal):
        outcome = import_rows(
            factory,
            table,
            parse,
            KeysTakenFirst(writer),
            rejects_path=rejects,
            progress=progress,
            dry_run=dry_run,
        )
    report = RegistrationReport(
        path=table.path,
        session_id=session.id,
        zone_name=zone_name,
        rows=outcome.rows,
        registered=writer.outcomes[RegistrationStatus.REGISTERED],
        denied=writer.outcomes[RegistrationStatus.DENIED],
        declined=writer.outcomes[RegistrationStatus.DECLINED],
        new_contacts=writer.new_contacts,
        created=writer.created,
        updated=writer.updated,
        unchanged=writer.unchanged,
        rejected=outcome.rejected,
        duplicates=outcome.duplicates,
        rejects_path=outcome.rejects_path,
        import_id=writer.journal.import_id if writer.journal else 0,
        mismatch=problem,
        file_name=name,
    )
    record_counts(factory, writer.journal, report)
    return report


__all__ = [
    "REGISTRATION_COLUMNS",
    "Registrant",
    "RegistrationReport",
    "StoreCounts",
    "import_registrations",
    "parse_registration_time",
    "report_zone",
]
