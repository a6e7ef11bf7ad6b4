"""The ``mailer`` command line run in-process on a test's store, through click's ``CliRunner``."""

from __future__ import annotations

from click.testing import CliRunner, Result

from mailer.app import App
from mailer.cli import cli
from tests.conftest import ROOT


def run_cli(app: App, *args: str, catch_exceptions: bool = False, input: str | None = None) -> Result:
    """``mailer --config <the repository's config> --database-url <app's store> *args``. An exception escapes unless ``catch_exceptions`` (then it is ``result.exception``); ``input`` is standard input."""
    base = ["--config", str(ROOT / "config"), "--database-url", app.settings.database_url]
    return CliRunner().invoke(cli, [*base, *args], catch_exceptions=catch_exceptions, input=input)
