"""``mailer templates check`` and ``mailer templates render-all``: the templates as organisers will see them."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from mailer.app import outgoing
from mailer.cli import AppContext, pass_ctx
from mailer.compose.checks import SUBJECT_WARN, check_templates, write_samples
from mailer.config import load_settings
from mailer.errors import NotFoundError
from mailer.timeline.clock import SystemClock


@click.group("templates")
def templates() -> None:
    """Check the email templates, or render every one of them to look at."""


@templates.command("check")
@pass_ctx
def check(ctx: AppContext) -> None:
    """Parse every template, check variables, languages and subject lengths; exit 1 on errors.

    Every step kind must have a subject, text and HTML part in every offered language (its own, its
    family's, or a declared fallback's: a warning), use only variables the renderer provides, render for
    every session, and keep subjects within about 78 characters (a warning).
    """
    settings = load_settings(ctx.config_dir, database_url=ctx.database_url or "sqlite://")
    report = check_templates(settings)
    for finding in report.findings:
        colour = {"error": "red", "warning": "yellow"}.get(finding.level)
        click.secho(str(finding), fg=colour, err=finding.level == "error")
    folders = len({step.template for step in settings.series.steps} | {"notice"})
    summary = (
        f"{len(report.errors)} error(s), {len(report.warnings)} warning(s): {folders} step templates, "
        f"{len(settings.languages)} languages ({', '.join(settings.languages)}), subjects up to "
        f"{SUBJECT_WARN} characters"
    )
    click.echo(summary)
    if report.errors:
        sys.exit(1)


@templates.command("render-all")
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder to write <session>/<step>.<language>.eml and .html into.",
)
@click.option(
    "--session", "session_ids", multiple=True, help="Only this session (repeatable) [default: all]."
)
@click.option(
    "--language", "languages", multiple=True, help="Only this language (repeatable) [default: offered]."
)
@pass_ctx
def render_all(
    ctx: AppContext, out_dir: Path, session_ids: tuple[str, ...], languages: tuple[str, ...]
) -> None:
    """Render every step (and both notices) in every language for a sample contact, as .eml and .html files."""
    settings = load_settings(ctx.config_dir, database_url=ctx.database_url or "sqlite://")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        written = write_samples(
            settings,
            out_dir,
            date=SystemClock().now(),
            sessions=list(session_ids) or None,
            languages=languages or None,
            outgoing=outgoing(settings),
        )
    except KeyError as exc:
        raise NotFoundError(str(exc.args[0])) from None
    except OSError as exc:
        where = exc.filename or out_dir
        raise click.ClickException(
            f"cannot write to {where}: {exc.strerror or exc} (give --out a folder you can write to)"
        ) from None
    click.echo(f"{len(written) // 2} messages written to {out_dir} (.eml and .html)")


COMMANDS = [templates]
