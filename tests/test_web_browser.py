"""The pages in a real browser: Debian's headless Chromium driven by Playwright (executable /usr/bin/chromium).

Messages are sent by the real service to the ``smtp_server`` fixture; the links are taken from what it received.
Screenshots of the main pages (English and Arabic) go to test-artifacts/.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from mailer.app import App
from mailer.compose.links import rsvp_url
from mailer.store.engine import transaction
from mailer.store.models import (
    Contact,
    ContactStatus,
    DeliveryEvent,
    Message,
    MessageStatus,
    Registration,
    RegistrationStatus,
    Suppression,
    Wave,
    WaveStatus,
)
from mailer.store.outbox import queue_wave
from mailer.timeline.clock import VirtualClock
from mailer.web.server import ThreadedServer
from tests.conftest import Received, RunningServer
from tests.factories import add_contact
from tests.test_web_support import (
    INVITATION_AT,
    REMINDER_1W_AT,
    run_service,
    screenshot,
    sending_app,
    sign_in_browser,
    signing_secret,
)


def _list_unsubscribe_url(received: Received, base: str) -> str:
    header = " ".join(str(received.parsed()["List-Unsubscribe"]).split())
    urls = [url for url in re.findall(r"<([^>]+)>", header) if url.startswith(base)]
    assert len(urls) == 1, header
    return urls[0]


def _html(received: Received) -> str:
    return received.parsed().get_body(("html",)).get_content()  # type: ignore[union-attr,no-any-return]


def _by_recipient(server: RunningServer) -> dict[str, Received]:
    return {message.rcpt_tos[0]: message for message in server.messages}


def test_one_click_unsubscribe_through_the_list_unsubscribe_header(
    app: App,
    web: ThreadedServer,
    smtp_server: RunningServer,
    clock: VirtualClock,
    phone: Any,
    request: pytest.FixtureRequest,
) -> None:
    with transaction(app.factory) as db:
        add_contact(db, "ana@example.org", language="en")
        add_contact(db, "samira@example.org", language="ar", time_zone="Africa/Cairo", name="Samira Haddad")
    sender = sending_app(app, smtp_server, web.url)
    clock.set(INVITATION_AT)
    run_service(sender, clock)  # the invitation wave is automatic: the service queues and sends it
    received = _by_recipient(smtp_server)
    assert set(received) == {"ana@example.org", "samira@example.org"}

    # A mail client's RFC 8058 one-click: POST "List-Unsubscribe=One-Click" to the header's URL.
    url = _list_unsubscribe_url(received["ana@example.org"], web.url + "/u/")
    answer = httpx.post(
        url,
        content=b"List-Unsubscribe=One-Click",
        follow_redirects=False,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert answer.status_code == 200
    with transaction(app.factory) as db:
        suppression = db.get(Suppression, "ana@example.org")
        assert suppression is not None and suppression.reason == "unsubscribed"
        contact = db.scalar(select(Contact).where(Contact.email_key == "ana@example.org"))
        assert contact is not None and contact.status == ContactStatus.UNSUBSCRIBED

    # A person: the footer link of the Arabic message, on a phone; GET asks, the button unsubscribes.
    footer = re.search(r'href="(' + re.escape(web.url) + r'/u/[^"]+)"', _html(received["samira@example.org"]))
    assert footer is not None
    phone.goto(footer.group(1))
    assert phone.locator("html").get_attribute("dir") == "rtl"
    assert phone.locator("html").get_attribute("lang") == "ar"
    assert "samira@example.org" in phone.inner_text("main")
    screenshot(phone, "unsubscribe-ar", request)
    with transaction(app.factory) as db:
        assert db.get(Suppression, "samira@example.org") is None  # a GET (or a link scanner) changes nothing
    phone.click("button[type=submit]")
    phone.wait_for_load_state()
    assert phone.inner_text("h1") == "تم إلغاء اشتراكك"
    screenshot(phone, "unsubscribed-ar", request)
    with transaction(app.factory) as db:
        assert db.get(Suppression, "samira@example.org") is not None

    # The next wave to both (invitation-2, three weeks later): suppressed at send time and logged so.
    clock.set(INVITATION_AT + timedelta(weeks=3))
    before = len(smtp_server.messages)
    run_service(sender, clock)
    assert len(smtp_server.messages) == before
    with transaction(app.factory) as db:
        rows = db.execute(
            select(Message.recipient, Message.status).where(Message.step == "invitation-2")
        ).all()
        assert sorted(rows) == [("ana@example.org", "suppressed"), ("samira@example.org", "suppressed")]
        details = db.scalars(select(DeliveryEvent.detail).where(DeliveryEvent.kind == "suppressed")).all()
        assert details == ["suppressed", "suppressed"]

    # The English page too, for the record.
    phone.goto(url)
    assert "already unsubscribed" in phone.inner_text("main")
    screenshot(phone, "unsubscribe-en-already", request)


def test_rsvp_changes_who_gets_the_next_reminder(
    app: App,
    web: ThreadedServer,
    smtp_server: RunningServer,
    clock: VirtualClock,
    phone: Any,
    request: pytest.FixtureRequest,
) -> None:
    with transaction(app.factory) as db:
        add_contact(db, "yes@example.org", language="en")
        add_contact(db, "no@example.org", language="ar", time_zone="Africa/Cairo")
        add_contact(db, "silent@example.org", language="fr", time_zone="Africa/Dakar")
    sender = sending_app(app, smtp_server, web.url)
    clock.set(INVITATION_AT)
    run_service(sender, clock)
    received = _by_recipient(smtp_server)
    assert set(received) == {"yes@example.org", "no@example.org", "silent@example.org"}
    with transaction(app.factory) as db:
        pks = dict(
            db.execute(select(Message.recipient, Message.id).where(Message.step == "invitation")).all()
        )
    yes_url = rsvp_url(sender.settings, pks["yes@example.org"], "yes", "yes@example.org")
    no_url = rsvp_url(sender.settings, pks["no@example.org"], "no", "no@example.org")
    # The invitation carries the links: use them as a person would.
    assert yes_url in _html(received["yes@example.org"]) and no_url in _html(received["no@example.org"])

    clock.set(INVITATION_AT + timedelta(days=2))
    phone.goto(yes_url)
    assert "Register for this webinar?" in phone.inner_text("main")
    assert "July 13, 2021" in phone.inner_text(".when")
    screenshot(phone, "rsvp-en", request)
    phone.click("button[type=submit]")
    phone.wait_for_load_state()
    assert phone.inner_text("h1") == "You are registered"
    screenshot(phone, "rsvp-en-done", request)

    phone.goto(no_url)
    assert phone.locator("html").get_attribute("dir") == "rtl"
    screenshot(phone, "rsvp-ar", request)
    phone.click("button[type=submit]")
    phone.wait_for_load_state()
    assert phone.inner_text("h1") == "شكرًا لإبلاغنا"
    screenshot(phone, "rsvp-ar-done", request)
    with transaction(app.factory) as db:
        answers = dict(
            db.execute(
                select(Contact.email, Registration.status).join(
                    Registration, Registration.contact_id == Contact.id
                )
            ).all()
        )
    assert answers == {
        "yes@example.org": RegistrationStatus.REGISTERED,
        "no@example.org": RegistrationStatus.DECLINED,
    }

    # Three weeks on: the second invitation goes only to who has not answered.
    clock.set(INVITATION_AT + timedelta(weeks=3))
    before = len(smtp_server.messages)
    run_service(sender, clock)
    assert [m.rcpt_tos for m in smtp_server.messages[before:]] == [["silent@example.org"]]
    # A week before: the reminder goes only to the registrant.
    clock.set(REMINDER_1W_AT)
    before = len(smtp_server.messages)
    run_service(sender, clock)
    assert [m.rcpt_tos for m in smtp_server.messages[before:]] == [["yes@example.org"]]


def _seed_log(app: App) -> None:
    from mailer.store.models import EventKind
    from mailer.store.outbox import Outcome, claim_due, record_outcomes

    with transaction(app.factory) as db:
        add_contact(db, "ana@example.org", name="Ana Lima")
        add_contact(db, "bounced@example.org")
        add_contact(db, "fatima@example.org", language="ar", time_zone="Africa/Cairo", name="Fatima Al-Sayed")
        add_contact(db, "jean@example.org", language="fr", time_zone="Africa/Dakar", name="Jean Diallo")
    series = app.settings.series
    with transaction(app.factory) as db:
        queue_wave(db, app.settings, series.session("africa-2021"), series.step("invitation"), INVITATION_AT)
    with transaction(app.factory) as db:
        claimed, _ = claim_due(
            db, app.settings, INVITATION_AT, worker="t", limit=10, lease=timedelta(minutes=5)
        )
    replies = {
        "ana@example.org": (MessageStatus.FAILED, 554, "5.7.1 rejected by policy"),
        "bounced@example.org": (MessageStatus.BOUNCED, 550, "5.1.1 no such user"),
    }
    with transaction(app.factory) as db:
        record_outcomes(
            db,
            app.settings,
            [
                Outcome(
                    m.pk,
                    *replies.get(m.recipient.email, (MessageStatus.SENT, 250, "2.0.0 OK")),
                    language=m.recipient.language,
                )
                for m in claimed
            ],
            INVITATION_AT + timedelta(minutes=2),
        )
    with transaction(app.factory) as db:
        assert dict(db.execute(select(Message.recipient, Message.status)).all()) == {
            "ana@example.org": MessageStatus.FAILED,
            "bounced@example.org": MessageStatus.BOUNCED,
            "fatima@example.org": MessageStatus.SENT,
            "jean@example.org": MessageStatus.SENT,
        }
        assert db.scalar(select(func.count()).where(DeliveryEvent.kind == EventKind.SENT)) == 2


def test_staff_sign_in_filter_and_message_detail(
    app: App, web: ThreadedServer, accounts: dict[str, str], page: Any, request: pytest.FixtureRequest
) -> None:
    _seed_log(app)
    page.goto(f"{web.url}/staff/log")
    assert page.url.startswith(f"{web.url}/login?next=")
    screenshot(page, "login", request)
    page.fill("input[name=username]", "sam")
    page.fill("input[name=password]", "wrong password!")
    page.click("button[type=submit]")
    assert "Wrong username or password" in page.inner_text("main")
    page.fill("input[name=username]", "sam")
    page.fill("input[name=password]", "correct horse battery staple")
    page.click("button[type=submit]")
    page.wait_for_url(f"{web.url}/staff/log")
    assert "4 messages" in page.inner_text("#count")
    cookie = next(c for c in page.context.cookies() if c["name"] == "mailer_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
    screenshot(page, "log", request)

    page.select_option("select[name=status]", "failed")
    page.click("form.filters button[type=submit]")
    page.wait_for_load_state()
    assert "1 message" in page.inner_text("#count")
    assert page.locator("#log tbody tr").count() == 1 and "ana@example.org" in page.inner_text("#log")

    page.goto(f"{web.url}/staff/log")
    page.fill("input[name=q]", "fatima")
    page.press("input[name=q]", "Enter")
    page.wait_for_load_state()
    assert page.locator("#log tbody tr").count() == 1 and "fatima@example.org" in page.inner_text("#log")
    page.goto(f"{web.url}/staff/log?language=fr")
    assert "jean@example.org" in page.inner_text("#log") and page.locator("#log tbody tr").count() == 1

    page.goto(f"{web.url}/staff/log?status=failed")
    page.click("#log tbody a")
    page.wait_for_load_state()
    assert "5.7.1 rejected by policy" in page.inner_text("#events")
    assert "List-Unsubscribe" in page.inner_text("dl.headers")
    frame = page.frame_locator("iframe.mail")
    assert "Dear" in frame.locator("body").inner_text()
    screenshot(page, "message", request)
    page.click("text=Resend")
    page.wait_for_load_state()
    assert "Queued again" in page.inner_text("main")

    page.goto(f"{web.url}/staff/")
    assert page.locator("progress").count() >= 1
    screenshot(page, "overview", request)
    page.click("text=#1")
    page.wait_for_load_state()
    assert (
        "of 4 finished" in page.inner_text("#progress-text") and page.locator("svg.chart rect").count() >= 1
    )
    screenshot(page, "wave", request)
    assert page.locator("text=Cancel wave").count() == 0  # staff see progress, organisers steer


def test_csrf_refused_in_the_browser(
    app: App, web: ThreadedServer, accounts: dict[str, str], browser: Any
) -> None:
    _seed_log(app)
    with transaction(app.factory) as db:  # one message still pending: the wave is not done, it can be paused
        add_contact(db, "late@example.org")
        series = app.settings.series
        queue_wave(db, app.settings, series.session("africa-2021"), series.step("invitation"), INVITATION_AT)
    context = browser.new_context(bypass_csp=True)
    tab = context.new_page()
    try:
        sign_in_browser(tab, web, "olga", "/staff/waves/1")
        assert tab.url == f"{web.url}/staff/waves/1"
        tab.eval_on_selector("form[action$='/pause'] input[name=csrf_token]", "e => e.value = 'forged'")
        tab.click("text=Pause")
        tab.wait_for_load_state()
        assert "security token" in tab.inner_text("body")
        with transaction(app.factory) as db:
            assert db.get(Wave, 1).status == WaveStatus.ACTIVE  # type: ignore[union-attr]

        # Another site's page posting to us: no token (and, SameSite=Lax, no session cookie either).
        tab.set_content(
            f'<form method="post" action="{web.url}/organise/waves/1/cancel">'
            '<input name="confirm" value="yes"><button>go</button></form>'
        )
        tab.click("button")
        tab.wait_for_load_state()
        assert "Forbidden" in tab.inner_text("body")
        with transaction(app.factory) as db:
            assert db.get(Wave, 1).status == WaveStatus.ACTIVE  # type: ignore[union-attr]

        tab.goto(f"{web.url}/staff/waves/1")  # the real form still works
        tab.click("text=Pause")
        tab.wait_for_load_state()
        with transaction(app.factory) as db:
            assert db.get(Wave, 1).status == WaveStatus.PAUSED  # type: ignore[union-attr]
    finally:
        context.close()


def test_forged_links_are_refused(
    app: App, web: ThreadedServer, phone: Any, request: pytest.FixtureRequest
) -> None:
    with transaction(app.factory) as db:
        add_contact(db, "ana@example.org")
        add_contact(db, "other@example.org")
        series = app.settings.series
        queue_wave(db, app.settings, series.session("africa-2021"), series.step("invitation"), INVITATION_AT)
        first, second = db.scalars(select(Message.id).order_by(Message.id)).all()
    real = rsvp_url(app.settings, first, "yes", "ana@example.org").rsplit("/", 1)[1]
    body, signature = real.rsplit(".", 1)
    other = rsvp_url(app.settings, second, "yes", "other@example.org").rsplit("/", 1)[1].rsplit(".", 1)[0]
    for forged in (
        f"{other}.{signature}",
        f"{body}.{signature[:-1]}A" if signature[-1] != "A" else f"{body}.{signature[:-1]}B",
        "eyJ1IjoxfQ.bogus",
    ):
        response = phone.goto(f"{web.url}/rsvp/{forged}")
        assert response.status == 404
        assert phone.inner_text("h1") == "This link is not valid"
        phone.goto(f"{web.url}/u/{forged}")
        assert phone.inner_text("h1") == "This link is not valid"
    screenshot(phone, "bad-link-en", request)
    status = httpx.post(f"{web.url}/u/{other}.{signature}").status_code
    assert status == 404
    with transaction(app.factory) as db:
        assert db.scalar(select(func.count()).select_from(Suppression)) == 0
        assert db.scalar(select(func.count()).select_from(Registration)) == 0


def test_anonymous_visitors_are_sent_to_sign_in(
    app: App, web: ThreadedServer, accounts: dict[str, str], page: Any
) -> None:
    for path in (
        "/staff/",
        "/staff/log?status=failed",
        "/staff/messages/1",
        "/organise/sessions",
        "/organise/preview",
        "/organise/waves/new",
    ):
        page.goto(web.url + path)
        assert page.url.startswith(f"{web.url}/login?next="), path
        assert page.locator("input[name=password]").count() == 1
    page.fill("input[name=username]", "olga")
    page.fill("input[name=password]", "correct horse battery staple")
    page.click("button[type=submit]")
    page.wait_for_url(f"{web.url}/organise/waves/new")
    page.click("text=Sign out")
    page.wait_for_url(f"{web.url}/login")
    page.goto(f"{web.url}/staff/log")
    assert page.url.startswith(f"{web.url}/login?next=")


def test_organiser_pages(
    app: App,
    web: ThreadedServer,
    accounts: dict[str, str],
    page: Any,
    smtp_server: RunningServer,
    request: pytest.FixtureRequest,
) -> None:
    with transaction(app.factory) as db:
        add_contact(db, "ana@example.org")
        add_contact(db, "fatima@example.org", language="ar", time_zone="Africa/Cairo", name="Fatima Al-Sayed")
        add_contact(db, "jean@example.org", language="fr", time_zone="Africa/Dakar")
    sign_in_browser(page, web, "olga", "/organise/sessions")
    assert "Tue 13 Jul 2021 10:00 UTC-03:00" in page.inner_text("main")
    screenshot(page, "sessions", request)

    page.goto(f"{web.url}/organise/preview?session=africa-2021&step=invitation&contact=fatima@example.org")
    assert page.inner_text("#subject")
    assert page.frame_locator("iframe.mail").locator("html").get_attribute("dir") == "rtl"
    screenshot(page, "preview-ar", request)
    page.goto(f"{web.url}/organise/preview?session=africa-2021&step=reminder-1d&language=en")
    assert "language en" in page.inner_text("main")
    screenshot(page, "preview-en", request)

    page.goto(f"{web.url}/organise/waves/new")
    page.select_option("select[name=session]", "africa-2021")
    page.select_option("select[name=step]", "invitation")
    page.click("text=Show recipients")
    page.wait_for_load_state()
    assert page.inner_text("#new-count") == "3"
    assert "2021-06-01 14:00 UTC" in page.inner_text("#first-send")  # the step time (13:00) has passed: now
    languages = page.inner_text("#by-language")
    assert "ar" in languages and "fr" in languages and "en" in languages
    screenshot(page, "wave-confirm", request)
    page.click("text=Queue 3 messages")
    page.wait_for_load_state()
    assert re.search(r"/staff/waves/\d+$", page.url)
    page.click("text=Pause")
    page.wait_for_load_state()
    assert "paused" in page.inner_text("main")
    with transaction(app.factory) as db:
        wave = db.scalars(select(Wave)).one()
        assert wave.status == WaveStatus.PAUSED and wave.created_by == "web:olga"
    screenshot(page, "wave-paused", request)
