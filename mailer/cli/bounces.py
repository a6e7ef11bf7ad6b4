"""``mailer bounces import PATH``: apply bounce messages from an mbox file or a maildir folder."""

from __future__ import annotations

from pathlib import Path

import click

from mailer.cli import AppContext, pass_ctx
from mailer.delivery.bounces import apply_bounces
from mailer.store.engine import transaction
from mailer.timeline.clock import SystemClock


@click.group("bounces")
def bounces() -> None:
    """Bounce messages: suppress addresses that fail permanently."""


@bounces.command("import")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@pass_ctx
def import_command(ctx: AppContext, path: Path) -> None:
    """Read PATH (mbox file or maildir folder) and suppress every address that bounced permanently.

    Temporary failures (delay warnings) are counted but not applied. Running it again changes nothing.
    """
    with transaction(ctx.app.factory) as db:
        report = apply_bounces(db, path, SystemClock().now())
    click.echo(f"{report.read} messages read, {report.recognised} recognised as bounces")
    click.echo(f"suppressed {len(report.suppressed):6d}  (new hard bounces)")
    click.echo(f"already    {report.already:6d}  (on the suppression list before)")
    click.echo(f"temporary  {report.temporary:6d}  (delay warnings: not applied)")
    click.echo(f"messages   {report.messages_bounced:6d}  (sent messages now marked bounced)")
    for address in report.suppressed:
        click.echo(f"  {address}")


COMMANDS = [bounces]
