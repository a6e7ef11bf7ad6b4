"""The delivery log: one row per message with its last event, filtered and paged (dashboard, CSV, ``mailer log``)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, false, func, or_, select
from sqlalchemy.orm import Session as DbSession

from mailer.config import Series
from mailer.store.models import (
    Contact,
    DeliveryEvent,
    Message,
)

PAGE_SIZE = 50
MAX_ROW_ID = 2**31 - 1  # an SQL integer primary key


@dataclass(frozen=True)
class LogFilter:
    """The delivery log's filters, as given in the query string ("" = any)."""

    session: str = ""
    step: str = ""
    status: str = ""
    language: str = ""
    region: str = ""
    address: str = ""
    q: str = ""  # free text: address, name, institution, SMTP reply or Message-ID
    wave: str = ""
    sort: str = ""  # a key of LOG_SORTS, "-" first for descending; "" = newest change first

    def order(self) -> tuple[str, bool]:
        """The sort key (one of :data:`LOG_SORTS`) and whether it is descending; an unknown key gives the
        default, newest change first."""
        key = self.sort.removeprefix("-")
        if key not in LOG_SORTS:
            return "updated", True
        return key, self.sort.startswith("-")

    @classmethod
    def from_query(cls, params: Any) -> LogFilter:
        """Read the filters from a query-string mapping; unknown keys are ignored, values trimmed."""
        return cls(**{f.name: str(params.get(f.name, "")).strip()[:200] for f in fields(cls)})

    def as_params(self) -> dict[str, str]:
        """The filters that are set, for building links (pagination, CSV export)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name)}


@dataclass(frozen=True)
class LogEntry:
    """One message row of the dashboard log."""

    pk: int
    recipient: str
    name: str
    session_id: str
    step: str
    language: str
    contact_language: str
    status: str
    attempts: int
    reply_code: int | None
    reply_text: str
    due_at: datetime
    sent_at: datetime | None
    updated_at: datetime
    detail: str


def _conditions(series: Series, filters: LogFilter) -> list[Any]:
    conditions: list[Any] = []
    if filters.session:
        conditions.append(Message.session_id == filters.session)
    if filters.step:
        conditions.append(Message.step == filters.step)
    if filters.status:
        conditions.append(Message.status == filters.status)
    if filters.wave.isascii() and filters.wave.isdigit():
        wave = int(filters.wave)  # beyond an SQL integer: no wave has that id
        conditions.append(Message.wave_id == wave if wave <= MAX_ROW_ID else false())
    if filters.region:
        conditions.append(
            Message.session_id.in_([s.id for s in series.sessions if s.region == filters.region])
        )
    if filters.language:
        lang = filters.language.lower()
        contact_lang = func.lower(Contact.language)
        conditions.append(
            or_(
                Message.language == filters.language,
                and_(Message.language == "", or_(contact_lang == lang, contact_lang.like(f"{lang}-%"))),
            )
        )
    if filters.address:
        conditions.append(Contact.email_key.contains(filters.address.casefold(), autoescape=True))
    if filters.q:
        needle = filters.q.casefold()
        conditions.append(
            or_(
                Contact.email_key.contains(needle, autoescape=True),
                func.lower(Contact.name).contains(needle, autoescape=True),
                func.lower(Contact.institution).contains(needle, autoescape=True),
                func.lower(Message.reply_text).contains(needle, autoescape=True),
                Message.message_id == filters.q,
            )
        )
    return conditions


def _log_select(series: Series, filters: LogFilter) -> Select[Any]:
    last_event = (
        select(DeliveryEvent.detail)
        .where(DeliveryEvent.message_pk == Message.id)
        .order_by(DeliveryEvent.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    return (
        select(Message, Contact.name, Contact.language, last_event)
        .join(Contact, Contact.id == Message.contact_id)
        .where(*_conditions(series, filters))
    )


def _entry(message: Message, name: str, contact_language: str, detail: str | None) -> LogEntry:
    return LogEntry(
        pk=message.id,
        recipient=message.recipient,
        name=name,
        session_id=message.session_id,
        step=message.step,
        language=message.language,
        contact_language=contact_language,
        status=message.status,
        attempts=message.attempts,
        reply_code=message.reply_code,
        reply_text=message.reply_text,
        due_at=message.due_at,
        sent_at=message.sent_at,
        updated_at=message.updated_at,
        detail=detail or "",
    )


# The log's sortable columns: the web page's column headers and ``?sort=`` keys.
LOG_SORTS: dict[str, Any] = {
    "recipient": Message.recipient,
    "session": Message.session_id,
    "step": Message.step,
    "language": Message.language,
    "status": Message.status,
    "tries": Message.attempts,
    "updated": Message.updated_at,
}


def log_rows(
    db: DbSession, series: Series, filters: LogFilter, *, limit: int, offset: int = 0
) -> tuple[list[LogEntry], int]:
    """Up to ``limit`` matching messages from ``offset`` in ``filters.order()`` (by default newest change
    first; ties by message id in the same direction), and the total matching count (the dashboard's log and
    ``mailer log``)."""
    query = _log_select(series, filters)
    total = db.scalar(select(func.count()).select_from(query.subquery())) or 0
    key, descending = filters.order()
    column = LOG_SORTS[key]
    order = (column.desc(), Message.id.desc()) if descending else (column.asc(), Message.id.asc())
    rows = db.execute(query.order_by(*order).limit(limit).offset(offset)).all()
    return [_entry(*row) for row in rows], total


def log_page(db: DbSession, series: Series, filters: LogFilter, page: int) -> tuple[list[LogEntry], int]:
    """One page (1-based, PAGE_SIZE rows) of :func:`log_rows`."""
    return log_rows(db, series, filters, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)


def log_all(db: DbSession, series: Series, filters: LogFilter, batch: int = 1000) -> Any:
    """Every matching message, oldest first, fetched in batches (for the CSV export)."""
    last_id = 0
    while True:
        rows = db.execute(
            _log_select(series, filters).where(Message.id > last_id).order_by(Message.id).limit(batch)
        ).all()
        if not rows:
            return
        for row in rows:
            yield _entry(*row)
        last_id = rows[-1][0].id


def contact_languages(db: DbSession) -> list[str]:
    """Languages seen on contacts and messages, for the filter's choices."""
    found = set(db.scalars(select(Contact.language).distinct())) | set(
        db.scalars(select(Message.language).where(Message.language != "").distinct())
    )
    return sorted(tag for tag in found if tag)


def message_events(db: DbSession, message_pk: int) -> list[DeliveryEvent]:
    """Every event of one message, oldest first."""
    return list(
        db.scalars(
            select(DeliveryEvent).where(DeliveryEvent.message_pk == message_pk).order_by(DeliveryEvent.id)
        )
    )


def log_before(
    db: DbSession, series: Series, filters: LogFilter, before: int | None, limit: int
) -> list[LogEntry]:
    """Up to ``limit`` matching messages with an id below ``before`` (None: from the newest), newest first:
    keyset pages for the API, stable while new messages arrive."""
    query = _log_select(series, filters)
    if before is not None:
        query = query.where(Message.id < before)
    return [_entry(*row) for row in db.execute(query.order_by(Message.id.desc()).limit(limit)).all()]
