"""Start-up: ``mailer --help`` imports no command module and nothing heavy; importing a module hashes and
compiles nothing; a store at the newest revision is opened without Alembic."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from mailer.cli.commands import LAZY_COMMANDS, load_command
from tests.conftest import ROOT

HEAVY = ("sqlalchemy", "alembic", "jinja2", "babel", "rich", "aiosmtplib", "argon2", "mailer.cli.log")


def _modules_after(code: str) -> set[str]:
    """The modules a fresh interpreter has loaded after running ``code`` (its output is discarded)."""
    script = f"import sys, io, contextlib\nwith contextlib.redirect_stdout(io.StringIO()):\n{code}\nprint(*sys.modules)"
    finished = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True, timeout=120
    )
    return set(finished.stdout.split())


def test_help_lists_every_command_and_imports_none_of_them() -> None:
    loaded = _modules_after(
        "    from mailer.cli import main\n"
        "    sys.argv = ['mailer', '--help']\n"
        "    try:\n"
        "        main()\n"
        "    except SystemExit:\n"
        "        pass"
    )
    assert not {name for name in loaded if name.split(".")[0] in HEAVY or name in HEAVY}
    assert not {name for name in loaded if name.startswith("mailer.cli.") and name != "mailer.cli.commands"}


def test_help_shows_each_commands_own_first_sentence() -> None:
    import click
    from click.testing import CliRunner

    from mailer.cli import cli

    loaded = click.Group("cli", commands=[load_command(name) for name in LAZY_COMMANDS])
    for name, (_, _, first_sentence) in LAZY_COMMANDS.items():
        command = load_command(name)
        assert (command.name, command.get_short_help_str(1000)) == (name, first_sentence)
    lazy_help = CliRunner().invoke(cli, ["--help"]).output.split("Commands:\n", 1)[1]
    loaded_help = CliRunner().invoke(loaded, ["--help"]).output.split("Commands:\n", 1)[1]
    assert lazy_help == loaded_help
    assert [line.split()[0] for line in lazy_help.splitlines()] == sorted(LAZY_COMMANDS)


def test_importing_the_accounts_module_hashes_no_password() -> None:
    loaded = _modules_after(
        "    import argon2\n"
        "    def refuse(*args, **kwargs):\n"
        "        raise AssertionError('a password was hashed at import')\n"
        "    argon2.PasswordHasher.hash = refuse\n"
        "    import mailer.web.users"
    )
    assert "mailer.web.users" in loaded


def test_a_current_store_opens_without_alembic(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'mailer.db'}"
    open_store = f"    from mailer.app import open_app\n    open_app(database_url={url!r}).close()"
    assert "alembic" in _modules_after(open_store)  # a new store is migrated
    reopened = _modules_after(open_store)
    assert "alembic" not in reopened
    assert not {name for name in reopened if name.startswith(("mailer.compose", "mailer.delivery", "jinja2"))}


def test_the_head_revision_is_alembics() -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from mailer.store.engine import MIGRATIONS_DIR, head_revision

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    assert [head_revision()] == ScriptDirectory.from_config(config).get_heads()
