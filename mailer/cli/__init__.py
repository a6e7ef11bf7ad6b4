"""The ``mailer`` command. Each group lives in its own module, imported only when it runs
(:mod:`mailer.cli.commands`); this module imports nothing heavy, so ``mailer --help`` starts at once."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from mailer.cli.commands import LazyGroup
from mailer.errors import MailerError
from mailer.logformat import FORMATS, LOG_FORMAT_ENV, configure_logging

if TYPE_CHECKING:
    from rich.console import Console

    from mailer.app import App
    from mailer.config import Settings


class AppContext:
    """Lazily opened :class:`App` for the command being run.

    ``app`` opens the store, creating it when it does not exist (commands that write); ``existing_app``
    refuses a store that was never made, naming its path (commands that only read: a mistyped path must not
    answer "0 of 0 messages"); ``settings`` reads the config without touching the store.
    """

    def __init__(self, config_dir: Path | None, database_url: str | None) -> None:
        self.config_dir = config_dir
        self.database_url = database_url
        self._app: App | None = None
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._app is not None:
            return self._app.settings
        if self._settings is None:
            from mailer.config import load_settings

            self._settings = load_settings(self.config_dir, database_url=self.database_url)
        return self._settings

    @property
    def app(self) -> App:
        return self._open(existing=False)

    @property
    def existing_app(self) -> App:
        return self._open(existing=True)

    def _open(self, *, existing: bool) -> App:
        if self._app is None:
            from mailer.app import open_app

            self._app = open_app(self.settings, existing=existing)
        return self._app


pass_ctx = click.make_pass_decorator(AppContext)


def output_console() -> Console:
    """Where commands print: the terminal's width, or 200 columns when the output goes to a pipe or a file
    (rich would otherwise assume 80 and cut table cells)."""
    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else 200)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
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


def undecodable_argument(arguments: list[str]) -> str | None:
    """A one-line error for the first argument holding bytes that are not UTF-8 (Python keeps them as lone
    surrogates, which no store, terminal or file name lookup can encode), or None when every one is UTF-8."""
    for position, argument in enumerate(arguments, start=1):
        try:
            argument.encode("utf-8")
        except UnicodeEncodeError:
            shown = argument.encode("utf-8", "surrogateescape").decode("ascii", "backslashreplace")
            return (
                f"argument {position} ({shown}) holds bytes that are not UTF-8: write it in UTF-8"
                " (rename a file whose name is not UTF-8, or set a UTF-8 locale such as C.UTF-8)"
            )
    return None


def main() -> None:
    """Console entry point: known errors print one clear line and exit 2, never a traceback."""
    problem = undecodable_argument(sys.argv[1:])
    if problem is not None:
        click.secho(f"error: {problem}", fg="red", err=True)
        sys.exit(2)
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
    except Exception as exc:
        if not _is_store_error(exc):
            raise
        orig = (
            getattr(exc, "orig", None) or exc
        )  # SQLAlchemy's wraps the driver's; a driver statement's is bare
        detail = str(orig).strip().splitlines()[0]
        if getattr(orig, "sqlstate", None) or "database is locked" in detail:
            # the store was open and answered: it refused or stopped a statement (a deadlock, a timeout)
            message = (
                f"error: the store stopped this command: {detail}. What it committed before stays; run the"
                " command again (an import goes on where it stopped, nothing is doubled)"
            )
        else:
            message = (
                f"error: cannot open the store: {detail} (check --database-url / DATABASE_URL, e.g. "
                "sqlite:///var/mailer.db or postgresql+psycopg://user@host:5432/mailer)"
            )
        click.secho(message, fg="red", err=True)
        sys.exit(2)


def _is_store_error(exc: Exception) -> bool:
    """True for the store's operational errors: SQLAlchemy's (a bad URL, a missing driver, no server, a
    statement the server stopped) and psycopg's own, from statements run on the driver's connection (COPY).
    Neither library is imported for it: a command that never loaded one cannot have raised its errors."""
    store_errors: list[type[BaseException]] = []
    sqlalchemy_exc = sys.modules.get("sqlalchemy.exc")
    if sqlalchemy_exc is not None:
        store_errors += [
            sqlalchemy_exc.ArgumentError,
            sqlalchemy_exc.NoSuchModuleError,
            sqlalchemy_exc.OperationalError,
        ]
    psycopg = sys.modules.get("psycopg")
    if psycopg is not None:
        store_errors.append(psycopg.OperationalError)
    return isinstance(exc, tuple(store_errors))
