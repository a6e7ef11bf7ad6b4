"""Organisers' pages (organiser role): timelines, preview, test send, and waves.

GET  /organise/sessions                  every session's timeline: times in the session zone and UTC,
                                         deadlines, audience sizes now, each step's wave and progress
GET  /organise/preview                   any step for any contact (by address) or language, as sent
GET  /organise/preview/html              the preview's HTML part, sandboxed, for the page's frame
POST /organise/preview/send              the same message to the signed-in organiser's own address
GET  /organise/waves/new                 choose session, step and list; then the confirmation: new
                                         recipients per language, suppressed ones, first send time
POST /organise/waves                     queue it (mailer.store.outbox.queue_wave; past-deadline messages only with confirm=yes)
POST /organise/waves/{id}/{action}       pause, resume or cancel (mailer.store.outbox.set_wave_status)
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import select
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import QueryParams
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from mailer.compose.outgoing import OutgoingMessage
from mailer.config import Audience, Session, Step
from mailer.delivery.pool import SmtpPool
from mailer.errors import InstantRangeError, MailerError, NotFoundError
from mailer.message_ids import make_message_id
from mailer.service import smtp_target
from mailer.store.models import Contact, Wave, WaveStatus
from mailer.store.outbox import queue_wave, set_wave_status
from mailer.store.queries import counts_by_wave, plan_wave, sent_spans, session_timelines
from mailer.store.recipient import Recipient, recipient_of
from mailer.timeline.clock import accepted_instant
from mailer.timeline.plan import step_deadline, step_time
from mailer.web.app import WebContext, context_of
from mailer.web.inputs import row_id
from mailer.web.staff import html_frame, progress, user_of
from mailer.zones import UnknownZoneError, resolve_zone

WAVE_ACTIONS = {"pause": WaveStatus.PAUSED, "resume": WaveStatus.ACTIVE, "cancel": WaveStatus.CANCELLED}


def sessions_page(request: Request) -> Response:
    ctx = context_of(request)
    series = ctx.settings.series
    now = ctx.now()
    with ctx.db() as db:
        waves = {(row.session_id, row.step): row for row in counts_by_wave(db)}
        sent = sent_spans(db)
        rows: dict[str, list[dict[str, Any]]] = {}
        for session_id, timeline in session_timelines(db, series, now).items():
            rows[session_id] = []
            for item in timeline:
                wave = waves.get((session_id, item.step.name))
                rows[session_id].append(
                    {
                        "step": item.step,
                        "at": item.at,
                        "deadline": item.deadline,
                        "sent": sent.get((session_id, item.step.name)),
                        "audience": item.audience,
                        "size": item.size,
                        "wave": wave,
                        "progress": progress(wave) if wave else None,
                    }
                )
        extra = [row for key, row in waves.items() if key[1] not in {s.name for s in series.steps}]
    return ctx.page(
        request,
        "organise/sessions.html",
        {
            "sessions": [{"session": s, "steps": rows[s.id], "start_utc": s.start} for s in series.sessions],
            "extra_waves": extra,
            "now": now,
        },
    )


# -- preview -----------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PreviewRequest:
    session: Session
    step: Step
    contact: str  # an address, or ""
    language: str


def _preview_request(ctx: WebContext, params: Any) -> PreviewRequest | None:
    series = ctx.settings.series
    session_id, step_name = str(params.get("session", "")), str(params.get("step", ""))
    if not session_id or not step_name:
        return None
    try:
        return PreviewRequest(
            series.session(session_id),
            series.step(step_name),
            str(params.get("contact", "")).strip()[:320],
            str(params.get("language", "")).strip()[:35] or ctx.settings.default_language,
        )
    except KeyError as exc:
        raise HTTPException(404, str(exc.args[0])) from None


def _preview_recipient(ctx: WebContext, wanted: PreviewRequest) -> Recipient:
    """The contact with that address, else a stand-in in the chosen language and the region's zone."""
    session = wanted.session
    if wanted.contact:
        with ctx.db() as db:
            contact = db.scalar(select(Contact).where(Contact.email_key == wanted.contact.casefold()))
            if contact is None:
                raise NotFoundError(f"no contact with the address {wanted.contact}")
            return recipient_of(contact, session.region)
    region = ctx.settings.regions.get(session.region)
    return Recipient(
        email=f"preview@{ctx.settings.sender.domain}",
        language=wanted.language,
        time_zone=region.default_zone if region else session.zone_name,
        region=session.region,
    )


def _compose_preview(
    ctx: WebContext, wanted: PreviewRequest, recipient: Recipient, prefix: str = ""
) -> OutgoingMessage:
    """The message the service would send ``recipient`` for the wanted step, with preview links."""
    key = f"preview/{wanted.session.id}/{wanted.step.name}/{recipient.email}/{ctx.now().timestamp()}"
    return ctx.outgoing.message(
        wanted.step,
        wanted.session,
        recipient,
        message_pk=None,
        message_id=make_message_id(key, ctx.settings.sender.domain),
        date=ctx.now(),
        subject_prefix=prefix,
    )


def preview_page(request: Request) -> Response:
    ctx = context_of(request)
    wanted = _preview_request(ctx, request.query_params)
    composed, problem, recipient = None, "", None
    if wanted is not None:
        try:
            recipient = _preview_recipient(ctx, wanted)
            composed = _compose_preview(ctx, wanted, recipient)
        except (MailerError, ValueError) as exc:
            problem = str(exc)
    series = ctx.settings.series
    return ctx.page(
        request,
        "organise/preview.html",
        {
            "wanted": wanted,
            "composed": composed,
            "problem": problem,
            "recipient": recipient,
            "sessions": series.sessions,
            "steps": series.steps,
            "languages": ctx.settings.languages,
            "frame_src": "/organise/preview/html?" + urlencode(request.query_params.multi_items()),
            "flash": request.query_params.get("sent", ""),
        },
    )


def preview_html(request: Request) -> Response:
    ctx = context_of(request)
    wanted = _preview_request(ctx, request.query_params)
    if wanted is None:
        raise HTTPException(404, "choose a session and a step")
    try:
        composed = _compose_preview(ctx, wanted, _preview_recipient(ctx, wanted))
    except (MailerError, ValueError):
        return html_frame("<p>This step cannot be rendered for that recipient (see the preview page).</p>")
    return html_frame(composed.rendered.html)


async def preview_send(request: Request) -> Response:
    """Send the previewed message, marked [TEST], to the signed-in organiser's own address."""
    ctx = context_of(request)
    user = user_of(request)
    form = await request.form()
    wanted = _preview_request(ctx, form)
    if wanted is None:
        raise HTTPException(400, "choose a session and a step")
    back = "/organise/preview?" + urlencode(
        {k: str(form.get(k, "")) for k in ("session", "step", "contact", "language")}
    )
    if not user.email:
        note = "not sent: your account has no e-mail address (set one with: mailer users set NAME --email ADDRESS)"
        return RedirectResponse(back + "&" + urlencode({"sent": note}), status_code=303)
    try:
        recipient = await run_in_threadpool(_preview_recipient, ctx, wanted)
        recipient = dataclasses.replace(recipient, email=user.email)
        composed = _compose_preview(ctx, wanted, recipient, prefix="[TEST] ")
    except (MailerError, ValueError) as exc:
        return RedirectResponse(back + "&" + urlencode({"sent": f"not sent: {exc}"}), status_code=303)
    settings = ctx.settings
    with smtp_target(settings) as target:
        async with SmtpPool(target.smtp_for(wanted.step.kind)) as pool:
            reply = await pool.send(
                settings.sender.address,
                user.email,
                composed.wire,
                utf8=composed.utf8,
                transparent=True,
            )
    outcome = f"test sent to {user.email}: {reply.code or ''} {reply.text}".strip()
    if reply.status.value != "sent":
        outcome = f"test to {user.email} not sent ({reply.status.value}): {reply.code or ''} {reply.text}"
    return RedirectResponse(back + "&" + urlencode({"sent": outcome}), status_code=303)


# -- waves -------------------------------------------------------------------------------------------------


def _parse_at(text: str, session: Session) -> datetime | None:
    """An organiser's optional send time: "2021-06-01T09:00" in the session's zone, or with an offset."""
    if not text.strip():
        return None
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise HTTPException(400, f"{text!r} is not a date and time like 2021-06-01T09:00") from None
    if moment.tzinfo is None:
        try:
            moment = moment.replace(tzinfo=resolve_zone(session.zone_name))
        except UnknownZoneError as exc:
            raise HTTPException(400, str(exc)) from None
    try:
        return accepted_instant(moment, f"the send time {text.strip()!r}")
    except InstantRangeError as exc:
        raise HTTPException(400, str(exc)) from None


def _wave_choice(
    ctx: WebContext, params: QueryParams | Any
) -> tuple[Session, Step, str, datetime | None] | None:
    series = ctx.settings.series
    session_id, step_name = str(params.get("session", "")), str(params.get("step", ""))
    if not session_id or not step_name:
        return None
    try:
        session, step = series.session(session_id), series.step(step_name)
    except KeyError as exc:
        raise HTTPException(404, str(exc.args[0])) from None
    region = str(params.get("list", "")) or session.region
    if region not in ctx.settings.regions:
        raise HTTPException(404, f"unknown list {region!r}")
    if step.audience in (Audience.REGISTRANTS, Audience.INVITED, Audience.CALENDAR):
        region = step.audience.value
    return session, step, region, _parse_at(str(params.get("at", "")), session)


def wave_new(request: Request) -> Response:
    ctx = context_of(request)
    choice = _wave_choice(ctx, request.query_params)
    series = ctx.settings.series
    context: dict[str, Any] = {
        "sessions": series.sessions,
        "steps": series.steps,
        "regions": ctx.settings.regions,
        "choice": None,
        "plan": None,
        "existing": None,
        "query": request.query_params,
    }
    if choice is not None:
        session, step, audience, at = choice
        now = ctx.now()
        with ctx.db() as db:
            context["plan"] = plan_wave(db, series, session, step, audience, now, at)
            context["existing"] = db.scalar(
                select(Wave).where(
                    Wave.session_id == session.id, Wave.step == step.name, Wave.audience == audience
                )
            )
        context["choice"] = {
            "session": session,
            "step": step,
            "audience": audience,
            "at": at,
            "at_text": request.query_params.get("at", ""),
            "step_time": step_time(session, step),
            "deadline": step_deadline(series, session, step, at),
        }
    return ctx.page(request, "organise/wave_new.html", context)


async def wave_queue(request: Request) -> Response:
    ctx = context_of(request)
    user = user_of(request)
    form = await request.form()
    choice = _wave_choice(ctx, form)
    if choice is None:
        raise HTTPException(400, "choose a session and a step")
    session, step, audience, at = choice
    confirmed = form.get("confirm") == "yes"

    def queue() -> int:
        now = ctx.now()
        with ctx.db() as db:
            if not confirmed and plan_wave(db, ctx.settings.series, session, step, audience, now, at).late:
                raise HTTPException(
                    400, "some messages are past their deadline: tick 'Queue anyway' to queue them as skipped"
                )
            ctx.sync_sessions(db, now)
            result = queue_wave(
                db,
                ctx.settings,
                session,
                step,
                now,
                audience=None if audience in ("registrants", "invited") else audience,
                at=at,
                created_by=f"web:{user.username}"[:100],
            )
            return result.wave.id

    wave_id = await run_in_threadpool(queue)
    return RedirectResponse(f"/staff/waves/{wave_id}", status_code=303)


async def wave_action(request: Request) -> Response:
    ctx = context_of(request)
    wave_id = row_id(request, "wave_id")
    action = request.path_params["action"]
    if action not in WAVE_ACTIONS:
        raise HTTPException(404, f"unknown action {action!r}")
    if action == "cancel" and (await request.form()).get("confirm") != "yes":
        raise HTTPException(400, "tick 'I am sure' to cancel a wave")

    def change() -> None:
        with ctx.db() as db:
            set_wave_status(db, wave_id, WAVE_ACTIONS[action], ctx.now())

    try:
        await run_in_threadpool(change)
    except NotFoundError as exc:
        raise HTTPException(404, str(exc)) from None
    except ValueError as exc:
        raise HTTPException(409, str(exc)) from None
    return RedirectResponse(f"/staff/waves/{wave_id}", status_code=303)


ROUTES = [
    Route("/organise/", lambda request: RedirectResponse("/organise/sessions", status_code=303)),
    Route("/organise/sessions", sessions_page),
    Route("/organise/preview", preview_page),
    Route("/organise/preview/html", preview_html),
    Route("/organise/preview/send", preview_send, methods=["POST"]),
    Route("/organise/waves/new", wave_new),
    Route("/organise/waves", wave_queue, methods=["POST"]),
    Route("/organise/waves/{wave_id:int}/{action}", wave_action, methods=["POST"]),
]

__all__ = ["ROUTES"]
