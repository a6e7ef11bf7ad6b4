"""The delivery log (GET /staff/log: filters, search, pages) and its CSV export (GET /staff/log.csv, formula-like
cells neutralised)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from mailer.store.queries import PAGE_SIZE, LogFilter, contact_languages, log_all, log_page
from mailer.web.app import context_of
from mailer.web.staff.overview import STATUSES

CSV_COLUMNS = (
    "message",
    "recipient",
    "name",
    "session",
    "step",
    "language",
    "status",
    "attempts",
    "reply_code",
    "reply_text",
    "due_at_utc",
    "sent_at_utc",
    "updated_at_utc",
    "last_event",
)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n")


def _page_number(request: Request) -> int:
    text = request.query_params.get("page", "1")
    return max(1, min(int(text), 100000)) if text.isascii() and text.isdigit() and len(text) < 7 else 1


def log_view(request: Request) -> Response:
    ctx = context_of(request)
    filters = LogFilter.from_query(request.query_params)
    page = _page_number(request)
    series = ctx.settings.series
    with ctx.db() as db:
        entries, total = log_page(db, series, filters, page)
        languages = contact_languages(db)
    pages = max(1, (total + PAGE_SIZE - 1) // PAGE_SIZE)
    params = filters.as_params()

    def page_link(number: int) -> str:
        return "/staff/log?" + urlencode({**params, "page": number})

    key, descending = filters.order()
    headers = []
    for name, label in LOG_HEADERS:
        # A column's link sorts by it ascending (updated: newest first), or reverses the current order.
        first = "-updated" if name == "updated" else name
        target = ("" if descending else "-") + name if name == key else first
        state = ("descending" if descending else "ascending") if name == key else ""
        headers.append(
            {"label": label, "href": "/staff/log?" + urlencode({**params, "sort": target}), "sort": state}
        )

    return ctx.page(
        request,
        "staff/log.html",
        {
            "entries": entries,
            "total": total,
            "page": page,
            "pages": pages,
            "filters": filters,
            "headers": headers,
            "page_links": [
                (number, page_link(number) if number else "") for number in page_numbers(page, pages)
            ],
            "prev_link": page_link(page - 1) if page > 1 else "",
            "next_link": page_link(page + 1) if page < pages else "",
            "csv_link": "/staff/log.csv" + (f"?{urlencode(params)}" if params else ""),
            "sessions": series.sessions,
            "steps": [s.name for s in series.steps],
            "statuses": STATUSES,
            "languages": languages,
            "regions": ctx.settings.regions,
        },
    )


# The log table's sortable columns (keys of mailer.store.queries.LOG_SORTS) and their headers.
LOG_HEADERS = [
    ("recipient", "Recipient"),
    ("session", "Session"),
    ("step", "Step"),
    ("language", "Lang"),
    ("status", "Status"),
    ("tries", "Tries"),
    ("updated", "Updated"),
]


def page_numbers(page: int, pages: int, around: int = 2) -> list[int]:
    """The page numbers a pager shows: the first, the last, and ``around`` either side of ``page``; a gap is
    a 0 (shown as an ellipsis). E.g. page 7 of 51: [1, 0, 5, 6, 7, 8, 9, 0, 51]."""
    shown = sorted({1, pages, *range(max(1, page - around), min(pages, page + around) + 1)})
    numbers: list[int] = []
    for number in shown:
        if numbers and number - numbers[-1] > 1:
            numbers.append(0)
        numbers.append(number)
    return numbers


def spreadsheet_safe(value: object) -> object:
    """A CSV cell that a spreadsheet will not run as a formula: text starting with = + - @ (or a tab or line
    break) gets a leading apostrophe. Numbers and None pass unchanged (None as "")."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def log_csv(request: Request) -> Response:
    ctx = context_of(request)
    filters = LogFilter.from_query(request.query_params)
    series = ctx.settings.series

    def lines() -> Iterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer)  # excel dialect: CRLF, minimal quoting
        buffer.write("\ufeff")  # a BOM so spreadsheet programs read UTF-8
        writer.writerow(CSV_COLUMNS)
        with ctx.db() as db:
            for count, entry in enumerate(log_all(db, series, filters), 1):
                writer.writerow(
                    [
                        spreadsheet_safe(value)
                        for value in (
                            entry.pk,
                            entry.recipient,
                            entry.name,
                            entry.session_id,
                            entry.step,
                            entry.language or entry.contact_language,
                            entry.status,
                            entry.attempts,
                            entry.reply_code,
                            entry.reply_text,
                            _iso(entry.due_at),
                            _iso(entry.sent_at),
                            _iso(entry.updated_at),
                            entry.detail,
                        )
                    ]
                )
                if count % 200 == 0:
                    yield buffer.getvalue()
                    buffer.seek(0)
                    buffer.truncate()
        yield buffer.getvalue()

    stamp = ctx.now().strftime("%Y%m%d-%H%M")
    return StreamingResponse(
        lines(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="delivery-log-{stamp}.csv"'},
    )


def _iso(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value is not None else ""
