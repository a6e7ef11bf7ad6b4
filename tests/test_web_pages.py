"""The web pages over HTTP (httpx against the real uvicorn server): access rules, CSRF, waves, log, resend,
CSV, RSVP rules, List-Unsubscribe headers, and the server inside the service's event loop."""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import io
import re
import shutil
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select
from starlette.routing import Route

from mailer.app import App
from mailer.compose.links import read_token, rsvp_url, unsubscribe_url
from mailer.config import load_settings
from mailer.store.engine import transaction
from mailer.store.models import (
    Contact,
    ContactStatus,
    DeliveryEvent,
    Message,
    MessageStatus,
    Registration,
    RegistrationStatus,
    Wave,
    WaveStatus,
)
from mailer.store.outbox import Outcome, claim_due, queue_wave, record_outcomes, suppress
from mailer.timeline.clock import VirtualClock
from mailer.web.app import create_app
from mailer.web.server import ThreadedServer, start_in_loop
from mailer.web.users import set_password
from schedule import companions
from tests.conftest import RunningServer
from tests.factories import add_contact, add_contacts_in_bulk, register
from tests.test_web_support import (
    INVITATION_AT,
    PASSWORD,
    client,
    csrf_of,
    run_service,
    sending_app,
    signed_in,
    signing_secret,
)


def _protected_routes(app: App) -> list[tuple[str, str]]:
    routes = []
    for route in create_app(app).routes:
        if isinstance(route, Route) and route.path.startswith(("/staff", "/organise")):
            path = re.sub(r"\{(\w+)(:int)?\}", lambda m: "1" if m.group(2) else "pause", route.path)
            routes.extend((method, path) for method in sorted(route.methods or {"GET"}) if method != "HEAD")
    return routes


def test_every_staff_and_organiser_route_refuses_anonymous_access(app: App, web: ThreadedServer) -> None:
    routes = _protected_routes(app)
    assert len(routes) >= 15
    with client(web) as http:
        for method, path in routes:
            response = http.request(method, path, data={"session": "africa-2021", "step": "invitation"})
            if method == "GET":
                assert response.status_code == 303, path
                assert response.headers["location"].startswith("/login?next="), path
            else:
                assert response.status_code == 403, (method, path)
    with transaction(app.factory) as db:
        assert db.scalar(select(func.count(Wave.id))) == 0


def test_staff_role_cannot_use_organiser_pages(
    app: App, web: ThreadedServer, accounts: dict[str, str]
) -> None:
    with signed_in(web, "sam") as http:
        assert http.get("/staff/log").status_code == 200
        assert http.get("/organise/sessions").status_code == 403
        token = csrf_of(http.get("/staff/").text)
        response = http.post(
            "/organise/waves", data={"session": "africa-2021", "step": "invitation", "csrf_token": token}
        )
        assert response.status_code == 403


def test_csrf_token_missing_wrong_or_cross_origin_is_refused(
    app: App, web: ThreadedServer, accounts: dict[str, str]
) -> None:
    with transaction(app.factory) as db:
        add_contact(db, "ana@example.org")
    with signed_in(web, "olga") as http:
        token = csrf_of(http.get("/organise/waves/new").text)
        form = {"session": "africa-2021", "step": "invitation"}
        assert http.post("/organise/waves", data=form).status_code == 403
        assert http.post("/organise/waves", data={**form, "csrf_token": "x" * 43}).status_code == 403
        evil = http.post(
            "/organise/waves", data={**form, "csrf_token": token}, headers={"Origin": "http://evil.example"}
        )
        assert evil.status_code == 403
        assert http.post("/logout").status_code == 403  # even signing out needs the token
        with transaction(app.factory) as db:
            assert db.scalar(select(func.count(Wave.id))) == 0
        assert http.post("/organise/waves", data={**form, "csrf_token": token}).status_code == 303


def test_sign_in_is_throttled_and_a_password_change_signs_out(
    app: App, web: ThreadedServer, accounts: dict[str, str]
) -> None:
    with signed_in(web, "sam") as http:
        assert http.get("/staff/log").status_code == 200
        with transaction(app.factory) as db:
            set_password(db, "sam", "a brand new password")
        response = http.get("/staff/log")
        assert response.status_code == 303 and response.headers["location"].startswith("/login")
    with client(web) as other:
        token = csrf_of(other.get("/login").text)
        for _ in range(5):
            wrong = other.post("/login", data={"username": "olga", "password": "nope", "csrf_token": token})
            assert wrong.status_code == 401
        right = other.post("/login", data={"username": "olga", "password": PASSWORD, "csrf_token": token})
        assert right.status_code == 429


def _seed_list(app: App) -> list[int]:
    with transaction(app.factory) as db:
        ids = [
            add_contact(db, "ana@example.org", language="en").id,
            add_contact(db, "bea@example.org", language="en").id,
            add_contact(db, "chloe@example.org", language="fr", time_zone="Africa/Dakar").id,
            add_contact(db, "gone@example.org", language="ar", time_zone="Africa/Cairo").id,
        ]
        suppress(db, "gone@example.org", "unsubscribed", "test", INVITATION_AT)
    return ids


def test_organiser_queues_then_pauses_resumes_and_cancels_a_wave(
    app: App, web: ThreadedServer, accounts: dict[str, str]
) -> None:
    _seed_list(app)
    with signed_in(web, "olga") as http:
        confirm = http.get("/organise/waves/new", params={"session": "africa-2021", "step": "invitation"})
        assert confirm.status_code == 200
        page = confirm.text
        assert re.search(r'id="new-count">4<', page)
        languages = dict(re.findall(r"<tr><td>(\w+)</td><td class=\"num\">(\d+)</td></tr>", page))
        assert languages == {"en": "2", "fr": "1", "ar": "1"}
        assert "1 of them unsubscribed or bounced" in page
        assert "2021-06-01 13:00 UTC" in page  # first send: the step time, 10:00 GMT-3
        token = csrf_of(page)
        queued = http.post(
            "/organise/waves",
            data={"session": "africa-2021", "step": "invitation", "list": "", "at": "", "csrf_token": token},
        )
        assert queued.status_code == 303
        wave_id = int(queued.headers["location"].rsplit("/", 1)[1])
        with transaction(app.factory) as db:
            wave = db.get(Wave, wave_id)
            assert wave is not None and wave.created_by == "web:olga" and wave.status == WaveStatus.ACTIVE
            assert db.scalar(select(func.count(Message.id)).where(Message.wave_id == wave_id)) == 4
        wave_page = http.get(f"/staff/waves/{wave_id}").text
        assert "0 of 4 finished" in wave_page and "<progress" in wave_page
        for action, status in (("pause", WaveStatus.PAUSED), ("resume", WaveStatus.ACTIVE)):
            assert (
                http.post(f"/organise/waves/{wave_id}/{action}", data={"csrf_token": token}).status_code
                == 303
            )
            with transaction(app.factory) as db:
                assert db.get(Wave, wave_id).status == status  # type: ignore[union-attr]
        assert http.post(f"/organise/waves/{wave_id}/cancel", data={"csrf_token": token}).status_code == 400
        done = http.post(f"/organise/waves/{wave_id}/cancel", data={"csrf_token": token, "confirm": "yes"})
        assert done.status_code == 303
        assert http.post(f"/organise/waves/{wave_id}/resume", data={"csrf_token": token}).status_code == 409
    with transaction(app.factory) as db:
        statuses = set(db.scalars(select(Message.status).where(Message.wave_id == wave_id)))
    assert statuses == {MessageStatus.SKIPPED}


def test_sessions_page_shows_times_in_session_zone_and_utc_and_audience_sizes(
    app: App, web: ThreadedServer, accounts: dict[str, str]
) -> None:
    _seed_list(app)
    with signed_in(web, "olga") as http:
        page = http.get("/organise/sessions").text
    assert "Tue 13 Jul 2021 10:00 UTC-03:00</strong>" in page and "2021-07-13 13:00 UTC" in page
    assert "(-03:00) UTC-03:00" not in page  # the offset zone's offset is written once
    africa = page.split("<section")[1]  # the first session: africa-2021
    invitation = africa.split("<tr>")[2]  # its first step row
    assert "invitation" in invitation and "Tue 01 Jun 2021 10:00 (-03:00)" in invitation
    assert (
        "2021-06-01 13:00 UTC" in invitation and '<td class="num">4</td>' in invitation
    )  # suppressed included
    assert "not queued" in invitation


def test_queuing_past_the_deadline_is_a_warning_with_a_confirm(
    app: App, web: ThreadedServer, accounts: dict[str, str], clock: VirtualClock
) -> None:
    _seed_list(app)
    clock.set(INVITATION_AT + timedelta(days=3, minutes=1))  # the invitation's deadline was 3 days after it
    with signed_in(web, "olga") as http:
        page = http.get("/organise/waves/new?session=africa-2021&step=invitation").text
        assert (
            '<p class="error" role="alert" id="late">Every one of these 4 messages is past its deadline:'
            " queued now, they would be logged as skipped, not sent."
        ) in page
        assert 'name="confirm" value="yes" required> Queue anyway: 4 will be skipped' in page
        assert "Queue 4 messages anyway</button>" in page
        data = {
            "session": "africa-2021",
            "step": "invitation",
            "list": "",
            "at": "",
            "csrf_token": csrf_of(page),
        }
        refused = http.post("/organise/waves", data=data)
        assert refused.status_code == 400 and "tick 'Queue anyway' to queue them as skipped" in refused.text
        with transaction(app.factory) as db:
            assert db.scalar(select(func.count(Wave.id))) == 0
        assert http.post("/organise/waves", data={**data, "confirm": "yes"}).status_code == 303
        with transaction(app.factory) as db:
            assert set(db.scalars(select(Message.status))) == {MessageStatus.SKIPPED}
        in_time = http.get("/organise/waves/new?session=africa-2021&step=invitation-2").text
        assert 'id="late"' not in in_time and "anyway" not in in_time


def test_the_log_sorts_by_column_and_numbers_its_pages(
    app: App, web: ThreadedServer, accounts: dict[str, str]
) -> None:
    with transaction(app.factory) as db:
        add_contacts_in_bulk(db, 118)
        add_contact(db, "aaron@example.org")
        add_contact(db, "zoe@example.org")
        series = app.settings.series
        queue_wave(db, app.settings, series.session("africa-2021"), series.step("invitation"), INVITATION_AT)
    with signed_in(web, "olga") as http:
        first = http.get("/staff/log?sort=recipient").text
        assert "120 messages · page 1 of 3" in first
        recipients = re.findall(r'<a href="/staff/messages/\d+">([^<]+)</a>', first)
        assert (recipients[0], len(recipients)) == ("aaron@example.org", 50)
        assert '<th aria-sort="ascending"><a href="/staff/log?sort=-recipient">Recipient' in first
        assert '<a href="/staff/log?sort=session">Session</a>' in first
        assert '<a href="/staff/log?sort=recipient&amp;page=2" aria-label="Page 2">2</a>' in first
        assert '<a href="/staff/log?sort=recipient&amp;page=1" aria-current="page">1</a>' in first
        last = http.get("/staff/log?sort=-recipient&page=3").text
        assert re.findall(r'<a href="/staff/messages/\d+">([^<]+)</a>', last)[-1] == "aaron@example.org"
        top = http.get("/staff/log?sort=-recipient").text
        assert re.findall(r'<a href="/staff/messages/\d+">([^<]+)</a>', top)[0] == "zoe@example.org"
        assert "page 3 of 3" in last and 'rel="next"' not in last and 'rel="prev"' in last
        default = http.get("/staff/log").text
        assert '<th aria-sort="descending"><a href="/staff/log?sort=updated">Updated' in default
        assert http.get("/staff/log?sort=nonsense&page=99999999").status_code == 200


def test_a_finished_wave_shows_done_and_when_its_step_went(
    app: App, web: ThreadedServer, accounts: dict[str, str]
) -> None:
    with transaction(app.factory) as db:
        for address in ("ana@example.org", "bea@example.org", "bad@example.org"):
            add_contact(db, address)
    wave_id = _deliver_with_outcomes(
        app, {"bad@example.org": (MessageStatus.FAILED, 550, "5.1.1 no such user")}
    )
    with signed_in(web, "olga") as http:
        page = http.get("/organise/sessions").text
        invitation = page.split("<section")[1].split("<tr>")[2]
        assert '<span class="status done">done</span>' in invitation
        assert '<span class="sent-span">sent 2021-06-01 13:01 UTC</span>' in invitation
        assert "too late" not in invitation
        wave_page = http.get(f"/staff/waves/{wave_id}").text
        assert '<span class="status done">done</span>' in wave_page
        assert "nothing left to pause or cancel" in wave_page
        assert "/pause" not in wave_page and "/cancel" not in wave_page
        token = csrf_of(wave_page)
        refused = http.post(f"/organise/waves/{wave_id}/pause", data={"csrf_token": token})
        assert refused.status_code == 409
        assert "wave 1 is done: 3 messages, none pending; nothing to pause" in refused.text
        overview = http.get("/staff/").text
        assert '<span class="status done">done</span>' in overview
        assert "africa-2021 · Tue 13 Jul 2021 10:00 UTC-03:00 · 2021-07-13 13:00 UTC" in overview
    with transaction(app.factory) as db:
        assert db.get(Wave, wave_id).status == WaveStatus.ACTIVE  # type: ignore[union-attr]


def test_a_wave_that_reaches_nobody_is_done_cannot_be_paused_and_takes_contacts_queued_later(
    app: App, web: ThreadedServer, accounts: dict[str, str]
) -> None:
    series = app.settings.series
    session, step = series.session("africa-2021"), series.step("invitation")
    with transaction(app.factory) as db:  # the africa list is empty
        empty = queue_wave(db, app.settings, session, step, INVITATION_AT)
        wave_id = empty.wave.id
    assert (empty.created, empty.added) == (True, 0)
    with signed_in(web, "olga") as http:
        wave_page = http.get(f"/staff/waves/{wave_id}").text
        assert '<span class="status done">done</span>' in wave_page
        assert (
            '<p class="small muted" id="done-note">This wave reaches nobody: its list had no one to send to, so'
            " there is nothing to pause or cancel. Queuing the step again once the list has contacts adds them"
            " to this wave.</p>"
        ) in wave_page
        assert "/pause" not in wave_page and "/cancel" not in wave_page
        refused = http.post(f"/organise/waves/{wave_id}/pause", data={"csrf_token": csrf_of(wave_page)})
        assert refused.status_code == 409
        assert (
            f"wave {wave_id} is done: it reaches nobody (0 messages; its list had no one to send to); nothing"
            " to pause. Queuing the step again once the list has contacts adds them to this wave"
        ) in refused.text.replace("&#39;", "'")
    with transaction(app.factory) as db:
        add_contact(db, "ana@example.org")
        later = queue_wave(db, app.settings, session, step, INVITATION_AT)
    assert (later.wave.id, later.created, later.added, later.wave.status) == (
        wave_id,
        False,
        1,
        WaveStatus.ACTIVE,
    )
    with signed_in(web, "olga") as http:
        assert '<span class="status active">active</span>' in http.get(f"/staff/waves/{wave_id}").text


def _deliver_with_outcomes(app: App, outcomes: dict[str, tuple[MessageStatus, int, str]]) -> int:
    series = app.settings.series
    with transaction(app.factory) as db:
        result = queue_wave(
            db, app.settings, series.session("africa-2021"), series.step("invitation"), INVITATION_AT
        )
    with transaction(app.factory) as db:
        claimed, _ = claim_due(
            db, app.settings, INVITATION_AT, worker="t", limit=100, lease=timedelta(minutes=5)
        )
    with transaction(app.factory) as db:
        record_outcomes(
            db,
            app.settings,
            [
                Outcome(
                    m.pk,
                    *outcomes.get(m.recipient.email, (MessageStatus.SENT, 250, "2.0.0 OK")),
                    language="en",
                )
                for m in claimed
            ],
            INVITATION_AT + timedelta(minutes=1),
        )
    return result.wave.id


def test_log_filters_message_detail_resend_and_csv(
    app: App, web: ThreadedServer, accounts: dict[str, str], smtp_server: RunningServer, clock: VirtualClock
) -> None:
    with transaction(app.factory) as db:
        add_contact(db, "ana@example.org", name="Ana Lima")
        add_contact(db, "formula@example.org", name='=HYPERLINK("http://evil","x")')
        add_contact(db, "bounce@example.org")
        for i in range(52):
            add_contact(db, f"p{i:02d}@example.org")
    wave_id = _deliver_with_outcomes(
        app,
        {
            "ana@example.org": (MessageStatus.FAILED, 554, "5.7.1 rejected by policy"),
            "bounce@example.org": (MessageStatus.BOUNCED, 550, "5.1.1 no such user"),
        },
    )
    with signed_in(web, "sam") as http:
        everything = http.get("/staff/log").text
        assert "55 messages" in everything and "page 1 of 2" in everything
        second = http.get("/staff/log", params={"page": 2}).text
        assert "page 2 of 2" in second and second.count('href="/staff/messages/') == 5
        failed = http.get("/staff/log", params={"status": "failed"}).text
        assert "1 message " in failed and "ana@example.org" in failed and "bounce@" not in failed
        assert "1 message " in http.get("/staff/log", params={"q": "no such user"}).text
        assert "1 message " in http.get("/staff/log", params={"q": "ana lima"}).text
        assert "55 messages" in http.get("/staff/log", params={"region": "africa", "language": "en"}).text
        assert "0 messages" in http.get("/staff/log", params={"region": "caribbean"}).text
        assert "55 messages" in http.get("/staff/log", params={"wave": wave_id}).text
        with transaction(app.factory) as db:
            pk = db.scalar(select(Message.id).where(Message.recipient == "ana@example.org"))
        detail = http.get(f"/staff/messages/{pk}").text
        assert "554" in detail and "5.7.1 rejected by policy" in detail
        assert "List-Unsubscribe" in detail and "Message-ID" in detail and "Resend" in detail
        frame = http.get(f"/staff/messages/{pk}/html")
        assert "sandbox" in frame.headers["content-security-policy"] and "<html" in frame.text

        exported = http.get("/staff/log.csv", params={"status": "failed"})
        assert exported.headers["content-type"].startswith("text/csv")
        rows = list(csv.reader(io.StringIO(exported.content.decode("utf-8-sig"))))
        assert rows[0][:3] == ["message", "recipient", "name"] and len(rows) == 2
        all_rows = list(csv.reader(io.StringIO(http.get("/staff/log.csv").content.decode("utf-8-sig"))))
        names = {row[1]: row[2] for row in all_rows[1:]}
        assert names["formula@example.org"] == '\'=HYPERLINK("http://evil","x")'
        assert len(all_rows) == 56

        token = csrf_of(detail)
        assert http.post(f"/staff/messages/{pk}/resend", data={"csrf_token": token}).status_code == 303
        assert http.post(f"/staff/messages/{pk}/resend", data={"csrf_token": token}).status_code == 409
    with transaction(app.factory) as db:
        message = db.get(Message, pk)
        assert message is not None and message.status == MessageStatus.QUEUED
        last = db.scalars(
            select(DeliveryEvent).where(DeliveryEvent.message_pk == pk).order_by(DeliveryEvent.id.desc())
        ).first()
        assert last is not None and last.detail == "resend requested by sam on the dashboard"
    clock.set(INVITATION_AT + timedelta(hours=2))
    run_service(sending_app(app, smtp_server, web.url), clock)
    assert [m.rcpt_tos for m in smtp_server.messages] == [["ana@example.org"]]
    with transaction(app.factory) as db:
        assert db.get(Message, pk).status == MessageStatus.SENT  # type: ignore[union-attr]


def test_list_unsubscribe_carries_the_https_link_and_one_click_post(
    app: App, smtp_server: RunningServer, clock: VirtualClock
) -> None:
    with transaction(app.factory) as db:
        add_contact(db, "ana@example.org")
    sender = sending_app(app, smtp_server, "https://mailer.example.org")
    with transaction(app.factory) as db:
        queue_wave(
            db,
            sender.settings,
            sender.settings.series.session("africa-2021"),
            sender.settings.series.step("invitation"),
            INVITATION_AT,
        )
    run_service(sender, clock)
    (received,) = smtp_server.messages
    email = received.parsed()
    header = " ".join(str(email["List-Unsubscribe"]).split())
    urls = re.findall(r"<([^>]+)>", header)
    https = [url for url in urls if url.startswith("https://mailer.example.org/u/")]
    assert len(https) == 1 and any(url.startswith("mailto:") for url in urls)
    assert email["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    with transaction(app.factory) as db:
        pk = db.scalar(select(Message.id))
    assert read_token(sender.settings, https[0].rsplit("/", 1)[1]).message_pk == pk
    html = email.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert https[0] in html  # the footer link is the same personal URL
    assert rsvp_url(sender.settings, pk, "yes", "ana@example.org") in html
    assert rsvp_url(sender.settings, pk, "no", "ana@example.org") in html


def _message_for(app: App, email: str, session_id: str = "africa-2021") -> int:
    with transaction(app.factory) as db:
        contact = db.scalar(select(Contact).where(Contact.email_key == email))
        assert contact is not None
        series = app.settings.series
        queue_wave(db, app.settings, series.session(session_id), series.step("invitation"), INVITATION_AT)
        pk = db.scalar(select(Message.id).where(Message.contact_id == contact.id))
        assert pk is not None
        return pk


def test_rsvp_rules_denied_stays_closed_sessions_refuse_get_changes_nothing(
    app: App, web: ThreadedServer, clock: VirtualClock
) -> None:
    with transaction(app.factory) as db:
        ana = add_contact(db, "ana@example.org", language="es")
        denied = add_contact(db, "denied@example.org")
        register(db, denied, "africa-2021", RegistrationStatus.DENIED)
        ana_id = ana.id
    pk = _message_for(app, "ana@example.org")
    denied_pk = _message_for(app, "denied@example.org")
    settings = app.settings
    with client(web) as http:
        path = "/" + rsvp_url(settings, pk, "yes", "ana@example.org").split("/", 3)[3]
        page = http.get(path)
        assert page.status_code == 200 and 'lang="es"' in page.text and "Asistiré" in page.text
        with transaction(app.factory) as db:
            assert (
                db.scalar(select(func.count(Registration.id)).where(Registration.contact_id == ana_id)) == 0
            )
        done = http.post(path)
        assert done.status_code == 200 and "Está inscrito" in done.text and "No podré asistir" in done.text
        with transaction(app.factory) as db:
            status = db.scalar(select(Registration.status).where(Registration.contact_id == ana_id))
        assert status == RegistrationStatus.REGISTERED
        denied_path = "/" + rsvp_url(settings, denied_pk, "yes", "denied@example.org").split("/", 3)[3]
        assert "with the organisers" in http.post(denied_path).text
        with transaction(app.factory) as db:
            assert (
                db.scalar(select(Registration.status).where(Registration.contact_id == denied.id)) == "denied"
            )
        clock.set(settings.series.session("africa-2021").start + timedelta(minutes=1))
        no_path = "/" + rsvp_url(settings, pk, "no", "ana@example.org").split("/", 3)[3]
        late = http.post(no_path)
        assert late.status_code == 200 and "ya ha tenido lugar" in late.text
        with transaction(app.factory) as db:
            assert (
                db.scalar(select(Registration.status).where(Registration.contact_id == ana_id))
                == "registered"
            )
        wrong_kind = "/rsvp/" + unsubscribe_url(settings, pk, "ana@example.org").rsplit("/", 1)[1]
        assert http.post(wrong_kind).status_code == 404


def test_rsvp_link_opened_again_knows_the_answer(app: App, web: ThreadedServer) -> None:
    with transaction(app.factory) as db:
        ana_id = add_contact(db, "ana@example.org", language="es").id
        denied = add_contact(db, "denied@example.org")
        register(db, denied, "africa-2021", RegistrationStatus.DENIED)
    pk = _message_for(app, "ana@example.org")
    denied_pk = _message_for(app, "denied@example.org")
    settings = app.settings

    def path(message_pk: int, answer: str, email: str) -> str:
        return "/" + rsvp_url(settings, message_pk, answer, email).split("/", 3)[3]

    with client(web) as http:
        yes, no = path(pk, "yes", "ana@example.org"), path(pk, "no", "ana@example.org")
        assert "¿Inscribirse en este webinario?" in http.get(yes).text
        http.post(yes)
        again = http.get(yes)  # re-opened from the mail: no question, the answer as recorded
        assert again.status_code == 200
        assert "<h1>Está inscrito</h1>" in again.text and "¿Inscribirse en este webinario?" not in again.text
        assert "¿Finalmente no puede asistir?" in again.text  # and the way to change it
        other = http.get(no)  # the other answer still asks first
        assert "¿Informar a los organizadores de que no podrá asistir" in other.text
        http.post(no)
        assert "<h1>Gracias por avisarnos</h1>" in http.get(no).text
        assert "¿Inscribirse en este webinario?" in http.get(yes).text
        denied_page = http.get(path(denied_pk, "yes", "denied@example.org")).text
        assert "with the organisers" in denied_page and 'type="submit"' not in denied_page
    with transaction(app.factory) as db:
        assert db.scalar(select(Registration.status).where(Registration.contact_id == ana_id)) == "declined"
        assert db.scalar(select(Registration.status).where(Registration.contact_id == denied.id)) == "denied"


def test_unsubscribe_page_get_changes_nothing_post_suppresses(app: App, web: ThreadedServer) -> None:
    with transaction(app.factory) as db:
        contact_id = add_contact(db, "ana@example.org", language="fr").id
    pk = _message_for(app, "ana@example.org")
    path = "/u/" + unsubscribe_url(app.settings, pk, "ana@example.org").rsplit("/", 1)[1]
    with client(web) as http:
        page = http.get(path)
        assert page.status_code == 200 and "Me désabonner" in page.text and 'lang="fr"' in page.text
        assert (
            page.headers["referrer-policy"] == "no-referrer"
            and "frame-ancestors 'none'" in page.headers["content-security-policy"]
        )
        with transaction(app.factory) as db:
            assert db.get(Contact, contact_id).status == ContactStatus.ACTIVE  # type: ignore[union-attr]
        done = http.post(
            path,
            content=b"List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert done.status_code == 200 and "désabonné" in done.text
        again = http.post(path)
        assert again.status_code == 200 and "déjà" in again.text
        forged = http.post(path[:-3] + ("AAA" if not path.endswith("AAA") else "BBB"))
        assert forged.status_code == 404
    with transaction(app.factory) as db:
        assert db.get(Contact, contact_id).status == ContactStatus.UNSUBSCRIBED  # type: ignore[union-attr]


def test_web_pages_run_inside_the_services_event_loop(app: App) -> None:
    settings = dataclasses.replace(
        app.settings, web=dataclasses.replace(app.settings.web, port=0, enabled=True)
    )
    embedded = App(settings, app.engine, app.factory)
    said: list[str] = []

    async def scenario() -> None:
        stop = await start_in_loop(embedded, said.append)
        url = re.search(r"http://[\d.]+:\d+/", said[0]).group(0)  # type: ignore[union-attr]
        async with httpx.AsyncClient() as http:
            assert (await http.get(url + "healthz")).text == "ok"
            assert (await http.get(url + "staff/")).status_code == 303
        await stop()

    asyncio.run(scenario())
    assert said and "web pages on http://127.0.0.1:" in said[0]


def test_the_service_serves_the_pages_when_web_is_enabled(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parent.parent
    config = tmp_path / "config"
    shutil.copytree(root / "config", config)
    shutil.copytree(root / "templates", tmp_path / "templates")
    toml = config / "mailer.toml"
    text = toml.read_text(encoding="utf-8")
    web_table = text.index("[web]")
    toml.write_text(
        text[:web_table]
        + text[web_table:]
        .replace("enabled = false", "enabled = true", 1)
        .replace("port = 8080", "port = 0", 1),
        encoding="utf-8",
    )
    assert companions(load_settings(config)) == [start_in_loop]
    assert companions(load_settings(root / "config")) == []  # [web] enabled = false: the service alone

    out = tmp_path / "service.log"
    with out.open("wb") as log:
        service = subprocess.Popen(
            [sys.executable, str(root / "schedule.py"), "--config", str(config)],
            cwd=tmp_path,
            env={"PATH": "/usr/bin:/bin", "DATABASE_URL": f"sqlite:///{tmp_path / 'store.db'}"},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 60
            while not (found := re.search(r"web pages on (http://127\.0\.0\.1:\d+/)", out.read_text())):
                assert service.poll() is None, out.read_text()
                assert time.monotonic() < deadline, out.read_text()
                time.sleep(0.1)
            assert httpx.get(found.group(1) + "healthz").text == "ok"
            service.send_signal(signal.SIGTERM)
            assert service.wait(30) == 0, out.read_text()
        finally:
            if service.poll() is None:
                service.kill()
                service.wait(10)
    said = out.read_text()
    assert said.index("web pages on") < said.index("service started") < said.index("stopped")


@pytest.mark.parametrize("path", ["/u/", "/rsvp/"])
def test_a_link_for_a_message_that_does_not_exist_is_not_valid(
    app: App, web: ThreadedServer, path: str
) -> None:
    url = (
        unsubscribe_url(app.settings, 99999, "ana@example.org")
        if path == "/u/"
        else rsvp_url(app.settings, 99999, "yes", "ana@example.org")
    )
    with client(web) as http:
        response = http.get("/" + url.split("/", 3)[3])
    assert response.status_code == 404 and "not valid" in response.text


def test_threaded_server_serves_static_files(app: App, web: ThreadedServer) -> None:
    with client(web) as http:
        css = http.get("/static/web.css")
    assert css.status_code == 200 and "--brand" in css.text
    assert css.headers["content-type"].split(";")[0] == "text/css"
    with client(web) as http:
        assert http.get("/static/no-such-file.css").status_code == 404


def test_organiser_previews_and_sends_a_test_to_themself(
    app: App, accounts: dict[str, str], clock: VirtualClock, smtp_server: RunningServer
) -> None:
    with transaction(app.factory) as db:
        add_contact(db, "fatima@example.org", language="ar", time_zone="Africa/Cairo", name="Fatima Al-Sayed")
    with (
        ThreadedServer(sending_app(app, smtp_server, "http://127.0.0.1:9"), clock=clock) as server,
        signed_in(server, "olga") as http,
    ):
        query = {"session": "africa-2021", "step": "reminder-1d", "contact": "fatima@example.org"}
        preview = http.get("/organise/preview", params=query)
        assert preview.status_code == 200 and "language ar" in preview.text
        assert 'dir="rtl"' in http.get("/organise/preview/html", params=query).text
        missing = http.get("/organise/preview", params={**query, "contact": "nobody@example.org"})
        assert "no contact with the address nobody@example.org" in missing.text
        sent = http.post(
            "/organise/preview/send",
            data={**query, "language": "en", "csrf_token": csrf_of(preview.text)},
        )
        assert sent.status_code == 303 and "test+sent+to+olga%40example.org" in sent.headers["location"]
        assert "test sent to olga@example.org" in http.get(sent.headers["location"]).text
    (received,) = smtp_server.messages
    assert received.rcpt_tos == ["olga@example.org"]
    email = received.parsed()
    assert str(email["Subject"]).startswith("[TEST] ") and email["Content-Language"] == "ar"
    with transaction(app.factory) as db:
        assert db.scalar(select(func.count(Message.id))) == 0  # a test is not an outbox message


def test_users_cli_adds_lists_and_changes_accounts(app: App) -> None:
    from click.testing import CliRunner

    from mailer.cli import cli
    from tests.conftest import ROOT

    base = ["--config", str(ROOT / "config"), "--database-url", app.settings.database_url, "users"]
    runner = CliRunner()
    added = runner.invoke(
        cli,
        [*base, "add", "olga", "--role", "organiser", "--email", "olga@example.org", "--password-stdin"],
        input="correct horse battery\n",
    )
    assert added.exit_code == 0, added.output
    short = runner.invoke(cli, [*base, "add", "bob", "--password-stdin"], input="short\n")
    assert short.exit_code != 0 and "too short" in short.output
    again = runner.invoke(cli, [*base, "add", "olga", "--password-stdin"], input="correct horse battery\n")
    assert again.exit_code != 0 and "exists" in again.output
    assert runner.invoke(cli, [*base, "set", "olga", "--disabled"]).exit_code == 0
    listed = runner.invoke(cli, [*base, "list"])
    assert "olga" in listed.output and "organiser" in listed.output and "no" in listed.output
    from mailer.store.models import StaffUser

    with transaction(app.factory) as db:
        user = db.scalar(select(StaffUser).where(StaffUser.username == "olga"))
        assert user is not None and user.password_hash.startswith("$argon2id$") and not user.active


def test_session_cookie_is_secure_behind_https(app: App, clock: VirtualClock) -> None:
    settings = dataclasses.replace(
        app.settings, web=dataclasses.replace(app.settings.web, base_url="https://mailer.example.org")
    )
    with (
        ThreadedServer(App(settings, app.engine, app.factory), clock=clock) as server,
        client(server) as http,
    ):
        cookie = http.get("/login").headers["set-cookie"].lower()
    assert (
        "mailer_session=" in cookie
        and "secure" in cookie
        and "httponly" in cookie
        and "samesite=lax" in cookie
    )


def test_sessions_are_offered_by_title_and_the_sign_in_page_has_no_command_line(
    app: App, web: ThreadedServer, accounts: dict[str, str]
) -> None:
    with client(web) as http:
        login = http.get("/login").text
    assert "mailer users add" not in login and "<code>" not in login
    assert "No account yet? Ask the person who runs the mailer." in login
    option = (
        '<option value="latin-america-2022">Parliamentary webinar on the Budapest Convention on Cybercrime:'
        " Latin America (2022-03-07)</option>"
    )
    with signed_in(web, "olga") as http:
        for path in ("/staff/log", "/organise/waves/new", "/organise/preview", "/organise/imports"):
            assert option in http.get(path).text, path
