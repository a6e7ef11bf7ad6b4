"""Every staff, organiser and participant page checked by axe-core (WCAG 2.1 A and AA) in Debian's Chromium,
at a phone's width (320 CSS px, WCAG 1.4.10's reflow width) and on a desktop; none may scroll sideways, and no
word in a table (an address, a date) may be cut over two lines: a wide table scrolls in its own box.

axe-core comes from npm (``.ci/run`` installs it once into ``$AXE_CORE_DIR``, by default
``~/.cache/webinar-mailer/axe``); without it the test is skipped, or fails under CI. The message HTML shown in
the preview and message pages' frames is the email itself, not the page: axe checks the pages, not the frames.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from mailer.app import App
from mailer.compose.links import rsvp_url, unsubscribe_url
from mailer.store.engine import transaction
from mailer.store.models import Contact, Message, Wave
from mailer.store.outbox import suppress
from mailer.timeline.clock import VirtualClock
from mailer.web.server import ThreadedServer
from tests.chromium import headless_chromium
from tests.conftest import CONTACTS_DIR, RunningServer
from tests.factories import add_contact
from tests.test_web_support import (
    INVITATION_AT,
    PASSWORD,
    run_service,
    screenshot,
    sending_app,
    signing_secret,
)

__all__ = ["signing_secret"]  # a fixture used by name

AXE_DIR = Path(os.environ.get("AXE_CORE_DIR", Path.home() / ".cache" / "webinar-mailer" / "axe"))
AXE_JS = AXE_DIR / "node_modules" / "axe-core" / "axe.min.js"
WCAG_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
SIZES = {"phone": {"width": 320, "height": 640}, "desktop": {"width": 1280, "height": 900}}
RUN_AXE = """async (tags) => {
  const result = await axe.run(document, {runOnly: {type: "tag", values: tags}, iframes: false});
  return result.violations.map(v => v.id + " (" + v.impact + "): " + v.help + " at "
    + v.nodes.slice(0, 3).map(n => n.target.join(" ") + " [" + n.failureSummary.replace(/\\s+/g, " ") + "]")
      .join("; "));
}"""
SIDEWAYS = "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
# Words of table cells laid out over more than one line (an address or a date cut in the middle); cells of
# free text (class "text": replies, details, reasons) may wrap between words, as text does.
CUT_WORDS = """() => {
  const cut = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const cell = node.parentElement.closest("table.data td, table.data th");
    if (!cell || cell.matches(".text, [colspan]")) continue;  // free text wraps between words
    for (const word of node.data.matchAll(/\\S+/g)) {
      const range = document.createRange();
      range.setStart(node, word.index);
      range.setEnd(node, word.index + word[0].length);
      const lines = new Set([...range.getClientRects()].map(r => Math.round(r.top)));
      if (lines.size > 1) cut.push(word[0]);
    }
  }
  return cut;
}"""


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """SQLite only: the pages are the same on both stores, and the browser makes this test slow."""
    return f"sqlite:///{tmp_path / 'mailer.db'}"


@pytest.fixture(scope="module")
def axe_script() -> str:
    if not AXE_JS.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{AXE_JS} missing: .ci/run should have installed axe-core from npm")
        pytest.skip(f"{AXE_JS} missing: npm install --prefix {AXE_DIR} axe-core@4")
    return AXE_JS.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    with headless_chromium() as browser:
        yield browser


def _audit(page: Any, axe: str, label: str, problems: list[str]) -> None:
    page.wait_for_load_state()
    page.add_script_tag(content=axe)
    problems.extend(f"{label}: {violation}" for violation in page.evaluate(RUN_AXE, WCAG_TAGS))
    overflow = page.evaluate(SIDEWAYS)
    if overflow > 0:
        problems.append(f"{label}: scrolls sideways by {overflow} px")
    cut = page.evaluate(CUT_WORDS)
    if cut:
        problems.append(f"{label}: words cut over two lines in tables: {cut[:5]}")


def _seed(app: App, web: ThreadedServer, smtp_server: RunningServer, clock: VirtualClock) -> dict[str, str]:
    """Three contacts mailed the africa-2021 invitation by the real service; one suppressed, one failed."""
    with transaction(app.factory) as db:
        add_contact(db, "ana@example.org", name="Ana Lima")
        add_contact(db, "samira@example.org", language="ar", time_zone="Africa/Cairo", name="Samira Haddad")
        add_contact(db, "jean@example.org", language="fr", time_zone="Africa/Dakar", name="Jean Diouf")
        suppress(db, "jean@example.org", "manual", "asked by phone", INVITATION_AT)
    sender = sending_app(app, smtp_server, web.url)
    clock.set(INVITATION_AT)
    run_service(sender, clock)
    clock.set(INVITATION_AT + timedelta(days=1))
    with transaction(app.factory) as db:
        pks = dict(db.execute(select(Message.recipient, Message.id)).all())
        contact = db.scalar(select(Contact.id).where(Contact.email_key == "ana@example.org"))
        wave = db.scalar(select(Wave.id))
    settings = sender.settings
    return {
        "message": str(pks["ana@example.org"]),
        "contact": str(contact),
        "wave": str(wave),
        "rsvp-en": rsvp_url(settings, pks["ana@example.org"], "yes", "ana@example.org"),
        "rsvp-ar": rsvp_url(settings, pks["samira@example.org"], "no", "samira@example.org"),
        "unsubscribe-ar": unsubscribe_url(settings, pks["samira@example.org"], "samira@example.org"),
        "unsubscribe-en": unsubscribe_url(settings, pks["ana@example.org"], "ana@example.org"),
    }


STAFF_PAGES = [
    "/staff/",
    "/staff/log",
    "/staff/log?status=sent&sort=recipient",
    "/staff/messages/{message}",
    "/staff/waves/{wave}",
    "/staff/suppressions",
    "/staff/contacts",
    "/staff/contacts?region=africa",
    "/staff/contacts/{contact}",
    "/organise/sessions",
    "/organise/preview?session=africa-2021&step=invitation&language=ar",
    "/organise/waves/new?session=africa-2021&step=invitation-2",
    "/organise/waves/new?session=africa-2021&step=invitation",
    "/organise/imports",
]
# Pages whose phone-width look is kept as a screenshot in test-artifacts/ (wide tables scroll in their box).
PHONE_SHOTS = {
    "/staff/log": "phone-log",
    "/staff/suppressions": "phone-suppressions",
    "/organise/sessions": "phone-sessions",
}


@pytest.mark.parametrize("size", list(SIZES))
def test_every_page_passes_axe_wcag_21_aa_and_reflows(
    app: App,
    web: ThreadedServer,
    accounts: dict[str, str],
    smtp_server: RunningServer,
    clock: VirtualClock,
    chromium: Any,
    axe_script: str,
    size: str,
    request: pytest.FixtureRequest,
) -> None:
    ids = _seed(app, web, smtp_server, clock)
    context = chromium.new_context(viewport=SIZES[size], bypass_csp=True, locale="en-GB")
    context.set_default_timeout(20000)
    page = context.new_page()
    problems: list[str] = []
    try:
        page.goto(f"{web.url}/login")
        _audit(page, axe_script, f"{size} /login", problems)
        page.fill("input[name=username]", "olga")
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_load_state()
        for path in STAFF_PAGES:
            page.goto(web.url + path.format(**ids))
            _audit(page, axe_script, f"{size} {path}", problems)
            if size == "phone" and path in PHONE_SHOTS:
                screenshot(page, PHONE_SHOTS[path], request)
        # An import: the check page, then the recorded import.
        page.goto(f"{web.url}/organise/imports")
        page.locator("form", has=page.locator("input[name=kind][value=contacts]")).locator(
            "input[type=file]"
        ).set_input_files(str(CONTACTS_DIR / "latin-america.csv"))
        page.locator("form", has=page.locator("input[name=kind][value=contacts]")).locator(
            "button[type=submit]"
        ).click()
        page.wait_for_load_state()
        _audit(page, axe_script, f"{size} import check", problems)
        page.click("text=Import latin-america.csv")
        page.wait_for_load_state()
        assert re.search(r"/organise/imports/\d+", page.url)
        _audit(page, axe_script, f"{size} import", problems)
        # Participants: each link's question, its answer, and the link opened again.
        for name in ("rsvp-en", "rsvp-ar", "unsubscribe-ar", "unsubscribe-en"):
            page.goto(ids[name])
            _audit(page, axe_script, f"{size} {name}", problems)
            page.click("button[type=submit]")
            _audit(page, axe_script, f"{size} {name} answered", problems)
        page.goto(ids["rsvp-en"])
        _audit(page, axe_script, f"{size} rsvp-en again", problems)
        page.goto(f"{web.url}/rsvp/forged-token")
        _audit(page, axe_script, f"{size} bad link", problems)
    finally:
        context.close()
    assert problems == [], "\n".join(problems)
