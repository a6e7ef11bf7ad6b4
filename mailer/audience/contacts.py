"""Contact import: organisers' spreadsheet exports -> contacts on a region's contact list.

Shapes
    import_contacts(factory, settings, path, region, now) -> ImportReport
    find_contacts(factory, ...) / contact_by_email(factory, email)   read-only queries for the CLI

The modules it is made of, each one concept:
    table.py         reading any export (encoding, delimiter, header, physical line numbers, rejects CSV)
    addresses.py     one address validated and normalised       cells.py       text, titles, language, zone
    contact_rows.py  a record read as a contact                 contact_store.py  storing and merging a chunk
    row_import.py    the pass over the rows shared with registration reports (duplicates, chunks, rejects)
    contact_queries.py  read-only queries

Errors: :class:`mailer.errors.ImportFileError` when a file cannot be read at all (undecodable, no header with
an email column, broken quoting); :class:`mailer.errors.NotFoundError` for an unknown region. A bad row never
raises: it is reported as :class:`Rejected` and written to a rejects CSV.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy.orm import Session as DbSession
from sqlalchemy.orm import sessionmaker

from mailer.audience.addresses import Address, InvalidAddressError, email_key, normalise_address
from mailer.audience.cells import Defaults, clean_text, fit_column, split_title
from mailer.audience.contact_queries import ContactView, contact_by_email, find_contacts
from mailer.audience.contact_rows import CONTACT_COLUMNS, Replaced, contact_parser
from mailer.audience.contact_store import ContactWriter
from mailer.audience.import_log import ImportJournal, discarded_if_nothing_stored, file_sha256, record_counts
from mailer.audience.row_import import (
    Duplicate,
    ProgressCallback,
    Rejected,
    default_rejects_path,
    import_rows,
)
from mailer.audience.table import Record, Table, decode, read_table, write_rejects
from mailer.config import Settings
from mailer.errors import NotFoundError
from mailer.store.models import ImportKind
from mailer.timeline.clock import require_aware


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
    import_id: int = 0  # the import's record (0 for a dry run)
    file_name: str = ""  # as the organiser named the file

    @property
    def outcome(self) -> str:
        """What the accepted rows did, in the one wording of the command line and the web's check page:
        ``"208 rows accepted: 0 new, 0 updated, 208 unchanged; 0 added to the list"`` (an accepted row is not
        necessarily a change: a file imported again is all unchanged)."""
        rows = self.accepted
        return (
            f"{rows} row{'' if rows == 1 else 's'} accepted: {self.new} new, {self.updated} updated, "
            f"{self.unchanged} unchanged; {self.memberships_added} added to the list"
        )

    @property
    def summary(self) -> str:
        """The counts in words, as recorded with the import: :attr:`outcome`, then the rows left out."""
        return (
            f"{self.outcome}; {len(self.rejected)} rejected, "
            f"{len(self.duplicates)} duplicates, {len(self.replaced)} cells replaced"
        )

    @property
    def imported(self) -> int:
        """Rows accepted: new, updated and unchanged contacts."""
        return self.new + self.updated + self.unchanged

    @property
    def accepted(self) -> int:
        """Rows accepted (:attr:`imported`), as every import's record counts them."""
        return self.imported


def import_contacts(
    factory: sessionmaker[DbSession],
    settings: Settings,
    path: Path,
    region: str,
    now: datetime,
    *,
    rejects_path: Path | None = None,
    progress: ProgressCallback | None = None,
    by: str = "",
    dry_run: bool = False,
    file_name: str = "",
) -> ImportReport:
    """Import one export into ``region``'s contact list, one transaction per chunk of rows; idempotent.

    Each accepted row becomes a contact (or updates the existing one with the same case-folded address:
    non-blank cells overwrite, blanks never erase, defaults never overwrite) and a member of the region's list
    (created, named from settings, if missing). The first row of an address wins; later ones are duplicates.
    Language: the row's if recognised, else the country's default, else the region's. Time zone: the row's if
    valid, else the country's, else the region's. Rejected rows go to ``rejects_path`` (default
    :func:`mailer.audience.row_import.default_rejects_path`) with their original cells plus ``line`` and
    ``reason``.

    ``now`` (aware) stamps created/updated/added times. ``progress`` gets (lines read, total lines) per chunk.
    Each import is recorded (:mod:`mailer.audience.import_log`: ``by`` whom, ``file_name`` as the organiser
    named it, the file's SHA-256, the counts, the contacts created and put on the list) so that it can be
    undone; a ``dry_run`` stores nothing and records nothing.
    Raises :class:`NotFoundError` for an unknown region, :class:`mailer.errors.ImportFileError` for an unreadable file,
    :class:`mailer.errors.NaiveDatetimeError` for a naive ``now``; when it raises midway, the chunks before stay stored.
    """
    now = require_aware(now, "import time")
    try:
        region_settings = settings.region(region)
    except KeyError as exc:
        raise NotFoundError(exc.args[0]) from None
    defaults = Defaults.of(settings, region_settings)
    table = read_table(Path(path), CONTACT_COLUMNS, name=file_name)
    name = file_name or table.path.name
    writer = ContactWriter(settings, region, name, now)
    if not dry_run:
        writer.journal = ImportJournal(ImportKind.CONTACTS, region, name, file_sha256(table.path), by, now)
    rejects = rejects_path or default_rejects_path(settings, table.path)

    with discarded_if_nothing_stored(factory, writer.journal):
        outcome = import_rows(
            factory,
            table,
            contact_parser(table, defaults),
            writer,
            rejects_path=rejects,
            progress=progress,
            dry_run=dry_run,
        )
    report = ImportReport(
        path=table.path,
        region=region,
        encoding=table.encoding,
        delimiter=table.delimiter,
        rows=outcome.rows,
        rejected=outcome.rejected,
        duplicates=outcome.duplicates,
        rejects_path=outcome.rejects_path,
        new=writer.new,
        updated=writer.updated,
        unchanged=writer.unchanged,
        memberships_added=writer.memberships,
        replaced=tuple(writer.replaced),
        import_id=writer.journal.import_id if writer.journal else 0,
        file_name=name,
    )
    record_counts(factory, writer.journal, report)
    return report


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
