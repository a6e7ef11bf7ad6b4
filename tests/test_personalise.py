"""Personalisation by substitution (mailer.compose.personalise): a group's shared render filled in per recipient is
exactly what rendering for that recipient alone gives, for every shipped template and any personal values;
templates that use the values in other ways render per message."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from pathlib import Path

import jinja2
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from mailer.compose.environment import make_environment
from mailer.compose.personalise import substitutable
from mailer.compose.render import Renderer
from mailer.config import load_settings
from mailer.store.recipient import Recipient
from mailer.timeline.plan import notice_step
from tests.test_render import write_templates

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = load_settings(ROOT / "config", database_url="sqlite://")
FAST = Renderer(SETTINGS)
ALONE = Renderer(SETTINGS, substitute=False)
SERIES = SETTINGS.series
STEPS = [*SERIES.steps, notice_step("date-changed", 1), notice_step("cancelled", 1)]

_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)
names = _text | st.sampled_from(
    [
        "",
        " ",
        "O'Brien & <Sons>",
        '"Dr." Ana',
        "محمد العلي",
        "a\nb",
        "x" * 90,
        "\u2068iso\u2069",
        "tab\there",
        "  two  spaces  ",
        "\ue801\ue804",
    ]
)
urls = st.sampled_from(
    [
        "https://mailer.example.org/u/AbC-dEf_012",
        "http://127.0.0.1:8080/u/x?a=1&b=<2>",
        "https://mailer.example.org/" + "long" * 30,
        "",
    ]
)


@hypothesis_settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(STEPS),
    st.sampled_from(SERIES.sessions),
    st.sampled_from(["en", "es", "fr", "ar", "pt", "pt-PT"]),
    st.sampled_from(["Africa/Lagos", "Pacific/Apia", "America/Sao_Paulo", "Asia/Kathmandu"]),
    names,
    st.sampled_from(["", "Hon.", "Dr"]),
    urls,
    st.none() | urls,
    st.none() | urls,
)
def test_a_filled_in_group_is_exactly_the_message_rendered_alone(
    step,
    session,
    language,
    zone,
    name,
    title,
    unsubscribe,
    yes,
    no,  # type: ignore[no-untyped-def]
) -> None:
    person = Recipient("p@example.org", name=name, title=title, language=language, time_zone=zone)
    extra: dict[str, object] = {
        key: value for key, value in (("rsvp_yes_url", yes), ("rsvp_no_url", no)) if value is not None
    }
    if step.kind.value == "notice":
        extra["change"] = "cancelled" if step.name.startswith("cancelled") else "rescheduled"
        if extra["change"] == "rescheduled":
            extra["previous_start"] = session.start - timedelta(days=7)
    arguments = dict(series=SERIES, unsubscribe_url=unsubscribe, extra=extra)
    alone = ALONE.render(step, session, person, **arguments)  # type: ignore[arg-type]
    assert FAST.render(step, session, person, **arguments) == alone  # type: ignore[arg-type]
    assert FAST.render(step, session, person, **arguments) == alone  # type: ignore[arg-type]  # from the group


def test_the_shipped_templates_all_share_renders() -> None:
    assert all(
        FAST._substitutable(folder, language)
        for folder, languages in FAST.templates.items()
        for language in languages
    )


def _plain(files: dict[str, str]) -> bool:
    env = make_environment(Path("/nonexistent"))
    env.loader = jinja2.DictLoader(files)
    return substitutable(env, list(files))


@pytest.mark.parametrize(
    "source",
    [
        "Dear {{ greeting_name }},",
        "{% if greeting_name %}Dear {{ greeting_name }}{% else %}Dear all{% endif %}",
        "{% if not greeting_name %}all{% endif %}{{ 'x' if greeting_name else 'y' }}",
        "{% set link = rsvp_yes_url if rsvp_yes_url is defined else join_url %}{{ link }} {{ link | ltr }}",
        "{{ unsubscribe_url | ltr if direction == 'rtl' else unsubscribe_url }}",
        "{% filter wrap %}{{ greeting_name | isolate }} {{ rsvp_no_url }}{% endfilter %}",
    ],
)
def test_plain_uses_share_renders(source: str) -> None:
    assert _plain({"part.txt": source})


@pytest.mark.parametrize(
    "source",
    [
        "{{ greeting_name | upper }}",
        "{{ greeting_name[:3] }}",
        "{% if greeting_name == 'Dr' %}x{% endif %}",
        "{% if greeting_name and lead %}x{% endif %}",
        "{{ greeting_name ~ '!' }}",
        "{{ recipient.name }}",
        "{% set x %}{{ greeting_name }}{% endset %}{{ x | upper }}",
        "{% set x = greeting_name %}{{ x | length }}",
        "{% macro m(n) %}{{ n }}{% endmacro %}{{ m(greeting_name) }}",
        "{% macro m() %}{{ greeting_name }}{% endmacro %}{{ m() | upper }}",
        "{% filter upper %}{{ greeting_name }}{% endfilter %}",
        "{% include some_variable %}",
        "{{ greeting_name | truncate(5) }}",
    ],
)
def test_other_uses_render_per_message(source: str) -> None:
    assert not _plain({"part.txt": source})


def test_a_filter_in_an_html_part_renders_per_message() -> None:
    # isolate() returns a plain string, which autoescape would not escape again: not substitutable in HTML
    assert _plain({"part.txt": "{{ greeting_name | isolate }}"})
    assert not _plain({"part.html": "<p>{{ greeting_name | isolate }}</p>"})


def test_an_included_template_is_checked_too() -> None:
    assert not _plain({"part.txt": "{% include 'footer.txt' %}", "footer.txt": "{{ greeting_name | upper }}"})
    assert _plain({"part.txt": "{% include 'footer.txt' %}", "footer.txt": "{{ greeting_name }}"})


def test_templates_using_values_otherwise_still_render_right(tmp_path: Path) -> None:
    folder = write_templates(
        tmp_path,
        {
            "invitation/en.subject.txt": "For {{ greeting_name | upper }}",
            "invitation/en.txt": "{% if greeting_name == 'Ann' %}Hi Ann{% else %}Dear {{ greeting_name }}{% endif %}\n",
            "invitation/en.html": "<p>{{ greeting_name }}</p>",
        },
    )
    renderer = Renderer(dataclasses.replace(SETTINGS, templates_dir=folder))
    step, session = SERIES.step("invitation"), SERIES.session("africa-2021")
    texts = [
        renderer.render(
            step,
            session,
            Recipient("a@example.org", name=name, time_zone="Africa/Lagos"),
            series=SERIES,
            unsubscribe_url="https://x.example.org/u",
        )
        for name in ("Ann", "Bob <b>")
    ]
    assert [(r.subject, r.text, r.html) for r in texts] == [
        ("For ANN", "Hi Ann", "<p>Ann</p>"),
        ("For BOB <B>", "Dear Bob <b>", "<p>Bob &lt;b&gt;</p>"),
    ]
    assert not renderer._substitutable("invitation", "en")


def test_a_shared_render_wraps_personal_lines_like_a_render_alone() -> None:
    step, session = SERIES.step("invitation"), SERIES.session("africa-2021")
    long_name = "Honourable " + "Member of the National Assembly " * 4
    for name in ("Ann", long_name, "Ann"):
        person = Recipient("a@example.org", name=name, language="en", time_zone="Africa/Lagos")
        fast = FAST.render(step, session, person, series=SERIES, unsubscribe_url="https://x.example.org/u/t")
        assert fast == ALONE.render(
            step, session, person, series=SERIES, unsubscribe_url="https://x.example.org/u/t"
        )
        assert max(len(line) for line in fast.text.split("\n") if " " in line.strip()) <= 72
