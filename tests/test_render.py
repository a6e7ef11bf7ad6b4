"""Rendering: every template in every language, dates in the recipient's zone, rtl, escaping, loud failures,
language families (Portuguese), CSS inlined once at load."""

from __future__ import annotations

import dataclasses
import itertools
import logging
import re
import sys
from datetime import UTC, datetime, timedelta, timezone
from email import policy
from email.parser import BytesParser
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, ClassVar

import pytest
from hypothesis import example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from mailer.compose.environment import UndefinedVariableError
from mailer.compose.localise import language_family, normalise_tag, with_country, wrap_text
from mailer.compose.render import Rendered, Renderer
from mailer.config import Audience, Series, Session, Settings, Step, StepKind, load_settings, parse_offset
from mailer.errors import NotFoundError, RenderError
from mailer.store.recipient import Recipient

ISOLATES = dict.fromkeys(map(ord, "\u2066\u2067\u2068\u2069"))


def visible(text: str) -> str:
    """``text`` without Unicode isolates (U+2066..U+2069) and with its lines flowed."""
    return " ".join(text.translate(ISOLATES).split())


ROOT = Path(__file__).resolve().parent.parent
UNSUBSCRIBE = "https://webinars.example.org/unsubscribe?token=a1&list=africa"
PREVIOUS = datetime(2021, 7, 6, 13, 0, tzinfo=UTC)  # a notice's old start: 10:00 GMT-3 a week earlier


@pytest.fixture(scope="module")
def settings() -> Settings:
    """The shipped config; rendering never touches the store, so no database is opened."""
    return load_settings(ROOT / "config", database_url="sqlite://")


@pytest.fixture(scope="module")
def renderer(settings: Settings) -> Renderer:
    return Renderer(settings)


def render_step(
    renderer: Renderer,
    series: Series,
    step: str | Step,
    session: str | Session,
    recipient: Recipient,
    unsubscribe_url: str = UNSUBSCRIBE,
    **options: Any,
) -> Rendered:
    """``renderer.render`` of ``step`` for ``session`` (each a name in ``series`` or the thing itself) to
    ``recipient``, with the test's unsubscribe URL unless another is given; ``options`` passed on."""
    return renderer.render(
        series.step(step) if isinstance(step, str) else step,
        series.session(session) if isinstance(session, str) else session,
        recipient,
        series=series,
        unsubscribe_url=unsubscribe_url,
        **options,
    )


def notice_step() -> Step:
    return Step(
        "notice",
        StepKind.NOTICE,
        parse_offset("+0m"),
        "notice",
        Audience.REGISTRANTS,
        False,
        timedelta(days=30),
    )


SAMPLES = {
    "en": Recipient(
        "nobantu.mcusi36@assembly-za.example.org",
        "Nobantu Mcusi",
        "Senator",
        "Parliament",
        "ZA",
        "en",
        "Africa/Johannesburg",
        "africa",
    ),
    "fr": Recipient(
        "aicha.toure@assemblee.example",
        "Aïcha Touré",
        "Hon.",
        "Assemblée nationale",
        "CI",
        "fr",
        "Africa/Abidjan",
        "africa",
    ),
    "es": Recipient(
        "lucia.ferreira@congreso.example",
        "Lucía Ferreira",
        "Dip.",
        "Congreso",
        "AR",
        "es",
        "America/Argentina/Buenos_Aires",
        "latin-america",
    ),
    "ar": Recipient(
        "elizabeth.rivera672@assembly-ma.example.org",
        "واصف الحويطات",
        "",
        "Ministry of Justice",
        "MA",
        "ar",
        "Africa/Casablanca",
        "africa",
    ),
    "pt": Recipient(
        "ana.souza@camara.example",
        "Ana Souza",
        "Dep.",
        "Câmara dos Deputados",
        "BR",
        "pt-BR",
        "America/Sao_Paulo",
        "latin-america",
    ),
    "pt-PT": Recipient(
        "dinis.almeida984@assembly-mz.example.org",
        "Dinis Almeida",
        "Ms.",
        "Parliament",
        "MZ",
        "pt",
        "Africa/Maputo",
        "africa",
    ),
}
LANGUAGES = {"en": "en", "fr": "fr", "es": "es", "ar": "ar", "pt": "pt", "pt-PT": "pt-PT"}  # sample -> used

# What each step must say, per language: the lead time of reminders, the gist of the others.
PHRASES = {
    "invitation": {
        "en": "pleased to invite you",
        "fr": "ont le plaisir de vous inviter",
        "es": "tienen el placer de invitarle",
        "ar": "دعوتكم إلى المشاركة",
        "pt": "têm o prazer de convidá-lo(a)",
        "pt-PT": "têm o prazer de convidar V. Ex.ª",
    },
    "invitation-2": {
        "en": "Registration is still open",
        "fr": "Les inscriptions sont toujours ouvertes",
        "es": "La inscripción sigue abierta",
        "ar": "لا يزال باب التسجيل مفتوحًا",
        "pt": "As inscrições continuam abertas",
        "pt-PT": "Há algumas semanas, enviámos um convite",
    },
    "reminder-1w": {
        "en": "starts in one week",
        "fr": "commence dans une semaine",
        "es": "comienza dentro de una semana",
        "ar": "تبدأ بعد أسبوع",
        "pt": "o webinário começa em uma semana",
        "pt-PT": "o webinar começa daqui a uma semana",
    },
    "reminder-1d": {
        "en": "starts tomorrow",
        "fr": "commence demain",
        "es": "comienza mañana",
        "ar": "تبدأ غدًا",
        "pt": "começa amanhã",
        "pt-PT": "começa amanhã",
    },
    "reminder-1h": {
        "en": "starts in one hour",
        "fr": "commence dans une heure",
        "es": "comienza dentro de una hora",
        "ar": "تبدأ بعد ساعة",
        "pt": "começa em uma hora",
        "pt-PT": "começa daqui a uma hora",
    },
    "follow-up": {
        "en": "Thank you for taking part",
        "fr": "Nous vous remercions d’avoir participé",
        "es": "Le agradecemos su participación",
        "ar": "نشكركم على مشاركتكم",
        "pt": "Agradecemos sua participação",
        "pt-PT": "Agradecemos a sua participação",
    },
}
CANCELLED = {
    "en": "has been cancelled",
    "fr": "est annulé",
    "es": "ha sido cancelado",
    "ar": "بإلغاء",
    "pt": "foi cancelado",
    "pt-PT": "Pedimos desculpa por qualquer incómodo",
}
RESCHEDULED = {
    "en": "Previous date: Tuesday, July 6, 2021",
    "fr": "Ancienne date : mardi 6 juillet 2021",
    "es": "Fecha anterior: martes, 6 de julio de 2021",
    "ar": "الموعد السابق: الثلاثاء، 6 يوليو 2021",
    "pt": "Data anterior: terça-feira, 6 de julho de 2021",
    "pt-PT": "Data anterior: terça-feira, 6 de julho de 2021",
}


def test_the_shipped_templates_cover_every_step_in_every_offered_language(
    renderer: Renderer, settings: Settings
) -> None:
    folders = {step.template for step in settings.series.steps} | {"notice"}
    for folder in folders:
        assert sorted(renderer.templates[folder]) == sorted(settings.languages), folder
    assert {"pt", "pt-PT"} <= set(settings.languages)


@pytest.mark.parametrize("language", list(SAMPLES))
@pytest.mark.parametrize("step_name", list(PHRASES))
def test_every_step_renders_in_every_language(
    renderer: Renderer, settings: Settings, step_name: str, language: str
) -> None:
    series = settings.series
    session = series.session("africa-2021")
    recipient = SAMPLES[language]
    rendered = render_step(renderer, series, step_name, session, recipient)

    assert rendered.language == LANGUAGES[language]
    assert rendered.kind is series.step(step_name).kind
    assert "\n" not in rendered.subject and rendered.subject == rendered.subject.strip()
    assert len(rendered.subject) <= 78
    flowed = visible(rendered.text)  # the text part is wrapped at 72 columns
    assert PHRASES[step_name][language] in flowed
    for part in (rendered.subject, rendered.text, rendered.html):
        assert "None" not in part and "{{" not in part and "{%" not in part and "Undefined" not in part
    assert recipient.name in rendered.text and f"<bdi>{recipient.display_name}</bdi>" in rendered.html
    assert UNSUBSCRIBE in rendered.text
    assert UNSUBSCRIBE.replace("&", "&amp;") in rendered.html
    assert rendered.html.startswith(f'<!DOCTYPE html>\n<html lang="{rendered.language}" dir=')
    assert rendered.html.endswith("</html>\n")
    assert "<bdi>" in rendered.html and 'class="' in rendered.html and 'style="' in rendered.html
    link = session.join_url if step_name != "follow-up" else series.materials_url
    assert link in rendered.text and f'href="{link}"' in rendered.html
    if step_name.startswith("invitation") or step_name in ("reminder-1w", "reminder-1d"):
        # The agenda in the reader's language (issue 13 case 7), not the English one for everyone.
        agenda, used = session.texts_for(language_family(rendered.language))
        assert used == rendered.language
        assert all(
            item in flowed and f">{item}<" in rendered.html.replace("<bdi>", "").replace("</bdi>", "")
            for item in agenda.agenda
        )
    if step_name == "reminder-1h":
        assert session.agenda[1] not in rendered.text  # an hour before: the link, not the programme
    assert max(len(line) for line in rendered.text.split("\n") if "https://" not in line) <= 72


@pytest.mark.parametrize("language", list(SAMPLES))
@pytest.mark.parametrize("change", ["cancelled", "rescheduled"])
def test_notices_give_the_change_with_old_and_new_time(
    renderer: Renderer, settings: Settings, change: str, language: str
) -> None:
    series = settings.series
    session = series.session("africa-2021")
    recipient = SAMPLES[language]
    extra = {"change": change, "previous_start": PREVIOUS}
    rendered = render_step(renderer, series, notice_step(), session, recipient, extra=extra)
    assert rendered.language == LANGUAGES[language]
    expected = CANCELLED[language] if change == "cancelled" else RESCHEDULED[language]
    assert expected in visible(rendered.text)
    if change == "rescheduled":
        assert {
            "en": "New date: Tuesday, July 13, 2021",
            "fr": "Nouvelle date : mardi 13 juillet 2021",
            "es": "Nueva fecha: martes, 13 de julio de 2021",
            "ar": "الموعد الجديد: الثلاثاء، 13 يوليو 2021",
            "pt": "Nova data: terça-feira, 13 de julho de 2021",
            "pt-PT": "Nova data: terça-feira, 13 de julho de 2021",
        }[language] in visible(rendered.text)


def test_a_notice_without_a_known_change_fails_naming_the_template(
    renderer: Renderer, settings: Settings
) -> None:
    series = settings.series
    session = series.session("africa-2021")
    with pytest.raises(RenderError, match=r"notice/en\.subject\.txt line \d+: .*got moved"):
        render_step(renderer, series, notice_step(), session, SAMPLES["en"], extra={"change": "moved"})
    with pytest.raises(UndefinedVariableError) as caught:
        render_step(renderer, series, notice_step(), session, SAMPLES["en"], extra={"change": "rescheduled"})
    assert (caught.value.template, caught.value.variable) == ("notice/en.txt", "previous_start")


def test_a_participant_in_apia_sees_the_next_calendar_day(renderer: Renderer, settings: Settings) -> None:
    series = settings.series
    session = series.session("africa-2021")  # 2021-07-13 10:00 GMT-3 = 13:00 UTC = 02:00 on the 14th in Apia
    apia = dataclasses.replace(SAMPLES["en"], time_zone="Pacific/Apia")
    rendered = render_step(renderer, series, "invitation", session, apia)
    assert "When: Wednesday, July 14, 2021, 2:00\u202fAM (Apia, GMT+13:00)" in rendered.text
    assert "Session time: Tuesday, July 13, 2021, 10:00\u202fAM (GMT-03:00)" in rendered.text
    assert rendered.subject == "Invitation: Budapest Convention webinar (African Region), July 14"

    french = dataclasses.replace(apia, language="fr")
    rendered = render_step(renderer, series, "reminder-1d", session, french)
    assert "Date et heure : mercredi 14 juillet 2021, 02:00 (Apia, UTC+13:00)" in rendered.text
    assert "Heure de la session : mardi 13 juillet 2021, 10:00 (UTC-03:00)" in rendered.text
    assert rendered.subject.startswith("Demain à 02:00 : ")


def test_a_previous_start_is_shown_on_the_recipients_own_clock_and_date(
    renderer: Renderer, settings: Settings
) -> None:
    series = settings.series
    session = series.session("africa-2021")
    apia = dataclasses.replace(SAMPLES["en"], time_zone="Pacific/Apia")  # 13:00 UTC is 02:00 next day there
    rendered = render_step(
        renderer,
        series,
        notice_step(),
        session,
        apia,
        extra={"change": "rescheduled", "previous_start": PREVIOUS},
    )
    assert "Previous date: Wednesday, July 7, 2021, 2:00\u202fAM (Apia, GMT+13:00)" in rendered.text
    assert "New date: Wednesday, July 14, 2021, 2:00\u202fAM (Apia, GMT+13:00)" in rendered.text
    assert "New session time: Tuesday, July 13, 2021, 10:00\u202fAM (GMT-03:00)" in rendered.text


def test_the_session_time_line_is_left_out_when_the_zones_agree(
    renderer: Renderer, settings: Settings
) -> None:
    series = settings.series
    session = series.session("latin-america-2022")  # GMT-3, as Buenos Aires
    rendered = render_step(renderer, series, "reminder-1w", session, SAMPLES["es"])
    assert "Fecha y hora: lunes, 7 de marzo de 2022, 10:00 (Buenos Aires, GMT-03:00)" in rendered.text
    assert "Hora de la sesión" not in rendered.text
    assert "Duración: 3 horas" in rendered.text
    assert "Idiomas: español e inglés" in rendered.text


class _Blocks(HTMLParser):
    """Collects (tag, attributes) of block elements."""

    BLOCK: ClassVar[set[str]] = {
        "html",
        "body",
        "table",
        "th",
        "td",
        "p",
        "h1",
        "h2",
        "h3",
        "ol",
        "ul",
        "li",
        "div",
    }

    def __init__(self) -> None:
        super().__init__()
        self.blocks: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.BLOCK:
            self.blocks.append((tag, dict(attrs)))


@pytest.mark.parametrize("step_name", ["invitation", "reminder-1w", "follow-up"])
def test_arabic_html_is_right_to_left_on_every_block(
    renderer: Renderer, settings: Settings, step_name: str
) -> None:
    series = settings.series
    rendered = render_step(renderer, series, step_name, "africa-2021", SAMPLES["ar"])
    assert '<html lang="ar" dir="rtl">' in rendered.html
    parser = _Blocks()
    parser.feed(rendered.html)
    styled = [(tag, attrs) for tag, attrs in parser.blocks if tag != "html"]
    assert len(styled) > 10
    for tag, attrs in styled:
        style = (attrs.get("style") or "").replace(" ", "")
        assert "direction:rtl" in style and "text-align:right" in style, (tag, style)
    assert "<bdi>واصف الحويطات</bdi>" in rendered.html
    assert 'dir="rtl"' in rendered.html.split("<body", 1)[1]  # on the outer table too: Gmail drops <body>'s
    if step_name != "follow-up":
        assert "padding: 0 24px 0 0" in rendered.html  # list numbers on the right

    english = render_step(renderer, series, step_name, "africa-2021", SAMPLES["en"])
    assert '<html lang="en" dir="ltr">' in english.html and "direction: rtl" not in english.html


def test_subject_and_text_are_never_escaped_and_html_always_is(settings: Settings) -> None:
    hostile = "<b>Ann & Co</b>"
    region = dataclasses.replace(settings.regions["africa"], name=f'{hostile} "quoted"  region\non two lines')
    renderer = Renderer(dataclasses.replace(settings, regions={**settings.regions, "africa": region}))
    series = settings.series
    session = dataclasses.replace(
        series.session("africa-2021"), title=f'{hostile} "quoted"  webinar\non two lines'
    )
    recipient = dataclasses.replace(SAMPLES["en"], name=hostile, title="")
    rendered = render_step(renderer, series, "invitation", session, recipient)
    assert rendered.subject.startswith(
        f'Invitation: Budapest Convention webinar ({hostile} "quoted" region on two'
    )
    assert f"Dear {hostile}," in rendered.text
    assert "&lt;b&gt;Ann &amp; Co&lt;/b&gt;" in rendered.html
    assert "&#34;quoted&#34;" in rendered.html
    assert "<b>" not in rendered.html and "&amp;amp;" not in rendered.html


def test_fallback_chain(renderer: Renderer) -> None:
    assert renderer.language_chain("pt-BR", "africa") == ["pt-BR", "pt", "fr", "en"]
    assert renderer.language_chain("pt_br", "latin-america") == ["pt-BR", "pt", "es", "en"]
    assert renderer.language_chain("pt", "latin-america", "BR") == ["pt-BR", "pt", "es", "en"]
    assert renderer.language_chain("pt", "africa", "MZ") == [
        "pt-MZ",
        "pt-PT",
        "pt",
        "fr",
        "en",
    ]  # CLDR parent
    assert renderer.language_chain("pt", "asia-pacific", "TL") == ["pt-TL", "pt-PT", "pt", "en"]
    assert renderer.language_chain("pt-BR", "africa", "MZ") == [
        "pt-BR",
        "pt",
        "fr",
        "en",
    ]  # the tag's region wins
    assert renderer.language_chain("es", "latin-america", "AR") == ["es-AR", "es-419", "es", "en"]
    assert renderer.language_chain("fr", "caribbean", "HT") == ["fr-HT", "fr", "en"]
    assert renderer.language_chain("zh-hant-tw", "") == ["zh-Hant-TW", "zh-Hant", "zh", "en"]
    assert renderer.language_chain("fr", "africa") == ["fr", "en"]
    assert renderer.language_chain("EN", "caribbean") == ["en"]
    assert renderer.language_chain("", "") == ["en"]
    with pytest.raises(NotFoundError, match="unknown region 'atlantis'"):
        renderer.language_chain("fr", "atlantis")
    assert normalise_tag(" es_419 ") == "es-419"


def test_a_missing_language_falls_back_along_the_chain_and_is_logged(
    renderer: Renderer, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    series = settings.series
    italian = Recipient(
        "giulia.rossi@camera.example", "Giulia Rossi", language="it-IT", time_zone="Europe/Rome"
    )
    caplog.set_level(logging.INFO, logger="mailer.compose.render")

    latin = render_step(renderer, series, "invitation", "latin-america-2022", italian)
    assert (latin.language, latin.requested_language, latin.fell_back) == ("es", "it-IT", True)
    assert latin.subject.startswith("Invitación: ")

    africa = render_step(renderer, series, "invitation", "africa-2021", italian)
    assert africa.language == "fr"  # the African region's fallback list starts with French

    caribbean = render_step(renderer, series, "invitation", "caribbean-2021", italian)
    assert caribbean.language == "en"

    fallbacks = [r.getMessage() for r in caplog.records if r.name == "mailer.compose.render"]
    assert len(fallbacks) == 3
    assert "requested 'it-IT', used 'es'" in fallbacks[0] and "giulia.rossi@camera.example" in fallbacks[0]


def test_portuguese_readers_get_their_own_norm(renderer: Renderer, settings: Settings) -> None:
    series = settings.series
    brazil = render_step(renderer, series, "reminder-1w", "latin-america-2022", SAMPLES["pt"])
    assert (brazil.language, brazil.fell_back) == ("pt", True)  # pt-BR -> pt: CLDR's pt is Brazilian
    assert brazil.subject == "Em uma semana: Webinário Convenção de Budapeste (América Latina)"
    assert "Participar do webinário:" in brazil.text and "Programação:" in brazil.text
    # Issue 13 case 8: a comma before the time, and the offset written GMT-03:00 as in the other languages.
    assert "Data e horário: segunda-feira, 7 de março de 2022, 10:00 (São Paulo, GMT-03:00)" in visible(
        brazil.text
    )

    # A Mozambican contact whose language cell says "Portuguese" ("pt"): pt-MZ -> pt-PT (CLDR's parent).
    mozambique = render_step(renderer, series, "reminder-1w", "africa-2021", SAMPLES["pt-PT"])
    assert (mozambique.language, mozambique.requested_language) == ("pt-PT", "pt")
    assert mozambique.subject == "Daqui a uma semana: Webinar Convenção de Budapeste (Região Africana)"
    assert "Participar no webinar:" in mozambique.text and "anule a sua subscrição" in visible(
        mozambique.text
    )
    assert '<html lang="pt-PT" dir="ltr">' in mozambique.html

    # pt-PT has no invitation subject of its own: pt's is used, with pt-PT's wording.
    invitation = render_step(renderer, series, "invitation", "africa-2021", SAMPLES["pt-PT"])
    assert renderer.part_sources["invitation"]["pt-PT"] == {
        "subject.txt": "pt",
        "txt": "pt-PT",
        "html": "pt-PT",
    }
    assert invitation.subject == "Convite: Webinar Convenção de Budapeste (Região Africana), 13 de julho"
    assert invitation.language == "pt-PT"


def test_language_families_follow_cldr() -> None:
    assert language_family("pt-MZ") == ("pt-MZ", "pt-PT", "pt")
    assert language_family("pt-BR") == ("pt-BR", "pt")
    assert language_family("es-AR") == ("es-AR", "es-419", "es")
    assert language_family("zh-hant-tw") == ("zh-Hant-TW", "zh-Hant", "zh")
    assert language_family("") == ()
    assert with_country("pt", "mz") == "pt-MZ" and with_country("pt-BR", "MZ") == "pt-BR"
    assert (
        with_country("es", "419") == "es-419"
        and with_country("fr", "") == "fr"
        and with_country("", "FR") == ""
    )


def test_a_regional_variant_needs_only_the_parts_that_differ(settings: Settings, tmp_path: Path) -> None:
    folder = write_templates(
        tmp_path,
        {
            "invitation/en.subject.txt": "Hello",
            "invitation/en.txt": "text",
            "invitation/en.html": "<p>html</p>",
            "invitation/en-GB.txt": "colour",  # the rest from en; _common/en.j2 serves en-GB too
        },
    )
    renderer = Renderer(dataclasses.replace(settings, templates_dir=folder))
    british = Recipient("k@example.org", language="en-GB", time_zone="Europe/London")
    series = settings.series
    rendered = render_step(renderer, series, "invitation", "caribbean-2021", british)
    assert (rendered.subject, rendered.text, rendered.html, rendered.language) == (
        "Hello",
        "colour",
        "<p>html</p>",
        "en-GB",
    )


SHIPPED_COMMON = (ROOT / "templates" / "email" / "_common" / "en.j2").read_text(encoding="utf-8")


def write_templates(root: Path, files: dict[str, str]) -> Path:
    """A templates folder holding ``files`` and the shipped English shared wording."""
    for name, text in {"_common/en.j2": SHIPPED_COMMON, **files}.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def test_a_language_without_all_three_parts_is_skipped(settings: Settings, tmp_path: Path) -> None:
    folder = write_templates(
        tmp_path,
        {
            "invitation/en.subject.txt": "Hello",
            "invitation/en.txt": "text",
            "invitation/en.html": "<p>html</p>",
            "invitation/de.subject.txt": "Hallo",
            "invitation/de.txt": "Text",  # no de.html
        },
    )
    renderer = Renderer(dataclasses.replace(settings, templates_dir=folder))
    german = Recipient("k@example.org", language="de", time_zone="Europe/Berlin")
    series = settings.series
    rendered = render_step(renderer, series, "invitation", "caribbean-2021", german)
    assert (rendered.subject, rendered.text, rendered.html, rendered.language) == (
        "Hello",
        "text",
        "<p>html</p>",
        "en",
    )


@pytest.mark.parametrize(
    ("source", "variable"),
    [
        ("Dear {{ nickname }}", "nickname"),
        ("Dear {{ recipient.nickname }}", "nickname"),
        ("{% if missing_flag %}x{% endif %}", "missing_flag"),
    ],
)
def test_undefined_variables_raise_naming_template_and_variable(
    settings: Settings, tmp_path: Path, source: str, variable: str
) -> None:
    folder = write_templates(
        tmp_path,
        {
            "invitation/en.subject.txt": "Subject",
            "invitation/en.txt": f"line one\n{source}\n",
            "invitation/en.html": "<p>x</p>",
        },
    )
    renderer = Renderer(dataclasses.replace(settings, templates_dir=folder))
    series = settings.series
    with pytest.raises(UndefinedVariableError) as caught:
        render_step(renderer, series, "invitation", "africa-2021", SAMPLES["en"])
    assert (caught.value.template, caught.value.line, caught.value.variable) == (
        "invitation/en.txt",
        2,
        variable,
    )
    assert str(caught.value).startswith(f"invitation/en.txt line 2: undefined variable '{variable}'")


def test_an_undefined_variable_in_the_layout_names_the_layout(settings: Settings, tmp_path: Path) -> None:
    folder = write_templates(
        tmp_path,
        {
            "_layout.txt": "{% block body %}{% endblock %}\n{{ footer_text }}\n",
            "invitation/en.subject.txt": "S",
            "invitation/en.txt": "{% extends '_layout.txt' %}{% block body %}b{% endblock %}",
            "invitation/en.html": "<p>x</p>",
        },
    )
    renderer = Renderer(dataclasses.replace(settings, templates_dir=folder))
    series = settings.series
    with pytest.raises(
        UndefinedVariableError, match=r"^_layout\.txt line 2: undefined variable 'footer_text'"
    ):
        render_step(renderer, series, "invitation", "africa-2021", SAMPLES["en"])


def test_a_value_that_would_print_none_raises(settings: Settings, tmp_path: Path) -> None:
    folder = write_templates(
        tmp_path,
        {
            "follow-up/en.subject.txt": "Thanks",
            "follow-up/en.txt": "Materials: {{ materials_url }}\n",
            "follow-up/en.html": "<p>x</p>",
        },
    )
    no_materials = dataclasses.replace(settings.series, materials_url="")
    renderer = Renderer(dataclasses.replace(settings, templates_dir=folder, series=no_materials))
    with pytest.raises(RenderError, match=r"follow-up/en\.txt line 1: a value printed as None"):
        render_step(renderer, no_materials, "follow-up", "africa-2021", SAMPLES["en"])


def test_syntax_errors_fail_at_construction_with_file_and_line(settings: Settings, tmp_path: Path) -> None:
    folder = write_templates(
        tmp_path,
        {
            "reminder/en.subject.txt": "S",
            "reminder/en.txt": "ok\n{% if lead %}\nno endif\n",
            "reminder/en.html": "x",
        },
    )
    with pytest.raises(RenderError, match=r"reminder/en\.txt line \d+: .*endif"):
        Renderer(dataclasses.replace(settings, templates_dir=folder))


def test_a_misnamed_part_or_missing_shared_wording_fails_at_construction(
    settings: Settings, tmp_path: Path
) -> None:
    misnamed = write_templates(tmp_path / "a", {"reminder/en.subjet.txt": "S"})
    with pytest.raises(RenderError, match=r"reminder/en\.subjet\.txt: not a template part name"):
        Renderer(dataclasses.replace(settings, templates_dir=misnamed))
    no_common = write_templates(
        tmp_path / "b", {"reminder/fr.subject.txt": "S", "reminder/fr.txt": "t", "reminder/fr.html": "h"}
    )
    with pytest.raises(RenderError, match=r"missing shared wording _common/fr\.j2"):
        Renderer(dataclasses.replace(settings, templates_dir=no_common))
    incomplete = write_templates(
        tmp_path / "c",
        {
            "_common/en.j2": '{% set series_name = "S" %}',
            "reminder/en.subject.txt": "S",
            "reminder/en.txt": "t",
            "reminder/en.html": "h",
        },
    )
    with pytest.raises(RenderError, match=r"_common/en\.j2: session_title_format is not set"):
        Renderer(dataclasses.replace(settings, templates_dir=incomplete))


def test_extra_variables_may_not_shadow_fixed_ones_but_may_set_urls(
    renderer: Renderer, settings: Settings
) -> None:
    series = settings.series
    session = series.session("africa-2021")
    with pytest.raises(ValueError, match="'recipient'"):
        render_step(renderer, series, "invitation", session, SAMPLES["en"], extra={"recipient": "x"})
    personal = "https://meet.example.org/register/nobantu-7f3a"
    rendered = render_step(
        renderer, series, "invitation", session, SAMPLES["en"], extra={"registration_url": personal}
    )
    assert f"Register here: {personal}" in rendered.text


@pytest.mark.parametrize("language", ["en", "fr", "es", "ar"])
def test_invitations_carry_rsvp_links_when_given(
    renderer: Renderer, settings: Settings, language: str
) -> None:
    series = settings.series
    links = {
        "rsvp_yes_url": "https://webinars.example.org/rsvp/yes-7f&x",
        "rsvp_no_url": "https://webinars.example.org/rsvp/no-7f",
    }
    rendered = render_step(renderer, series, "invitation", "africa-2021", SAMPLES[language], extra=links)
    assert links["rsvp_yes_url"] in rendered.text and links["rsvp_no_url"] in rendered.text
    assert 'href="https://webinars.example.org/rsvp/yes-7f&amp;x"' in rendered.html
    assert f'href="{links["rsvp_no_url"]}"' in rendered.html
    assert series.session("africa-2021").join_url not in rendered.text  # the RSVP page registers instead


def test_a_lead_time_without_a_name_is_said_in_words(renderer: Renderer, settings: Settings) -> None:
    series = settings.series
    three_days = Step(
        "reminder-3d",
        StepKind.REMINDER,
        parse_offset("-3d"),
        "reminder",
        Audience.REGISTRANTS,
        True,
        timedelta(hours=12),
    )
    rendered = render_step(renderer, series, three_days, "africa-2021", SAMPLES["en"])
    assert "the webinar starts in 3 days." in " ".join(rendered.text.split())
    assert rendered.subject.startswith("Reminder: ")


def test_rendering_is_pure(renderer: Renderer, settings: Settings) -> None:
    series = settings.series
    args = (series.step("reminder-1d"), series.session("asia-pacific-2021"), SAMPLES["fr"])
    first = renderer.render(*args, series=series, unsubscribe_url=UNSUBSCRIBE)
    assert renderer.render(*args, series=series, unsubscribe_url=UNSUBSCRIBE) == first
    with pytest.raises(dataclasses.FrozenInstanceError):
        first.subject = "changed"  # type: ignore[misc]


def test_wrap_text_hangs_list_items_and_keeps_urls_whole() -> None:
    long_url = "https://example.org/" + "x" * 80
    text = "  1. " + "word " * 20 + "\n" + f"See {long_url} now\n-- \n"
    assert wrap_text(text, 30).split("\n") == [
        "  1. word word word word word",
        "     word word word word word",
        "     word word word word word",
        "     word word word word word",
        "See",
        long_url,
        "now",
        "-- ",
        "",
    ]


@hypothesis_settings(max_examples=500, deadline=None)
@given(
    st.text(alphabet=st.sampled_from(" -1."), max_size=6),
    st.lists(
        st.tuples(
            st.text(alphabet=st.sampled_from("abé1.-\u2066\u2069"), min_size=1, max_size=14),
            st.sampled_from([" ", "  "]),
        ),
        max_size=30,
    ),
    st.integers(min_value=8, max_value=40),
)
@example("", [("aaaa", " "), ("bbbbb", " "), ("ccc", " ")], 10)
def test_wrap_text_is_greedy_within_width_and_keeps_every_word(
    lead: str, words: list[tuple[str, str]], width: int
) -> None:
    line = lead + "".join(word + space for word, space in words).rstrip()
    wrapped = wrap_text(line, width)
    lines = wrapped.split("\n")
    assert wrap_text(wrapped, width) == wrapped  # wrapped text stays as it is
    if len(line) <= width:
        assert lines == [line]
        return
    assert " ".join(wrapped.split()) == " ".join(line.split())  # every word, in order, none broken
    for current, following in itertools.pairwise(lines):
        assert len(current) <= width or len(current.split()) == 1  # within width, or one word too long
        assert len(current) + 1 + len(following.split()[0]) > width  # greedy: the next word did not fit


def run_cli(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path, *args: str
) -> tuple[int, str, str]:
    from mailer.cli import main

    argv = [
        "mailer",
        "--config",
        str(ROOT / "config"),
        "--database-url",
        f"sqlite:///{tmp_path / 'm.db'}",
        *args,
    ]
    monkeypatch.setattr(sys, "argv", argv)
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_preview_prints_subject_language_and_text_and_writes_files(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    eml, html = tmp_path / "m.eml", tmp_path / "m.html"
    code, out, err = run_cli(
        monkeypatch,
        capsys,
        tmp_path,
        "preview",
        "--session",
        "africa-2021",
        "--step",
        "reminder-1w",
        "--language",
        "it",
        "--zone",
        "Pacific/Apia",
        "--name",
        "Ana Souza",
        "--eml",
        str(eml),
        "--html",
        str(html),
    )
    assert code == 0, err
    lines = out.split("\n")
    assert lines[0] == "Subject:  Dans une semaine : Webinaire Convention de Budapest (Région africaine)"
    assert lines[1] == "Language: fr (requested it: fell back)"
    assert "Date et heure : mercredi 14 juillet 2021, 02:00 (Apia, UTC+13:00)" in out
    assert html.read_text(encoding="utf-8").startswith('<!DOCTYPE html>\n<html lang="fr" dir="ltr">')
    message = BytesParser(policy=policy.default).parsebytes(eml.read_bytes())
    assert message["Subject"] == lines[0].removeprefix("Subject:  ")
    assert message["To"].addresses[0].display_name == "Ana Souza"
    assert message["Content-Language"] == "fr"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["--session", "mars-2030", "--step", "invitation", "--language", "en"],
            "error: unknown session 'mars-2030'",
        ),
        (
            ["--session", "africa-2021", "--step", "reminder-2y", "--language", "en"],
            "error: unknown step 'reminder-2y'",
        ),
        (
            ["--session", "africa-2021", "--step", "notice", "--language", "en"],
            "error: notice/en.subject.txt line 1: undefined variable 'change'",
        ),
        (
            ["--session", "africa-2021", "--step", "invitation", "--contact", "nobody@example.org"],
            "error: no contact with address 'nobody@example.org'",
        ),
    ],
)
def test_preview_errors_are_one_clear_line_with_exit_2(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    args: list[str],
    expected: str,
) -> None:
    if "--contact" in args:  # a contact is looked up in a store that exists (an empty one)
        from mailer.app import open_app

        open_app(config_dir=ROOT / "config", database_url=f"sqlite:///{tmp_path / 'm.db'}").close()
    code, _out, err = run_cli(monkeypatch, capsys, tmp_path, "preview", *args)
    assert code == 2
    assert err.startswith(expected) and err.count("\n") == 1 and "Traceback" not in err


def test_preview_of_a_stored_contact_uses_their_language_and_zone(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from mailer.app import open_app
    from mailer.store.models import Contact

    app = open_app(config_dir=ROOT / "config", database_url=f"sqlite:///{tmp_path / 'm.db'}")
    now = datetime(2021, 6, 1, tzinfo=UTC)
    with app.factory() as db:
        db.add(
            Contact(
                email="Kim.Logan88@tn.parliament.example",
                email_key="kim.logan88@tn.parliament.example",
                name="جوان عذرة",
                title="Dr.",
                language="ar",
                time_zone="Africa/Tunis",
                created_at=now,
                updated_at=now,
            )
        )
        db.commit()
    app.close()
    code, out, err = run_cli(
        monkeypatch,
        capsys,
        tmp_path,
        "preview",
        "--session",
        "africa-2021",
        "--step",
        "reminder-1d",
        "--contact",
        "kim.logan88@TN.parliament.example",
    )
    assert code == 0, err
    assert "Language: ar\n" in out
    assert "حضرة \u2068Dr. جوان عذرة\u2069 المحترم/ة،" in out  # the name isolated in the right-to-left line
    assert "الموعد: \u2068الثلاثاء، 13 يوليو 2021، 2:00 م (تونس، غرينتش+01:00)\u2069" in out


STYLES = "p { margin: 0 0 16px; }\n.note { color: #52606d; }\n@media (max-width: 600px) { .note { color: #000 !important; } }\n"


def test_css_is_inlined_once_when_templates_load_never_per_message(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    import css_inline

    renderer = Renderer(settings)

    def refuse(*args: object, **kwargs: object) -> str:
        raise AssertionError("CSS inlined while rendering a message")

    monkeypatch.setattr(css_inline, "inline", refuse)
    monkeypatch.setattr(css_inline, "inline_fragment", refuse)
    monkeypatch.setattr(css_inline, "CSSInliner", refuse)
    series = settings.series
    for language in ("en", "ar"):
        rendered = render_step(renderer, series, "reminder-1d", "africa-2021", SAMPLES[language])
        assert re.search(r'<a class="button-link" href="[^"]+" style="color: #ffffff;', rendered.html)
        assert "background: #1d3557" in rendered.html
        assert "@media screen and (max-width: 620px)" in rendered.html.split("</head>")[0]  # kept for phones
        assert "<style>" not in rendered.html.split("<body", 1)[1]


def test_html_templates_keep_their_line_numbers_and_refuse_jinja_in_styles(
    settings: Settings, tmp_path: Path
) -> None:
    html = '<p>one</p>\n<p class="note"\n   id="x">two</p>\n<p>{{ missing_thing }}</p>\n'
    folder = write_templates(
        tmp_path / "a",
        {
            "_styles.css": STYLES,
            "invitation/en.subject.txt": "S",
            "invitation/en.txt": "t",
            "invitation/en.html": html,
        },
    )
    renderer = Renderer(dataclasses.replace(settings, templates_dir=folder))
    series = settings.series
    with pytest.raises(UndefinedVariableError) as caught:
        render_step(renderer, series, "invitation", "africa-2021", SAMPLES["en"])
    assert (caught.value.template, caught.value.line, caught.value.variable) == (
        "invitation/en.html",
        4,
        "missing_thing",
    )
    source, _, _ = renderer.env.loader.get_source(renderer.env, "invitation/en.html")  # type: ignore[union-attr]
    assert 'class="note" id="x" style="margin: 0 0 16px;color: #52606d;"' in source

    for bad, why in [
        ('<p style="color: {{ colour }}">x</p>', "Jinja in a style attribute of <p>"),
        ("<p {% if x %}hidden{% endif %}>x</p>", "Jinja between the attributes of <p>"),
        ("<table><tr><td>a</td></tr>{{ x }}</table>", "{{ x }} stands between table rows"),
    ]:
        folder = write_templates(
            tmp_path / str(len(why)),
            {
                "_styles.css": STYLES,
                "invitation/en.subject.txt": "S",
                "invitation/en.txt": "t",
                "invitation/en.html": "<p>ok</p>\n" + bad,
            },
        )
        with pytest.raises(RenderError, match=rf"invitation/en\.html line 2: {re.escape(why)}"):
            Renderer(dataclasses.replace(settings, templates_dir=folder))


def test_arabic_text_parts_isolate_dates_names_and_urls(renderer: Renderer, settings: Settings) -> None:
    series = settings.series
    session = series.session("africa-2021")
    rendered = render_step(renderer, series, "reminder-1d", session, SAMPLES["ar"])
    assert "\u2068واصف الحويطات\u2069" in rendered.text
    assert "الموعد: \u2068الثلاثاء، 13 يوليو 2021،" in rendered.text
    # No-break spaces: a linkifier stops before the mark, and wrapping never leaves a mark on its own line.
    assert f"\u2066\u00a0{session.join_url}\u00a0\u2069" in rendered.text
    assert f"\u2066\u00a0{UNSUBSCRIBE}\u00a0\u2069" in rendered.text
    english = render_step(renderer, series, "reminder-1d", session, SAMPLES["en"])
    assert not any(mark in english.text for mark in "\u2066\u2068\u2069")  # left-to-right text needs none
    assert f'<a class="button-link" href="{session.join_url}"' in english.html


@pytest.mark.parametrize("address", ["not-an-address", "", "a@b@example.org"])
def test_send_test_refuses_a_bad_address_with_the_reason(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path, address: str
) -> None:
    code, _, err = run_cli(
        monkeypatch,
        capsys,
        tmp_path,
        "send-test",
        "--session",
        "africa-2021",
        "--step",
        "invitation",
        "--to",
        address,
    )
    assert code == 2 and "Invalid value for --to" in err and "Traceback" not in err


def test_sessions_list_names_the_known_sessions_for_an_unknown_one(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, err = run_cli(monkeypatch, capsys, tmp_path, "sessions", "list", "--session", "latam-2022")
    assert code == 2 and "unknown session 'latam-2022'" in err and "latin-america-2022" in err and out == ""


@pytest.mark.parametrize("option", ["--eml", "--html"])
def test_preview_to_a_file_that_cannot_be_written_is_one_clear_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path, option: str
) -> None:
    """A folder that does not exist used to end in a FileNotFoundError traceback."""
    target = tmp_path / "no-such-folder" / "m.out"
    code, _out, err = run_cli(
        monkeypatch,
        capsys,
        tmp_path,
        "preview",
        "--session",
        "africa-2021",
        "--step",
        "invitation",
        "--language",
        "en",
        option,
        str(target),
    )
    assert code == 1 and "Traceback" not in err, err
    assert err == (
        f"Error: cannot write {option} {target}: No such file or directory (give a file in a folder you can"
        " write to)\n"
    )
