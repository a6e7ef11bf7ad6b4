"""Every message as a reader sees it: each step in each language, rendered by ``write_samples`` (what
``mailer templates render-all`` writes), opened in Debian's headless Chromium (Playwright, never a downloaded
browser) at a phone width and a desktop width.

Screenshots go to test-artifacts/messages/<width>/<step>.<language>.png (git-ignored). Each is checked not to
be empty (its pixels are counted in the browser: no Pillow needed), the page never scrolls sideways on a phone,
and the text runs the language's way: in Arabic every paragraph is right-to-left (computed ``direction``),
lies against the right edge of the content cell, and a short line leaves its space on the left; in the other
languages the opposite.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from mailer.compose.checks import write_samples
from mailer.config import Settings, load_settings
from tests.chromium import headless_chromium

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts" / "messages"
WIDTHS = {"phone": 390, "desktop": 1100}
SESSION = "africa-2021"  # GMT-3, languages en/fr/ar: every optional line of the templates shows

LAYOUT = """() => {
  const content = document.querySelector("td.content");
  const box = content.getBoundingClientRect();
  const style = getComputedStyle(content);
  const inner = {left: box.left + parseFloat(style.paddingLeft), right: box.right - parseFloat(style.paddingRight)};
  const paragraphs = [...content.querySelectorAll("p")].map((p) => {
    const range = document.createRange();
    range.selectNodeContents(p);
    const lines = [...range.getClientRects()];
    const r = p.getBoundingClientRect();
    return {direction: getComputedStyle(p).direction, align: getComputedStyle(p).textAlign, left: r.left,
            right: r.right, textLeft: Math.min(...lines.map((l) => l.left)),
            textRight: Math.max(...lines.map((l) => l.right)), lines: new Set(lines.map((l) => Math.round(l.top))).size};
  });
  return {inner, paragraphs, scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth,
          text: document.body.innerText.length, lang: document.documentElement.lang,
          dir: document.documentElement.dir};
}"""

PIXELS = """async (source) => {
  const image = new Image();
  image.src = source;
  await image.decode();
  const canvas = document.createElement("canvas");
  canvas.width = image.width;
  canvas.height = image.height;
  const context = canvas.getContext("2d");
  context.drawImage(image, 0, 0);
  const data = context.getImageData(0, 0, canvas.width, canvas.height).data;
  let dark = 0, samples = 0;
  const colours = new Set();
  for (let i = 0; i < data.length; i += 4 * 7) {
    samples += 1;
    if (data[i] + data[i + 1] + data[i + 2] < 300) dark += 1;
    colours.add(((data[i] >> 4) << 8) | ((data[i + 1] >> 4) << 4) | (data[i + 2] >> 4));
  }
  return {width: canvas.width, height: canvas.height, dark: dark / samples, colours: colours.size};
}"""


@pytest.fixture(scope="module")
def settings() -> Settings:
    return load_settings(ROOT / "config", database_url="sqlite://")


@pytest.fixture(scope="module")
def pages(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The HTML part of every sample message of the session (render-all's .html files)."""
    out = tmp_path_factory.mktemp("render-all")
    written = write_samples(settings, out, date=datetime(2021, 6, 1, 13, 0, tzinfo=UTC), sessions=[SESSION])
    return sorted(path for path in written if path.suffix == ".html")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium, headless (module scope: Playwright's sync API holds an event loop while open)."""
    with headless_chromium() as chromium:
        yield chromium


@pytest.mark.parametrize("width", list(WIDTHS))
def test_every_message_looks_right_in_its_language(
    browser: Any, pages: list[Path], settings: Settings, width: str
) -> None:
    # 6 steps and 2 notices, each as registrants, invitees and people who declined read it, in every language
    assert len(pages) == 12 * len(settings.languages)
    folder = ARTIFACTS / width
    folder.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(viewport={"width": WIDTHS[width], "height": 900}, java_script_enabled=True)
    page = context.new_page()
    blank = context.new_page()
    try:
        for path in pages:
            page.goto(path.as_uri())
            shot = folder / f"{path.stem}.png"
            page.screenshot(path=str(shot), full_page=True)
            pixels = blank.evaluate(
                PIXELS, "data:image/png;base64," + base64.b64encode(shot.read_bytes()).decode()
            )
            assert pixels["width"] == WIDTHS[width] and pixels["height"] > 600, (path.name, pixels)
            assert 0.01 < pixels["dark"] < 0.6 and pixels["colours"] > 12, (
                path.name,
                pixels,
            )  # text on a card

            layout = page.evaluate(LAYOUT)
            language = path.stem.split(".", 1)[1]
            assert (layout["lang"], layout["text"] > 400) == (language, True), path.name
            assert layout["scrollWidth"] <= layout["innerWidth"], (path.name, "scrolls sideways")
            inner, paragraphs = layout["inner"], layout["paragraphs"]
            assert len(paragraphs) >= 3, path.name
            rtl = language == "ar"
            assert layout["dir"] == ("rtl" if rtl else "ltr")
            for p in paragraphs:
                assert p["direction"] == ("rtl" if rtl else "ltr"), (path.name, p)
                assert abs(p["right"] - inner["right"]) <= 1 and abs(p["left"] - inner["left"]) <= 1, (
                    path.name,
                    p,
                )
            greeting = paragraphs[0]  # one short line
            assert greeting["lines"] == 1, (path.name, greeting)
            if rtl:
                assert (
                    greeting["align"] in ("right", "start")
                    and abs(greeting["textRight"] - inner["right"]) <= 2
                )
                assert greeting["textLeft"] - inner["left"] > 40, (path.name, greeting)
            else:
                assert abs(greeting["textLeft"] - inner["left"]) <= 2, (path.name, greeting)
                assert inner["right"] - greeting["textRight"] > 40, (path.name, greeting)
    finally:
        context.close()
