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

from starlette.responses import RedirectResponse
from starlette.routing import Route

from mailer.web.staff.log import CSV_COLUMNS, log_csv, log_view, page_numbers, spreadsheet_safe
from mailer.web.staff.message import html_frame, message_html, message_view, requeue_failed, resend
from mailer.web.staff.overview import STATUSES, overview, progress
from mailer.web.staff.signin import login, logout, user_of
from mailer.web.staff.wave import wave_page

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

__all__ = [
    "CSV_COLUMNS",
    "ROUTES",
    "STATUSES",
    "html_frame",
    "page_numbers",
    "progress",
    "requeue_failed",
    "spreadsheet_safe",
    "user_of",
]
