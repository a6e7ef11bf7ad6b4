"""Organisers import from the browser (checked, confirmed, undone); staff find a contact (issue 14, items 1, 2, 6)."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from mailer.app import App
from mailer.store.engine import transaction
from mailer.store.models import Contact, ImportRecord, ListMembership, Registration, Suppression
from mailer.store.outbox import suppress
from mailer.web import imports as web_imports
from mailer.web.server import ThreadedServer
from tests.conftest import CONTACTS_DIR
from tests.factories import add_contact, register
from tests.test_web_support import INVITATION_AT, check_upload, csrf_of, signed_in

MANIFEST: dict[str, Any] = json.loads((CONTACTS_DIR / "manifest.json").read_text(encoding="utf-8"))


def count(app: App, model: Any) -> int:
    with transaction(app.factory) as db:
        return int(db.scalar(select(func.count()).select_from(model)) or 0)


def hidden(html: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert match, f"no {name} field"
    return match.group(1)


def _send_upload(
    http: httpx.Client, action: str, token: str, page: str, form: dict[str, str]
) -> httpx.Response:
    """POST to /organise/imports/``action`` (check or confirm) the upload held by the form on ``page``, with
    the ``form``'s fields (kind, target, name, force)."""
    return http.post(
        f"/organise/imports/{action}", data={"csrf_token": token, **form, "upload": hidden(page, "upload")}
    )


def _check_africa_report_for_latin_america(http: httpx.Client, token: str) -> httpx.Response:
    """The African session's registration report checked for the Latin American session (a mismatch)."""
    report = CONTACTS_DIR / "registrations-africa.csv"
    return check_upload(http, token, "registrations", "latin-america-2022", report.name, report.read_bytes())


def test_a_report_for_another_session_is_refused_then_forced_confirmed_and_undone(
    app: App, web: ThreadedServer, accounts: dict[str, str]
) -> None:
    with signed_in(web, "olga") as http:
        token = csrf_of(http.get("/organise/imports").text)
        form = {
            "kind": "registrations",
            "target": "latin-america-2022",
            "name": "registrations-africa.csv",
            "force": "yes",
        }
        refused = _check_africa_report_for_latin_america(http, token)
        assert refused.status_code == 422
        assert "the report&#39;s date 2021-07-13 is not the session&#39;s 2022-03-07" in refused.text
        assert "Budapest Convention webinar: African Region" in refused.text
        assert (
            "Nothing was imported: import it into the right session, or confirm that it belongs here (tick"
            " &#39;This report belongs to latin-america-2022 all the same&#39; when checking the file)</p>"
        ) in refused.text
        assert "--force" not in refused.text
        assert count(app, Registration) == 0

        forced = _send_upload(http, "check", token, refused.text, form)
        assert forced.status_code == 200, forced.text
        expected = MANIFEST["africa.csv"]["registrations"]
        assert f'<th>Registered</th><td class="num">{expected["expected_registered"]}<' in forced.text
        assert count(app, Registration) == 0  # a check stores nothing

        confirmed = _send_upload(http, "confirm", token, forced.text, form)
        assert confirmed.status_code == 303
        page = confirmed.headers["location"]
        import_id = int(page.rsplit("/", 1)[1])
        with transaction(app.factory) as db:
            record = db.get(ImportRecord, import_id)
            assert record is not None
            assert (record.imported_by, record.file_name, record.forced) == (
                "web:olga",
                "registrations-africa.csv",
                True,
            )
        created = expected["expected_registered"] + expected["expected_denied_not_registered"]
        assert count(app, Registration) == created
        assert "imported although its title or date did not match" in http.get(page).text

        assert http.post(f"{page}/undo", data={"csrf_token": token}).status_code == 400
        undone = http.post(f"{page}/undo", data={"csrf_token": token, "confirm": "yes"})
        assert undone.status_code == 303
        assert f"{created} registrations withdrawn" in http.get(undone.headers["location"]).text
        assert count(app, Registration) == 0
        assert count(app, Contact) == 0
        assert http.post(f"{page}/undo", data={"csrf_token": token, "confirm": "yes"}).status_code == 409


@pytest.mark.parametrize(
    ("kind", "target", "content", "error"),
    [
        ("contacts", "africa", b"foo,bar\n1,2\n", "members.csv: no header row with an email column found"),
        (
            "contacts",
            "africa",
            b"email\nann@example.org\n\x81\x8d\n",
            "members.csv: cannot decode the file as utf-8 or cp1252: save it as UTF-8 and retry",
        ),
        (
            "registrations",
            "africa-2021",
            b"Email,Name\nann@example.org,Ann\n",
            "members.csv: no Approval Status column in the header at line 1 (Email, Name)",
        ),
    ],
    ids=["no-header", "undecodable", "no-approval"],
)
def test_a_refused_file_is_named_as_the_organiser_named_it(
    app: App,
    web: ThreadedServer,
    accounts: dict[str, str],
    kind: str,
    target: str,
    content: bytes,
    error: str,
) -> None:
    with signed_in(web, "olga") as http:
        token = csrf_of(http.get("/organise/imports").text)
        refused = check_upload(http, token, kind, target, "members.csv", content)
    assert refused.status_code == 422
    assert error in refused.text  # not the random name the upload is stored under


def test_a_contacts_spreadsheet_shows_the_cli_report_and_its_rejects(
    app: App, web: ThreadedServer, accounts: dict[str, str]
) -> None:
    expected = MANIFEST["latin-america.csv"]
    with signed_in(web, "olga") as http:
        token = csrf_of(http.get("/organise/imports").text)
        form = {"kind": "contacts", "target": "latin-america", "name": "latin-america.csv"}
        checked = check_upload(
            http,
            token,
            "contacts",
            "latin-america",
            "latin-america.csv",
            (CONTACTS_DIR / "latin-america.csv").read_bytes(),
        )
        assert checked.status_code == 200, checked.text
        accepted = expected["expected_contacts"]
        assert (
            f'<p id="outcome">{accepted} rows accepted: {accepted} new, 0 updated, 0 unchanged;'
            f" {accepted} added to the list</p>"
        ) in checked.text
        rejected_lines = [
            int(line) for line in re.findall(r'<tr><td class="num">(\d+)</td><td>', checked.text)
        ]
        assert rejected_lines[: expected["expected_rejected"]] == sorted(
            d["line"] for d in expected["defects"] if d["expected"] == "rejected"
        )
        rejects = http.get(re.findall(r'href="(/organise/imports/rejects/[^"]+)"', checked.text)[0])
        assert rejects.status_code == 200
        assert len(rejects.text.splitlines()) == 1 + expected["expected_rejected"]
        assert count(app, Contact) == 0
        confirmed = _send_upload(http, "confirm", token, checked.text, form)
        assert confirmed.status_code == 303
        assert count(app, ListMembership) == expected["expected_contacts"]
        # the same file checked again: every row accepted, none imported anew, and the page says so
        again = check_upload(
            http,
            token,
            "contacts",
            "latin-america",
            "latin-america.csv",
            (CONTACTS_DIR / "latin-america.csv").read_bytes(),
        )
        assert (
            f'<p id="outcome">{accepted} rows accepted: 0 new, 0 updated, {accepted} unchanged;'
            " 0 added to the list</p>"
        ) in again.text
        assert "Imported" not in again.text
        listing = http.get("/organise/imports").text
        assert "latin-america.csv" in listing and "web:olga" in listing
        # a forged or stale upload token is a 404, a wrong kind a 400, never a 500
        stale = {"csrf_token": token, "kind": "contacts", "target": "latin-america", "upload": "x" * 24}
        assert http.post("/organise/imports/confirm", data=stale).status_code == 404
        assert http.post("/organise/imports/check", data={**stale, "kind": "nope"}).status_code == 400
        assert http.get("/organise/imports/rejects/..%2F..%2Fetc").status_code == 404
    with signed_in(web, "sam") as http:
        assert http.get("/organise/imports").status_code == 403


def test_staff_find_a_contact_and_see_everything_about_them(
    app: App, web: ThreadedServer, accounts: dict[str, str]
) -> None:
    with transaction(app.factory) as db:
        ana = add_contact(db, "ana.lima@example.org", name="Ana Lima", language="es")
        register(db, ana, "latin-america-2022")
        suppress(db, "ana.lima@example.org", "unsubscribed", "link in the invitation", INVITATION_AT)
        ana_id = ana.id
    with signed_in(web, "sam") as http:
        found = http.get("/staff/contacts", params={"q": "LIMA"}).text
        assert f'href="/staff/contacts/{ana_id}"' in found
        assert '<p class="small muted" id="count">1 contact</p>' in found
        page = http.get(f"/staff/contacts/{ana_id}").text
        assert "unsubscribed since" in page and "link in the invitation" in page
        assert "Parliamentary webinar on the Budapest Convention on Cybercrime: Latin America" in page
        assert "<td>registered</td>" in page
        jump = http.get("/staff/contacts/find", params={"email": "ANA.LIMA@example.org"})
        assert jump.headers["location"] == f"/staff/contacts/{ana_id}"
        missing = http.get("/staff/contacts/find", params={"email": "nobody@example.org"})
        assert missing.headers["location"] == "/staff/contacts?q=nobody%40example.org"
        assert http.get("/staff/contacts/2147483648").status_code == 404


def test_an_organiser_corrects_a_contact_and_removes_one_from_a_list_suppression_kept(
    app: App, web: ThreadedServer, accounts: dict[str, str]
) -> None:
    with transaction(app.factory) as db:
        ana = add_contact(db, "ana@example.org", name="Ana Lima", language="en")
        gone = add_contact(db, "gone@example.org")
        kept = add_contact(db, "kept@example.org")
        register(db, kept, "africa-2021")
        suppress(db, "gone@example.org", "unsubscribed", "test", INVITATION_AT)
        ana_id, gone_id, kept_id = ana.id, gone.id, kept.id
    with signed_in(web, "olga") as http:
        page = http.get(f"/staff/contacts/{ana_id}").text
        token = csrf_of(page)
        assert 'action="/organise/contacts/' in page and "Remove from" in page
        edited = http.post(
            f"/organise/contacts/{ana_id}/edit",
            data={
                "csrf_token": token,
                "title": "Dip.",
                "name": " Ana  María Lima ",
                "institution": "",
                "country": "Argentina",
                "language": "Español",
                "time_zone": "America/Argentina/Buenos_Aires",
            },
        )
        assert edited.status_code == 303
        shown = http.get(edited.headers["location"]).text
        assert (
            '<p class="flash" role="status" id="flash">changed: title, name, country, language, time_zone.</p>'
            in shown
        )
        with transaction(app.factory) as db:
            contact = db.get(Contact, ana_id)
            assert contact is not None
            assert (contact.title, contact.name, contact.country, contact.language, contact.time_zone) == (
                "Dip.",
                "Ana María Lima",
                "AR",
                "es",
                "America/Argentina/Buenos_Aires",
            )
        for field, value, said in (
            ("language", "Klingon", "language: &#39;Klingon&#39; is not a language"),
            ("time_zone", "Mars/Olympus", "time_zone: &#39;Mars/Olympus&#39; is not an IANA time zone"),
            ("name", "x" * 301, "name: 301 characters; at most 300"),
        ):
            entered = {"csrf_token": token, "institution": "Senado", field: value}
            refused = http.post(f"/organise/contacts/{ana_id}/edit", data=entered)
            # The contact's page again, the error above the form, the organiser's input kept in it.
            assert refused.status_code == 400
            assert f'<p class="error" role="alert" id="edit-error">Nothing changed: {said}' in refused.text
            assert "Correct the field below and save again.</p>" in refused.text
            assert f'name="{field}" value="{value}"' in refused.text
            assert 'name="institution" value="Senado"' in refused.text
        with transaction(app.factory) as db:
            assert db.get(Contact, ana_id).language == "es"  # type: ignore[union-attr]

        data = {"csrf_token": token, "region": "africa"}
        assert http.post(f"/organise/contacts/{gone_id}/remove", data=data).status_code == 400  # no confirm
        removed = http.post(f"/organise/contacts/{gone_id}/remove", data={**data, "confirm": "yes"})
        assert removed.status_code == 303
        assert (
            removed.headers["location"]
            == "/staff/contacts?region=africa&removed=contact+2+removed+and+deleted"
        )
        assert "contact 2 removed and deleted." in http.get(removed.headers["location"]).text
        taken = http.post(f"/organise/contacts/{kept_id}/remove", data={**data, "confirm": "yes"})
        assert "removed+from+the+africa+list%3B+0+pending+messages+skipped" in taken.headers["location"]
        again = http.post(f"/organise/contacts/{kept_id}/remove", data={**data, "confirm": "yes"})
        assert again.status_code == 404
    with transaction(app.factory) as db:
        assert db.get(Contact, gone_id) is None
        assert db.get(Contact, kept_id) is not None  # registered: kept, on no list
        assert count(app, ListMembership) == 1
        assert db.scalar(select(func.count()).select_from(Suppression)) == 1  # the address stays suppressed
    with signed_in(web, "sam") as http:  # staff see the contact, organisers change it
        page = http.get(f"/staff/contacts/{ana_id}").text
        assert "Correct this contact" not in page and "Remove from" not in page
        refused = http.post(
            f"/organise/contacts/{ana_id}/edit", data={"csrf_token": csrf_of(page), "name": "X"}
        )
        assert refused.status_code == 403


def _follow_running(http: Any, location: str) -> Any:
    """GET the running page until it leaves it (a 303 to the import) or reports an error; (last answer, pages
    that showed progress)."""
    deadline = time.monotonic() + 120
    while True:
        answer = http.get(location)
        if answer.status_code != 200 or time.monotonic() > deadline:
            return answer
        assert '<progress max="' in answer.text and 'aria-labelledby="running-text"' in answer.text
        assert '<meta http-equiv="refresh" content="2">' in answer.text
        time.sleep(0.2)


def test_a_large_upload_is_imported_in_the_background_with_a_progress_page(
    app: App, web: ThreadedServer, accounts: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(web_imports, "BACKGROUND_BYTES", 1)  # every upload counts as large here
    expected = MANIFEST["latin-america.csv"]
    with signed_in(web, "olga") as http:
        token = csrf_of(http.get("/organise/imports").text)
        checked = check_upload(
            http,
            token,
            "contacts",
            "latin-america",
            "latin-america.csv",
            (CONTACTS_DIR / "latin-america.csv").read_bytes(),
        )
        upload = hidden(checked.text, "upload")
        form = {"csrf_token": token, "kind": "contacts", "target": "latin-america", "upload": upload}
        confirmed = http.post("/organise/imports/confirm", data={**form, "name": "latin-america.csv"})
        assert (confirmed.status_code, confirmed.headers["location"]) == (
            303,
            f"/organise/imports/running/{upload}",
        )
        done = _follow_running(http, confirmed.headers["location"])
        assert done.status_code == 303 and re.fullmatch(r"/organise/imports/\d+", done.headers["location"])
        assert count(app, ListMembership) == expected["expected_contacts"]
        assert "latin-america.csv" in http.get(done.headers["location"]).text
        assert http.get("/organise/imports/running/" + "x" * 24).status_code == 404

        # A report of another session confirmed without the checkbox: the thread stops, the page says why.
        refused = _check_africa_report_for_latin_america(http, token)
        upload = hidden(refused.text, "upload")
        confirmed = http.post(
            "/organise/imports/confirm",
            data={
                "csrf_token": token,
                "kind": "registrations",
                "target": "latin-america-2022",
                "upload": upload,
                "name": "registrations-africa.csv",
            },
        )
        stopped = _follow_running(http, confirmed.headers["location"])
        assert stopped.status_code == 409
        shown = re.search(r'<p class="error" role="alert" id="running-error">([^<]*)</p>', stopped.text)
        assert shown is not None, stopped.text[-1500:]
        assert (
            shown.group(1)
            .replace("&#39;", "'")
            .startswith(
                "The import stopped: registrations-africa.csv does not look like a report of session"
                " latin-america-2022: the report's title"
            )
        ), shown.group(1)
        assert (
            shown.group(1)
            .replace("&#39;", "'")
            .endswith(
                "or confirm that it belongs here (tick 'This report belongs to latin-america-2022 all the same' when"
                " checking the file)"
            )
        ), shown.group(1)
        assert count(app, Registration) == 0


def test_a_check_without_a_file_asks_for_one(app: App, web: ThreadedServer, accounts: dict[str, str]) -> None:
    """A form sent with no file chosen (the browser sends an empty part with no file name) used to answer
    "404: no such upload", naming nothing the organiser did."""
    with signed_in(web, "olga") as http:
        token = csrf_of(http.get("/organise/imports").text)
        form = {"csrf_token": token, "kind": "contacts", "target": "latin-america"}
        for files in ({"file": ("", b"", "application/octet-stream")}, None):
            answer = http.post("/organise/imports/check", data=form, files=files)
            assert (answer.status_code, answer.text) == (
                400,
                "400: no file chosen: choose the export to import",
            )
