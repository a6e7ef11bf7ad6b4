"""Staff pages about people: find a contact by address or name, and everything about one.

GET  /staff/contacts                 search by address, name or institution (``q``), optionally one list
GET  /staff/contacts/find?email=A    the contact with that address (links from the log), else the search
GET  /staff/contacts/{id}            lists, language, zone, suppression with its reason, registrations and
                                     answers, every message with its status (each linked to its page)
POST /organise/contacts/{id}/edit    correct name, title, institution, country, language, zone (organisers)
POST /organise/contacts/{id}/remove  take the contact off one list (``region``, ``confirm=yes``): pending
                                     messages of its waves skipped; deleted when held by nothing and never
                                     mailed; a suppression stays (mailer.audience.contact_edit)
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import select
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from mailer.audience.contact_edit import EDITABLE, ContactEditError, edit_contact, remove_from_list
from mailer.audience.contact_queries import ContactView, find_contacts
from mailer.errors import NotFoundError
from mailer.store.models import Contact, ContactList, ListMembership, Message, Registration
from mailer.store.suppressions import suppression_of
from mailer.web.app import context_of
from mailer.web.inputs import row_id
from mailer.web.staff import user_of

log = logging.getLogger(__name__)

PAGE_LIMIT = 100
_MAX_QUERY = 320


def _text(request: Request, name: str) -> str:
    value = request.query_params.get(name, "")
    return value.strip()[:_MAX_QUERY] if value.isprintable() else ""


def contacts_page(request: Request) -> Response:
    ctx = context_of(request)
    query = _text(request, "q")
    region = _text(request, "region")
    if region and region not in ctx.settings.regions:
        region = ""
    views: list[ContactView] = []
    total = 0
    if query or region:
        views, total = find_contacts(ctx.app.factory, region=region or None, search=query, limit=PAGE_LIMIT)
    with ctx.db() as db:
        ids = (
            dict(
                db.execute(
                    select(Contact.email_key, Contact.id).where(
                        Contact.email_key.in_([view.email.casefold() for view in views])
                    )
                ).all()
            )
            if views
            else {}
        )
    rows = [{"view": view, "id": ids.get(view.email.casefold())} for view in views]
    return ctx.page(
        request,
        "staff/contacts.html",
        {
            "rows": rows,
            "total": total,
            "q": query,
            "region": region,
            "regions": ctx.settings.regions,
            "flash": _text(request, "removed"),
        },
    )


def find_contact(request: Request) -> Response:
    """The contact page of the address ``email`` (any case); the search when there is no such contact."""
    ctx = context_of(request)
    email = _text(request, "email")
    with ctx.db() as db:
        contact_id = (
            db.scalar(select(Contact.id).where(Contact.email_key == email.casefold())) if email else None
        )
    if contact_id is None:
        return RedirectResponse("/staff/contacts?" + urlencode({"q": email}), status_code=303)
    return RedirectResponse(f"/staff/contacts/{contact_id}", status_code=303)


def contact_page(request: Request) -> Response:
    return _contact_page(request, row_id(request, "contact_id"))


def _contact_page(
    request: Request, contact_id: int, *, entered: Mapping[str, str] | None = None, edit_error: str = ""
) -> Response:
    """The contact's page; with ``edit_error``, answered 400 with the correction form holding what was
    ``entered`` (the organiser's input kept, the error above it)."""
    ctx = context_of(request)
    with ctx.db() as db:
        contact = db.get(Contact, contact_id)
        if contact is None:
            raise HTTPException(404, f"no contact {contact_id}")
        lists = db.execute(
            select(ContactList.region, ContactList.name, ListMembership.source, ListMembership.added_at)
            .join(ListMembership, ListMembership.list_id == ContactList.id)
            .where(ListMembership.contact_id == contact_id)
            .order_by(ContactList.region)
        ).all()
        registrations = list(
            db.scalars(
                select(Registration)
                .where(Registration.contact_id == contact_id)
                .order_by(Registration.session_id)
            )
        )
        messages = list(
            db.scalars(
                select(Message).where(Message.contact_id == contact_id).order_by(Message.due_at, Message.id)
            )
        )
        suppression = suppression_of(db, contact.email_key)
        db.expunge_all()
    titles = {session.id: session.title for session in ctx.settings.series.sessions}
    context: dict[str, Any] = {
        "contact": contact,
        "lists": lists,
        "registrations": registrations,
        "messages": messages,
        "suppression": suppression,
        "titles": titles,
        "flash": "" if edit_error else request.query_params.get("done", "")[:200],
        "entered": {field: (entered or {}).get(field, getattr(contact, field)) for field in EDITABLE},
        "edit_error": edit_error,
    }
    return ctx.page(request, "staff/contact.html", context, status_code=400 if edit_error else 200)


async def edit(request: Request) -> Response:
    """Correct the contact's fields from the form; back to the contact page saying what changed."""
    ctx = context_of(request)
    contact_id = row_id(request, "contact_id")
    form = await request.form()
    values = {field: str(form.get(field, ""))[:2000] for field in EDITABLE if field in form}
    user = user_of(request).username

    def change() -> list[str]:
        with ctx.db() as db:
            return edit_contact(db, contact_id, values, ctx.now())

    try:
        changed = await run_in_threadpool(change)
    except NotFoundError as exc:
        raise HTTPException(404, str(exc)) from None
    except ContactEditError as exc:
        return await run_in_threadpool(
            _contact_page, request, contact_id, entered=values, edit_error=str(exc)
        )
    log.info("contact %d edited by web:%s: %s", contact_id, user, ", ".join(changed) or "no change")
    done = "changed: " + ", ".join(changed) if changed else "nothing changed"
    return RedirectResponse(f"/staff/contacts/{contact_id}?{urlencode({'done': done})}", status_code=303)


async def remove(request: Request) -> Response:
    """Take the contact off the form's ``region`` list (needs ``confirm=yes``)."""
    ctx = context_of(request)
    contact_id = row_id(request, "contact_id")
    form = await request.form()
    region = str(form.get("region", ""))
    if region not in ctx.settings.regions:
        raise HTTPException(400, "choose one of the contact's lists")
    if form.get("confirm") != "yes":
        raise HTTPException(400, "tick 'I am sure' to remove the contact from the list")
    user = user_of(request).username

    def change() -> tuple[int, bool]:
        with ctx.db() as db:
            removal = remove_from_list(db, contact_id, region, ctx.now())
            return removal.skipped, removal.deleted

    try:
        skipped, deleted = await run_in_threadpool(change)
    except NotFoundError as exc:
        raise HTTPException(404, str(exc)) from None
    log.info("contact %d removed from %s by web:%s (deleted: %s)", contact_id, region, user, deleted)
    if deleted:
        query = urlencode({"region": region, "removed": f"contact {contact_id} removed and deleted"})
        return RedirectResponse(f"/staff/contacts?{query}", status_code=303)
    done = f"removed from the {region} list; {skipped} pending message{'' if skipped == 1 else 's'} skipped"
    return RedirectResponse(f"/staff/contacts/{contact_id}?{urlencode({'done': done})}", status_code=303)


ROUTES = [
    Route("/staff/contacts", contacts_page),
    Route("/staff/contacts/find", find_contact),
    Route("/staff/contacts/{contact_id:int}", contact_page),
    Route("/organise/contacts/{contact_id:int}/edit", edit, methods=["POST"]),
    Route("/organise/contacts/{contact_id:int}/remove", remove, methods=["POST"]),
]

__all__ = ["ROUTES"]
