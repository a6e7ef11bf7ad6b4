"""``mailer sessions``: the timeline with absolute times, and applying reschedules or cancellations."""

from __future__ import annotations

import click
from rich.table import Table
from sqlalchemy import select

from mailer.cli import AppContext, output_console, pass_ctx
from mailer.errors import NotFoundError
from mailer.store.engine import transaction
from mailer.store.models import SessionRow
from mailer.store.outbox import sync_sessions
from mailer.store.queries import session_timelines
from mailer.timeline.clock import SystemClock


@click.group("sessions")
def sessions() -> None:
    """Sessions and their timelines."""


@sessions.command("list")
@click.option("--session", "session_id", help="Only this session.")
@pass_ctx
def list_sessions(ctx: AppContext, session_id: str | None) -> None:
    """Each session's steps: time in the session's zone and in UTC, deadline, audience size now."""
    settings = ctx.settings
    if session_id:
        try:
            settings.series.session(session_id)
        except KeyError as exc:
            raise NotFoundError(exc.args[0]) from None
    now = SystemClock().now()
    console = output_console()
    with transaction(ctx.existing_app.factory) as db:
        rows = {row.id: row for row in db.scalars(select(SessionRow))}
        timelines = session_timelines(db, settings.series, now, session_id)
        for session in settings.series.sessions:
            if session.id not in timelines:
                continue
            row = rows.get(session.id)
            state = "cancelled" if session.cancelled else "scheduled"
            sequence = f", SEQUENCE {row.sequence}" if row else ""
            table = Table(
                title=f"{session.id}: {session.title}\n{session.start:%Y-%m-%d %H:%M} {session.zone_name}"
                f" ({state}{sequence})",
                title_justify="left",
            )
            for column in (
                "step",
                "kind",
                "audience",
                f"time ({session.zone_name})",
                "time (UTC)",
                "deadline (UTC)",
                "recipients",
                "auto",
            ):
                table.add_column(column, overflow="fold")
            for item in timelines[session.id]:
                table.add_row(
                    item.step.name,
                    item.step.kind.value,
                    item.step.audience.value,
                    item.at.astimezone(session.zone).strftime("%Y-%m-%d %H:%M"),
                    item.at.strftime("%Y-%m-%d %H:%M"),
                    item.deadline.at.strftime("%Y-%m-%d %H:%M"),
                    str(item.size),
                    "yes" if item.step.auto else "no",
                )
            console.print(table)


@sessions.command("sync")
@pass_ctx
def sync(ctx: AppContext) -> None:
    """Apply config changes now: a moved session re-times pending steps and queues "date changed" notices;
    a cancelled one skips its pending steps and queues cancellation notices. The service does this at start too."""
    with transaction(ctx.app.factory) as db:
        changes = sync_sessions(db, ctx.app.settings, SystemClock().now())
    if not changes:
        click.echo("Sessions are up to date.")
    for change in changes:
        click.echo(
            f"{change.session_id}: {change.change} (SEQUENCE {change.sequence}): {change.retimed} pending messages"
            f" re-timed, {change.skipped} skipped, {change.notices} notices queued"
        )
        for wave_id in change.held:
            click.echo(
                f"wave {wave_id} held: its time falls at or after the new start for a step before the session;"
                f" see `mailer waves list`, then `mailer waves resume {wave_id}` or `mailer waves cancel {wave_id}`"
            )


COMMANDS = [sessions]
