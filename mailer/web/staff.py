"""Staff pages (sign-in required): overview, delivery log, message detail, resend, CSV export, wave progress.

GET  /login, POST /login, POST /logout
GET  /staff/                         sessions and waves: counts by status, progress bars
GET  /staff/log                      filter (session, step, status, language, region, address, wave), search, pages
GET  /staff/log.csv                  the filtered log for spreadsheets (formula-like cells neutralised)
GET  /staff/messages/{pk}            headers, the message as sent (re-rendered), every event and SMTP reply
GET  /staff/messages/{pk}/html       the HTML part alone, sandboxed, for the detail page's frame
POST /staff/messages/{pk}/resend     put a failed message back in the queue
GET  /staff/waves/{id}               one wave: counts, progress, sends per hour or day
"""

from __future__ import annotations

import csv
import io
import logging
from collections import defaultdict
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import select
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from mailer.compose.outgoing import OutgoingMessage, notice_extra
from mailer.errors import MailerError
from mailer.store.models import (
    Contact,
    EventKind,
    Message,
    MessageStatus,
    Wave,
    WaveStatus,
)
from mailer.store.outbox import log_event
from mailer.store.queries import (
    PAGE_SIZE,
    CountRow,
    LogFilter,
    contact_languages,
    counts_by_step,
    counts_by_wave,
    log_all,
    log_page,
    message_events,
    pending_due,
    sends_over_time,
    status_totals,
)
from mailer.store.recipient import recipient_of
from mailer.store.relays import describe, open_circuits
from mailer.timeline.plan import resolve_step
from mailer.web.app import WebContext, context_of
from mailer.web.auth import CurrentUser, session_token, sign_in
from mailer.web.charts import bar_chart
from mailer.web.inputs import row_id
from mailer.web.sessions import end_session, start_session
from mailer.web.users import authenticate

log = logging.getLogger(__name__)

STATUSES = [status.value for status in MessageStatus]
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


def user_of(request: Request) -> CurrentUser:
    """The signed-in user (the guard has made sure there is one on staff paths)."""
    user: CurrentUser | None = request.state.user
    if user is None:
        raise HTTPException(403, "sign in first")
    return user


def _safe_next(target: str) -> str:
    """A local path to go back to after sign-in (never another site)."""
    if target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/staff/"


# -- sign-in ---------------------------------------------------------------------------------------------


async def login(request: Request) -> Response:
    ctx = context_of(request)
    if request.method != "POST":
        return ctx.page(
            request,
            "staff/login.html",
            {"next": _safe_next(request.query_params.get("next", "")), "error": ""},
        )
    form = await request.form()
    username = str(form.get("username", "")).strip()[:100]
    if not username.isprintable():
        username = ""  # control characters: no account has them (and PostgreSQL refuses NUL)
    password = str(form.get("password", ""))[:1000]
    target = _safe_next(str(form.get("next", "")))
    client = request.client.host if request.client else "?"
    wait = ctx.throttle.wait(username, client)
    if wait > 0:
        log.warning("sign-in as %r from %s refused: %.0f s to wait after failures", username, client, wait)
        minutes = f"{wait / 60:.0f} minutes" if wait >= 90 else f"{max(1, round(wait))} seconds"
        response = ctx.page(
            request,
            "staff/login.html",
            {"next": target, "error": f"Too many failed attempts: wait {minutes} and try again."},
            status_code=429,
        )
        response.headers["Retry-After"] = str(max(1, round(wait)))
        return response
    agent = request.headers.get("user-agent", "")

    def check() -> str:
        with ctx.db() as db:
            user = authenticate(db, username, password, ctx.now())
            return start_session(db, user, ctx.now(), client, agent, ctx.sessions) if user is not None else ""

    token = await run_in_threadpool(check)
    if not token:
        failures = ctx.throttle.failed(username, client)
        log.warning("failed sign-in as %r from %s (%d in a row)", username, client, failures)
        return ctx.page(
            request,
            "staff/login.html",
            {"next": target, "error": "Wrong username or password."},
            status_code=401,
        )
    ctx.throttle.succeeded(username, client)
    sign_in(request.session, token)
    log.info("%s signed in from %s", username, client)
    return RedirectResponse(target, status_code=303)


def logout(request: Request) -> Response:
    """End the server-side session (a saved copy of the cookie opens nothing afterwards)."""
    ctx = context_of(request)
    token = session_token(request.session)
    if token:
        with ctx.db() as db:
            end_session(db, token)
    request.session.clear()
    return RedirectResponse("/login", status_code=303)


# -- overview and waves ------------------------------------------------------------------------------------


def progress(row: CountRow) -> dict[str, Any]:
    """Finished and total messages of a wave or step, and the percentage finished."""
    return {"done": row.done, "total": row.total, "percent": row.percent}


def overview(request: Request) -> Response:
    ctx = context_of(request)
    with ctx.db() as db:
        steps = counts_by_step(db)
        waves = counts_by_wave(db)
        relays = [describe(state) for state in open_circuits(db)]
    by_session: dict[str, list[CountRow]] = defaultdict(list)
    waves_by_session: dict[str, list[CountRow]] = defaultdict(list)
    for row in steps:
        by_session[row.session_id].append(row)
    for row in waves:
        waves_by_session[row.session_id].append(row)
    sessions = []
    for session in ctx.settings.series.sessions:
        totals = status_totals(by_session.get(session.id, []))
        sessions.append(
            {
                "session": session,
                "totals": totals,
                "total": sum(totals.values()),
                "waves": [
                    {"row": row, "progress": progress(row)} for row in waves_by_session.get(session.id, [])
                ],
            }
        )
    return ctx.page(
        request, "staff/overview.html", {"sessions": sessions, "statuses": STATUSES, "relays": relays}
    )


def wave_page(request: Request) -> Response:
    ctx = context_of(request)
    wave_id = row_id(request, "wave_id")
    now = ctx.now()
    with ctx.db() as db:
        wave = db.get(Wave, wave_id)
        if wave is None:
            raise HTTPException(404, f"no wave {wave_id}")
        rows = counts_by_wave(db, wave_id=wave_id)
        buckets, unit = sends_over_time(db, wave_id=wave_id)
        sending = pending_due(db, wave_id, now)
    row = rows[0]
    try:
        session = ctx.settings.series.session(wave.session_id)
    except KeyError:
        session = None
    chart = bar_chart(buckets, unit, title=f"Messages sent per {unit} (UTC), wave {wave_id}")
    return ctx.page(
        request,
        "staff/wave.html",
        {
            "wave": wave,
            "row": row,
            "progress": progress(row),
            "session": session,
            "chart": chart,
            "unit": unit,
            "sending": sending > 0 and wave.status == WaveStatus.ACTIVE,
            "statuses": STATUSES,
            "state": row.state,
            "can_change": row.state not in (WaveStatus.CANCELLED, "done"),
        },
    )


# -- delivery log ------------------------------------------------------------------------------------------


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


# -- one message -------------------------------------------------------------------------------------------


def _load_message(ctx: WebContext, pk: int) -> tuple[Message, Contact, list[Any], str]:
    with ctx.db() as db:
        row = db.execute(
            select(Message, Contact).join(Contact, Contact.id == Message.contact_id).where(Message.id == pk)
        ).first()
        if row is None:
            raise HTTPException(404, f"no message {pk}")
        message, contact = row
        events = message_events(db, pk)
        wave_status = db.scalar(select(Wave.status).where(Wave.id == message.wave_id)) or ""
    return message, contact, events, wave_status


def _compose_sent(ctx: WebContext, message: Message, contact: Contact) -> OutgoingMessage:
    """The message as the service sends it, rebuilt from today's templates and contact data."""
    series = ctx.settings.series
    session = series.session(message.session_id)
    step = resolve_step(series, message.step)
    return ctx.outgoing.message(
        step,
        session,
        recipient_of(contact, session.region),
        message_pk=message.id,
        message_id=message.message_id,
        date=message.sent_at or message.updated_at,
        extra=notice_extra(message.step, None),
    )


def message_view(request: Request) -> Response:
    ctx = context_of(request)
    message, contact, events, wave_status = _load_message(ctx, row_id(request, "pk"))
    composed, problem = None, ""
    try:
        composed = _compose_sent(ctx, message, contact)
    except (MailerError, KeyError, ValueError) as exc:
        problem = str(exc)
    return ctx.page(
        request,
        "staff/message.html",
        {
            "message": message,
            "contact": contact,
            "events": events,
            "composed": composed,
            "problem": problem,
            "can_resend": message.status in (MessageStatus.FAILED, MessageStatus.HELD)
            and wave_status != WaveStatus.CANCELLED,
            "flash": request.query_params.get("done", ""),
        },
    )


PREVIEW_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data: https:; frame-ancestors 'self'; sandbox"
)


def html_frame(html: str) -> Response:
    """An e-mail's HTML part served on its own: no scripts, no requests out, only framed by our pages."""
    return HTMLResponse(
        html, headers={"Content-Security-Policy": PREVIEW_CSP, "X-Frame-Options": "SAMEORIGIN"}
    )


def message_html(request: Request) -> Response:
    ctx = context_of(request)
    message, contact, _, _ = _load_message(ctx, row_id(request, "pk"))
    try:
        composed = _compose_sent(ctx, message, contact)
    except (MailerError, KeyError, ValueError):
        return html_frame("<p>This message cannot be re-rendered (see the detail page).</p>")
    return html_frame(composed.rendered.html)


def requeue_failed(ctx: WebContext, pk: int, by: str) -> str:
    """Put a failed or held message back to ``queued``, due now, with at least its step's lateness allowance
    left. A held message stays careful (sent alone) and is held again if its lease expires once more.

    Returns "" on success, else why not (not failed or held, wave cancelled). The running service sends it.
    """
    now = ctx.now()
    with ctx.db() as db:
        message = db.get(Message, pk, with_for_update=True)
        if message is None:
            return "no such message"
        if message.status not in (MessageStatus.FAILED, MessageStatus.HELD):
            return f"only failed or held messages can be resent (this one is {message.status})"
        wave = db.get(Wave, message.wave_id)
        if wave is not None and wave.status == WaveStatus.CANCELLED:
            return "its wave is cancelled"
        step = resolve_step(ctx.settings.series, message.step)
        message.status = MessageStatus.QUEUED
        message.due_at = now
        message.deadline_at = max(message.deadline_at, now + max(step.max_late, timedelta(hours=1)))
        message.lease_until = None
        message.worker = ""
        message.updated_at = now
        log_event(db, message.id, EventKind.QUEUED, now, detail=f"resend requested by {by} on the dashboard")
    return ""


async def resend(request: Request) -> Response:
    ctx = context_of(request)
    pk = row_id(request, "pk")
    problem = await run_in_threadpool(requeue_failed, ctx, pk, user_of(request).username)
    if problem:
        raise HTTPException(409, problem)
    return RedirectResponse(f"/staff/messages/{pk}?done=resend", status_code=303)


ROUTES = [
    Route("/login", login, methods=["GET", "POST"]),
    Route("/logout", logout, methods=["POST"]),
    Route("/staff/", overview),
    Route("/staff", lambda request: RedirectResponse("/staff/", status_code=303)),
    Route("/staff/log", log_view),
    Route("/staff/log.csv", log_csv),
    Route("/staff/messages/{pk:int}", message_view),
    Route("/staff/messages/{pk:int}/html", message_html),
    Route("/staff/messages/{pk:int}/resend", resend, methods=["POST"]),
    Route("/staff/waves/{wave_id:int}", wave_page),
]

__all__ = ["ROUTES", "progress", "requeue_failed", "spreadsheet_safe"]
