"""Per-language session texts (issue 13 case 7): title, agenda, description and materials link text from
``[sessions.texts.<language>]``, falling back along the templates' language chain, the fallback shown by
``mailer templates check``."""

from __future__ import annotations

import dataclasses
import shutil
from datetime import UTC, datetime
from email import policy
from email.parser import BytesParser
from pathlib import Path

import pytest
from click.testing import CliRunner

from mailer.cli import cli
from mailer.compose.checks import check_templates
from mailer.compose.outgoing import Outgoing
from mailer.compose.render import Renderer
from mailer.config import Settings, load_settings
from mailer.config.texts import SessionTexts
from mailer.errors import ConfigError
from tests.test_render import ROOT, SAMPLES, UNSUBSCRIBE

SPANISH_AGENDA = (
    "Palabras de apertura: Parlamentarios para la Acción Global y Consejo de Europa",
    "El Convenio de Budapest sobre la Ciberdelincuencia y sus Protocolos",
    "La legislación nacional conforme al Convenio: el papel de los parlamentos",
    "Cooperación internacional y prueba electrónica",
    "Preguntas y respuestas",
    "Palabras de clausura",
)


@pytest.fixture(scope="module")
def shipped() -> Settings:
    return load_settings(ROOT / "config", database_url="sqlite://")


def _config_copy(tmp_path: Path, edit: tuple[str, str]) -> Path:
    config = tmp_path / "config"
    shutil.copytree(ROOT / "config", config)
    shutil.copytree(ROOT / "templates", tmp_path / "templates")
    series = config / "series.toml"
    text = series.read_text(encoding="utf-8")
    assert edit[0] in text
    series.write_text(text.replace(edit[0], edit[1], 1), encoding="utf-8")
    return config


def test_the_shipped_sessions_have_an_agenda_in_every_offered_language(shipped: Settings) -> None:
    for session in shipped.series.sessions:
        agendas = {session.texts_for((language,))[0].agenda for language in shipped.languages}
        assert len(agendas) == len(shipped.languages), session.id  # en, es, fr, ar, pt, pt-PT: all different
        assert all(len(agenda) == 6 for agenda in agendas)
        assert session.texts_for(("es",)) == (
            dataclasses.replace(session.texts_for(("es",))[0], agenda=SPANISH_AGENDA),
            "es",
        )


def test_messages_and_calendars_carry_the_readers_agenda(shipped: Settings) -> None:
    series = shipped.series
    renderer = Renderer(shipped)
    session = series.session("latin-america-2022")
    spanish = renderer.render(
        series.step("reminder-1d"), session, SAMPLES["es"], series=series, unsubscribe_url=UNSUBSCRIBE
    )
    assert "1. Palabras de apertura" in spanish.text and "Opening remarks" not in spanish.text
    assert "<bdi>Preguntas y respuestas</bdi>" in spanish.html
    arabic = renderer.render(
        series.step("invitation"), session, SAMPLES["ar"], series=series, unsubscribe_url=UNSUBSCRIBE
    )
    assert "أسئلة وأجوبة" in arabic.text and "Opening remarks" not in arabic.text + arabic.html
    # pt-MZ reads pt-PT (CLDR's parent), not Brazilian Portuguese.
    mozambique = dataclasses.replace(SAMPLES["pt-PT"], language="pt-MZ")
    message = Outgoing(shipped).message(
        series.step("invitation"),
        session,
        mozambique,
        message_pk=None,
        message_id="<texts@example.org>",
        date=datetime(2022, 1, 24, 13, 0, tzinfo=UTC),
    )
    assert "Cooperação internacional e prova eletrónica" in message.rendered.text
    parsed = BytesParser(policy=policy.default).parsebytes(message.data)
    [calendar] = [p.get_content() for p in parsed.walk() if p.get_content_type() == "text/calendar"]
    unfolded = calendar.replace("\r\n ", "")
    assert "4. Cooperação internacional e prova eletrónica" in unfolded
    assert "Encerramento" in unfolded and "Closing remarks" not in unfolded


def test_description_and_materials_text_reach_the_messages(shipped: Settings) -> None:
    series = shipped.series
    session = series.session("africa-2021")
    french = SessionTexts(
        "Webinaire",
        session.texts_for(("fr",))[0].agenda,
        "Un échange entre parlementaires sur la preuve électronique.",
        "Présentations et enregistrement",
    )
    texts = tuple((tag, french if tag == "fr" else texts) for tag, texts in session.texts)
    changed = dataclasses.replace(session, texts=texts)
    settings = dataclasses.replace(
        shipped,
        series=dataclasses.replace(
            series, sessions=tuple(changed if s.id == session.id else s for s in series.sessions)
        ),
    )
    renderer = Renderer(settings)
    invitation = renderer.render(
        series.step("invitation"), changed, SAMPLES["fr"], series=settings.series, unsubscribe_url=UNSUBSCRIBE
    )
    assert "Un échange entre parlementaires sur la preuve électronique." in invitation.text
    assert "Un échange entre parlementaires sur la preuve électronique.</p>" in invitation.html
    follow_up = renderer.render(
        series.step("follow-up"), changed, SAMPLES["fr"], series=settings.series, unsubscribe_url=UNSUBSCRIBE
    )
    assert (
        ">Présentations et enregistrement</a>" in follow_up.html
        and ">Documents du webinaire<" not in follow_up.html
    )
    english = renderer.render(
        series.step("invitation"), changed, SAMPLES["en"], series=settings.series, unsubscribe_url=UNSUBSCRIBE
    )
    assert "preuve" not in english.text


def test_a_texts_table_falls_back_and_templates_check_says_so(tmp_path: Path) -> None:
    # Without africa-2021's pt-PT table, pt-PT (and pt-MZ) readers get the pt texts.
    table = '[sessions.texts."pt-PT"]\ntitle = "Webinar parlamentar sobre a Convenção de Budapeste sobre o Cibercrime: Região Africana"'
    config = _config_copy(tmp_path, (table, '[sessions.texts."pt-XX"]\ntitle = "x"'))
    settings = load_settings(config, database_url="sqlite://")
    session = settings.series.session("africa-2021")
    texts, used = session.texts_for(("pt-MZ", "pt-PT", "pt"))
    assert (
        used == "pt"
        and texts.agenda[1] == "A Convenção de Budapeste sobre o Crime Cibernético e seus Protocolos"
    )
    assert [str(f) for f in check_templates(settings).findings] == [
        "note: config/series.toml: session africa-2021: no [sessions.texts.pt-PT] table: readers in pt-PT get"
        " the pt title and agenda"
    ]
    result = CliRunner().invoke(
        cli,
        ["--config", str(config), "--database-url", "sqlite://", "templates", "check"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0
    assert "readers in pt-PT get the pt title and agenda" in result.output


def test_an_unknown_key_in_a_texts_table_is_refused(tmp_path: Path) -> None:
    config = _config_copy(tmp_path, ("[sessions.texts.es]\n", '[sessions.texts.es]\nagneda = ["x"]\n'))
    with pytest.raises(ConfigError, match=r"sessions\[0\]\.texts\.es\.agneda.*did you mean `agenda`"):
        load_settings(config, database_url="sqlite://")


def test_keys_left_out_stay_in_the_base_language(tmp_path: Path) -> None:
    config = _config_copy(
        tmp_path,
        (
            "[sessions.texts.es]\n",
            '[sessions.texts.de]\ntitle = "Parlamentarisches Webinar"\n\n[sessions.texts.es]\n',
        ),
    )
    session = load_settings(config, database_url="sqlite://").series.session("africa-2021")
    assert session.texts_for(("de-AT", "de")) == (
        SessionTexts("Parlamentarisches Webinar", session.agenda, "", ""),
        "de",
    )
    assert session.texts_for(("it",)) == (session.base_texts, "en")
