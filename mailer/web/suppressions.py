"""``/staff/suppressions``: the addresses not mailed, with their reason and last report, and lifting one.

A lift is a POST carrying the session's CSRF token (mailer.web.auth), recorded in ``suppression_lifts`` with
the staff member's name and note (mailer.store.suppressions) and logged, as ``mailer suppressions remove``.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from mailer.errors import NotFoundError
from mailer.store.suppressions import REASONS, lift_suppression, list_suppressions
from mailer.web.app import WebContext, context_of
from mailer.web.staff import user_of

log = logging.getLogger(__name__)

LIMIT = 500  # rows on the page, newest first
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def suppressions_page(request: Request) -> Response:
    """The list, optionally of one ``reason`` (a query parameter; an unknown one is 404)."""
    ctx = context_of(request)
    reason = request.query_params.get("reason", "")
    if reason and reason not in REASONS:
        raise HTTPException(404, "no such reason")
    with ctx.db() as db:
        rows = list_suppressions(db, reason=reason, limit=LIMIT)
    return ctx.page(
        request,
        "staff/suppressions.html",
        {
            "rows": rows,
            "reason": reason,
            "reasons": REASONS,
            "lifted": request.query_params.get("lifted", ""),
        },
    )


def _lift(ctx: WebContext, email_key: str, by: str, note: str) -> str:
    try:
        with ctx.db() as db:
            lift = lift_suppression(db, email_key, by=by, note=note, now=ctx.now())
    except NotFoundError:
        return ""
    log.warning(
        "suppression of %s (%s) lifted by %s on the dashboard: %s",
        email_key,
        lift.reason,
        by,
        note or "no note",
    )
    return lift.reason


async def lift(request: Request) -> Response:
    """Lift the suppression named by the form's ``email_key`` with the form's ``note``; back to the list."""
    ctx = context_of(request)
    form = await request.form()
    email_key, note = str(form.get("email_key", "")).strip(), str(form.get("note", "")).strip()
    if not email_key or len(email_key) > 320 or len(note) > 1000 or _CONTROL.search(email_key + note):
        raise HTTPException(400, "give the suppressed address and a short note")
    reason = await run_in_threadpool(_lift, ctx, email_key, user_of(request).username, note)
    if not reason:
        raise HTTPException(404, f"{email_key} is not on the suppression list")
    return RedirectResponse(f"/staff/suppressions?{urlencode({'lifted': email_key})}", status_code=303)


ROUTES = [
    Route("/staff/suppressions", suppressions_page),
    Route("/staff/suppressions/lift", lift, methods=["POST"]),
]

__all__ = ["ROUTES", "lift", "suppressions_page"]
