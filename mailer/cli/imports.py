"""``mailer imports ...``: the record of contact and registration imports, and undoing one.

    mailer imports list [--limit N]
    mailer imports undo ID

Undo withdraws what the import made (see :mod:`mailer.audience.import_undo`); what was sent stays in the log.
"""

from __future__ import annotations

import getpass
import os

import click

from mailer.cli import AppContext, output_console, pass_ctx
from mailer.cli.params import LIMIT, ROW_ID
from mailer.errors import NotFoundError
from mailer.timeline.clock import SystemClock


class NotFound(click.ClickException):
    """An unknown import: one line on stderr, exit code 2."""

    exit_code = 2


def cli_user() -> str:
    """Who runs the command, as recorded with an import or an undo ("cli:USER")."""
    try:
        name = os.environ.get("USER") or getpass.getuser()
    except (KeyError, OSError):
        name = "?"
    return f"cli:{name}"


@click.group("imports")
def imports_group() -> None:
    """Imports of contacts and registration reports: list them, undo one."""


@imports_group.command("list")
@click.option("--limit", type=LIMIT, default=50, show_default=True, help="Imports to show.")
@pass_ctx
def list_imports_command(ctx: AppContext, limit: int) -> None:
    """Show recent imports, newest first: who, when, file and hash, counts, whether undone."""
    from rich.table import Table

    from mailer.audience.import_log import list_imports

    app = ctx.existing_app
    click.get_current_context().call_on_close(app.close)
    views = list_imports(app.factory, limit)
    table = Table("Id", "When (UTC)", "By", "Kind", "Into", "File", "SHA-256", "Rows", "Result")
    for view in views:
        state = (
            f"undone {view.undone_at:%Y-%m-%d %H:%M} by {view.undone_by}: {view.undo_summary}"
            if view.undone_at
            else view.result + (" (forced)" if view.forced else "")
        )
        table.add_row(
            str(view.id),
            f"{view.imported_at:%Y-%m-%d %H:%M}",
            view.imported_by,
            view.kind,
            view.target,
            view.file_name,
            view.sha256[:12],
            str(view.rows),
            state,
        )
    console = output_console()
    console.print(table)
    console.print(f"{len(views)} imports shown")


@imports_group.command("undo")
@click.argument("import_id", type=ROW_ID)
@pass_ctx
def undo_import_command(ctx: AppContext, import_id: int) -> None:
    """Take import IMPORT_ID back: contacts it created and never mailed removed, registrations withdrawn."""
    from mailer.audience.import_undo import undo_import

    app = ctx.existing_app
    click.get_current_context().call_on_close(app.close)
    try:
        report = undo_import(app.factory, import_id, cli_user(), SystemClock().now())
    except NotFoundError as exc:
        raise NotFound(str(exc)) from None
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"import {import_id} undone: {report.summary}")


COMMANDS = [imports_group]
