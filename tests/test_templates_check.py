"""``mailer templates check`` / ``render-all`` and the start-up check: the shipped templates pass clean, and each
kind of mistake is found with the file (and line) to fix."""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
import sys
from email import policy
from email.parser import BytesParser
from pathlib import Path

import pytest

import mailer.compose.context
from mailer.compose.checks import TemplateCheckError, check_templates, require_templates
from mailer.compose.context import CONTEXT_VARIABLES, template_context
from mailer.compose.render import Renderer
from mailer.config import Settings, load_settings
from tests.conftest import SHIPPED_STEPS
from tests.test_render import run_cli

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def shipped() -> Settings:
    return load_settings(ROOT / "config", database_url="sqlite://")


@pytest.fixture
def copy(shipped: Settings, tmp_path: Path) -> tuple[Settings, Path]:
    """The shipped config pointed at a private copy of the templates, to break."""
    folder = tmp_path / "templates" / "email"
    shutil.copytree(ROOT / "templates" / "email", folder)
    return dataclasses.replace(shipped, templates_dir=folder), folder


def messages(settings: Settings) -> list[str]:
    return [str(finding) for finding in check_templates(settings).findings]


def test_the_shipped_templates_pass_without_a_warning(shipped: Settings) -> None:
    report = check_templates(shipped)
    assert report.findings == []
    assert require_templates(shipped, say=pytest.fail).findings == []


def test_the_documented_context_is_what_the_renderer_gives(shipped: Settings) -> None:
    renderer = Renderer(shipped)
    series = shipped.series
    from tests.test_render import SAMPLES

    context = template_context(
        shipped,
        renderer.wording["en"],
        series.step("invitation"),
        series.session("africa-2021"),
        SAMPLES["en"],
        series,
        "en",
        "https://x.example/u",
        None,
    )
    assert set(context) - {"_dates"} == CONTEXT_VARIABLES
    table = re.findall(
        r"^    ([a-z_]+(?:, [a-z_]+)*) {2,}", mailer.compose.context.__doc__ or "", re.MULTILINE
    )
    assert {name for row in table for name in row.split(", ")} == CONTEXT_VARIABLES  # the docstring's table


def test_a_missing_part_is_a_warning_when_a_fallback_serves_it(copy: tuple[Settings, Path]) -> None:
    settings, folder = copy
    (folder / "notice" / "fr.html").unlink()
    found = messages(settings)
    assert len(found) == 1 and found[0].startswith("warning: notice/: offered language 'fr' lacks fr.html")
    assert "africa: en" in found[0]  # the African chain fr -> en: French readers get English notices

    german = dataclasses.replace(settings, languages=(*settings.languages, "de"))
    assert any("offered language 'de' lacks de.subject.txt, de.txt, de.html" in m for m in messages(german))


def test_a_part_nothing_can_replace_is_an_error(copy: tuple[Settings, Path]) -> None:
    settings, folder = copy
    for language in ("en", "es", "fr", "ar", "pt", "pt-PT"):
        (folder / "follow-up" / f"{language}.html").unlink(missing_ok=True)
    report = check_templates(settings)
    assert [str(f) for f in report.errors] == [
        "error: follow-up/: no complete template (subject, text and HTML) in any language"
    ]
    with pytest.raises(
        TemplateCheckError, match=r"1 template error\(s\), fix them before starting:\n  error: follow-up/"
    ):
        require_templates(settings, say=lambda text: None)


def _replace(path: Path, old: str, new: str) -> None:
    """Edit a copied template: ``old`` becomes ``new``."""
    path.write_text(path.read_text(encoding="utf-8").replace(old, new), encoding="utf-8")


def test_syntax_errors_unknown_variables_and_filters_name_the_file_and_line(
    copy: tuple[Settings, Path],
) -> None:
    settings, folder = copy
    _replace(folder / "reminder" / "es.txt", "{% endblock %}", "{% if lead %}\n{% endblock %}")
    (folder / "invitation" / "fr.subject.txt").write_text(
        "Invitation : {{ sesion_title }} {{ change }}\n", encoding="utf-8"
    )
    (folder / "notice" / "en.subject.txt").write_text(
        "{{ change | shout }} {{ session_short }}\n", encoding="utf-8"
    )
    found = messages(settings)
    assert any(m.startswith("error: reminder/es.txt: line ") and "endblock" in m for m in found), found
    assert "error: invitation/fr.subject.txt: uses 'change', which the renderer does not provide" in found
    assert (
        "error: invitation/fr.subject.txt: uses 'sesion_title', which the renderer does not provide" in found
    )
    assert "error: notice/en.subject.txt: line 1: No filter named 'shout'." in found


def test_a_variable_only_notices_get_is_fine_in_notices(copy: tuple[Settings, Path]) -> None:
    settings, folder = copy
    _replace(folder / "notice" / "en.txt", "Kind regards,", "Kind regards ({{ change }}),")
    assert messages(settings) == []


def test_an_attribute_that_does_not_exist_fails_the_sample_render(copy: tuple[Settings, Path]) -> None:
    settings, folder = copy
    _replace(folder / "reminder" / "pt-PT.txt", "{{ duration }}", "{{ session.length }}")
    found = messages(settings)
    assert found and all(m.startswith("error: reminder/: reminder-") for m in found)
    assert "in pt-PT: reminder/pt-PT.txt line 13: undefined variable 'length'" in found[0]


def test_html_the_inliner_cannot_keep_is_an_error(copy: tuple[Settings, Path]) -> None:
    settings, folder = copy
    _replace(folder / "invitation" / "es.html", "<h2>", '<h2 style="text-align: {{ align }}">')
    found = messages(settings)
    assert any("invitation/es.html line 19: Jinja in a style attribute of <h2>" in m for m in found), found


def test_long_subjects_are_warnings(copy: tuple[Settings, Path]) -> None:
    settings, folder = copy
    (folder / "follow-up" / "en.subject.txt").write_text(
        "Thank you for taking part in the {{ session_title }}\n", encoding="utf-8"
    )
    found = messages(settings)
    assert len(found) == 1 and found[0].startswith(
        "warning: follow-up/en.subject.txt: subject of 111 characters "
        "(over 78) for africa-2021: 'Thank you for taking part"
    )


def test_the_check_command_and_start_up(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, err = run_cli(monkeypatch, capsys, tmp_path, "templates", "check")
    assert code == 0, err
    assert out.strip().endswith(
        "0 error(s), 0 warning(s): 4 step templates, 6 languages (en, es, fr, ar, pt, pt-PT), "
        "subjects up to 78 characters"
    )

    config = tmp_path / "site" / "config"
    shutil.copytree(ROOT / "config", config)
    shutil.copytree(ROOT / "templates", tmp_path / "site" / "templates")
    broken = tmp_path / "site" / "templates" / "email" / "notice" / "ar.txt"
    broken.write_text("{{ previous_start | local_datetime }\n", encoding="utf-8")
    code, out, err = run_cli(monkeypatch, capsys, tmp_path, "--config", str(config), "templates", "check")
    assert code == 1 and "error: notice/ar.txt: line 1: unexpected '}'" in err

    started = subprocess.run(  # noqa: PLW1510 - the exit status is the assertion
        [sys.executable, str(ROOT / "schedule.py"), "--config", str(config)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert started.returncode == 2
    assert started.stderr.startswith(
        "error: 1 template error(s), fix them before starting:\n"
        "  error: notice/ar.txt: line 1: unexpected '}'"
    )
    assert "Traceback" not in started.stderr


def test_render_all_writes_every_step_in_every_language(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out_dir = tmp_path / "look"
    code, out, err = run_cli(
        monkeypatch,
        capsys,
        tmp_path,
        "templates",
        "render-all",
        "--out",
        str(out_dir),
        "--session",
        "africa-2021",
    )
    assert code == 0, err
    steps = [*SHIPPED_STEPS, "date-changed-1", "cancelled-2"]
    languages = ["en", "es", "fr", "ar", "pt", "pt-PT"]
    steps += [f"{notice}-{relationship}" for notice in steps[-2:] for relationship in ("invited", "declined")]
    expected = {
        f"{step}.{language}.{ext}" for step in steps for language in languages for ext in ("eml", "html")
    }
    assert {p.name for p in (out_dir / "africa-2021").iterdir()} == expected
    assert out.strip() == f"{len(expected) // 2} messages written to {out_dir} (.eml and .html)"
    for name, method in [
        ("invitation.pt-PT", "REQUEST"),
        ("date-changed-1.ar", "REQUEST"),
        ("cancelled-2.fr", "CANCEL"),
        ("follow-up.en", None),
    ]:
        message = BytesParser(policy=policy.default).parsebytes(
            (out_dir / "africa-2021" / f"{name}.eml").read_bytes()
        )
        methods = [p.get_param("method") for p in message.walk() if p.get_content_type() == "text/calendar"]
        assert methods == ([method] if method else [])
        assert message["Content-Language"] == name.split(".")[1]
        html = (out_dir / "africa-2021" / f"{name}.html").read_text(encoding="utf-8")
        assert html.startswith(f'<!DOCTYPE html>\n<html lang="{name.split(".")[1]}"')
