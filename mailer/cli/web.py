"""``mailer web`` (serve the pages) and ``mailer users`` (dashboard accounts)."""

from __future__ import annotations

import sys

import click
from rich.table import Table
from sqlalchemy import select

from mailer.cli import AppContext, output_console, pass_ctx
from mailer.cli.params import PORT
from mailer.store.engine import transaction
from mailer.store.models import StaffRole, StaffUser
from mailer.timeline.clock import SystemClock
from mailer.web.sessions import end_session_ref, end_sessions, list_sessions
from mailer.web.users import (
    MIN_PASSWORD_LENGTH,
    AccountError,
    add_user,
    change_user,
    get_user,
    remove_user,
    set_password,
)


@click.command("web")
@click.option("--host", help="Address to listen on [default: web.host, 127.0.0.1].")
@click.option("--port", type=PORT, help="Port, 0 to 65535 [default: web.port].")
@pass_ctx
def web(ctx: AppContext, host: str | None, port: int | None) -> None:
    """Serve the unsubscribe and RSVP pages and the staff dashboard until Ctrl-C.

    Links inside messages use web.base_url (or $MAILER_BASE_URL); put a TLS proxy in front for the public.
    """
    import uvicorn

    from mailer.web.server import make_server

    app = ctx.app
    config = make_server(app, host=host, port=port).config
    click.echo(
        f"serving on http://{config.host}:{config.port}/ (links use {app.settings.web.base_url}); Ctrl-C stops"
    )
    try:
        uvicorn.Server(config).run()  # uvicorn's own signal handling: Ctrl-C finishes open requests
    except SystemExit as exc:
        if exc.code:
            raise click.ClickException(f"cannot listen on {config.host}:{config.port}") from None


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return str(
        click.prompt(
            f"Password (at least {MIN_PASSWORD_LENGTH} characters)", hide_input=True, confirmation_prompt=True
        )
    )


@click.group("users")
def users() -> None:
    """Dashboard accounts: staff (log, resend, export) and organisers (also preview and waves)."""


@users.command("add")
@click.argument("username")
@click.option(
    "--role",
    type=click.Choice([r.value for r in StaffRole]),
    default=StaffRole.STAFF.value,
    show_default=True,
)
@click.option("--email", default="", help="Their own address: where 'send a test to yourself' goes.")
@click.option(
    "--password-stdin", is_flag=True, help="Read the password from the first line of standard input."
)
@pass_ctx
def add(ctx: AppContext, username: str, role: str, email: str, password_stdin: bool) -> None:
    """Create an account (the password is asked for twice, never echoed)."""
    password = _read_password(password_stdin)
    try:
        with transaction(ctx.app.factory) as db:
            add_user(db, username, password, SystemClock().now(), role=StaffRole(role), email=email)
    except AccountError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"user {username} ({role}) created")


@users.command("passwd")
@click.argument("username")
@click.option(
    "--password-stdin", is_flag=True, help="Read the password from the first line of standard input."
)
@pass_ctx
def passwd(ctx: AppContext, username: str, password_stdin: bool) -> None:
    """Set a new password (signs the account out of every browser)."""
    password = _read_password(password_stdin)
    try:
        with transaction(ctx.app.factory) as db:
            set_password(db, username, password)
    except AccountError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"password of {username} changed")


@users.command("set")
@click.argument("username")
@click.option("--role", type=click.Choice([r.value for r in StaffRole]))
@click.option("--email")
@click.option(
    "--active/--disabled", default=None, help="Enable or disable the account (disabled: signed out)."
)
@pass_ctx
def set_user(
    ctx: AppContext, username: str, role: str | None, email: str | None, active: bool | None
) -> None:
    """Change an account's role, address or whether it may sign in (a new role or disabling signs it out)."""
    try:
        with transaction(ctx.app.factory) as db:
            change_user(db, username, role=StaffRole(role) if role else None, email=email, active=active)
    except AccountError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"user {username} updated")


@users.command("remove")
@click.argument("username")
@pass_ctx
def remove(ctx: AppContext, username: str) -> None:
    """Delete an account (its sessions end with it)."""
    with transaction(ctx.app.factory) as db:
        remove_user(db, username)
    click.echo(f"user {username} removed")


@users.command("sessions")
@click.argument("username", required=False)
@click.option("--end", "end_ref", metavar="REF", help="End the session whose reference starts so.")
@click.option("--end-all", is_flag=True, help="End every listed session (of USERNAME, or of everybody).")
@pass_ctx
def sessions(ctx: AppContext, username: str | None, end_ref: str | None, end_all: bool) -> None:
    """Signed-in browsers (of USERNAME, or of everybody): list them, or end one or all."""
    with transaction(ctx.app.factory) as db:
        if username is not None:
            get_user(db, username)  # NotFoundError names the unknown account
        if end_ref:
            try:
                ended = end_session_ref(db, end_ref)
            except ValueError as exc:
                raise click.ClickException(str(exc)) from None
            if not ended:
                raise click.ClickException(f"no open session {end_ref!r} (see `mailer users sessions`)")
            click.echo(f"session {end_ref} ended")
            return
        if end_all:
            ids = [
                user.id for user in db.scalars(select(StaffUser)).all() if username in (None, user.username)
            ]
            count = sum(end_sessions(db, uid) for uid in ids)
            click.echo(f"{count} session(s) ended")
            return
        rows = list_sessions(db, username)
    if not rows:
        click.echo("No open sessions.")
        return
    table = Table(title="Open dashboard sessions (times UTC)")
    for column in ("ref", "user", "signed in", "last request", "client", "browser"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row.ref,
            row.username,
            f"{row.created_at:%Y-%m-%d %H:%M}",
            f"{row.last_seen_at:%Y-%m-%d %H:%M}",
            row.client,
            row.agent[:60],
        )
    output_console().print(table)


@users.command("list")
@pass_ctx
def list_users(ctx: AppContext) -> None:
    """Every account with its role and last sign-in."""
    with transaction(ctx.existing_app.factory) as db:
        rows = db.scalars(select(StaffUser).order_by(StaffUser.username)).all()
    if not rows:
        click.echo("No accounts yet. Make one with `mailer users add NAME --role organiser --email ADDRESS`.")
        return
    table = Table(title="Dashboard accounts")
    for column in ("user", "role", "email", "active", "last sign-in (UTC)"):
        table.add_column(column)
    for user in rows:
        last = f"{user.last_login_at:%Y-%m-%d %H:%M}" if user.last_login_at else ""
        table.add_row(user.username, user.role, user.email, "yes" if user.active else "no", last)
    output_console().print(table)


COMMANDS = [web, users]
