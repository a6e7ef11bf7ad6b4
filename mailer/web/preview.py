"""Rebuild a message as the service sends it (for the dashboard's message view and the organisers' preview).

The same steps as :meth:`mailer.service.Service._deliver`: render with the message's signed links, then
build the MIME message with the same Message-ID, List-Id and List-Unsubscribe. Templates and contact data
are today's: the page says so, since they may have changed since the message went out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage

from mailer.compose.links import message_links
from mailer.compose.mime import build_message
from mailer.compose.render import Rendered, Renderer
from mailer.config import Session, Settings, Step, StepKind
from mailer.store.recipient import Recipient


@dataclass(frozen=True)
class Composed:
    """A rendered message and its MIME form."""

    rendered: Rendered
    email: EmailMessage

    @property
    def headers(self) -> list[tuple[str, str]]:
        return [(name, str(value)) for name, value in self.email.items()]


def compose(
    settings: Settings,
    renderer: Renderer,
    step: Step,
    session: Session,
    recipient: Recipient,
    *,
    message_pk: int | None,
    message_id: str,
    date: datetime,
    subject_prefix: str = "",
) -> Composed:
    """Render and build one message. ``message_pk`` None (a preview or a test) gives links that say so.

    Raises :class:`mailer.errors.RenderError` for a template problem and what ``build_message`` raises.
    """
    if message_pk is None:
        base = settings.web.base_url
        links = {
            "unsubscribe_url": f"{base}/u/preview",
            "rsvp_yes_url": f"{base}/rsvp/preview-yes",
            "rsvp_no_url": f"{base}/rsvp/preview-no",
        }
    else:
        links = message_links(settings, message_pk, recipient.email)
    rendered = renderer.render(
        step,
        session,
        recipient,
        series=settings.series,
        unsubscribe_url=links["unsubscribe_url"],
        extra={"rsvp_yes_url": links["rsvp_yes_url"], "rsvp_no_url": links["rsvp_no_url"]},
    )
    if subject_prefix:
        rendered = Rendered(
            f"{subject_prefix}{rendered.subject}",
            rendered.text,
            rendered.html,
            rendered.language,
            rendered.requested_language,
            rendered.kind,
        )
    email = build_message(
        rendered,
        recipient,
        sender=settings.sender,
        message_id=message_id,
        date=date,
        list_id=f"{settings.series.id}.{settings.sender.domain}",
        unsubscribe_mailto=settings.sender.unsubscribe_mailto,
        unsubscribe_url=links["unsubscribe_url"],
        auto_submitted=step.kind is not StepKind.INVITATION,
    )
    return Composed(rendered, email)


__all__ = ["Composed", "compose"]
