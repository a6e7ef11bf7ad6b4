"""Registration events pushed by a webinar platform: the generic JSON shape and Zoom's, parsed into one
:class:`RegistrationEvent`. Pure functions: no store, no clock.

Generic shape (``POST /hooks/registrations``)::

    {"id": "evt-123",                       # unique per event: a second delivery is a duplicate
     "type": "registration.created",        # .created | .approved | .denied | .cancelled
     "occurred_at": "2022-03-06T18:00:00Z", # ISO 8601 with an offset
     "session": "latin-america-2022",
     "registrant": {"email": "...", "first_name": "...", "last_name": "...",
                    "country": "AR", "institution": "..."}}   # only email required

Zoom (``POST /hooks/zoom``): ``webinar.registration_created``, ``_approved``, ``_denied`` and
``_cancelled``, ``payload.object.id`` the webinar (mapped to a session by ``[webhooks.zoom_webinars]``),
``payload.object.registrant`` the person, ``event_ts`` milliseconds since the epoch. Zoom's body has no event
id: ``{event}:{webinar}:{registrant id or email}:{event_ts}`` stands for one, so Zoom's retries of a
delivery are duplicates. A ``_created`` registrant whose status is ``pending`` awaits approval: no change.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from mailer.errors import InstantRangeError, MailerError
from mailer.store.models import RegistrationStatus
from mailer.timeline.clock import accepted_instant


class EventFormatError(MailerError, ValueError):
    """A pushed event that is not one this service understands; the message says which field and why."""


class Action(StrEnum):
    """What happened to a registration on the platform."""

    CREATED = "created"  # registered (or awaiting approval, when pending)
    APPROVED = "approved"  # an organiser approved it
    DENIED = "denied"  # an organiser refused it
    CANCELLED = "cancelled"  # the registrant or an organiser cancelled it

    @property
    def status(self) -> RegistrationStatus:
        """The registration's status after this action."""
        return {
            Action.CREATED: RegistrationStatus.REGISTERED,
            Action.APPROVED: RegistrationStatus.REGISTERED,
            Action.DENIED: RegistrationStatus.DENIED,
            Action.CANCELLED: RegistrationStatus.DECLINED,
        }[self]


@dataclass(frozen=True)
class RegistrationEvent:
    """One pushed registration event, whatever its platform.

    ``occurred_at`` is aware UTC; ``pending`` marks a registration awaiting approval (nothing to store).
    """

    source: str  # generic | zoom
    event_id: str
    action: Action
    session_id: str
    email: str
    first_name: str
    last_name: str
    country: str
    institution: str
    occurred_at: datetime
    pending: bool = False


def _text(mapping: Mapping[str, Any], key: str, where: str, *, required: bool = False) -> str:
    value = mapping.get(key)
    if value is None or value == "":
        if required:
            raise EventFormatError(f"{where}{key}: missing")
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise EventFormatError(f"{where}{key}: expected a string, got {type(value).__name__}")
    text = str(value).strip()
    if len(text) > 320:
        raise EventFormatError(f"{where}{key}: longer than 320 characters")
    return text


def _object(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise EventFormatError(f"{where}: expected a JSON object")
    return value


def parse_generic(body: Any) -> RegistrationEvent:
    """The generic JSON body (module docstring) -> event. Raises :class:`EventFormatError`."""
    event = _object(body, "body")
    kind = _text(event, "type", "", required=True)
    prefix, _, name = kind.partition(".")
    if prefix != "registration" or name not in {action.value for action in Action}:
        raise EventFormatError(
            f"type: unknown event {kind!r} (registration.created, .approved, .denied or .cancelled)"
        )
    occurred = _text(event, "occurred_at", "", required=True)
    try:
        occurred_at = datetime.fromisoformat(occurred.replace("Z", "+00:00"))
    except ValueError:
        raise EventFormatError(f"occurred_at: not an ISO 8601 time ({occurred!r})") from None
    if occurred_at.tzinfo is None:
        raise EventFormatError("occurred_at: give an offset (e.g. 2022-03-06T18:00:00Z)")
    try:
        occurred_at = accepted_instant(occurred_at, f"occurred_at {occurred!r}")
    except InstantRangeError as exc:
        raise EventFormatError(str(exc)) from None
    person = _object(event.get("registrant"), "registrant")
    return RegistrationEvent(
        source="generic",
        event_id=_text(event, "id", "", required=True)[:200],
        action=Action(name),
        session_id=_text(event, "session", "", required=True),
        email=_text(person, "email", "registrant.", required=True),
        first_name=_text(person, "first_name", "registrant."),
        last_name=_text(person, "last_name", "registrant."),
        country=_text(person, "country", "registrant."),
        institution=_text(person, "institution", "registrant."),
        occurred_at=occurred_at.astimezone(UTC),
    )


ZOOM_EVENTS = {f"webinar.registration_{action.value}": action for action in Action}
ZOOM_URL_VALIDATION = "endpoint.url_validation"


def zoom_event_name(body: Any) -> str:
    """The ``event`` field of a Zoom body ("" when absent or not a string)."""
    value = body.get("event") if isinstance(body, dict) else None
    return value if isinstance(value, str) else ""


def parse_zoom(body: Any, webinars: Mapping[str, str]) -> RegistrationEvent:
    """A Zoom webinar registration event -> event, its webinar mapped to a session by ``webinars``.

    Raises :class:`EventFormatError` for another event, a missing field or a webinar not in ``webinars``.
    """
    event = _object(body, "body")
    name = zoom_event_name(event)
    action = ZOOM_EVENTS.get(name)
    if action is None:
        raise EventFormatError(f"event: {name!r} is not a webinar registration event")
    stamp = event.get("event_ts")
    if isinstance(stamp, bool) or not isinstance(stamp, int) or not 0 < stamp < 10**14:
        raise EventFormatError("event_ts: expected milliseconds since 1970 as an integer")
    payload = _object(event.get("payload"), "payload")
    subject = _object(payload.get("object"), "payload.object")
    webinar = _text(subject, "id", "payload.object.", required=True)
    session_id = webinars.get(webinar)
    if session_id is None:
        raise EventFormatError(f"payload.object.id: webinar {webinar} is not in [webhooks.zoom_webinars]")
    person = _object(subject.get("registrant"), "payload.object.registrant")
    where = "payload.object.registrant."
    email = _text(person, "email", where, required=True)
    registrant_id = _text(person, "id", where) or email
    status = _text(person, "status", where).lower()
    return RegistrationEvent(
        source="zoom",
        event_id=f"{name}:{webinar}:{registrant_id}:{stamp}"[:200],
        action=action,
        session_id=session_id,
        email=email,
        first_name=_text(person, "first_name", where),
        last_name=_text(person, "last_name", where),
        country=_text(person, "country", where),
        institution=_text(person, "org", where),
        occurred_at=datetime.fromtimestamp(stamp / 1000, UTC),
        pending=action is Action.CREATED and status == "pending",
    )


__all__ = [
    "ZOOM_EVENTS",
    "ZOOM_URL_VALIDATION",
    "Action",
    "EventFormatError",
    "RegistrationEvent",
    "parse_generic",
    "parse_zoom",
    "zoom_event_name",
]
