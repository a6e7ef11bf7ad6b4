"""Calendar entries (iCalendar, RFC 5545) for invitations, reminders and notices, as iTIP messages (RFC 5546).

Pure: (series, session, sequence, method, organiser, attendee) -> the bytes of a ``VCALENDAR``. The same
session always has the same ``UID``, so a client files every message about it as one event:

- ``METHOD:REQUEST`` (invitations, reminders, "date changed" notices) adds the event or, with a higher
  ``SEQUENCE``, updates it in place: a reschedule moves the entry already in the reader's calendar;
- ``METHOD:CANCEL`` with ``STATUS:CANCELLED`` ("cancelled" notices) removes it.

``SEQUENCE`` is the session's counter in the store (``sessions.sequence``, raised on each reschedule and
cancellation), never a per-message number: a reminder sent after a reschedule carries the new SEQUENCE and
the new times, and a late invitation never moves an event back. Times are written in UTC (``...Z``), so
there is no ``TZID`` and no ``VTIMEZONE`` to get wrong (Outlook rejects a VTIMEZONE it cannot match, and the
zones of the sessions are fixed offsets like GMT-3 that have no Windows name); every client shows the
event in its reader's own zone. ``DTSTAMP`` is the message's Date, so a message built twice is identical.

The join URL is the event's ``LOCATION`` and ``URL`` and opens its ``DESCRIPTION``; the organiser is the
sender (replies from a calendar client go there); the attendee is the recipient, ``RSVP=FALSE`` (answers
go through the RSVP links of the message, not iTIP replies).

In the message (:mod:`mailer.compose.mime`, :mod:`mailer.compose.wire`) the calendar travels twice, as Gmail and Outlook
themselves send it: as a ``text/calendar; method=...`` alternative (what Outlook and Gmail turn into an
invitation card) and as an ``invite.ics`` attachment (what every other client can open).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from urllib.parse import quote

from icalendar import Calendar, Event, vCalAddress, vText

from mailer.compose.localise import language_family
from mailer.config import Series, Session, Step, StepKind
from mailer.store.recipient import Recipient
from mailer.timeline.clock import require_aware

PRODID = "-//Parliamentary webinars//webinar-mailer//EN"
FILENAME = "invite.ics"
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\u2028\u2029]")
_PARAMETER_UNSAFE = re.compile(r'["\x00-\x1f\x7f]')
_CANCELLED_STEP = re.compile(r"^cancelled-\d+$")
_QUOTE_SAFE = re.compile(r"[A-Za-z0-9_.\-~'!#$&*+/=?^`{|}]*\Z")  # what quote(..., safe=...) leaves as it is


class Method(StrEnum):
    """The iTIP method (RFC 5546 §1.4): also the ``method=`` parameter of the ``text/calendar`` part."""

    REQUEST = "REQUEST"  # add the event, or update it when SEQUENCE is higher
    CANCEL = "CANCEL"  # remove the event


@dataclass(frozen=True)
class CalendarPart:
    """A calendar to attach: ``data`` (UTF-8, CRLF lines of at most 75 octets) and its ``method``."""

    data: bytes
    method: Method
    filename: str = FILENAME
    #: The start of ``data`` every message about the same session, SEQUENCE, method and language shares
    #: (b"" when unknown): :mod:`mailer.compose.wire` encodes it once.
    head: bytes = field(default=b"", compare=False, repr=False)


def calendar_method(step: Step) -> Method | None:
    """CANCEL for a ``cancelled-N`` notice, REQUEST for invitations, reminders and other notices, None for
    follow-ups (the event is over: no calendar entry)."""
    if step.kind is StepKind.NOTICE and _CANCELLED_STEP.match(step.name):
        return Method.CANCEL
    if step.kind in (StepKind.INVITATION, StepKind.REMINDER, StepKind.NOTICE):
        return Method.REQUEST
    return None


def event_uid(series: Series, session: Session, domain: str) -> str:
    """The session's event UID, stable for ever: ``<session>.<series>@<domain>``."""
    return f"{session.id}.{series.id}@{domain.strip().lower().rstrip('.')}"


def build_calendar(
    series: Series,
    session: Session,
    *,
    sequence: int,
    method: Method,
    organiser_name: str,
    organiser_address: str,
    attendee: Recipient,
    stamp: datetime,
    summary: str = "",
    language: str = "",
) -> CalendarPart:
    """The calendar of one message about ``session``.

    ``sequence`` the session's current SEQUENCE (>= 0); ``stamp`` the message's aware Date (DTSTAMP);
    ``summary`` the session's name in the reader's language (else the configured title) and ``language`` its
    BCP 47 tag (the LANGUAGE parameter of SUMMARY and DESCRIPTION). Raises ValueError for a negative
    sequence or an organiser address without "@", NaiveDatetimeError for a naive ``stamp``.
    """
    stamp = require_aware(stamp, "stamp")  # in UTC
    if sequence < 0:
        raise ValueError(f"SEQUENCE must be >= 0, got {sequence}")
    key = (id(series), id(session), sequence, method, organiser_name, organiser_address, summary, language)
    kept = _SHARED.get(key)
    if kept is None or kept[0] is not series or kept[1] is not session:
        if len(_SHARED) >= _SHARED_KEPT:
            _SHARED.clear()
        head_tail = _shared(
            series, session, sequence, method, organiser_name, organiser_address, summary, language
        )
        kept = _SHARED[key] = (series, session, *head_tail)
    common_name = _common_name(attendee.display_name)
    name = f'CN="{common_name}";' if common_name else ""
    attendee_line = (
        "ATTENDEE;"
        f"{name}CUTYPE=INDIVIDUAL;PARTSTAT=NEEDS-ACTION;ROLE=REQ-PARTICIPANT;RSVP=FALSE:{_mailto(attendee.email)}"
    )
    return CalendarPart(
        b"".join((kept[2], _stamp(stamp), _fold(attendee_line), kept[3])), method, head=kept[2]
    )


_STAMPS: dict[datetime, bytes] = {}  # DTSTAMP lines made lately, by their second


def _stamp(stamp: datetime) -> bytes:
    """The DTSTAMP line of ``stamp`` (in UTC), to the second."""
    second = stamp.replace(microsecond=0)
    line = _STAMPS.get(second)
    if line is None:
        if len(_STAMPS) >= 64:
            _STAMPS.clear()
        line = _STAMPS[second] = second.strftime("DTSTAMP:%Y%m%dT%H%M%SZ\r\n").encode("ascii")
    return line


def _fold(line: str) -> bytes:
    """One content line folded at 75 octets (RFC 5545 §3.1), never inside a UTF-8 sequence, CRLF-ended."""
    data = line.encode("utf-8")
    if len(data) <= 75:
        return data + b"\r\n"
    if line.isascii():  # one octet a character: cut every 75, then every 74 after the leading space
        return b"\r\n ".join([data[:75], *(data[i : i + 74] for i in range(75, len(data), 74))]) + b"\r\n"
    out: list[bytes] = []
    start, room = 0, 75
    while len(data) - start > room:  # cut before the last character that would not fit whole
        cut = start + room
        while data[cut] & 0xC0 == 0x80:  # a UTF-8 continuation octet: inside a character
            cut -= 1
        out.append(data[start:cut])
        start, room = cut, 74
    out.append(data[start:])
    return b"\r\n ".join(out) + b"\r\n"


# The shared parts of the calendars built lately, by the identity of their series and session (hashing a
# Series field by field costs more than the rest of a calendar); each entry holds its series and session,
# so their ids are not reused while it is kept.
_SHARED: dict[tuple[object, ...], tuple[Series, Session, bytes, bytes]] = {}
_SHARED_KEPT = 512


def _shared(
    series: Series,
    session: Session,
    sequence: int,
    method: Method,
    organiser_name: str,
    organiser_address: str,
    summary: str,
    language: str,
) -> tuple[bytes, bytes]:
    """The calendar without DTSTAMP and ATTENDEE, split where they go: the same for every recipient of a
    (session, SEQUENCE, method, language), so built once and kept in :data:`_SHARED` (icalendar takes about
    a millisecond a calendar)."""
    texts, _ = session.texts_for(language_family(language))
    title = _text(summary or texts.title)
    lines = [title, "", session.join_url]
    if texts.description:
        lines += ["", _text(texts.description)]
    if texts.agenda:
        lines += ["", *(f"{n}. {_text(item)}" for n, item in enumerate(texts.agenda, 1))]

    calendar = Calendar()
    calendar.add("prodid", PRODID)
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("method", method.value)
    event = Event()
    event.add("uid", event_uid(series, session, organiser_address.rpartition("@")[2]))
    event.add("sequence", sequence)
    event.add("dtstart", session.start.astimezone(UTC))
    event.add("dtend", session.end.astimezone(UTC))
    language_parameter = {"LANGUAGE": language} if language else {}
    event.add("summary", vText(title), parameters=language_parameter)
    event.add("description", vText("\n".join(lines)), parameters=language_parameter)
    event.add("location", session.join_url)
    event.add("url", session.join_url)
    event.add("status", "CANCELLED" if method is Method.CANCEL else "CONFIRMED")
    event.add("transp", "OPAQUE")
    event.add("organizer", _address(organiser_address, organiser_name))
    calendar.add_component(event)
    data = calendar.to_ical()
    cut = data.rindex(b"END:VEVENT\r\n")
    return data[:cut], data[cut:]


def _text(value: str) -> str:
    """One line of text for a calendar property: controls removed, whitespace runs collapsed."""
    return " ".join(_CONTROLS.sub(" ", value).split())


def _address(address: str, name: str) -> vCalAddress:
    """A ``mailto:`` CAL-ADDRESS (:func:`_mailto`) with the display name as CN (:func:`_common_name`)."""
    value = vCalAddress(_mailto(address))
    common_name = _common_name(name)
    if common_name:
        value.params["CN"] = common_name
    return value


def _mailto(address: str) -> str:
    """``address`` as a ``mailto:`` URI (RFC 6068: an IDN domain as its A-label, a non-ASCII local part
    percent-encoded); raises ValueError for a string without a local part, "@" and a domain."""
    local, at, domain = address.strip().rpartition("@")
    if not at or not local or not domain:
        raise ValueError(f"not an email address: {address!r}")
    if not domain.isascii():
        domain = domain.encode("idna").decode("ascii")
    if not _QUOTE_SAFE.match(local):  # else quote() would leave it as it is
        local = quote(local, safe=chr(39) + "!#$&*+-/=?^_`{|}~.")
    return f"mailto:{local}@{domain}"


def _common_name(name: str) -> str:
    """A display name as a CN parameter value: double quotes and controls removed (RFC 5545 §3.1)."""
    return " ".join(_PARAMETER_UNSAFE.sub(" ", name).split())


__all__ = ["FILENAME", "PRODID", "CalendarPart", "Method", "build_calendar", "calendar_method", "event_uid"]
