"""Imports under way, by upload token, in the store (table ``import_runs``): shared by every web process, so
the progress page of a background import answers from any of them, and an upload is imported once however
many times (and wherever) its import is confirmed.

Times here are wall-clock UTC whatever clock the pages show: they tell whether the importing process is
alive, not when something happened in a campaign.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, delete, or_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session as DbSession
from sqlalchemy.orm import sessionmaker

from mailer.store.engine import transaction
from mailer.store.models import ImportRun
from mailer.timeline.clock import require_aware

STALE_AFTER = timedelta(minutes=5)  # no progress noted for this long: the importing process has stopped
FORGET_AFTER = timedelta(days=1)  # as long as an upload is kept


@dataclass(frozen=True)
class RunView:
    """A run as stored: ``done`` of ``total`` lines read (0 of 0 before the first note), the import's id
    once done, what stopped it (``error``, empty while running or done), ``updated_at`` aware UTC."""

    token: str
    name: str
    done: int
    total: int
    import_id: int | None
    error: str
    updated_at: datetime

    def stopped(self, now: datetime) -> str:
        """What stopped the run, by ``now`` (aware): its error, or, with no import and no progress noted for
        ``STALE_AFTER``, that its process ended; empty while it runs or once it is done."""
        if self.error or self.import_id is not None:
            return self.error
        if require_aware(now, "now") - self.updated_at >= STALE_AFTER:
            minutes = int(STALE_AFTER.total_seconds() // 60)
            return (
                f"no progress for {minutes} minutes: the process importing it has stopped. The rows stored "
                "so far are kept; upload the file again and import it to finish (rows already stored "
                "are left as they are)"
            )
        return ""


def claim_run(factory: sessionmaker[DbSession], token: str, name: str, by: str, now: datetime) -> bool:
    """Start the run of upload ``token`` (file ``name``, confirmed by ``by``) at ``now`` (aware, wall clock):
    True for exactly one caller; False while another caller's run is under way or once it is done. A run
    that was stopped (an error, or no progress for ``STALE_AFTER``) is started again. One statement
    (``INSERT ... ON CONFLICT DO UPDATE ... WHERE``), so two processes confirming together never both
    start; runs older than ``FORGET_AFTER`` are deleted on the way. Raises NaiveDatetimeError."""
    now = require_aware(now, "now")
    values = {
        "token": token,
        "file_name": name[:255],
        "started_by": by[:100],
        "started_at": now,
        "updated_at": now,
        "lines_done": 0,
        "lines_total": 0,
        "import_id": None,
        "error": "",
    }
    with transaction(factory) as db:
        db.execute(delete(ImportRun).where(ImportRun.started_at < now - FORGET_AFTER))
        insert = postgresql.insert if db.get_bind().dialect.name == "postgresql" else sqlite.insert
        statement = insert(ImportRun).values(values)
        statement = statement.on_conflict_do_update(
            index_elements=[ImportRun.token],
            set_={key: statement.excluded[key] for key in values if key != "token"},
            where=or_(
                ImportRun.error != "",
                and_(ImportRun.import_id.is_(None), ImportRun.updated_at <= now - STALE_AFTER),
            ),
        )
        return db.execute(statement.returning(ImportRun.token)).first() is not None


def note_progress(factory: sessionmaker[DbSession], token: str, done: int, total: int, now: datetime) -> None:
    """Record ``done`` of ``total`` lines read at ``now`` (aware, wall clock). Raises NaiveDatetimeError."""
    with transaction(factory) as db:
        db.execute(
            update(ImportRun)
            .where(ImportRun.token == token)
            .values(lines_done=done, lines_total=total, updated_at=require_aware(now, "now"))
        )


def finish_run(
    factory: sessionmaker[DbSession],
    token: str,
    now: datetime,
    *,
    import_id: int | None = None,
    error: str = "",
) -> None:
    """End the run: done with ``import_id``, or stopped by ``error`` (a stopped run may be claimed again).
    Raises ValueError unless exactly one of the two is given, NaiveDatetimeError for a naive ``now``."""
    now = require_aware(now, "now")
    if (import_id is None) == (not error):
        raise ValueError("finish_run needs an import id or an error, not both")
    with transaction(factory) as db:
        db.execute(
            update(ImportRun)
            .where(ImportRun.token == token)
            .values(import_id=import_id, error=error, updated_at=now)
        )


def load_run(factory: sessionmaker[DbSession], token: str) -> RunView | None:
    """The run of upload ``token``, or None when none was started (or it was forgotten)."""
    with transaction(factory) as db:
        row = db.get(ImportRun, token, populate_existing=True)
        if row is None:
            return None
        return RunView(
            row.token,
            row.file_name,
            row.lines_done,
            row.lines_total,
            row.import_id,
            row.error,
            row.updated_at,
        )
