"""``mailer suppressions list|remove``: the suppression list as staff see and correct it."""

from __future__ import annotations

import getpass
import logging

import click

from mailer.audience.contacts import email_key
from mailer.cli import AppContext, pass_ctx
from mailer.cli.params import LIMIT
from mailer.errors import NotFoundError
from mailer.store.engine import transaction
from mailer.store.suppressions import REASONS, lift_suppression, list_suppressions
from mailer.timeline.clock import SystemClock

log = logging.getLogger(__name__)


@click.group("suppressions")
def suppressions() -> None:
    """Addresses that are not mailed: hard bounces, complaints, soft bounces, unsubscribes."""


@suppressions.command("list")
@click.option("--reason", type=click.Choice(REASONS), default=None, help="Only this reason.")
@click.option("--limit", type=LIMIT, default=100, show_default=True, help="Rows to show.")
@pass_ctx
def list_command(ctx: AppContext, reason: str | None, limit: int) -> None:
    """Suppressed addresses, newest first, with the reason and the last report about each."""
    with transaction(ctx.existing_app.factory) as db:
        rows = list_suppressions(db, reason=reason or "", limit=limit)
    for row in rows:
        click.echo(f"{row.email_key:40} {row.reason:12} {row.created_at:%Y-%m-%d %H:%M} UTC")
        if row.last_report:
            click.echo(f"{'':40} last report: {row.last_report}")
    click.echo(f"{len(rows)} suppressed" + (f" ({reason})" if reason else ""))


@suppressions.command("remove")
@click.argument("address")
@click.option("--note", default="", help="Why the suppression is lifted (kept with the record).")
@click.option("--by", "lifted_by", default="", help="Who lifts it [default: the system user].")
@pass_ctx
def remove_command(ctx: AppContext, address: str, note: str, lifted_by: str) -> None:
    """Lift the suppression of ADDRESS: the contact becomes active again; the lift is recorded and logged."""
    by = lifted_by or getpass.getuser()
    try:
        with transaction(ctx.app.factory) as db:
            lift = lift_suppression(db, email_key(address), by=by, note=note, now=SystemClock().now())
    except NotFoundError as exc:
        raise click.ClickException(str(exc)) from None
    log.warning("suppression of %s (%s) lifted by %s: %s", lift.email_key, lift.reason, by, note or "no note")
    click.echo(f"{lift.email_key}: {lift.reason} suppression lifted by {by}; the contact is active again")


COMMANDS = [suppressions]
