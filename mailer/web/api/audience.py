"""API endpoints over contacts, lists and registrations: list and page them, import a file, add or update
one contact (through the file import's own rules), suppress an address."""

from __future__ import annotations

import csv
import functools
import io
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Literal, TypeVar

from mailer.audience.contacts import ImportReport, InvalidAddressError, import_contacts, normalise_address
from mailer.audience.registrations import RegistrationReport, import_registrations
from mailer.errors import NotFoundError
from mailer.metrics import IMPORTS
from mailer.store.models import Contact, TokenScope
from mailer.store.outbox import suppress
from mailer.store.queries.directory import contact_by_email, contacts_before, registrations_before
from mailer.web.api.models import (
    ContactIn,
    ContactOut,
    ContactPage,
    ContactQuery,
    ContactSaved,
    FileIn,
    ImportOut,
    RegistrationOut,
    RegistrationPage,
    RegistrationQuery,
    RejectedRow,
    ReplacedCell,
    SuppressIn,
    SuppressOut,
)
from mailer.web.api.spec import Call, endpoint

_T = TypeVar("_T")


# a contact's own cells, as a file of contacts names them
_CONTACT_COLUMNS = ("email", "name", "title", "institution", "country", "language", "time_zone")


def _contact_out(contact: Contact) -> ContactOut:
    fields = {column: getattr(contact, column) for column in _CONTACT_COLUMNS}
    return ContactOut(id=contact.id, status=str(contact.status), **fields)


@endpoint("GET", "/contacts", summary="Contacts, newest first", response=ContactPage, query=ContactQuery)
def list_contacts(call: Call) -> ContactPage:
    query: ContactQuery = call.query
    with call.ctx.db() as db:
        found = contacts_before(
            db, region=query.region, search=query.search, before=query.cursor, limit=query.limit + 1
        )
    more = len(found) > query.limit
    found = found[: query.limit]
    return ContactPage(
        items=[_contact_out(c) for c in found], next_cursor=found[-1].id if more and found else None
    )


def _with_file(upload: FileIn, run: Callable[[Path, Path], _T]) -> _T:
    """``run(path, rejects_path)`` on the uploaded file written to a temporary folder (removed afterwards)."""
    with tempfile.TemporaryDirectory(prefix="mailer-api-") as folder:
        path = Path(folder) / upload.filename
        path.write_text(upload.content, encoding="utf-8")
        return run(path, Path(folder) / "rejects.csv")


def _import_upload(
    upload: FileIn, kind: str, run: Callable[[Path, Path], ImportReport | RegistrationReport]
) -> ImportOut:
    """The answer to an uploaded ``kind`` file ("contacts" or "registrations") imported by ``run``; counted
    in the ``IMPORTS`` metric once the import has finished."""
    report = _with_file(upload, run)
    IMPORTS.labels(kind, "api").inc()
    return ImportOut(
        rows=report.rows,
        created=report.new if isinstance(report, ImportReport) else report.created,
        updated=report.updated,
        unchanged=report.unchanged,
        rejected=[RejectedRow(line=r.line, reason=r.reason) for r in report.rejected],
        duplicates=len(report.duplicates),
        replaced=_replaced(report),
    )


def _replaced(report: ImportReport | RegistrationReport) -> list[ReplacedCell]:
    """The cells a contact import could not use (a registration report replaces none)."""
    cells = report.replaced if isinstance(report, ImportReport) else ()
    return [
        ReplacedCell(line=c.line, column=c.column, value=c.value, used=c.used, problem=c.problem)
        for c in cells
    ]


def _importing(call: Call, target: str, importer: Callable[..., _T]) -> Callable[[Path, Path], _T]:
    """``run(path, rejects_path)`` for :func:`_with_file`: ``importer`` (as :func:`import_contacts`) of the
    file into ``target`` (a region or a session), now."""
    ctx = call.ctx
    by = f"api:{call.token.name}"
    return lambda path, rejects: importer(
        ctx.app.factory,
        ctx.settings,
        path,
        target,
        ctx.now(),
        rejects_path=rejects,
        by=by,
        file_name=path.name,
    )


# An import of an uploaded file: a write, answered with its counts; 404 for an unknown list or session.
_import_endpoint = functools.partial(
    endpoint, "POST", response=ImportOut, body=FileIn, scope=TokenScope.WRITE, errors=(404,)
)


@_import_endpoint(
    "/lists/{region}/import",
    summary="Import a contact file into a region's list (as `mailer contacts import`)",
)
def import_list(call: Call) -> ImportOut:
    return _import_upload(call.body, "contacts", _importing(call, call.path["region"], import_contacts))


@_import_endpoint(
    "/sessions/{session_id}/registrations/import",
    summary="Import a platform's registration report (as `mailer registrations import`)",
)
def import_registration_report(call: Call) -> ImportOut:
    return _import_upload(
        call.body, "registrations", _importing(call, call.path["session_id"], import_registrations)
    )


@endpoint(
    "POST",
    "/contacts",
    summary="Add or update one contact on a region's list (the file import's rules)",
    response=ContactSaved,
    body=ContactIn,
    scope=TokenScope.WRITE,
    errors=(404,),
)
def save_contact(call: Call) -> ContactSaved:
    person: ContactIn = call.body
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(_CONTACT_COLUMNS)
    writer.writerow([getattr(person, column) for column in _CONTACT_COLUMNS])
    upload = FileIn(filename=f"api-{call.token.name}.csv"[:200].replace("/", "-"), content=text.getvalue())
    ctx = call.ctx
    report = _with_file(upload, _importing(call, person.region, import_contacts))
    if report.rejected:
        raise ValueError(report.rejected[0].reason)
    outcome: Literal["created", "updated", "unchanged"] = (
        "created" if report.new else "updated" if report.updated else "unchanged"
    )
    with ctx.db() as db:
        contact = contact_by_email(db, normalise_address(person.email).key)
        assert contact is not None
        return ContactSaved(outcome=outcome, contact=_contact_out(contact), replaced=_replaced(report))


@endpoint(
    "POST",
    "/suppressions",
    summary="Put an address on the suppression list (never mailed again)",
    response=SuppressOut,
    body=SuppressIn,
    scope=TokenScope.WRITE,
)
def suppress_address(call: Call) -> SuppressOut:
    request: SuppressIn = call.body
    try:
        address = normalise_address(request.email)
    except InvalidAddressError as exc:
        raise ValueError(str(exc)) from None
    with call.ctx.db() as db:
        suppress(db, address.key, "manual", request.detail or f"api:{call.token.name}", call.ctx.now())
    return SuppressOut(email=address.email, suppressed=True)


@endpoint(
    "GET",
    "/registrations",
    summary="Registrations, newest first",
    response=RegistrationPage,
    query=RegistrationQuery,
)
def list_registrations(call: Call) -> RegistrationPage:
    query: RegistrationQuery = call.query
    if query.session and query.session not in {s.id for s in call.ctx.settings.series.sessions}:
        raise NotFoundError(f"no session {query.session!r}")
    with call.ctx.db() as db:
        found = registrations_before(
            db, session_id=query.session, status=query.status, before=query.cursor, limit=query.limit + 1
        )
    more = len(found) > query.limit
    found = found[: query.limit]
    items = [
        RegistrationOut(
            id=r.id,
            email=email,
            session=r.session_id,
            status=str(r.status),
            registered_at=r.registered_at,
            source=r.source,
        )
        for r, email in found
    ]
    return RegistrationPage(items=items, next_cursor=found[-1][0].id if more and found else None)
