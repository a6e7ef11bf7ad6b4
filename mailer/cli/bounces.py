"""``mailer bounces import PATH`` and ``mailer bounces poll``: apply bounce reports and complaints."""

from __future__ import annotations

from pathlib import Path

import click

from mailer.cli import AppContext, pass_ctx
from mailer.delivery.bounces import ReportTally, import_reports
from mailer.delivery.handling import policy_for
from mailer.delivery.mailbox import poll_mailbox
from mailer.store.engine import transaction
from mailer.timeline.clock import SystemClock


@click.group("bounces")
def bounces() -> None:
    """Bounce reports and complaints: suppress the contacts they are about."""


def echo_tally(tally: ReportTally) -> None:
    """Print what a batch of reports did, one line per count, then the addresses and the unparsed."""
    kinds = tally.kinds
    click.echo(f"{tally.read} messages read, {tally.recognised} recognised as bounces")
    click.echo(f"suppressed {len(tally.suppressed):6d}  (new: hard bounces, complaints, soft-bounce limit)")
    click.echo(f"already    {tally.already:6d}  (on the suppression list before)")
    click.echo(f"temporary  {kinds['delayed'] + kinds['soft']:6d}  (delay warnings and soft bounces)")
    click.echo(f"complaints {kinds['complaint']:6d}  (feedback reports)")
    click.echo(f"ignored    {kinds['auto-reply'] + kinds['other']:6d}  (auto-replies and other mail)")
    click.echo(f"unparsed   {len(tally.unparsed):6d}  (kept, not applied)")
    click.echo(f"messages   {tally.messages_bounced:6d}  (sent messages now marked bounced)")
    if tally.duplicates:
        click.echo(f"seen       {tally.duplicates:6d}  (handled before: nothing done)")
    for address, reason in tally.suppressed:
        click.echo(f"  {address}  ({reason})")
    for line in tally.unparsed:
        click.echo(f"  unparsed: {line}")


@bounces.command("import")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@pass_ctx
def import_command(ctx: AppContext, path: Path) -> None:
    """Read PATH (mbox file or Maildir folder) and apply every report in it.

    Hard bounces and complaints suppress the contact who was mailed; delay warnings are logged; a report
    that cannot be read is counted and shown, and the others are still applied. Running it again changes
    nothing.
    """
    with transaction(ctx.app.factory) as db:
        tally = import_reports(db, path, SystemClock().now(), policy=policy_for(ctx.app.settings))
    echo_tally(tally)


@bounces.command("poll")
@pass_ctx
def poll_command(ctx: AppContext) -> None:
    """Read the bounce mailbox ([bounces.imap]) once, as the service does on its interval.

    Handled reports move to the processed folder, unreadable ones to the unparsed folder; nothing is deleted.
    """
    imap = ctx.app.settings.bounces.imap
    if imap is None:
        raise click.UsageError("no bounce mailbox configured: set [bounces.imap] host in mailer.toml")
    tally = poll_mailbox(imap, ctx.app.factory, SystemClock().now, policy=policy_for(ctx.app.settings))
    click.echo(f"{imap.source}:")
    echo_tally(tally)


COMMANDS = [bounces]
