"""Registers every command group on the root ``mailer`` group (one import per module)."""

from __future__ import annotations

import click


def register(root: click.Group) -> None:
    """Attach each command module's commands to ``root``."""
    for module_name in (
        "contacts",
        "render",
        "sessions",
        "waves",
        "log",
        "run",
        "web",
        "bounces",
        "suppressions",
        "templates",
        "tokens",
    ):
        try:
            module = __import__(f"mailer.cli.{module_name}", fromlist=["COMMANDS"])
        except ModuleNotFoundError as exc:
            if exc.name == f"mailer.cli.{module_name}":
                continue  # not built yet
            raise
        for command in module.COMMANDS:
            root.add_command(command)
