"""Participants' pages, reached from signed links in their messages (no sign-in).

Only POST acts: GET and HEAD (mail scanners and link previewers fetch every link of a message) show the
page and change nothing.

``/u/<token>``
    GET: the contact's address and one button, in the contact's language. POST (the button, or a mail
    client's RFC 8058 one-click ``List-Unsubscribe=One-Click``): suppress the address at once (reason
    "unsubscribed") and mark the contact unsubscribed; answers 200 with a confirmation page, never a
    redirect. Pending messages to the address are then finished as suppressed at send time.
``/rsvp/<token>``
    GET: the session, its time in the contact's zone and one button; when the link's answer is already
    recorded (or the organisers denied the registration), the page says so instead of asking again. POST:
    "yes" registers the contact for the session (reminders follow), "no" records a refusal (no more
    invitations for it). A link scanner's GET changes nothing.

A token that does not verify, or names no message, gives a 404 page saying the link is not valid.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mailer.compose.links import Answer, BadLinkError, Link, LinkKind, read_token, recipient_tag, rsvp_url
from mailer.config import Session
from mailer.store.models import Contact, ContactStatus, Message, Registration, RegistrationStatus
from mailer.store.outbox import suppress
from mailer.web.app import WebContext, context_of
from mailer.web.i18n import PageLanguage, local_datetime, page_language

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Recipient:
    """Who a link belongs to, as the page needs it (detached from the database)."""

    contact_id: int
    email: str
    language: str
    time_zone: str
    status: str
    session_id: str
    message_pk: int


def _resolve(ctx: WebContext, token: str, kind: LinkKind) -> tuple[Link, Recipient] | None:
    try:
        link = read_token(ctx.settings, token)
    except BadLinkError:
        return None
    if link.kind is not kind:
        return None
    with ctx.db() as db:
        row = db.execute(
            select(Message.id, Message.session_id, Contact)
            .join(Contact, Contact.id == Message.contact_id)
            .where(Message.id == link.message_pk)
        ).first()
        if row is None:
            return None
        pk, session_id, contact = row
        if link.recipient != recipient_tag(contact.email):
            return None  # signed for someone else (e.g. a message row of another store)
        return link, Recipient(
            contact.id, contact.email, contact.language, contact.time_zone, contact.status, session_id, pk
        )


@dataclass(frozen=True)
class Wording:
    """The series' and a session's names in a page language, from the e-mail templates' shared wording
    (``templates/email/_common/<lang>.j2``: ``series_name``, ``session_title_format``, ``region_names``);
    the configured English names when a language has none."""

    series: str
    session_format: str
    region_names: dict[str, str]

    def session_title(self, session: Session, region_name: str) -> str:
        region = self.region_names.get(session.region, region_name)
        try:
            return self.session_format.format(title=session.title, region=region)
        except (KeyError, IndexError, ValueError):
            return session.title


def wording(ctx: WebContext, code: str) -> Wording:
    """Names in language ``code`` (see :class:`Wording`)."""
    english = Wording(ctx.settings.series.title, "{title}", {})
    try:
        module = ctx.renderer.env.get_template(f"_common/{code}.j2").module
    except Exception:  # noqa: BLE001  (no shared wording in that language: English names)
        return english
    names = getattr(module, "region_names", {})
    return Wording(
        str(getattr(module, "series_name", english.series)),
        str(getattr(module, "session_title_format", "{title}")),
        dict(names) if isinstance(names, dict) else {},
    )


def _page(
    ctx: WebContext,
    request: Request,
    name: str,
    lang: PageLanguage,
    context: dict[str, object],
    status_code: int = 200,
) -> Response:
    return ctx.page(
        request,
        name,
        {"lang": lang, "series_title": wording(ctx, lang.code).series, **context},
        status_code=status_code,
    )


def _bad_link(ctx: WebContext, request: Request) -> Response:
    lang = page_language(request.headers.get("accept-language", "en").split(",")[0].split(";")[0].strip())
    return _page(
        ctx,
        request,
        "participant/message.html",
        lang,
        {"title": lang.t("bad_link_title"), "lines": [lang.t("bad_link_body")]},
        status_code=404,
    )


def unsubscribe(request: Request) -> Response:
    """GET: confirm page; POST: unsubscribe now (RFC 8058 one-click too)."""
    ctx = context_of(request)
    found = _resolve(ctx, request.path_params["token"], LinkKind.UNSUBSCRIBE)
    if found is None:
        return _bad_link(ctx, request)
    _, person = found
    lang = page_language(person.language)
    series = wording(ctx, lang.code).series
    if request.method != "POST":  # GET, HEAD (link scanners, previews): show, never act
        if person.status == ContactStatus.UNSUBSCRIBED:
            return _page(
                ctx,
                request,
                "participant/message.html",
                lang,
                {
                    "title": lang.t("unsubscribed_title"),
                    "lines": [lang.t("already_unsubscribed", email=person.email)],
                },
            )
        return _page(
            ctx,
            request,
            "participant/confirm.html",
            lang,
            {
                "title": lang.t("unsubscribe_title"),
                "lines": [lang.t("unsubscribe_question", series=series, email=person.email)],
                "button": lang.t("unsubscribe_button"),
                "danger": True,
            },
        )
    already = _unsubscribe(ctx, person)
    log.info("contact %d unsubscribed through the link in message %d", person.contact_id, person.message_pk)
    text = lang.t("already_unsubscribed" if already else "unsubscribed_body", email=person.email)
    return _page(
        ctx,
        request,
        "participant/message.html",
        lang,
        {"title": lang.t("unsubscribed_title"), "lines": [text], "done": True},
    )


def _unsubscribe(ctx: WebContext, person: Recipient) -> bool:
    """Suppress the address and mark the contact; True when it was already unsubscribed."""
    now = ctx.now()
    with ctx.db() as db:
        contact = db.get(Contact, person.contact_id, with_for_update=True)
        assert contact is not None  # resolved just before; contacts are never deleted by the service
        already = contact.status == ContactStatus.UNSUBSCRIBED
        suppress(db, contact.email_key, "unsubscribed", f"web link in message {person.message_pk}", now)
        if contact.status == ContactStatus.ACTIVE:
            contact.status = ContactStatus.UNSUBSCRIBED
            contact.updated_at = now
    return already


def rsvp(request: Request) -> Response:
    """GET: the question and one button; POST: record the answer and confirm it."""
    ctx = context_of(request)
    found = _resolve(ctx, request.path_params["token"], LinkKind.RSVP)
    if found is None:
        return _bad_link(ctx, request)
    link, person = found
    assert link.answer is not None
    lang = page_language(person.language)
    try:
        session = ctx.settings.series.session(person.session_id)
    except KeyError:
        return _bad_link(ctx, request)
    region = ctx.settings.regions.get(session.region)
    session_title = wording(ctx, lang.code).session_title(session, region.name if region else session.region)
    base = {
        "session_title": session_title,
        "when": local_datetime(session.start, person.time_zone, lang.code),
        "when_label": lang.t("when"),
    }
    closed = _closed(ctx, session, lang)
    if closed:
        return _page(
            ctx,
            request,
            "participant/message.html",
            lang,
            {**base, "title": session_title, "lines": [closed]},
        )
    yes = link.answer is Answer.YES
    wanted = RegistrationStatus.REGISTERED if yes else RegistrationStatus.DECLINED
    if request.method != "POST" and _recorded_answer(ctx, person) not in (wanted, RegistrationStatus.DENIED):
        # GET, HEAD (link scanners, previews): ask, never act
        return _page(
            ctx,
            request,
            "participant/confirm.html",
            lang,
            {
                **base,
                "title": lang.t("rsvp_yes_title" if yes else "rsvp_no_title"),
                "lines": [lang.t("rsvp_yes_question" if yes else "rsvp_no_question")],
                "button": lang.t("rsvp_yes_button" if yes else "rsvp_no_button"),
                "danger": not yes,
            },
        )
    if request.method != "POST":  # the answer is already recorded: say so instead of asking again
        outcome = _recorded_answer(ctx, person) or wanted
    else:
        outcome = _answer(ctx, person, link.answer)
        log.info(
            "contact %d answered %s for %s (now %s)",
            person.contact_id,
            link.answer.value,
            session.id,
            outcome.value,
        )
    lines: list[str] = []
    if outcome is RegistrationStatus.DENIED:
        title, lines = session_title, [lang.t("rsvp_denied")]
    elif yes:
        title, lines = lang.t("rsvp_yes_done_title"), [lang.t("rsvp_yes_done")]
        if person.status != ContactStatus.ACTIVE:
            lines.append(lang.t("rsvp_unsubscribed"))
    else:
        title, lines = lang.t("rsvp_no_done_title"), [lang.t("rsvp_no_done")]
    other = Answer.NO if yes else Answer.YES
    change = None
    if outcome is not RegistrationStatus.DENIED:
        change = {
            "text": lang.t("rsvp_change_no" if yes else "rsvp_change_yes"),
            "label": lang.t("rsvp_no_button" if yes else "rsvp_yes_button"),
            "href": _relative(rsvp_url(ctx.settings, person.message_pk, other, person.email)),
        }
    return _page(
        ctx,
        request,
        "participant/message.html",
        lang,
        {**base, "title": title, "lines": lines, "change": change, "done": True},
    )


def _relative(url: str) -> str:
    """The path of one of our own URLs, so the page works whatever host name it was reached by."""
    return "/" + url.split("://", 1)[-1].split("/", 1)[-1]


def _closed(ctx: WebContext, session: Session, lang: PageLanguage) -> str:
    """Why no answer can be recorded any more ("" when it can)."""
    if session.cancelled:
        return lang.t("session_cancelled")
    if ctx.now() >= session.start:
        return lang.t("session_started")
    return ""


def _recorded_answer(ctx: WebContext, person: Recipient) -> RegistrationStatus | None:
    """The contact's registration status for the link's session, None when there is none."""
    with ctx.db() as db:
        status = db.scalar(
            select(Registration.status).where(
                Registration.contact_id == person.contact_id,
                Registration.session_id == person.session_id,
            )
        )
    return RegistrationStatus(status) if status is not None else None


def _answer(ctx: WebContext, person: Recipient, answer: Answer) -> RegistrationStatus:
    """Register or decline; a refusal by the organisers (denied) stays. Returns the resulting status."""
    wanted = RegistrationStatus.REGISTERED if answer is Answer.YES else RegistrationStatus.DECLINED
    for attempt in range(2):  # a concurrent first answer may insert the row between our read and insert
        now = ctx.now()
        try:
            with ctx.db() as db:
                row = db.scalar(
                    select(Registration)
                    .where(
                        Registration.contact_id == person.contact_id,
                        Registration.session_id == person.session_id,
                    )
                    .with_for_update()
                )
                if row is None:
                    db.add(
                        Registration(
                            contact_id=person.contact_id,
                            session_id=person.session_id,
                            status=wanted,
                            registered_at=now,
                            source=f"web link in message {person.message_pk}",
                        )
                    )
                    return wanted
                if row.status == RegistrationStatus.DENIED:
                    return RegistrationStatus.DENIED
                if row.status != wanted:
                    row.status = wanted
                    row.registered_at = now
                    row.source = f"web link in message {person.message_pk}"
                return wanted
        except IntegrityError:
            if attempt:
                raise
    raise AssertionError("unreachable")


ROUTES = [
    Route("/u/{token}", unsubscribe, methods=["GET", "POST"]),
    Route("/rsvp/{token}", rsvp, methods=["GET", "POST"]),
]
