"""The ``mailer`` command. Each group lives in its own module and is registered here."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click
from rich.console import Console
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError

from mailer.app import App, open_app
from mailer.errors import MailerError
from mailer.logformat import FORMATS, LOG_FORMAT_ENV, configure_logging


class AppContext:
    """Lazily opened :class:`App` for the command being run."""

    def __init__(self, config_dir: Path | None, database_url: str | None) -> None:
        self.config_dir = config_dir
        self.database_url = database_url
        self._app: App | None = None

    @property
    def app(self) -> App:
        if self._app is None:
            self._app = open_app(config_dir=self.config_dir, database_url=self.database_url)
        return self._app


pass_ctx = click.make_pass_decorator(AppContext)


def output_console() -> Console:
    """Where commands print: the terminal's width, or 200 columns when the output goes to a pipe or a file
    (rich would otherwise assume 80 and cut table cells)."""
    return Console(width=None if sys.stdout.isatty() else 200)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="MAILER_CONFIG",
    help="Config folder holding mailer.toml and series.toml [default: ./config].",
)
@click.option("--database-url", envvar="DATABASE_URL", help="SQLAlchemy URL; overrides mailer.toml.")
@click.option("-v", "--verbose", is_flag=True, help="Log debug details (language fallbacks, SMTP replies).")
@click.option(
    "--log-format",
    type=click.Choice(FORMATS),
    envvar=LOG_FORMAT_ENV,
    default="text",
    help="Log lines for people (text) or a log collector (json: one object a line) [$MAILER_LOG_FORMAT].",
)
@click.pass_context
def cli(
    ctx: click.Context, config_dir: Path | None, database_url: str | None, verbose: bool, log_format: str
) -> None:
    """Email campaigns on session timelines: contacts, waves, reminders, delivery log."""
    configure_logging(
        logging.DEBUG if verbose else logging.WARNING, log_format, "%(levelname)s %(name)s: %(message)s"
    )
    ctx.obj = AppContext(config_dir, database_url)


def _register() -> None:
    from mailer.cli import commands

    commands.register(cli)


def main() -> None:
    """Console entry point: known errors print one clear line and exit 2, never a traceback."""
    _register()
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except MailerError as exc:
        click.secho(f"error: {exc}", fg="red", err=True)
        sys.exit(2)
    except (ArgumentError, NoSuchModuleError, OperationalError) as exc:
        detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        click.secho(
            f"error: cannot open the store: {detail} (check --database-url / DATABASE_URL, e.g. "
            "sqlite:///var/mailer.db or postgresql+psycopg://user@host:5432/mailer)",
            fg="red",
            err=True,
        )
        sys.exit(2)
