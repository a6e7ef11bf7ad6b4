"""The message the service sends, for a contact or a sample recipient, one session and one step.

One path for every message that leaves or is shown: the service's sending, ``mailer send-test`` and the
organisers' "send a test", ``mailer preview --eml``, ``mailer templates render-all`` and the web's message
views all call :meth:`Outgoing.message` (or its two halves, :meth:`Outgoing.render` and
:meth:`Outgoing.build`), so what they show or send is what the service sends:

- links: a queued message (``message_pk``) gets its signed personal links (:mod:`mailer.compose.links`); a
  sample recipient (``message_pk`` None) gets ``<web.base_url>/u/preview`` and ``/rsvp/preview-yes|no``;
- headers: List-Id ``<series id>.<sender domain>`` without a description; List-Unsubscribe with the mailto
  and the link, List-Unsubscribe-Post when that link is https (RFC 8058); Auto-Submitted on every step but
  invitations (RFC 3834); the calendar parts for invitations, reminders and notices (:mod:`mailer.compose.ics`);
- DKIM: signed when a :class:`Signer` is given (the service layer gives one when ``[dkim]`` is configured:
  :func:`mailer.app.outgoing`).

The bytes come from the one builder, :class:`mailer.compose.wire.Composer`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser, Parser
from typing import Protocol

from mailer.compose.ics import Method, build_calendar, calendar_method
from mailer.compose.links import message_links
from mailer.compose.render import Rendered, Renderer
from mailer.compose.wire import Composer
from mailer.config import Session, Settings, Step, StepKind
from mailer.store.recipient import Recipient
from mailer.store.relationships import Relationship
from mailer.timeline.clock import require_aware


class Signer(Protocol):
    """What signs a finished message: :class:`mailer.delivery.dkim.DkimSigner`."""

    def signature(self, data: bytes) -> bytes:
        """The header field(s) to put before ``data``'s first line (folded, CRLF-ended)."""
        ...


@dataclass(frozen=True)
class OutgoingMessage:
    """One message as sent: ``data`` (CRLF line ends, the DKIM-Signature first when signed), ``wire`` the same
    in SMTP DATA's transparent form (RFC 5321 §4.5.2), ``utf8`` whether it needs SMTPUTF8 (RFC 6531), and the
    ``rendered`` texts it was built from."""

    rendered: Rendered
    data: bytes
    wire: bytes
    utf8: bool

    def email(self) -> EmailMessage:
        """``data`` parsed by the standard library (policy ``default``), to show its header fields and parts."""
        if self.utf8:  # RFC 6532 UTF-8 header fields: the bytes parser would leave surrogate escapes
            parsed = Parser(policy=policy.default).parsestr(self.data.decode("utf-8"))
        else:
            parsed = BytesParser(policy=policy.default).parsebytes(self.data)
        assert isinstance(parsed, EmailMessage)
        return parsed

    @property
    def headers(self) -> list[tuple[str, str]]:
        """The header fields as (name, decoded value), in order."""
        return [(name, str(value)) for name, value in self.email().items()]


def sample_links(settings: Settings) -> dict[str, str]:
    """The links of a message to a sample recipient (no outbox row): they lead to pages saying so."""
    base = settings.web.base_url
    return {
        "unsubscribe_url": f"{base}/u/preview",
        "rsvp_yes_url": f"{base}/rsvp/preview-yes",
        "rsvp_no_url": f"{base}/rsvp/preview-no",
    }


def notice_extra(
    step_name: str, previous_start: datetime | None, relationship: Relationship | None = None
) -> dict[str, object]:
    """What a notice template needs: ``change`` ("cancelled" for ``cancelled-N``, "rescheduled" for
    ``date-changed-N``), the recipient's ``relationship`` to the session when known ("registered",
    "invited" or "declined": each is told what fits them; templates take "registered" without it) and,
    for a reschedule, ``previous_start`` when known; {} for other steps. Raises NaiveDatetimeError for a
    naive ``previous_start``."""
    previous_start = require_aware(previous_start, "previous_start") if previous_start is not None else None
    standing = {} if relationship is None else {"relationship": relationship.value}
    if step_name.startswith("cancelled-"):
        return {"change": "cancelled", **standing}
    if step_name.startswith("date-changed-"):
        if previous_start is None:
            return {"change": "rescheduled", **standing}
        return {"change": "rescheduled", "previous_start": previous_start, **standing}
    return {}


class Outgoing:
    """Makes the messages of one series and sender; build once per process (see the module docstring).

    ``renderer`` defaults to one built from ``settings``; ``signer`` None sends unsigned. Raises ValueError
    for a sender or list id the builder cannot write, RenderError from building a renderer.
    """

    def __init__(self, settings: Settings, renderer: Renderer | None = None, *, signer: Signer | None = None):
        self.settings = settings
        self.renderer = renderer or Renderer(settings)
        self.signer = signer
        self.list_id = f"{settings.series.id}.{settings.sender.domain}"
        self.composer = Composer(
            settings.sender, list_id=self.list_id, unsubscribe_mailto=settings.sender.unsubscribe_mailto
        )

    def links(self, message_pk: int | None, email: str) -> dict[str, str]:
        """``unsubscribe_url``, ``rsvp_yes_url`` and ``rsvp_no_url`` of the message (see the module docstring)."""
        if message_pk is None:
            return sample_links(self.settings)
        return message_links(self.settings, message_pk, email)

    def render(
        self,
        step: Step,
        session: Session,
        recipient: Recipient,
        *,
        links: Mapping[str, str],
        extra: Mapping[str, object] | None = None,
        subject_prefix: str = "",
        sent_at: datetime | None = None,
    ) -> Rendered:
        """The texts of the message with ``links`` (from :meth:`links`) and ``extra`` template variables;
        ``subject_prefix`` (a test's "[TEST] ") goes before the subject; ``sent_at`` is the moment it is sent
        (the relative words follow it; default: the step's time). Raises what
        :meth:`mailer.compose.render.Renderer.render` raises."""
        rendered = self.renderer.render(
            step,
            session,
            recipient,
            series=self.settings.series,
            unsubscribe_url=links["unsubscribe_url"],
            extra={
                "rsvp_yes_url": links["rsvp_yes_url"],
                "rsvp_no_url": links["rsvp_no_url"],
                **(extra or {}),
            },
            sent_at=sent_at,
        )
        if subject_prefix:
            rendered = replace(rendered, subject=f"{subject_prefix}{rendered.subject}")
        return rendered

    def build(
        self,
        rendered: Rendered,
        step: Step,
        session: Session,
        recipient: Recipient,
        *,
        message_id: str,
        date: datetime,
        unsubscribe_url: str | None,
        sequence: int = 0,
        cancelled: bool = False,
        had_calendar: bool = True,
    ) -> OutgoingMessage:
        """The message's bytes: headers as the module docstring says (List-Unsubscribe with ``unsubscribe_url``
        when it is an http(s) URL, the mailto alone when None), the calendar (SEQUENCE ``sequence``;
        METHOD:CANCEL for a ``cancelled-N`` step or ``cancelled``) when the step has one, DKIM when signing.
        A CANCEL goes only to a recipient who was sent the event before (``had_calendar``): RFC 5546
        sec. 3.2.5 cancels an event the attendee holds; to anyone else the notice goes without a calendar.

        Raises :class:`mailer.errors.PermanentDeliveryError` when the recipient's address cannot be written,
        ValueError for a malformed header value, NaiveDatetimeError for a naive ``date``.
        """
        require_aware(date, "date")
        method = calendar_method(step)
        if method is not None and cancelled:
            method = Method.CANCEL
        if method is Method.CANCEL and not had_calendar:
            method = None
        sender = self.settings.sender
        calendar = (
            None
            if method is None
            else build_calendar(
                self.settings.series,
                session,
                sequence=sequence,
                method=method,
                organiser_name=sender.name,
                organiser_address=sender.address,
                attendee=recipient,
                stamp=date,
                summary=rendered.title,
                language=rendered.language,
            )
        )
        composed = self.composer.compose(
            rendered,
            recipient,
            message_id=message_id,
            date=date,
            unsubscribe_url=unsubscribe_url,
            auto_submitted=step.kind is not StepKind.INVITATION,
            calendar=calendar,
        )
        if self.signer is None:
            return OutgoingMessage(rendered, composed.data, composed.wire, composed.utf8)
        signature = self.signer.signature(composed.data)
        return OutgoingMessage(rendered, signature + composed.data, signature + composed.wire, composed.utf8)

    def message(
        self,
        step: Step,
        session: Session,
        recipient: Recipient,
        *,
        message_pk: int | None,
        message_id: str,
        date: datetime,
        extra: Mapping[str, object] | None = None,
        sequence: int = 0,
        subject_prefix: str = "",
    ) -> OutgoingMessage:
        """:meth:`render` then :meth:`build`: the message for a queued message (``message_pk``) or a sample
        recipient (None). A notice's ``extra`` ``change="cancelled"`` makes its calendar a CANCEL. Raises what
        both raise."""
        require_aware(date, "date")
        links = self.links(message_pk, recipient.email)
        rendered = self.render(
            step, session, recipient, links=links, extra=extra, subject_prefix=subject_prefix, sent_at=date
        )
        return self.build(
            rendered,
            step,
            session,
            recipient,
            message_id=message_id,
            date=date,
            unsubscribe_url=links["unsubscribe_url"],
            sequence=sequence,
            cancelled=step.kind is StepKind.NOTICE and (extra or {}).get("change") == "cancelled",
        )


__all__ = ["Outgoing", "OutgoingMessage", "Signer", "notice_extra", "sample_links"]
