"""``mailer log`` and ``mailer report``: what was sent, when, and why not."""

from __future__ import annotations

import click
from rich.table import Table

from mailer.cli import AppContext, output_console, pass_ctx
from mailer.cli.params import LIMIT
from mailer.errors import NotFoundError
from mailer.store.engine import transaction
from mailer.store.models import MessageStatus
from mailer.store.queries import (
    CountRow,
    LogFilter,
    counts_by_step,
    log_rows,
    message_events,
    status_totals,
    used_statuses,
)
from mailer.store.relays import describe, open_circuits
from mailer.timeline.plan import resolve_step


@click.command("log")
@click.option("--session", "session_id", help="Only this session.")
@click.option("--step", help="Only this step.")
@click.option("--status", type=click.Choice([s.value for s in MessageStatus]), help="Only this status.")
@click.option("--address", help="Recipient address contains this text.")
@click.option("--limit", type=LIMIT, default=50, show_default=True, help="Rows to show.")
@click.option("--events", "show_events", is_flag=True, help="Also list every delivery event of each message.")
@pass_ctx
def log_command(
    ctx: AppContext,
    session_id: str | None,
    step: str | None,
    status: str | None,
    address: str | None,
    limit: int,
    show_events: bool,
) -> None:
    """The delivery log: one row per message, newest change first."""
    check_names(ctx, session_id, step)
    with transaction(ctx.existing_app.factory) as db:
        filters = LogFilter(
            session=session_id or "", step=step or "", status=status or "", address=address or ""
        )
        rows, total = log_rows(db, ctx.settings.series, filters, limit=limit)
        events = {row.pk: message_events(db, row.pk) for row in rows} if show_events else {}
    console = output_console()
    table = Table(title=f"Delivery log: {len(rows)} of {total} messages")
    for column in ("recipient", "session", "step", "lang", "status", "tries", "code", "updated (UTC)"):
        table.add_column(column, no_wrap=column != "recipient", overflow="fold")
    table.add_column("last event", overflow="fold")
    for row in rows:
        table.add_row(
            row.recipient,
            row.session_id,
            row.step,
            row.language,
            row.status,
            str(row.attempts),
            str(row.reply_code or ""),
            f"{row.updated_at:%Y-%m-%d %H:%M}",
            row.detail[:120],
        )
    console.print(table)
    for pk, message_event_list in events.items():
        console.print(f"[bold]message {pk}[/bold]")
        for event in message_event_list:
            code = f" {event.reply_code}" if event.reply_code else ""
            console.print(f"  {event.at:%Y-%m-%d %H:%M:%S} {event.kind}{code} {event.detail}")


def check_names(ctx: AppContext, session_id: str | None, step: str | None) -> None:
    """Refuse a session or step name the config does not know (a typo would show an empty log)."""
    series = ctx.settings.series
    try:
        if session_id:
            series.session(session_id)
        if step:
            resolve_step(series, step)
    except KeyError as exc:
        raise NotFoundError(exc.args[0]) from None


def counts_table(rows: list[CountRow], title: str) -> Table:
    """A rich table of per-status counts with a totals line."""
    table = Table(title=title)
    table.add_column("session")
    table.add_column("step")
    used = used_statuses(rows)
    for status in used:
        table.add_column(status, justify="right")
    table.add_column("total", justify="right")
    for row in rows:
        table.add_row(row.session_id, row.step, *(str(row.counts.get(s, 0)) for s in used), str(row.total))
    table.add_section()
    totals = status_totals(rows)
    table.add_row("all", "", *(str(totals.get(s, 0)) for s in used), str(sum(totals.values())))
    return table


@click.command("report")
@click.option("--session", "session_id", help="Only this session.")
@pass_ctx
def report(ctx: AppContext, session_id: str | None) -> None:
    """Message counts per session and step, by status; then any relay found unreachable."""
    check_names(ctx, session_id, None)
    with transaction(ctx.existing_app.factory) as db:
        rows = counts_by_step(db, session_id)
        down = open_circuits(db)
    for state in down:
        click.echo(describe(state))
    if not rows:
        click.echo("No messages yet.")
        return
    output_console().print(counts_table(rows, "Delivery report"))


COMMANDS = [log_command, report]
