"""The template context: what every e-mail template may use, built for one (step, session, recipient, language).

Template context (a fixed set; ``extra`` adds keys, see :data:`OVERRIDABLE`):

    recipient            Recipient          the person (name, title, institution, email, ...)
    greeting_name        str                title and name on one line, or "" (the template chooses a fallback)
    series, session, step                   config objects (Series, Session, Step)
    occurrence           int                1 for the first step of its kind in the series, 2 for the next, ...
    lead                 str                from the moment the message is sent, in the recipient's zone: "hour" when
                                            the start is 50-70 minutes away, "day" when it is tomorrow there,
                                            "week" when it is 7 days later there, else ""
    lead_text            str                otherwise the time left in words: the same day in hours or minutes
                                            ("in 13 hours"), else in calendar days there ("in 3 days")
    language             str                the language used (BCP 47)
    direction, align     str                "ltr" | "rtl" and the matching "left" | "right"
    t                    module             _common/<lang>.j2 (t.series_name, t.unsubscribe, ...)
    region_name          str                the session's region in the language (t.region_names, else config)
    session_title        str                the session's name for subjects and headings, in the language
    session_ref          str                the same for running text ("au webinaire parlementaire ... (Caraïbes)")
    session_short        str                a short name for subjects ("Budapest Convention webinar (Caribbean)")
    organisers_text      str                the organisers as a list in words, in the language
    start_local          str                date, time and zone label in the recipient's zone and language
    start_local_date     str                full date there ("Wednesday, July 14, 2021")
    start_local_day      str                day and month there, for subjects ("July 14", "14 juillet")
    start_local_time     str                short time there ("2:00 AM")
    end_local_time       str                short end time there
    local_zone           str                the recipient's zone label ("Apia, GMT+13:00")
    start_session_zone   str                date, time and zone label in the session's own zone
    session_zone         str                the session's zone label ("GMT-03:00")
    same_zone            bool               both zones have the same UTC offset at the start
    duration             str                "3 hours", "1 hour and 30 minutes"
    session_languages    str                the session's languages in words ("English, French, and Arabic")
    agenda, organisers   tuple[str, ...]    the session's agenda in the language (its texts table, else the
                                            nearest of the language's chain, else English); the organisers
    session_description  str | None         the session's description in the language; None when none
    materials_text       str | None         the configured text of the materials link; None: the template's
    join_url             str                the session's join URL
    registration_url     str                where to register (the join URL unless ``extra`` gives one)
    materials_url        str | None         the series' materials page; None when not configured
    unsubscribe_url      str                the URL or mailto: URI the caller passes in

Notices also get ``change`` and ``previous_start``, invitations ``rsvp_yes_url`` and ``rsvp_no_url``
(:data:`EXTRA_VARIABLES`), through ``extra``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from mailer.compose.localise import (
    DateWords,
    is_rtl,
    language_family,
    language_names,
    lead_words,
    locale_for,
    session_times,
    word_list,
)
from mailer.compose.wording import Wording
from mailer.config import Series, Session, Settings, Step, StepKind
from mailer.errors import RenderError
from mailer.store.recipient import Recipient
from mailer.timeline.clock import require_aware
from mailer.timeline.plan import step_time
from mailer.zones import UnknownZoneError, resolve_zone

#: Context keys ``extra`` may replace; any other clash with a fixed variable raises ValueError.
OVERRIDABLE = frozenset({"join_url", "registration_url", "materials_url"})

#: The documented template context (see the module docstring): what every template may use.
CONTEXT_VARIABLES = frozenset(
    {
        "recipient",
        "greeting_name",
        "series",
        "session",
        "step",
        "occurrence",
        "lead",
        "lead_text",
        "language",
        "direction",
        "align",
        "t",
        "region_name",
        "session_title",
        "session_ref",
        "session_short",
        "organisers_text",
        "start_local",
        "start_local_date",
        "start_local_day",
        "start_local_time",
        "end_local_time",
        "local_zone",
        "start_session_zone",
        "session_zone",
        "same_zone",
        "duration",
        "session_languages",
        "agenda",
        "session_description",
        "materials_text",
        "organisers",
        "join_url",
        "registration_url",
        "materials_url",
        "unsubscribe_url",
    }
)

#: Variables the service passes in ``extra``, by step kind (guard the optional ones with ``is defined``).
EXTRA_VARIABLES: dict[StepKind, frozenset[str]] = {
    kind: frozenset(
        {"rsvp_yes_url", "rsvp_no_url"}
        | ({"change", "previous_start", "relationship"} if kind is StepKind.NOTICE else set())
    )
    for kind in StepKind
}


def send_lead(session: Session, zone: tzinfo, sent_at: datetime, language: str) -> tuple[str, str]:
    """(``lead``, ``lead_text``) of the context for a message sent at ``sent_at`` (aware) to a recipient in
    ``zone``: the relative words are decided by the actual send moment, never by the step's offset, so a
    reminder held by a send window until the session's morning says "in 13 hours", not "tomorrow".

    Raises NaiveDatetimeError for a naive ``sent_at``.
    """
    sent_at = require_aware(sent_at, "sent_at")
    before = session.start.astimezone(UTC) - sent_at
    if before <= timedelta(0):
        return "", ""
    if timedelta(minutes=50) <= before <= timedelta(minutes=70):
        return "hour", ""
    days = (session.start.astimezone(zone).date() - sent_at.astimezone(zone).date()).days
    if days == 0:
        if before < timedelta(hours=2):
            return "", lead_words(timedelta(minutes=before // timedelta(minutes=1)), language, "minute")
        return "", lead_words(timedelta(hours=before // timedelta(hours=1)), language, "hour")
    if days in (1, 7):
        return {1: "day", 7: "week"}[days], ""
    return "", lead_words(timedelta(days=days), language, "day")


def template_context(
    settings: Settings,
    wording: Wording,
    step: Step,
    session: Session,
    recipient: Recipient,
    series: Series,
    language: str,
    unsubscribe_url: str,
    extra: Mapping[str, object] | None,
    *,
    sent_at: datetime | None = None,
) -> dict[str, Any]:
    """The context of the module docstring (plus ``_dates`` for the date filters) in ``language``, whose
    shared wording is ``wording``, for a message sent at ``sent_at`` (default: the step's own time, for
    previews). Raises RenderError for an unknown recipient zone, ValueError when ``extra``
    would replace a fixed variable other than those of :data:`OVERRIDABLE`."""
    try:
        times = session_times(session.start, session.end, recipient.time_zone, session.zone_name, language)
        local_zone = resolve_zone(recipient.time_zone)
    except UnknownZoneError as exc:
        raise RenderError(f"recipient {recipient.email}: {exc}") from None
    locale = locale_for(language)
    region = settings.regions.get(session.region)
    region_name = wording.region_names.get(session.region, region.name if region else session.region)
    moment = step_time(session, step) if sent_at is None else require_aware(sent_at, "sent_at")
    lead, lead_text = send_lead(session, local_zone, moment, language)
    rtl = is_rtl(locale)
    texts, _ = session.texts_for(language_family(language))
    same_kind = [s.name for s in series.steps if s.kind is step.kind]
    context: dict[str, Any] = {
        "recipient": recipient,
        "greeting_name": recipient.display_name,
        "series": series,
        "session": session,
        "step": step,
        "occurrence": same_kind.index(step.name) + 1 if step.name in same_kind else 1,
        "lead": lead,
        "lead_text": lead_text,
        "language": language,
        "t": wording.module,
        "direction": "rtl" if rtl else "ltr",
        "align": "right" if rtl else "left",
        **times,
        "session_languages": language_names(session.languages, language),
        "region_name": region_name,
        "session_title": wording.title_format.format(title=texts.title, region=region_name),
        "session_ref": wording.ref_format.format(title=texts.title, region=region_name),
        "session_short": wording.short_format.format(title=texts.title, region=region_name),
        "organisers_text": word_list(
            tuple(wording.organiser_names.get(o, o) for o in series.organisers), language
        ),
        "agenda": texts.agenda,
        "session_description": texts.description or None,
        "materials_text": texts.materials_text or None,
        "organisers": series.organisers,
        "join_url": session.join_url,
        "registration_url": session.join_url,
        "materials_url": series.materials_url or None,
        "unsubscribe_url": unsubscribe_url,
        "_dates": DateWords(locale, local_zone, session.zone),
    }
    for key, value in (extra or {}).items():
        if key in context and key not in OVERRIDABLE:
            raise ValueError(f"extra variable {key!r} would replace a fixed context variable")
        context[key] = value
    return context


__all__ = [
    "CONTEXT_VARIABLES",
    "EXTRA_VARIABLES",
    "OVERRIDABLE",
    "send_lead",
    "template_context",
]
