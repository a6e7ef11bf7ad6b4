"""``mailer bounces import``: reports read from an mbox file or a Maildir folder, each handled on its own.

Each message is handled in a savepoint (mailer.delivery.handling): one whose handling raises is rolled back
alone, recorded as ``unparsed`` with its error and counted, and the others are applied. A database error
(SQLAlchemyError) is the store's, not the report's: it propagates and the caller's transaction rolls back, so
nothing is recorded and the reports are read again next time. The file itself is never changed. Importing the
same file twice changes nothing.
"""

from __future__ import annotations

import logging
import mailbox
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session as DbSession

from mailer.delivery.handling import Handled, Policy, handle_report, record_failure
from mailer.errors import ImportFileError
from mailer.store.models import ReportKind
from mailer.timeline.clock import require_aware

log = logging.getLogger(__name__)


@dataclass
class ReportTally:
    """What handling a batch of reports did (a file import or one mailbox poll)."""

    read: int = 0  # messages read
    kinds: Counter[str] = field(default_factory=Counter)  # ReportKind value -> count (duplicates excluded)
    duplicates: int = 0  # handled before: nothing done
    suppressed: list[tuple[str, str]] = field(default_factory=list)  # (address key, reason) newly suppressed
    already: int = 0  # reports about a contact already suppressed
    messages_bounced: int = 0  # our sent messages now marked bounced
    unparsed: list[str] = field(default_factory=list)  # "<where>: <error>" for each report kept unapplied

    def add(self, handled: Handled, where: str) -> None:
        """Count one handled report read from ``where``."""
        if handled.duplicate:
            self.duplicates += 1
            return
        self.kinds[handled.kind.value] += 1
        if handled.suppressed:
            self.suppressed.append((handled.suppressed, handled.reason))
        self.already += handled.already
        self.messages_bounced += handled.message_bounced
        if handled.kind is ReportKind.UNPARSED:
            self.unparsed.append(f"{where}: {handled.error}")

    @property
    def recognised(self) -> int:
        """Reports that were bounces, delays or complaints."""
        kinds = (ReportKind.HARD, ReportKind.SOFT, ReportKind.DELAYED, ReportKind.COMPLAINT)
        return sum(self.kinds[kind.value] for kind in kinds)


def read_mailbox(path: Path, unreadable: list[str] | None = None) -> Iterator[tuple[str, bytes]]:
    """(key, raw bytes) of every message of a Maildir (a folder with cur/ or new/) or an mbox file.

    A Maildir entry that cannot be read (a folder, a dangling link, no permission) is skipped, logged and
    named in ``unreadable`` (``"<key>: cannot read: <error>"``) when given. Raises ImportFileError when
    ``path`` is neither: a folder without cur/ and new/, a file that does not start with an mbox ``From``
    line (``README.md: not an mbox``), or nothing at all.
    """
    if path.is_dir():
        if not (path / "cur").is_dir() and not (path / "new").is_dir():
            raise ImportFileError(f"{path}: a folder but no maildir (no cur/ or new/ inside)")
        box: mailbox.Mailbox = mailbox.Maildir(path, factory=None, create=False)
    elif path.is_file():
        with path.open("rb") as handle:
            start = handle.read(5)
        if start and start != b"From ":
            raise ImportFileError(
                f"{path}: not an mbox (an mbox starts with a 'From ' line) nor a Maildir folder"
            )
        box = mailbox.mbox(path, create=False)
    else:
        raise ImportFileError(f"{path}: no such file or folder")
    for key in box.keys():  # noqa: SIM118 - iterating a Mailbox gives messages, not keys
        try:
            raw = box.get_bytes(key)
        except OSError as exc:
            log.warning("bounce report %s in %s cannot be read: %s", key, path, exc)
            if unreadable is not None:
                unreadable.append(f"{key}: cannot read: {exc.strerror or exc}")
            continue
        yield str(key), raw


def handle_batch(
    db: DbSession,
    reports: Iterator[tuple[str, bytes]],
    now: datetime,
    *,
    policy: Policy,
    source: str,
    tally: ReportTally | None = None,
) -> ReportTally:
    """Handle each (where, raw bytes) in a savepoint of its own (caller commits); see the module docstring.

    Counts go into ``tally`` when given (a poll adds message after message), else into a new one.
    """
    now = require_aware(now, "now")
    tally = tally if tally is not None else ReportTally()
    for where, raw in reports:
        tally.read += 1
        try:
            with db.begin_nested():
                handled = handle_report(db, raw, now, policy=policy, source=source)
        except SQLAlchemyError:
            raise  # the store, not the report: nothing is recorded, the report stays where it is for next time
        except Exception as exc:
            log.exception("bounce report %s in %s could not be applied", where, source)
            error = f"{type(exc).__name__}: {exc}"
            with db.begin_nested():
                record_failure(db, raw, now, source=source, error=error)
            handled = Handled(ReportKind.UNPARSED, "not applied", error=error)
        tally.add(handled, where)
    return tally


def import_reports(db: DbSession, path: Path, now: datetime, *, policy: Policy) -> ReportTally:
    """Handle every message of the mbox or Maildir at ``path`` (caller commits); one that cannot be read is
    counted as read and unparsed, and the others are handled.

    Raises ImportFileError when ``path`` is no mailbox (see :func:`read_mailbox`), before anything is read,
    and NaiveDatetimeError for a naive ``now``.
    """
    now = require_aware(now, "now")
    unreadable: list[str] = []
    reports = read_mailbox(path, unreadable)
    first = next(reports, None)
    tally = ReportTally()
    if first is not None:

        def everything() -> Iterator[tuple[str, bytes]]:
            yield first
            yield from reports

        handle_batch(db, everything(), now, policy=policy, source=str(path), tally=tally)
    tally.read += len(unreadable)
    tally.unparsed.extend(unreadable)
    return tally
