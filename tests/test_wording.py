"""Wording faults of issue 13 point 8, each with the test that would have caught it: Portuguese dates and
offsets, one Spanish word for "webinar", offsets kept whole on a phone, Arabic URL isolates on the URL's
line, and an inbox preview line of each kind's own."""

from __future__ import annotations

import re
from datetime import datetime
from html.parser import HTMLParser
from typing import ClassVar
from zoneinfo import ZoneInfo

import pytest

from mailer.compose.checks import sample_steps
from mailer.compose.localise import date_time, locale_for, wrap_text
from mailer.compose.outgoing import sample_links
from mailer.compose.render import Rendered, Renderer
from mailer.config import Settings
from mailer.store.recipient import Recipient
from tests.test_render import SAMPLES, render_step, renderer, settings

__all__ = ["renderer", "settings"]

SESSION = datetime(2022, 3, 7, 10, 0, tzinfo=ZoneInfo("America/Sao_Paulo"))


@pytest.mark.parametrize(
    ("language", "expected"),
    [
        ("pt", "segunda-feira, 7 de março de 2022, 10:00 (São Paulo, GMT-03:00)"),
        ("pt-PT", "segunda-feira, 7 de março de 2022, 10:00 (São Paulo, GMT-03:00)"),
        ("es", "lunes, 7 de marzo de 2022, 10:00 (São Paulo, GMT-03:00)"),
    ],
)
def test_portuguese_dates_have_the_comma_and_gmt_first(language: str, expected: str) -> None:
    assert date_time(SESSION, locale_for(language)) == expected


def _all_samples(settings: Settings, renderer: Renderer, language: str) -> list[tuple[str, str, Rendered]]:
    """(sample name, kind or notice change, rendered) for every sample step of latin-america-2022."""
    session = settings.series.session("latin-america-2022")
    recipient = SAMPLES[language]
    links = sample_links(settings)
    found = []
    for step, extra in sample_steps(settings):
        values: dict[str, object] = {
            "rsvp_yes_url": links["rsvp_yes_url"],
            "rsvp_no_url": links["rsvp_no_url"],
        }
        values.update(extra)
        if extra.get("change") == "rescheduled":
            values["previous_start"] = SESSION
        rendered = render_step(renderer, settings.series, step, session, recipient, extra=values)
        kind = str(extra.get("change", step.kind.value))
        found.append((f"{step.name}/{extra.get('relationship', '')}", kind, rendered))
    return found


def test_spanish_says_webinario_in_subjects_bodies_and_calendar_titles(
    settings: Settings, renderer: Renderer
) -> None:
    for name, _, rendered in _all_samples(settings, renderer, "es"):
        for part in (rendered.subject, rendered.text, rendered.html, rendered.title):
            assert not re.search(r"seminarios? web", part, re.IGNORECASE), (name, part)
        assert "Webinario" in rendered.subject or "webinario" in rendered.text, name


@pytest.mark.parametrize("language", ["es", "en", "ar", "pt"])
def test_an_offset_label_has_no_break_opportunity_in_html(
    settings: Settings, renderer: Renderer, language: str
) -> None:
    # UAX #14 lets a browser break after a hyphen-minus: "(GMT-" / "03:00)" on a phone. Word joiners forbid it.
    for name, kind, rendered in _all_samples(settings, renderer, language):
        labels = re.findall(r"(?:GMT|UTC|غرينتش)\S{0,3}\d\d:\d\d", rendered.html)
        assert labels or kind == "follow-up", name
        for label in labels:
            assert re.search("\u2060[-+]\u2060", label), (name, label)


def test_arabic_url_isolates_stay_on_the_url_line(settings: Settings, renderer: Renderer) -> None:
    for name, _, rendered in _all_samples(settings, renderer, "ar"):
        for line in rendered.text.split("\n"):
            bare = line.strip(" \u00a0")
            assert bare not in ("\u2066", "\u2069"), (name, rendered.text)
            if "\u2066" in line:
                assert re.search(r"\u2066\u00a0\S+\u00a0\u2069", line), (name, line)


def test_wrapping_never_breaks_at_a_no_break_space() -> None:
    text = "word " * 10 + "\u2066\u00a0https://example.org/" + "x" * 60 + "\u00a0\u2069"
    assert wrap_text(text).split("\n")[-1] == "\u2066\u00a0https://example.org/" + "x" * 60 + "\u00a0\u2069"


class _Preheader(HTMLParser):
    """The text of the first element with class "preheader", and whether it is hidden by its inlined style."""

    hidden_styles: ClassVar[tuple[str, ...]] = ("display: none", "display:none")

    def __init__(self) -> None:
        super().__init__()
        self.inside = False
        self.text = ""
        self.hidden = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if "preheader" in (values.get("class") or "").split() and not self.text:
            self.inside = True
            self.hidden = any(s in (values.get("style") or "") for s in self.hidden_styles)

    def handle_endtag(self, tag: str) -> None:
        self.inside = False

    def handle_data(self, data: str) -> None:
        if self.inside:
            self.text += data


@pytest.mark.parametrize("language", ["en", "es", "fr", "ar", "pt", "pt-PT"])
def test_each_kind_has_its_own_inbox_preview_line(
    settings: Settings, renderer: Renderer, language: str
) -> None:
    previews: dict[str, str] = {}
    for name, kind, rendered in _all_samples(settings, renderer, language):
        parser = _Preheader()
        parser.feed(rendered.html)
        assert parser.hidden and parser.text.strip(), name
        previews.setdefault(kind, parser.text.strip())
        assert previews[kind] == parser.text.strip(), name  # one line per kind (and change)
    assert len(previews) == len(set(previews.values())), previews
    assert set(previews) == {"invitation", "reminder", "follow-up", "rescheduled", "cancelled"}
