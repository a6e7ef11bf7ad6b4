"""``mailer api-tokens``: create, list and revoke the JSON API's per-client tokens."""

from __future__ import annotations

import click
from rich.table import Table

from mailer.cli import AppContext, output_console, pass_ctx
from mailer.store.engine import transaction
from mailer.store.models import TokenScope
from mailer.store.tokens import create_token, list_tokens, revoke_token
from mailer.timeline.clock import SystemClock


@click.group("api-tokens")
def api_tokens() -> None:
    """Tokens of the JSON API (/api/v1/): one per client, scoped read or write, stored hashed."""


@api_tokens.command("create")
@click.argument("name")
@click.option(
    "--scope",
    type=click.Choice([scope.value for scope in TokenScope]),
    default=TokenScope.READ.value,
    show_default=True,
    help="read: GET only; write: also queue and steer waves, import, add and suppress contacts.",
)
@pass_ctx
def create(ctx: AppContext, name: str, scope: str) -> None:
    """Make a token for client NAME and print it once (only its hash is kept)."""
    with transaction(ctx.app.factory) as db:
        try:
            token = create_token(db, name, TokenScope(scope), SystemClock().now())
        except ValueError as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(f"API token for {name} ({scope}); shown once, keep it in the client's secret store:", err=True)
    click.echo(token)


@api_tokens.command("list")
@pass_ctx
def list_command(ctx: AppContext) -> None:
    """Every client's token: scope, creation, last use, revocation (never the token)."""
    with transaction(ctx.app.factory) as db:
        tokens = list_tokens(db)
    if not tokens:
        click.echo("No API tokens yet. Make one with `mailer api-tokens create NAME --scope read`.")
        return
    table = Table(title="API tokens")
    for column in ("name", "scope", "created (UTC)", "last used (UTC)", "revoked (UTC)"):
        table.add_column(column, overflow="fold")
    for info in tokens:
        table.add_row(
            info.name,
            info.scope.value,
            f"{info.created_at:%Y-%m-%d %H:%M}",
            f"{info.last_used_at:%Y-%m-%d %H:%M}" if info.last_used_at else "",
            f"{info.revoked_at:%Y-%m-%d %H:%M}" if info.revoked_at else "",
        )
    output_console().print(table)


@api_tokens.command("revoke")
@click.argument("name")
@pass_ctx
def revoke(ctx: AppContext, name: str) -> None:
    """Revoke client NAME's token: its requests are refused (401) from now on."""
    with transaction(ctx.app.factory) as db:
        revoke_token(db, name, SystemClock().now())
    click.echo(f"API token {name} revoked")


COMMANDS = [api_tokens]
