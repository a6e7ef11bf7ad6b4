"""One message (GET /staff/messages/{pk}: headers, the message as sent, re-rendered, every event and SMTP reply),
its HTML part alone for the detail page's frame, and resending a failed one (POST .../resend)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from mailer.compose.outgoing import OutgoingMessage, notice_extra
from mailer.errors import MailerError
from mailer.store.models import Contact, EventKind, Message, MessageStatus, Wave, WaveStatus
from mailer.store.outbox import log_event
from mailer.store.queries import message_events
from mailer.store.recipient import recipient_of
from mailer.timeline.plan import resolve_step
from mailer.web.app import WebContext, context_of
from mailer.web.inputs import row_id
from mailer.web.staff.signin import user_of


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
