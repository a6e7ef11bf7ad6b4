"""The template context of one message (mailer/compose/context.py): each variable's exact value, the recipient's
own zone for local times and relative words, and the errors that name what is wrong."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from mailer.compose.context import template_context
from mailer.compose.render import Renderer
from mailer.config import Session, Settings, Step, load_settings
from mailer.errors import NaiveDatetimeError, RenderError
from mailer.store.recipient import Recipient

ROOT = Path(__file__).resolve().parent.parent
NNBSP = "\u202f"  # CLDR's space before AM/PM in English
UNSUBSCRIBE = "https://webinars.example.org/u/token"
ANA = Recipient("ana@example.org", "Ana Lima", "Dr.", "Example Institute", "KI", "en", "Pacific/Kiritimati")


@pytest.fixture(scope="module")
def settings() -> Settings:
    return load_settings(ROOT / "config", database_url="sqlite://")


@pytest.fixture(scope="module")
def renderer(settings: Settings) -> Renderer:
    return Renderer(settings)


def _step(settings: Settings, name: str) -> Step:
    return next(step for step in settings.series.steps if step.name == name)


def _context(
    settings: Settings,
    renderer: Renderer,
    *,
    session: Session | None = None,
    step: str = "reminder-1d",
    recipient: Recipient = ANA,
    language: str = "en",
    sent_at: datetime | None = None,
) -> dict[str, Any]:
    return template_context(
        settings,
        renderer.wording[language],
        _step(settings, step),
        session or settings.series.session("africa-2021"),
        recipient,
        settings.series,
        language,
        UNSUBSCRIBE,
        None,
        sent_at=sent_at,
    )


def test_the_context_holds_each_documented_value(settings: Settings, renderer: Renderer) -> None:
    session = settings.series.session("africa-2021")
    # 10:00 UTC on 13 July is midnight starting 14 July in Kiritimati (UTC+14); the session starts at 03:00 there.
    context = _context(settings, renderer, sent_at=datetime(2021, 7, 13, 10, 0, tzinfo=UTC))
    shown = {key: value for key, value in context.items() if key not in {"t", "_dates", "agenda", "step"}}
    assert shown == {
        "recipient": ANA,
        "greeting_name": "Dr. Ana Lima",
        "series": settings.series,
        "session": session,
        "occurrence": 2,
        "lead": "",
        "lead_text": "in 3 hours",
        "language": "en",
        "direction": "ltr",
        "align": "left",
        "start_local": f"Wednesday, July 14, 2021, 3:00{NNBSP}AM (Kiritimati, GMT+14:00)",
        "start_local_date": "Wednesday, July 14, 2021",
        "start_local_day": "July 14",
        "start_local_time": f"3:00{NNBSP}AM",
        "end_local_time": f"6:00{NNBSP}AM",
        "local_zone": "Kiritimati, GMT+14:00",
        "start_session_zone": f"Tuesday, July 13, 2021, 10:00{NNBSP}AM (GMT-03:00)",
        "session_zone": "GMT-03:00",
        "same_zone": False,
        "duration": "3 hours",
        "session_languages": "English, French, and Arabic",
        "region_name": "African Region",
        "session_title": "Parliamentary webinar on the Budapest Convention on Cybercrime: African Region",
        "session_ref": "Parliamentary webinar on the Budapest Convention on Cybercrime: African Region",
        "session_short": "Budapest Convention webinar (African Region)",
        "organisers_text": "Parliamentarians for Global Action and the Council of Europe / C-PROC",
        "session_description": None,
        "materials_text": None,
        "organisers": ("Parliamentarians for Global Action", "Council of Europe / C-PROC"),
        "join_url": "https://meet.example.org/j/budapest-africa",
        "registration_url": "https://meet.example.org/j/budapest-africa",
        "materials_url": "https://example.org/budapest-convention/materials",
        "unsubscribe_url": UNSUBSCRIBE,
    }
    assert context["step"] == _step(settings, "reminder-1d")
    assert context["agenda"] == session.agenda
    assert context["_dates"].session(session.start) == f"Tuesday, July 13, 2021, 10:00{NNBSP}AM (GMT-03:00)"
    assert (
        context["_dates"].local(session.start)
        == f"Wednesday, July 14, 2021, 3:00{NNBSP}AM (Kiritimati, GMT+14:00)"
    )


def test_relative_words_follow_the_send_moment_on_the_recipients_calendar(
    settings: Settings, renderer: Renderer
) -> None:
    # 09:00 UTC on 13 July is 23:00 on 13 July in Kiritimati: the 03:00 start is tomorrow there (in UTC it
    # would be the same day, "in 4 hours").
    evening = _context(settings, renderer, sent_at=datetime(2021, 7, 13, 9, 0, tzinfo=UTC))
    assert (evening["lead"], evening["lead_text"]) == ("day", "")
    midnight = _context(settings, renderer, sent_at=datetime(2021, 7, 13, 10, 0, tzinfo=UTC))
    assert (midnight["lead"], midnight["lead_text"]) == ("", "in 3 hours")


def test_occurrence_counts_steps_of_the_same_kind_and_a_step_not_in_the_series_is_the_first(
    settings: Settings, renderer: Renderer
) -> None:
    assert _context(settings, renderer, step="invitation")["occurrence"] == 1
    assert _context(settings, renderer, step="invitation-2")["occurrence"] == 2
    foreign = dataclasses.replace(_step(settings, "reminder-1d"), name="reminder-extra")
    context = template_context(
        settings,
        renderer.wording["en"],
        foreign,
        settings.series.session("africa-2021"),
        ANA,
        settings.series,
        "en",
        UNSUBSCRIBE,
        None,
    )
    assert context["occurrence"] == 1


def test_right_to_left_languages_align_right(settings: Settings, renderer: Renderer) -> None:
    context = _context(settings, renderer, language="ar")
    assert (context["direction"], context["align"]) == ("rtl", "right")


def test_session_texts_and_an_unknown_region_are_shown_as_given(
    settings: Settings, renderer: Renderer
) -> None:
    session = dataclasses.replace(
        settings.series.session("africa-2021"),
        region="atlantis",
        description="A closed session for members.",
        materials_text="Slides and papers",
    )
    context = _context(settings, renderer, session=session)
    assert context["region_name"] == "atlantis"
    assert context["session_short"] == "Budapest Convention webinar (atlantis)"
    assert context["session_description"] == "A closed session for members."
    assert context["materials_text"] == "Slides and papers"


def test_an_unknown_recipient_zone_names_the_recipient(settings: Settings, renderer: Renderer) -> None:
    lost = dataclasses.replace(ANA, time_zone="Mars/Olympus_Mons")
    with pytest.raises(
        RenderError, match=r"^recipient ana@example\.org: unknown time zone 'Mars/Olympus_Mons'"
    ):
        _context(settings, renderer, recipient=lost)


def test_a_naive_send_moment_is_refused_by_name(settings: Settings, renderer: Renderer) -> None:
    with pytest.raises(NaiveDatetimeError, match=r"^sent_at must be timezone-aware"):
        _context(settings, renderer, sent_at=datetime(2021, 7, 13, 9, 0))


def test_the_three_session_names_fill_title_and_region_from_the_wording(
    settings: Settings, renderer: Renderer
) -> None:
    wording = dataclasses.replace(
        renderer.wording["en"],
        title_format="T: {title} / {region}",
        ref_format="R: {title} / {region}",
        short_format="S: {title} / {region}",
    )
    session = dataclasses.replace(settings.series.session("africa-2021"), title="Cybercrime law")
    context = template_context(
        settings,
        wording,
        _step(settings, "reminder-1d"),
        session,
        ANA,
        settings.series,
        "en",
        UNSUBSCRIBE,
        None,
    )
    assert (context["session_title"], context["session_ref"], context["session_short"]) == (
        "T: Cybercrime law / African Region",
        "R: Cybercrime law / African Region",
        "S: Cybercrime law / African Region",
    )
