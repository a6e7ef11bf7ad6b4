"""The ``mailer`` subcommands, each imported only when it runs (or its own help is asked for).

``mailer --help`` lists the names and one-line helps from :data:`LAZY_COMMANDS` without importing a
command module: a command's module pulls in the store, the templates or the web pages, which costs a second
of start-up that a user asking for help, or for the log, should not pay. ``tests/test_cli_startup.py``
checks that each line here is the command's own short help.
"""

from __future__ import annotations

import importlib

import click

# name -> (module, attribute, the first sentence of its help, which `mailer --help` shows)
LAZY_COMMANDS: dict[str, tuple[str, str, str]] = {
    "api-tokens": (
        "mailer.cli.tokens",
        "api_tokens",
        "Tokens of the JSON API (/api/v1/): one per client, scoped read or write, stored hashed.",
    ),
    "bounces": (
        "mailer.cli.bounces",
        "bounces",
        "Bounce reports and complaints: suppress the contacts they are about.",
    ),
    "contacts": (
        "mailer.cli.contacts",
        "contacts_group",
        "Contact lists: import organisers' files, list and show contacts.",
    ),
    "demo": (
        "mailer.cli.run",
        "demo",
        "The main job on embedded defaults: import the four regions into a fresh store, simulate the whole series, print the report.",
    ),
    "imports": (
        "mailer.cli.imports",
        "imports_group",
        "Imports of contacts and registration reports: list them, undo one.",
    ),
    "log": (
        "mailer.cli.log",
        "log_command",
        "The delivery log: one row per message, newest change first.",
    ),
    "preview": (
        "mailer.cli.render",
        "preview",
        "Print the subject, the language used and the text part of one step's message; optionally save it.",
    ),
    "registrations": (
        "mailer.cli.contacts",
        "registrations_group",
        "Registrations for sessions: import platform reports.",
    ),
    "report": (
        "mailer.cli.log",
        "report",
        "Message counts per session and step, by status; then any relay found unreachable.",
    ),
    "send-test": (
        "mailer.cli.run",
        "send_test",
        "Make the message the service would send to a sample recipient and send it now (nothing is queued or logged): the same header fields, DKIM signature and calendar, with links that lead to preview pages.",
    ),
    "sessions": (
        "mailer.cli.sessions",
        "sessions",
        "Sessions and their timelines.",
    ),
    "simulate": (
        "mailer.cli.run",
        "simulate_command",
        "Run the whole timeline in virtual time, sending for real, then print the report.",
    ),
    "suppressions": (
        "mailer.cli.suppressions",
        "suppressions",
        "Addresses that are not mailed: hard bounces, complaints, soft bounces, unsubscribes.",
    ),
    "templates": (
        "mailer.cli.templates",
        "templates",
        "Check the email templates, or render every one of them to look at.",
    ),
    "users": (
        "mailer.cli.web",
        "users",
        "Dashboard accounts: staff (log, resend, export) and organisers (also preview and waves).",
    ),
    "waves": (
        "mailer.cli.waves",
        "waves",
        "Queue and steer invitation waves and other steps.",
    ),
    "web": (
        "mailer.cli.web",
        "web",
        "Serve the unsubscribe and RSVP pages and the staff dashboard until Ctrl-C.",
    ),
}


class LazyGroup(click.Group):
    """A click group whose :data:`LAZY_COMMANDS` are imported on first use; commands added with
    ``add_command`` (tests do) take precedence."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *LAZY_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands:
            return self.commands[cmd_name]
        if cmd_name not in LAZY_COMMANDS:
            return None
        return load_command(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list with each one-line help, importing nothing."""
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max((len(name) for name in names), default=0)
        rows = []
        for name in names:
            command = self.commands.get(name) or click.Command(name, help=LAZY_COMMANDS[name][2])
            rows.append((name, command.get_short_help_str(limit)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def load_command(name: str) -> click.Command:
    """Import the module of command ``name`` (a key of :data:`LAZY_COMMANDS`) and return the command."""
    module_name, attribute, _ = LAZY_COMMANDS[name]
    command: click.Command = getattr(importlib.import_module(module_name), attribute)
    return command
