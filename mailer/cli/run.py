"""``mailer simulate``, ``mailer demo`` and ``mailer send-test``: see it run."""

from __future__ import annotations

import dataclasses
import shutil
from datetime import datetime
from email.utils import parseaddr
from pathlib import Path

import click
from email_validator import EmailNotValidError, validate_email
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from mailer.app import App, open_app, outgoing, run_async
from mailer.cli import AppContext, output_console, pass_ctx
from mailer.cli.log import counts_table
from mailer.config import check_public_links, load_settings
from mailer.delivery.transport import SmtpRouter
from mailer.errors import InstantRangeError, NotFoundError
from mailer.message_ids import make_message_id
from mailer.service import smtp_target, wall_time
from mailer.simulate import SimulationTick, simulate
from mailer.store.engine import transaction
from mailer.store.queries import counts_by_step
from mailer.store.recipient import Recipient
from mailer.timeline.clock import SystemClock, accepted_instant, require_aware

DEFAULT_CONTACTS_DIR = Path("../shared/data/contacts")


def _parse_utc(text: str | None, option: str) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not an ISO 8601 date-time such as 2021-06-01T09:00+00:00", param_hint=option
        ) from None
    if moment.tzinfo is None:
        raise click.BadParameter(
            f"{text!r} has no UTC offset: write e.g. {moment.isoformat()}+00:00", param_hint=option
        )
    try:
        return accepted_instant(moment, repr(text))
    except InstantRangeError as exc:
        raise click.BadParameter(str(exc), param_hint=option) from None


def run_simulation(
    app: App, console: Console, start: datetime | None = None, end: datetime | None = None
) -> None:
    """Simulate the timeline against the configured SMTP server (or a capture server), printing as it goes.

    Raises ConfigError before sending when a real relay would carry links participants cannot open."""
    check_public_links(app.settings)
    start = require_aware(start, "start") if start is not None else None
    end = require_aware(end, "end") if end is not None else None
    with smtp_target(app.settings, on_start=console.print) as settings:
        target = App(settings, app.engine, app.factory)
        with Progress(
            TextColumn("[bold]virtual time[/bold] {task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("steps"),
            console=console,
            transient=True,
        ) as progress:
            task = progress.add_task("", total=None)

            def on_tick(tick: SimulationTick) -> None:
                progress.update(
                    task, total=tick.steps_total, completed=tick.steps_done, description=wall_time(tick.at)
                )
                grouped: dict[tuple[str, str], list[str]] = {}
                for (session_id, step, status), count in sorted(tick.report.counts.items()):
                    grouped.setdefault((session_id, step), []).append(f"{count} {status}")
                for (session_id, step), parts in grouped.items():
                    progress.console.print(
                        f"{wall_time(tick.at)}  {session_id:<20} {step:<14} {', '.join(parts)}"
                    )

            run_async(simulate(target, start=start, end=end, on_tick=on_tick))
    with transaction(app.factory) as db:
        console.print(counts_table(counts_by_step(db), "Delivery report"))


@click.command("simulate")
@click.option(
    "--from", "start_text", help="Virtual start, ISO 8601 with offset [default: before the first step]."
)
@click.option("--until", "end_text", help="Virtual end, ISO 8601 with offset [default: after the last step].")
@pass_ctx
def simulate_command(ctx: AppContext, start_text: str | None, end_text: str | None) -> None:
    """Run the whole timeline in virtual time, sending for real, then print the report."""
    start, end = _parse_utc(start_text, "--from"), _parse_utc(end_text, "--until")
    if start is not None and end is not None and start >= end:
        raise click.BadParameter(
            f"{start_text} is not before --until {end_text}: the simulation would run no time at all",
            param_hint="--from",
        )
    run_simulation(ctx.app, output_console(), start, end)


@click.command("demo")
@click.option(
    "--contacts",
    "contacts_dir",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    default=DEFAULT_CONTACTS_DIR,
    show_default=True,
    help="Folder with <region>.csv and registrations-<region>.csv.",
)
@click.pass_context
def demo(click_ctx: click.Context, contacts_dir: Path) -> None:
    """The main job on embedded defaults: import the four regions into a fresh store, simulate the whole
    series, print the report.

    Everything lives in var/demo/ (store: var/demo/mailer.db; messages: var/demo/capture/*.eml unless an
    SMTP host is configured), which each run starts afresh, keeping only the dashboard accounts of the
    last run's store; elsewhere under var/ only the key that signs web links, var/web-secret.key, is made
    when missing. Ends with the command that serves the web pages on the demo's store.
    """
    from mailer.audience.contacts import import_contacts
    from mailer.audience.registrations import import_registrations

    ctx: AppContext = click_ctx.obj
    console = output_console()
    settings = load_settings(ctx.config_dir, database_url=ctx.database_url)
    missing = [
        str(contacts_dir / f"{session.region}.csv")
        for session in settings.series.sessions
        if not (contacts_dir / f"{session.region}.csv").is_file()
    ]
    if missing:
        raise click.BadParameter(f"no contact file {', '.join(missing)}", param_hint="--contacts")
    demo_dir = settings.base_dir / "var" / "demo"
    demo_store = demo_dir / "mailer.db"
    accounts = saved_accounts(f"sqlite:///{demo_store}") if not ctx.database_url else []
    if demo_dir.exists():
        shutil.rmtree(demo_dir)
    settings = dataclasses.replace(settings, capture_dir=demo_dir / "capture")
    if not ctx.database_url:
        settings = dataclasses.replace(settings, database_url=f"sqlite:///{demo_store}")
    app = open_app(settings)
    restore_accounts(app, accounts)
    console.print(f"store: {settings.database_url}", soft_wrap=True)
    if accounts:
        console.print(
            f"dashboard accounts kept from the last run: {', '.join(str(a['username']) for a in accounts)}"
        )
    now = SystemClock().now()
    for session in settings.series.sessions:
        contacts = contacts_dir / f"{session.region}.csv"
        result = import_contacts(
            app.factory,
            settings,
            contacts,
            session.region,
            now,
            rejects_path=demo_dir / "rejects" / f"{contacts.stem}-rejects.csv",
        )
        console.print(
            f"contacts {contacts.name:<22} {result.imported:4d} imported, {len(result.rejected):2d} rejected,"
            f" {len(result.duplicates)} duplicate"
            + (f" (see {result.rejects_path})" if result.rejects_path else ""),
            soft_wrap=True,
        )
        registrations = contacts_dir / f"registrations-{session.region}.csv"
        if registrations.exists():
            regs = import_registrations(
                app.factory,
                settings,
                registrations,
                session.id,
                now,
                rejects_path=demo_dir / "rejects" / f"{registrations.stem}-rejects.csv",
            )
            console.print(
                f"registrations {registrations.name:<31} {regs.registered:3d} registered, {regs.denied:2d} denied,"
                f" {regs.new_contacts} new contacts, {len(regs.rejected)} rejected",
                soft_wrap=True,
            )
    run_simulation(app, console)
    if not settings.smtp.host:
        console.print(f"Messages written to {settings.capture_dir}", soft_wrap=True)
    url = settings.database_url
    console.print(
        f"Browse the results on the web pages: ./run mailer --database-url {url} web", soft_wrap=True
    )
    if not accounts:
        console.print(
            f"  (make an account first: ./run mailer --database-url {url} users add NAME --role organiser"
            " --email ADDRESS; it is kept across demo runs)",
            soft_wrap=True,
        )
    app.close()


def saved_accounts(url: str) -> list[dict[str, object]]:
    """The dashboard accounts of the demo store at ``url`` (a SQLite file), as column values; [] when the
    file or its accounts table does not exist yet. The demo restores them into its new store, so
    signing in to the web pages survives ``./run demo``."""
    from sqlalchemy import inspect, select

    from mailer.store.engine import make_engine, sqlite_path
    from mailer.store.models import StaffUser

    path = sqlite_path(url)
    if path is None or not path.is_file():
        return []
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            if not inspect(connection).has_table(StaffUser.__tablename__):
                return []
            table = StaffUser.__table__
            return [dict(row._mapping) for row in connection.execute(select(table))]
    finally:
        engine.dispose()


def restore_accounts(app: App, accounts: list[dict[str, object]]) -> None:
    """Insert ``accounts`` (from :func:`saved_accounts`) into the freshly made store of ``app``."""
    from sqlalchemy import insert

    from mailer.store.models import StaffUser

    if not accounts:
        return
    with transaction(app.factory) as db:
        db.execute(insert(StaffUser), accounts)


@click.command("send-test")
@click.option("--session", "session_id", required=True)
@click.option("--step", "step_name", required=True)
@click.option("--to", "address", required=True, help="Where to send the test message.")
@click.option("--language", default="en", show_default=True, help="BCP 47 tag, e.g. fr, ar, pt-BR.")
@click.option("--zone", default="UTC", show_default=True, help="Recipient's IANA time zone.")
@click.option("--name", default="Test Recipient", show_default=True)
@pass_ctx
def send_test(
    ctx: AppContext, session_id: str, step_name: str, address: str, language: str, zone: str, name: str
) -> None:
    """Make the message the service would send to a sample recipient and send it now (nothing is queued or
    logged): the same header fields, DKIM signature and calendar, with links that lead to preview pages.

    ``--to`` takes an address, or ``Name <address>`` (the name then replaces ``--name``).
    """
    display, parsed = parseaddr(address)
    try:
        address = validate_email(parsed or address, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise click.BadParameter(f"{address!r}: {exc}", param_hint="--to") from None
    name = display or name
    settings = ctx.settings
    check_public_links(settings)
    try:
        session = settings.series.session(session_id)
        step = settings.series.step(step_name)
    except KeyError as exc:
        raise NotFoundError(exc.args[0]) from None
    recipient = Recipient(email=address, name=name, language=language, time_zone=zone, region=session.region)
    now = SystemClock().now()
    message = outgoing(settings).message(
        step,
        session,
        recipient,
        message_pk=None,
        message_id=make_message_id(
            f"send-test:{session.id}:{step.name}:{address}:{now.isoformat()}", settings.sender.domain
        ),
        date=now,
    )

    if message.rendered.fell_back:
        from mailer.cli.render import fallback_warning

        warning = fallback_warning(
            settings, step, session, language, message.rendered.language, "the test message"
        )
        click.echo(warning, err=True)

    async def send() -> None:
        with smtp_target(settings, on_start=click.echo) as target:
            async with SmtpRouter(target) as pool:
                reply = await pool.send(
                    settings.sender.address,
                    address,
                    message.wire,
                    kind=step.kind,
                    utf8=message.utf8,
                    transparent=True,
                )
        if reply.status == "sent":
            click.echo(f"sent: {reply.code or ''} {reply.text}".strip())
            return
        kind = "temporary failure" if reply.status == "deferred" else "refused"
        reply_text = " ".join(part for part in (str(reply.code or ""), reply.text) if part)
        click.echo(f"not delivered ({kind}, nothing was queued): {reply_text}", err=True)
        raise SystemExit(1)

    run_async(send())


COMMANDS = [simulate_command, demo, send_test]
