"""``mailer contacts ...`` and ``mailer registrations ...``: import organisers' files, look contacts up.

    mailer contacts import FILE --region REGION [--rejects PATH]
    mailer contacts list [--region R] [--search TEXT] [--limit N]
    mailer contacts show EMAIL
    mailer registrations import FILE --session SESSION [--rejects PATH] [--force]

An unknown region or session is a usage error (exit code 2) naming the known ones. Progress goes to stderr,
only when stderr is a terminal or the file is big; summaries go to stdout.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn
from rich.table import Table

from mailer.app import App
from mailer.audience.addresses import email_key
from mailer.audience.contact_queries import contact_by_email, find_contacts
from mailer.audience.contacts import ImportReport, import_contacts
from mailer.audience.registrations import RegistrationReport, import_registrations
from mailer.audience.row_import import Rejected
from mailer.cli import AppContext, output_console, pass_ctx
from mailer.cli.imports import cli_user
from mailer.cli.params import LIMIT
from mailer.errors import NotFoundError, ReportMismatchError
from mailer.store.engine import transaction
from mailer.store.suppressions import suppression_of
from mailer.timeline.clock import SystemClock

_T = TypeVar("_T")

#: Files with more physical lines than this get a progress bar even when stderr is not a terminal.
BIG_FILE_LINES = 5000


class NotFound(click.ClickException):
    """A looked-up thing does not exist: one line on stderr, exit code 2 (like the root command's errors)."""

    exit_code = 2


class ProgressBar:
    """A progress callback (lines done, total lines) drawing a rich bar on stderr once it is worth showing."""

    def __init__(self, description: str) -> None:
        self.description = description
        self._progress: Progress | None = None
        self._task = TaskID(0)

    def __call__(self, done: int, total: int) -> None:
        if self._progress is None:
            if not (sys.stderr.isatty() or total > BIG_FILE_LINES):
                return
            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("lines"),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            self._progress.start()
            self._task = self._progress.add_task(self.description, total=total)
        self._progress.update(self._task, completed=done)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()


def _open(ctx: AppContext, *, existing: bool = False) -> App:
    """The store, closed with the command; ``existing``: refuse one that was never made (reading commands)."""
    app = ctx.existing_app if existing else ctx.app
    click.get_current_context().call_on_close(app.close)
    return app


def _check_region(app: App, region: str) -> None:
    if region not in app.settings.regions:
        known = ", ".join(sorted(app.settings.regions))
        raise click.BadParameter(f"unknown region {region!r} (known: {known})", param_hint="--region")


def _echo_rejected(rejected: tuple[Rejected, ...]) -> None:
    if rejected:
        click.echo("Rejected rows:")
    for row in rejected:
        value = row.raw_email.strip() or "blank"
        click.echo(f"  line {row.line}: {row.reason} ({value})")


def _rejects_note(path: Path | None) -> str:
    return f"  (written to {path})" if path else ""


def _echo_left_out(report: ImportReport | RegistrationReport, width: int) -> None:
    """The counts of rejected and duplicate rows, their labels padded to ``width`` characters."""
    click.echo(f"  {'rejected':{width}}{len(report.rejected):6d}{_rejects_note(report.rejects_path)}")
    click.echo(f"  {'duplicates':{width}}{len(report.duplicates):6d}")


def _echo_record(import_id: int) -> None:
    """Which import recorded it and how to undo it (nothing for a dry run, which records nothing)."""
    if import_id:
        click.echo(f"  recorded as import {import_id} (undo: mailer imports undo {import_id})")


def print_import_report(report: ImportReport) -> None:
    """The summary of a contact import, then each rejected row and duplicate with its line."""
    click.echo(
        f"{report.path.name} -> {report.region} list: {report.rows} rows read "
        f"({report.encoding}, delimiter {report.delimiter!r})"
    )
    click.echo(f"  {report.outcome}")
    _echo_left_out(report, 11)
    if report.replaced:
        click.echo(f"  replaced   {len(report.replaced):6d}  (cells not understood; the rows were imported)")
    _echo_record(report.import_id)
    _echo_rejected(report.rejected)
    if report.duplicates:
        click.echo("Duplicates (the first row wins):")
    for duplicate in report.duplicates:
        click.echo(f"  line {duplicate.line}: {duplicate.email} (same address as line {duplicate.kept_line})")
    if report.replaced:
        click.echo("Replaced cells (correct them in the file and import it again):")
    for cell in report.replaced:
        click.echo(f"  line {cell.line}: {cell.column} {cell.value!r} {cell.problem}; {cell.used} used")


def print_registration_report(report: RegistrationReport) -> None:
    """The summary of a registration import, then each rejected row and duplicate with its line."""
    click.echo(
        f"{report.path.name} -> session {report.session_id}: {report.rows} rows read "
        f"(registration times in {report.zone_name})"
    )
    click.echo(f"  registered   {report.registered:6d}")
    click.echo(f"  denied       {report.denied:6d}")
    click.echo(f"  declined     {report.declined:6d}")
    click.echo(f"  new contacts {report.new_contacts:6d}")
    click.echo(
        f"  stored       {report.created:6d} new, {report.updated} updated, {report.unchanged} unchanged"
    )
    _echo_left_out(report, 13)
    _echo_record(report.import_id)
    if report.mismatch:
        click.echo(f"  imported with --force although {report.mismatch}")
    _echo_rejected(report.rejected)
    for duplicate in report.duplicates:
        click.echo(f"  line {duplicate.line}: duplicate of line {duplicate.kept_line} ({duplicate.email})")


def _import_with_bar(
    app: App, importer: Callable[..., _T], file: Path, target: str, rejects: Path | None, **options: object
) -> _T:
    """``importer`` (:func:`import_contacts` or :func:`import_registrations`) of ``file`` into ``target`` (a
    region or a session) now, by the command line's user, with a progress bar; ``options`` passed on."""
    bar = ProgressBar(f"importing {file.name}")
    try:
        return importer(
            app.factory,
            app.settings,
            file,
            target,
            SystemClock().now(),
            rejects_path=rejects,
            progress=bar,
            by=cli_user(),
            **options,
        )
    finally:
        bar.close()


@click.group("contacts")
def contacts_group() -> None:
    """Contact lists: import organisers' files, list and show contacts."""


@contacts_group.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--region", required=True, help="Region whose contact list the file feeds (see mailer.toml).")
@click.option(
    "--rejects",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write rejected rows [default: var/rejects/<file>-rejects.csv].",
)
@pass_ctx
def import_contacts_command(ctx: AppContext, file: Path, region: str, rejects: Path | None) -> None:
    """Import a CSV export of contacts into REGION's list (idempotent; committed chunk by chunk)."""
    app = _open(ctx)
    _check_region(app, region)
    report = _import_with_bar(app, import_contacts, file, region, rejects)
    print_import_report(report)


@contacts_group.command("list")
@click.option("--region", help="Only contacts on this region's list.")
@click.option("--search", help="Text in the address, name or institution (any case).")
@click.option("--limit", type=LIMIT, default=50, show_default=True, help="Rows to show.")
@pass_ctx
def list_contacts_command(ctx: AppContext, region: str | None, search: str | None, limit: int) -> None:
    """Show contacts as a table, ordered by address."""
    app = _open(ctx, existing=True)
    if region:
        _check_region(app, region)
    views, total = find_contacts(app.factory, region=region, search=search, limit=limit)
    table = Table("Email", "Name", "Country", "Lang", "Time zone", "Lists", "Status")
    for view in views:
        name = " ".join(part for part in (view.title, view.name) if part)
        table.add_row(
            view.email,
            name,
            view.country,
            view.language,
            view.time_zone,
            ", ".join(view.regions),
            view.status,
        )
    console = output_console()
    console.print(table)
    console.print(f"{len(views)} of {total} contacts shown")


@contacts_group.command("show")
@click.argument("email")
@pass_ctx
def show_contact_command(ctx: AppContext, email: str) -> None:
    """Show one contact (address in any case), its lists and registrations."""
    app = _open(ctx, existing=True)
    try:
        view = contact_by_email(app.factory, email)
    except NotFoundError as exc:
        raise NotFound(str(exc)) from None
    fields = [
        ("email", view.email),
        ("name", view.name),
        ("title", view.title),
        ("institution", view.institution),
        ("country", view.country),
        ("language", view.language),
        ("time zone", view.time_zone),
        ("needs SMTPUTF8", "yes" if view.needs_smtputf8 else "no"),
        ("status", view.status),
        ("lists", ", ".join(view.regions) or "-"),
        (
            "registrations",
            ", ".join(f"{session} ({status})" for session, status in view.registrations) or "-",
        ),
        ("created", view.created_at.isoformat()),
        ("updated", view.updated_at.isoformat()),
    ]
    with transaction(app.factory) as db:
        suppression = suppression_of(db, email_key(view.email))
    if suppression is not None:
        fields.append(
            ("suppressed", f"{suppression.reason} since {suppression.created_at:%Y-%m-%d %H:%M} UTC")
        )
        if suppression.last_report:
            fields.append(("last report", suppression.last_report))
    for label, value in fields:
        click.echo(f"{label:15} {value}")


@click.group("registrations")
def registrations_group() -> None:
    """Registrations for sessions: import platform reports."""


@registrations_group.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--session", "session_id", required=True, help="Session id the report belongs to (see series.toml)."
)
@click.option(
    "--rejects",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write rejected rows [default: var/rejects/<file>-rejects.csv].",
)
@click.option(
    "--force",
    is_flag=True,
    help="Import although the report's title or date does not match the session's.",
)
@pass_ctx
def import_registrations_command(
    ctx: AppContext, file: Path, session_id: str, rejects: Path | None, force: bool
) -> None:
    """Import a webinar platform's registration report for SESSION (idempotent; committed chunk by chunk).

    A report whose preamble names another title or date than the session's is refused, unless --force."""
    app = _open(ctx)
    known = [session.id for session in app.settings.series.sessions]
    if session_id not in known:
        raise click.BadParameter(
            f"unknown session {session_id!r} (known: {', '.join(known)})", param_hint="--session"
        )
    try:
        report = _import_with_bar(app, import_registrations, file, session_id, rejects, force=force)
    except ReportMismatchError as exc:
        raise ReportMismatchError(exc.confirm_by("--force")) from None
    print_registration_report(report)


COMMANDS = [contacts_group, registrations_group]
