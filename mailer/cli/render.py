"""``mailer preview``: render one step for one contact (or a made-up one) and show what would be sent."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import click
from sqlalchemy import func, or_, select

from mailer.app import outgoing
from mailer.cli import AppContext, pass_ctx
from mailer.config import Audience, Offset, Session, Settings, Step, StepKind
from mailer.errors import NaiveDatetimeError, NotFoundError, RenderError
from mailer.message_ids import make_message_id
from mailer.store.models import Contact
from mailer.store.recipient import Recipient, recipient_of
from mailer.timeline.clock import SystemClock, accepted_instant


def _step(settings: Settings, name: str) -> Step:
    """The series' step ``name``; or, for a step kind with a template folder (e.g. "notice"), an ad hoc step."""
    try:
        return settings.series.step(name)
    except KeyError as exc:
        if name in {kind.value for kind in StepKind} and (settings.templates_dir / name).is_dir():
            kind = StepKind(name)
            return Step(
                name, kind, Offset(0, timedelta(0), "+0m"), name, Audience.REGISTRANTS, False, timedelta(0)
            )
        raise NotFoundError(str(exc.args[0])) from None


def _extra(assignments: tuple[str, ...]) -> dict[str, object]:
    """``KEY=VALUE`` pairs; a value in ISO 8601 with an offset becomes an aware datetime."""
    extra: dict[str, object] = {}
    for item in assignments:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint="--set")
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            extra[key.strip()] = value
            continue
        if moment.tzinfo is None:
            raise NaiveDatetimeError(f"--set {key}: give an offset, e.g. {value}+00:00")
        extra[key.strip()] = accepted_instant(moment, f"--set {key}={value}")
    return extra


def _contact_recipient(ctx: AppContext, email: str, region: str) -> Recipient:
    wanted = email.strip()
    with ctx.existing_app.factory() as db:
        contact = db.scalars(
            select(Contact).where(
                or_(
                    Contact.email_key.in_({wanted.lower(), wanted.casefold()}),
                    func.lower(Contact.email) == wanted.lower(),
                )
            )
        ).first()
        if contact is None:
            raise NotFoundError(f"no contact with address {wanted!r}")
        return recipient_of(contact, region)


@click.command("preview")
@click.option("--session", "session_id", required=True, help="Session id from series.toml.")
@click.option("--step", "step_name", required=True, help="Step name from series.toml, or 'notice'.")
@click.option("--contact", "contact_email", help="Render for this contact from the store.")
@click.option("--language", help="Render for a made-up contact speaking this language (BCP 47).")
@click.option("--zone", help="The made-up contact's time zone [default: the region's].")
@click.option("--name", default="", help="The made-up contact's name.")
@click.option(
    "--set",
    "assignments",
    multiple=True,
    metavar="KEY=VALUE",
    help="Extra template variable, repeatable (notice: change=rescheduled, previous_start=ISO time).",
)
@click.option(
    "--unsubscribe-url", help="Unsubscribe link to show [default: the preview link under web.base_url]."
)
@click.option(
    "--eml",
    "eml_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the message here (with its calendar entry, SEQUENCE 0).",
)
@click.option(
    "--html", "html_path", type=click.Path(dir_okay=False, path_type=Path), help="Write the HTML part here."
)
@pass_ctx
def preview(
    ctx: AppContext,
    session_id: str,
    step_name: str,
    contact_email: str | None,
    language: str | None,
    zone: str | None,
    name: str,
    assignments: tuple[str, ...],
    unsubscribe_url: str | None,
    eml_path: Path | None,
    html_path: Path | None,
) -> None:
    """Print the subject, the language used and the text part of one step's message; optionally save it."""
    if (contact_email is None) == (language is None):
        raise click.UsageError("give exactly one of --contact EMAIL or --language L")
    settings = ctx.settings
    try:
        session = settings.series.session(session_id)
    except KeyError as exc:
        raise NotFoundError(str(exc.args[0])) from None
    step = _step(settings, step_name)
    if contact_email is not None:
        recipient = _contact_recipient(ctx, contact_email, session.region)
    else:
        recipient = Recipient(
            email=f"preview@{settings.sender.domain}",
            name=name,
            language=language or settings.default_language,
            time_zone=zone or settings.region(session.region).default_zone,
            region=session.region,
        )
    extra = _extra(assignments)
    messages = outgoing(settings)
    links = messages.links(None, recipient.email)
    if unsubscribe_url:
        links["unsubscribe_url"] = unsubscribe_url
    try:
        rendered = messages.render(step, session, recipient, links=links, extra=extra)
    except RenderError:
        raise
    except ValueError as exc:  # an --set key shadowing a fixed context variable
        raise click.BadParameter(str(exc), param_hint="--set") from None
    used = rendered.language
    note = f" (requested {rendered.requested_language or 'none'}: fell back)" if rendered.fell_back else ""
    if rendered.fell_back and language is not None:
        click.echo(fallback_warning(settings, step, session, language, used, "the preview"), err=True)
    click.echo(f"Subject:  {rendered.subject}")
    click.echo(f"Language: {used}{note}")
    to = f"{recipient.display_name} <{recipient.email}>" if recipient.display_name else recipient.email
    click.echo(f"To:       {to}, zone {recipient.time_zone}")
    click.echo("")
    click.echo(rendered.text, nl=False)
    if html_path is not None:
        _write(html_path, rendered.html.encode("utf-8"), "--html")
        click.echo(f"HTML written to {html_path}", err=True)
    if eml_path is not None:
        now = SystemClock().now()
        message = messages.build(
            rendered,
            step,
            session,
            recipient,
            message_id=make_message_id(
                f"preview:{session.id}:{step.name}:{recipient.email}", settings.sender.domain
            ),
            date=now,
            unsubscribe_url=links["unsubscribe_url"] if links["unsubscribe_url"].startswith("http") else None,
            cancelled=step.kind is StepKind.NOTICE and extra.get("change") == "cancelled",
        )
        _write(eml_path, message.data, "--eml")
        click.echo(f"Message written to {eml_path}", err=True)


def _write(path: Path, data: bytes, option: str) -> None:
    """Write ``data`` to ``path``, given as ``option``; a one-line error when it cannot be written."""
    try:
        path.write_bytes(data)
    except OSError as exc:
        raise click.ClickException(
            f"cannot write {option} {path}: {exc.strerror or exc} (give a file in a folder you can write to)"
        ) from None


def fallback_warning(
    settings: Settings, step: Step, session: Session, asked: str, used: str, what: str
) -> str:
    """The warning printed when ``asked`` (a ``--language`` value) has no template for ``step`` and ``what``
    ("the preview", "the test message") is rendered in ``used`` instead (DESIGN invariant 4: the fallback
    chain, never silent)."""
    offered = ", ".join(settings.languages)
    return (
        f"warning: no {step.name} template in {asked!r}; {what} falls back to {used}"
        f" (its language family, then the {session.region} region's chain; offered: {offered})"
    )


COMMANDS = [preview]
