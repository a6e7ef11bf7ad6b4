"""Organisers' imports in the browser: upload, see the report, confirm; the record of imports; undo.

GET  /organise/imports                   recent imports and the two upload forms
POST /organise/imports/check             upload a contacts spreadsheet (CSV or .xlsx) for a region, or a
                                         registration report for a session: the import runs as a dry run and
                                         the page shows the CLI's report (counts, rejected rows with line and
                                         reason, replaced cells, duplicates, the rejects to download) with a
                                         confirm button; a report whose title or date does not match the
                                         session is refused with both shown and a checkbox to import it anyway
POST /organise/imports/confirm           the same file imported for real (recorded), then its page; a file of
                                         BACKGROUND_BYTES or more is imported in a thread of its own and the
                                         organiser sees its progress first
GET  /organise/imports/running/{token}   that progress (lines read of the file's lines, refreshed every two
                                         seconds), then the import's page, or what stopped it; kept in the
                                         store (mailer.store.import_runs), so any web process shows it and
                                         an upload confirmed twice (anywhere) is imported once
GET  /organise/imports/{id}              one import: who, when, file and SHA-256, counts, undo
POST /organise/imports/{id}/undo         take it back (mailer.audience.import_undo)
GET  /organise/imports/rejects/{token}   the rejected rows of a checked upload, as CSV

Uploads wait under ``var/uploads/`` (named by a random token, removed after a day) between check and confirm.
"""

from __future__ import annotations

import logging
import re
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import Route

from mailer.audience.contacts import ImportReport, import_contacts
from mailer.audience.import_log import import_view, list_imports
from mailer.audience.import_undo import undo_import
from mailer.audience.registrations import RegistrationReport, import_registrations
from mailer.audience.row_import import ProgressCallback
from mailer.errors import ImportFileError, NotFoundError, ReportMismatchError
from mailer.metrics import IMPORTS
from mailer.store.import_runs import claim_run, finish_run, load_run, note_progress
from mailer.web.app import WebContext, context_of
from mailer.web.inputs import row_id
from mailer.web.staff import user_of

log = logging.getLogger(__name__)

_SUFFIXES = (".csv", ".txt", ".tsv", ".xlsx", ".xlsm")
BACKGROUND_BYTES = 1_000_000  # uploads at least this large are confirmed in a thread, with a progress page
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{24}$")
_KEEP_SECONDS = 24 * 3600
KINDS = ("contacts", "registrations")


def uploads_dir(ctx: WebContext) -> Path:
    """``var/uploads`` under the project root, made on first use."""
    folder = ctx.settings.base_dir / "var" / "uploads"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _clean_old(folder: Path) -> None:
    limit = time.time() - _KEEP_SECONDS
    for path in folder.iterdir():
        try:
            if path.stat().st_mtime < limit:
                path.unlink()
        except OSError:
            continue


@dataclass(frozen=True)
class Upload:
    """A file waiting between check and confirm: its token, where it is and the name the organiser gave it."""

    token: str
    path: Path
    name: str

    @property
    def rejects(self) -> Path:
        return self.path.with_name(f"{self.token}-rejects.csv")


def _file_name(text: str) -> str:
    name = Path(text.replace("\\", "/")).name.strip()
    return "".join(c for c in name if c.isprintable())[:255] or "upload.csv"


async def _save(ctx: WebContext, upload: UploadFile) -> Upload:
    name = _file_name(upload.filename or "")
    suffix = Path(name).suffix.lower()
    suffix = suffix if suffix in _SUFFIXES else ".csv"
    data = await upload.read()
    if not data:
        raise HTTPException(400, "the file is empty: choose the export to import")
    folder = uploads_dir(ctx)
    _clean_old(folder)
    token = secrets.token_urlsafe(18)
    path = folder / f"{token}{suffix}"
    path.write_bytes(data)
    return Upload(token, path, name)


def _waiting(ctx: WebContext, token: str, name: str) -> Upload:
    if not _TOKEN.match(token):
        raise HTTPException(404, "no such upload")
    for suffix in _SUFFIXES:
        path = uploads_dir(ctx) / f"{token}{suffix}"
        if path.is_file():
            return Upload(token, path, _file_name(name))
    raise HTTPException(404, "this upload is gone (uploads are kept for a day): upload the file again")


def _target(ctx: WebContext, form: FormData) -> tuple[str, str]:
    kind = str(form.get("kind", ""))
    if kind not in KINDS:
        raise HTTPException(400, "choose what the file holds: contacts or registrations")
    target = str(form.get("target", ""))
    known = ctx.settings.regions if kind == "contacts" else {s.id for s in ctx.settings.series.sessions}
    if target not in known:
        raise HTTPException(400, f"choose a {'list' if kind == 'contacts' else 'session'}")
    return kind, target


def confirm_hint(target: str) -> str:
    """How an organiser confirms on the web that a registration report belongs to session ``target``: the
    check page's checkbox (the command line's ``--force``), named by its label."""
    return f"tick 'This report belongs to {target} all the same' when checking the file"


def _run(
    ctx: WebContext,
    kind: str,
    target: str,
    upload: Upload,
    *,
    force: bool,
    dry_run: bool,
    by: str,
    progress: ProgressCallback | None = None,
) -> ImportReport | RegistrationReport:
    """Import (or, with ``dry_run``, check) the ``upload`` of ``kind`` into ``target``; a stored import is
    counted in ``mailer_imports_total{via="web"}``. Raises what the importer raises."""
    source = (ctx.app.factory, ctx.settings, upload.path, target, ctx.now())
    report: ImportReport | RegistrationReport
    if kind == "contacts":
        report = import_contacts(
            *source,
            rejects_path=upload.rejects,
            by=by,
            dry_run=dry_run,
            file_name=upload.name,
            progress=progress,
        )
    else:
        report = import_registrations(
            *source,
            rejects_path=upload.rejects,
            by=by,
            force=force,
            dry_run=dry_run,
            file_name=upload.name,
            progress=progress,
        )
    if not dry_run:
        IMPORTS.labels(kind, "web").inc()
    return report


_NOTE_EVERY = 1.0  # seconds between progress notes in the store


def _wall_now() -> datetime:
    """Wall-clock UTC for a run's liveness (:mod:`mailer.store.import_runs`), whatever clock the pages show."""
    return datetime.now(UTC)


def _background(ctx: WebContext, kind: str, target: str, upload: Upload, force: bool, by: str) -> None:
    """Import ``upload`` in this thread, noting its progress in the store (at most once a second) and then
    its import id, or what stopped it."""
    factory = ctx.app.factory
    noted = 0.0

    def progress(done: int, total: int) -> None:
        nonlocal noted
        moment = time.monotonic()
        if moment - noted >= _NOTE_EVERY or done >= total:
            noted = moment
            note_progress(factory, upload.token, done, total, _wall_now())

    error = ""
    import_id: int | None = None
    try:
        report = _run(ctx, kind, target, upload, force=force, dry_run=False, by=by, progress=progress)
        import_id = report.import_id
    except ReportMismatchError as exc:
        error = exc.confirm_by(confirm_hint(target))
    except (ImportFileError, NotFoundError) as exc:
        error = str(exc)
    except Exception:  # a thread of its own: nothing above it would report the failure
        log.exception("import of %s by %s failed", upload.name, by)
        error = (
            "the import stopped on an unexpected error (see the service's log); nothing after it was stored"
        )
    finally:
        upload.path.unlink(missing_ok=True)
    try:
        finish_run(factory, upload.token, _wall_now(), import_id=import_id, error=error)
    except Exception:
        log.exception("could not record the end of the import of %s", upload.name)


def imports_page(request: Request) -> Response:
    ctx = context_of(request)
    return ctx.page(
        request,
        "organise/imports.html",
        {
            "imports": list_imports(ctx.app.factory, 100),
            "regions": ctx.settings.regions,
            "sessions": ctx.settings.series.sessions,
        },
    )


async def check(request: Request) -> Response:
    """Dry-run an uploaded file (or one already uploaded, with ``upload``) and show what importing it does."""
    ctx = context_of(request)
    user = user_of(request)
    form = await request.form(max_files=1, max_fields=20)
    kind, target = _target(ctx, form)
    force = form.get("force") == "yes"
    file = form.get("file")
    if isinstance(file, UploadFile) and file.filename:
        upload = await _save(ctx, file)
    elif "upload" not in form:  # the first check of a file, sent with none chosen
        raise HTTPException(400, "no file chosen: choose the export to import")
    else:
        upload = _waiting(ctx, str(form.get("upload", "")), str(form.get("name", "")))
    context: dict[str, Any] = {"kind": kind, "target": target, "upload": upload, "force": force}
    context.update(report=None, error="", mismatch=False)
    try:
        context["report"] = await run_in_threadpool(
            _run, ctx, kind, target, upload, force=force, dry_run=True, by=f"web:{user.username}"
        )
    except ReportMismatchError as exc:
        context.update(error=exc.confirm_by(confirm_hint(target)), mismatch=True)
    except (ImportFileError, NotFoundError) as exc:
        context["error"] = str(exc)
    status = 200 if context["report"] is not None else 422
    return ctx.page(request, "organise/import_check.html", context, status_code=status)


async def confirm(request: Request) -> Response:
    """Import a checked upload, once: the first confirm of an upload claims its run in the store
    (:func:`mailer.store.import_runs.claim_run`); any other confirm of it, from this process or another, is
    sent to that run's page. A file of ``BACKGROUND_BYTES`` or more is imported in a thread of its own."""
    ctx = context_of(request)
    user = user_of(request)
    form = await request.form(max_files=0, max_fields=20)
    kind, target = _target(ctx, form)
    token, name = str(form.get("upload", "")), _file_name(str(form.get("name", "")))
    if not _TOKEN.match(token):
        raise HTTPException(404, "no such upload")
    force = form.get("force") == "yes"
    by = f"web:{user.username}"
    factory = ctx.app.factory
    running = f"/organise/imports/running/{token}"
    if not await run_in_threadpool(claim_run, factory, token, name, by, _wall_now()):
        return RedirectResponse(running, status_code=303)
    try:
        upload = _waiting(ctx, token, name)
    except HTTPException as exc:
        await run_in_threadpool(finish_run, factory, token, _wall_now(), error=str(exc.detail))
        raise
    if upload.path.stat().st_size >= BACKGROUND_BYTES:
        threading.Thread(target=_background, args=(ctx, kind, target, upload, force, by), daemon=True).start()
        return RedirectResponse(running, status_code=303)
    try:
        report = await run_in_threadpool(_run, ctx, kind, target, upload, force=force, dry_run=False, by=by)
    except (ReportMismatchError, ImportFileError, NotFoundError) as exc:
        error = exc.confirm_by(confirm_hint(target)) if isinstance(exc, ReportMismatchError) else str(exc)
        await run_in_threadpool(finish_run, factory, token, _wall_now(), error=error)
        raise HTTPException(409, error) from None
    except BaseException:
        await run_in_threadpool(finish_run, factory, token, _wall_now(), error="the import stopped")
        raise
    await run_in_threadpool(finish_run, factory, token, _wall_now(), import_id=report.import_id)
    upload.path.unlink(missing_ok=True)
    return RedirectResponse(f"/organise/imports/{report.import_id}", status_code=303)


def running_page(request: Request) -> Response:
    """An import's progress, from whichever web process answers; its page once done (303), or what stopped
    it (409)."""
    ctx = context_of(request)
    token = request.path_params["token"]
    run = load_run(ctx.app.factory, token) if _TOKEN.match(token) else None
    if run is None:
        raise HTTPException(404, "no import of this upload was started (or it ended more than a day ago)")
    if run.import_id is not None:
        return RedirectResponse(f"/organise/imports/{run.import_id}", status_code=303)
    error = run.stopped(_wall_now())
    percent = round(100 * run.done / run.total) if run.total else 0
    return ctx.page(
        request,
        "organise/import_running.html",
        {"job": run, "error": error, "percent": percent},
        status_code=409 if error else 200,
    )


def import_page(request: Request) -> Response:
    ctx = context_of(request)
    import_id = row_id(request, "import_id")
    view = import_view(ctx.app.factory, import_id)
    if view is None:
        raise HTTPException(404, f"no import {import_id}")
    return ctx.page(
        request, "organise/import.html", {"record": view, "flash": request.query_params.get("done", "")}
    )


async def undo(request: Request) -> Response:
    ctx = context_of(request)
    user = user_of(request)
    import_id = row_id(request, "import_id")
    if (await request.form(max_files=0, max_fields=10)).get("confirm") != "yes":
        raise HTTPException(400, "tick 'I am sure' to undo an import")
    try:
        await run_in_threadpool(undo_import, ctx.app.factory, import_id, f"web:{user.username}", ctx.now())
    except NotFoundError as exc:
        raise HTTPException(404, str(exc)) from None
    except ValueError as exc:
        raise HTTPException(409, str(exc)) from None
    return RedirectResponse(f"/organise/imports/{import_id}?done=undo", status_code=303)


def rejects(request: Request) -> Response:
    ctx = context_of(request)
    token = request.path_params["token"]
    if not _TOKEN.match(token):
        raise HTTPException(404, "no such file")
    path = uploads_dir(ctx) / f"{token}-rejects.csv"
    if not path.is_file():
        raise HTTPException(404, "no rejected rows for this upload (or it is more than a day old)")
    return FileResponse(path, media_type="text/csv; charset=utf-8", filename="rejects.csv")


ROUTES = [
    Route("/organise/imports", imports_page),
    Route("/organise/imports/check", check, methods=["POST"]),
    Route("/organise/imports/confirm", confirm, methods=["POST"]),
    Route("/organise/imports/running/{token}", running_page),
    Route("/organise/imports/{import_id:int}", import_page),
    Route("/organise/imports/{import_id:int}/undo", undo, methods=["POST"]),
    Route("/organise/imports/rejects/{token}", rejects),
]

__all__ = ["ROUTES", "confirm_hint", "uploads_dir"]
