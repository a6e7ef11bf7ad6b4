"""``mailer waves``: queue, list, pause, resume and cancel waves."""

from __future__ import annotations

from datetime import UTC, datetime

import click
from rich.table import Table

from mailer.cli import AppContext, output_console, pass_ctx
from mailer.cli.params import ROW_ID
from mailer.config import Series, Session, Step
from mailer.errors import InstantRangeError, NotFoundError
from mailer.store.engine import transaction
from mailer.store.models import WaveStatus
from mailer.store.outbox import (
    CHANGE_DONE,
    LateMessagesError,
    WaveStateError,
    queue_wave,
    refuse_late_messages,
    set_wave_status,
    sync_sessions,
)
from mailer.store.queries import counts_by_wave, used_statuses
from mailer.timeline.clock import SystemClock, accepted_instant, require_aware
from mailer.timeline.plan import step_deadline
from mailer.zones import UnknownZoneError, resolve_zone


def parse_when(text: str, default_zone: str) -> datetime:
    """Parse ``--at``: ISO 8601 with an offset, or a local time in ``default_zone`` (the session's), in the
    years :func:`accepted_instant` accepts; click.BadParameter otherwise."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not an ISO 8601 date-time such as 2021-06-01T09:00-03:00"
        ) from None
    if moment.tzinfo is None:
        try:
            moment = moment.replace(tzinfo=resolve_zone(default_zone))
        except UnknownZoneError as exc:
            raise click.BadParameter(str(exc)) from None
    try:
        return accepted_instant(moment, repr(text))
    except InstantRangeError as exc:
        raise click.BadParameter(str(exc), param_hint="--at") from None


def check_send_time(series: Series, session: Session, step: Step, at: datetime) -> None:
    """Refuse an ``--at`` after the latest moment the step may go on the session's timeline (its own time plus
    ``max_late``, the session's start for a step before it, or the next step of its kind): a 2027 follow-up
    of a 2022 session would otherwise be queued and sent to everyone. Raises click.BadParameter, and
    NaiveDatetimeError for a naive ``at``."""
    at = require_aware(at, "--at")
    deadline = step_deadline(series, session, step)
    if at > deadline.at:
        raise click.BadParameter(
            f"{at.astimezone(UTC):%Y-%m-%d %H:%M} UTC is after the last moment {step.name} of {session.id}"
            f" may go, {deadline.at:%Y-%m-%d %H:%M} UTC (after it: {deadline.reason.value}); the session"
            f" starts {session.start.astimezone(UTC):%Y-%m-%d %H:%M} UTC: check the year and the session",
            param_hint="--at",
        )


@click.group("waves")
def waves() -> None:
    """Queue and steer invitation waves and other steps."""


@waves.command("queue")
@click.option("--session", "session_id", required=True, help="Session id (see config/series.toml).")
@click.option("--step", "step_name", required=True, help="Step name, e.g. invitation.")
@click.option("--list", "region", help="Region list to send to [default: the session's region].")
@click.option("--at", "at_text", help="Send time, ISO 8601; without offset it is in the session's zone.")
@click.option(
    "--queue-late",
    is_flag=True,
    help="Queue even when messages would be past the step's deadline (they are recorded as skipped, for good).",
)
@pass_ctx
def queue(
    ctx: AppContext,
    session_id: str,
    step_name: str,
    region: str | None,
    at_text: str | None,
    queue_late: bool,
) -> None:
    """Queue STEP of SESSION for a list (idempotent: queuing again adds only new contacts).

    Messages that would already be past the step's deadline are skipped at once and can never be sent
    later, so such a queuing is refused unless --queue-late says it is meant (as the web page asks)."""
    app = ctx.app
    series = app.settings.series
    try:
        session = series.session(session_id)
        step = series.step(step_name)
        if region is not None:
            app.settings.region(region)
    except KeyError as exc:
        raise NotFoundError(exc.args[0]) from None
    at = parse_when(at_text, session.zone_name) if at_text else None
    if at is not None:
        check_send_time(series, session, step, at)
    now = SystemClock().now()
    with transaction(app.factory) as db:
        sync_sessions(db, app.settings, now)
        result = queue_wave(db, app.settings, session, step, now, audience=region, at=at, created_by="cli")
        if not queue_late:  # an error rolls the queuing back
            try:
                refuse_late_messages(result, session, step, how_to_confirm="add --queue-late")
            except LateMessagesError as exc:
                raise click.ClickException(str(exc)) from None
    wave = result.wave
    if wave.status == WaveStatus.CANCELLED:
        raise click.ClickException(
            f"wave {wave.id} ({session.id} / {step.name} to {wave.audience}) was cancelled: nothing queued"
            " (a cancelled wave stays cancelled; see `mailer waves list`)"
        )
    click.echo(
        f"wave {wave.id}: {session.id} / {step.name} to {wave.audience}: {result.added} messages queued"
        f" ({'new wave' if result.created else 'existing wave'}), send at {wave.scheduled_at:%Y-%m-%d %H:%M} UTC,"
        f" deadline {result.deadline:%Y-%m-%d %H:%M} UTC"
    )
    if at is not None and not result.created and wave.scheduled_at != at.astimezone(wave.scheduled_at.tzinfo):
        click.echo(
            f"note: wave {wave.id} already existed, so --at was not applied (it keeps"
            f" {wave.scheduled_at:%Y-%m-%d %H:%M} UTC); `mailer waves pause {wave.id}` holds it"
        )
    if result.skipped:
        click.echo(
            f"{result.skipped} of them skipped at once: past the step's deadline"
            f" ({result.deadline:%Y-%m-%d %H:%M} UTC); see `mailer log --step {step.name} --status skipped`"
        )


@waves.command("list")
@click.option("--session", "session_id", help="Only this session.")
@click.option("--all", "show_all", is_flag=True, help="Also done waves that reach nobody (an empty list).")
@pass_ctx
def list_waves(ctx: AppContext, session_id: str | None, show_all: bool) -> None:
    """Waves with message counts per status (a done wave that reaches nobody only with --all; a paused one
    always, since queuing its step again would be held)."""
    with transaction(ctx.existing_app.factory) as db:
        every = counts_by_wave(db, session_id)
    rows = [row for row in every if show_all or row.total or row.state != "done"]
    hidden = len(every) - len(rows)
    if not rows:
        lead = (
            f"No waves with messages yet ({hidden} reach{'es' if hidden == 1 else ''} nobody: see --all)."
            if hidden
            else "No waves yet."
        )
        click.echo(f"{lead} Queue one with `mailer waves queue --session S --step STEP`.")
        return
    used = used_statuses(rows)
    table = Table(title="Waves")
    for column in ("wave", "session", "step", "audience", "state"):
        table.add_column(column, justify="right" if column == "wave" else "left", overflow="fold")
    for column in (*used, "total"):
        table.add_column(column, justify="right", overflow="fold")
    for row in rows:
        table.add_row(
            str(row.wave_id),
            row.session_id,
            row.step,
            row.audience,
            row.state,
            *(str(row.counts.get(status, 0)) for status in used),
            str(row.total),
        )
    output_console().print(table)
    if hidden:
        click.echo(f"{hidden} done wave{'' if hidden == 1 else 's'} reaching nobody not shown (see --all)")
    for row in rows:
        if row.hold_reason:
            click.echo(f"wave {row.wave_id} ({row.session_id} / {row.step}) {row.hold_reason}")


def _change(ctx: AppContext, wave_id: int, status: WaveStatus) -> None:
    with transaction(ctx.app.factory) as db:
        try:
            wave, touched = set_wave_status(db, wave_id, status, SystemClock().now())
        except WaveStateError as exc:
            if exc.already:
                click.echo(str(exc))
                return
            raise click.ClickException(str(exc)) from None
    click.echo(
        f"wave {wave.id} ({wave.session_id} / {wave.step}) {CHANGE_DONE[status]}:"
        f" {touched} pending message{'' if touched == 1 else 's'} affected"
    )


@waves.command("pause")
@click.argument("wave_id", type=ROW_ID)
@pass_ctx
def pause(ctx: AppContext, wave_id: int) -> None:
    """Hold a wave's pending messages."""
    _change(ctx, wave_id, WaveStatus.PAUSED)


@waves.command("resume")
@click.argument("wave_id", type=ROW_ID)
@pass_ctx
def resume(ctx: AppContext, wave_id: int) -> None:
    """Let a paused wave's messages go again (those past their deadline are then skipped)."""
    _change(ctx, wave_id, WaveStatus.ACTIVE)


@waves.command("cancel")
@click.argument("wave_id", type=ROW_ID)
@click.confirmation_option(prompt="Cancel this wave? Its pending messages will be skipped.")
@pass_ctx
def cancel(ctx: AppContext, wave_id: int) -> None:
    """Cancel a wave: pending messages are skipped with reason "cancelled"."""
    _change(ctx, wave_id, WaveStatus.CANCELLED)


COMMANDS = [waves]
