"""Inputs a user or a stranger can send that once ended in a traceback or a 500: each is now a one-line CLI
error, a 4xx page or a JSON error saying what was wrong. One guard per kind, where the input is parsed:
addresses (their case-folded key), zone names, instants (years 1970..9998), ids and limits, NUL characters
and huge numbers in JSON and forms, command-line bytes that are not UTF-8, the rejects file, the port."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from mailer.app import App
from mailer.audience.addresses import InvalidAddressError, normalise_address
from mailer.cli import undecodable_argument
from mailer.cli.params import MAX_ROW_ID
from mailer.errors import InstantRangeError
from mailer.store.engine import transaction
from mailer.store.models import Contact, Registration, Suppression
from mailer.store.queries.log import MAX_ROW_ID as STORE_MAX_ROW_ID
from mailer.timeline.clock import VirtualClock, accepted_instant
from mailer.web.server import ThreadedServer
from mailer.zones import UnknownZoneError, resolve_zone
from tests.factories import add_contact
from tests.test_api import api, api_clock, bearer, tokens
from tests.test_cli_inputs import run
from tests.test_web_support import check_upload, csrf_of, signed_in, signing_secret
from tests.test_webhooks import event, hook_app, hook_clock, hook_web, post

# 64 x "ΐ" @ two labels of 20 x "ΐ" .example: valid for email-validator, 114 characters, but "ΐ" case-folds to
# three characters, so its key is 322 long: more than any address (and the store's key column) may be.
LONG_KEY = "ΐ" * 64 + "@" + "ΐ" * 20 + "." + "ΐ" * 20 + ".example"
LONG_KEY_REASON = (
    "The address is too long: 322 characters once its letters are case-folded, more than the 320 an address"
    " may have."
)
LONG_ZONE = "A" * 300
HUGE = "99999999999999999999"  # beyond a 64-bit signed integer


def import_into_africa(run: Any, app: App, source: Path) -> Any:
    """``mailer contacts import SOURCE --region africa`` with its rejects beside the source."""
    return run(
        "contacts",
        "import",
        str(source),
        "--region",
        "africa",
        "--rejects",
        str(source.with_suffix(".rejects.csv")),
        store=app,
    )


def count(app: App, model: Any) -> int:
    with transaction(app.factory) as db:
        return int(db.scalar(select(func.count()).select_from(model)) or 0)


# --- addresses: the case-folded key --------------------------------------------------------------------------


def test_an_address_whose_case_folded_key_is_too_long_is_invalid() -> None:
    assert len(LONG_KEY.casefold()) == 322
    with pytest.raises(InvalidAddressError, match="322 characters once its letters are case-folded"):
        normalise_address(LONG_KEY)
    assert normalise_address("ß" * 64 + "@example.org").key == "ss" * 64 + "@example.org"  # 140: fine


def test_contacts_import_rejects_an_address_with_a_too_long_key(run, app: App, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    source = tmp_path / "long.csv"
    source.write_text(f"email\nana@example.org\n{LONG_KEY}\n", encoding="utf-8")
    result = import_into_africa(run, app, source)
    assert result.code == 0, result.err
    assert f"line 3: {LONG_KEY_REASON}" in result.out
    assert count(app, Contact) == 1


def test_the_api_and_the_webhook_refuse_an_address_with_a_too_long_key(
    api: httpx.Client,
    tokens: dict[str, str],
    app: App,
) -> None:
    write = bearer(tokens["write"])
    contact = api.post("/api/v1/contacts", json={"email": LONG_KEY, "region": "africa"}, headers=write)
    assert contact.status_code in (409, 422), contact.text
    assert LONG_KEY_REASON in contact.text
    suppressed = api.post("/api/v1/suppressions", json={"email": LONG_KEY, "detail": "x"}, headers=write)
    assert suppressed.status_code in (409, 422), suppressed.text
    assert LONG_KEY_REASON in suppressed.text
    imported = api.post(
        "/api/v1/lists/africa/import",
        json={"filename": "long.csv", "content": f"Email\n{LONG_KEY}\n"},
        headers=write,
    )
    assert imported.status_code == 200, imported.text
    assert LONG_KEY_REASON in imported.text
    assert count(app, Suppression) == 0


def test_the_webhook_refuses_an_address_with_a_too_long_key(
    hook_web: ThreadedServer,
    hook_clock: VirtualClock,
) -> None:
    response = post(hook_web.url, event("long", "created", LONG_KEY, hook_clock.now()), hook_clock)
    assert (response.status_code, response.json()) == (422, {"error": LONG_KEY_REASON})


def test_the_import_check_page_rejects_an_address_with_a_too_long_key(
    app: App,
    web: ThreadedServer,
    accounts: dict[str, str],
    signing_secret: str,
) -> None:
    with signed_in(web, "olga") as http:
        token = csrf_of(http.get("/organise/imports").text)
        checked = check_upload(http, token, "contacts", "africa", "long.csv", f"Email\n{LONG_KEY}\n".encode())
    assert checked.status_code == 200, checked.text
    assert "322 characters once its letters are case-folded" in checked.text


# --- time zones ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [LONG_ZONE, "Europe/" + "x" * 300, "Europe/Paris\x00", "../../etc/passwd"])
def test_a_zone_name_that_is_no_key_is_an_unknown_zone(name: str) -> None:
    with pytest.raises(UnknownZoneError, match="unknown time zone"):
        resolve_zone(name)


def test_a_long_zone_cell_is_replaced_like_any_unknown_zone(run, app: App, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    source = tmp_path / "zones.csv"
    source.write_text(f"email,time zone\nana@example.org,{LONG_ZONE}\n", encoding="utf-8")
    result = import_into_africa(run, app, source)
    assert result.code == 0, result.err
    assert "line 2: time zone 'AAAA" in result.out and "not recognised; Africa/Lagos used" in result.out
    with transaction(app.factory) as db:
        assert db.scalar(select(Contact.time_zone)) == "Africa/Lagos"


def test_preview_with_a_long_zone_is_a_one_line_error(run) -> None:  # type: ignore[no-untyped-def]
    result = run(
        "preview", "--session", "africa-2021", "--step", "invitation", "--language", "en", "--zone", LONG_ZONE
    )
    assert result.code == 2, result.err
    assert "unknown time zone 'AAAA" in result.err and "Traceback" not in result.err


def test_staff_contact_edit_refuses_a_long_zone(
    app: App,
    web: ThreadedServer,
    accounts: dict[str, str],
    signing_secret: str,
) -> None:
    with transaction(app.factory) as db:
        ana_id = add_contact(db, "ana@example.org").id
    with signed_in(web, "olga") as http:
        token = csrf_of(http.get(f"/staff/contacts/{ana_id}").text)
        edited = http.post(
            f"/organise/contacts/{ana_id}/edit", data={"csrf_token": token, "time_zone": LONG_ZONE}
        )
    assert edited.status_code == 400
    assert (
        "Nothing changed: time_zone: &#39;AAAA" in edited.text and "is not an IANA time zone" in edited.text
    )
    with transaction(app.factory) as db:
        assert db.scalar(select(Contact.time_zone).where(Contact.id == ana_id)) != LONG_ZONE


# --- instants: one window, 1970..9998 ------------------------------------------------------------------------


def test_accepted_instants_are_the_years_1970_to_9998() -> None:
    assert accepted_instant(datetime(1970, 1, 1, tzinfo=UTC)) == datetime(1970, 1, 1, tzinfo=UTC)
    last = datetime(9998, 12, 31, 23, 59, tzinfo=UTC)
    assert accepted_instant(last) == last
    for wrong in (
        datetime(9999, 12, 31, 23, 59, tzinfo=timezone(-timedelta(hours=23, minutes=59))),  # overflows
        datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1))),  # overflows
        datetime(1969, 12, 31, 23, 59, tzinfo=UTC),
        datetime(9999, 1, 1, tzinfo=UTC),
    ):
        with pytest.raises(InstantRangeError, match="is outside the years 1970 to 9998"):
            accepted_instant(wrong)


REPORT = (
    "First Name,Last Name,Email,Registration Time,Approval Status\n"
    "Ana,Ok,ana@example.org,2021-06-20 03:14:15 PM,approved\n"
    "Bo,Late,bo@example.org,9999-12-31 11:59 PM,approved\n"
    "Cy,Early,cy@example.org,0001-01-01T00:00:00+01:00,approved\n"
)


def test_registrations_import_rejects_a_time_outside_the_window(run, app: App, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    source = tmp_path / "report.csv"
    source.write_text(REPORT, encoding="utf-8")
    result = run(
        "registrations",
        "import",
        str(source),
        "--session",
        "africa-2021",
        "--rejects",
        str(tmp_path / "r.csv"),
        store=app,
    )
    assert result.code == 0, result.err
    assert (
        "line 3: Registration time '9999-12-31 11:59 PM' is outside the years 1970 to 9998 that the mailer"
        " accepts: check the year. (bo@example.org)" in result.out
    )
    assert "line 4: Registration time '0001-01-01T00:00:00+01:00' is outside" in result.out
    assert count(app, Registration) == 1


def test_the_api_rejects_a_registration_time_outside_the_window(
    api: httpx.Client,
    tokens: dict[str, str],
) -> None:
    imported = api.post(
        "/api/v1/sessions/africa-2021/registrations/import",
        json={"filename": "report.csv", "content": REPORT},
        headers=bearer(tokens["write"]),
    )
    assert imported.status_code == 200, imported.text
    assert "Registration time '9999-12-31 11:59 PM' is outside the years 1970 to 9998" in imported.text


@pytest.mark.parametrize("at", ["9999-12-31T23:59-23:59", "0001-01-01T00:00", "1969-12-31T23:00+00:00"])
def test_waves_queue_refuses_an_at_outside_the_window(run, app: App, at: str) -> None:  # type: ignore[no-untyped-def]
    result = run("waves", "queue", "--session", "africa-2021", "--step", "invitation", "--at", at, store=app)
    assert result.code == 2, result.err
    assert (
        f"Invalid value for --at: '{at}' is outside the years 1970 to 9998 that the mailer accepts"
        in result.err
    )


def test_the_wave_pages_refuse_an_at_outside_the_window(
    app: App,
    web: ThreadedServer,
    accounts: dict[str, str],
    signing_secret: str,
) -> None:
    with signed_in(web, "olga") as http:
        shown = http.get(
            "/organise/waves/new",
            params={"session": "africa-2021", "step": "invitation", "at": "9999-12-31T23:59-23:59"},
        )
        assert shown.status_code == 400
        assert "is outside the years 1970 to 9998" in shown.text
        token = csrf_of(http.get("/organise/sessions").text)
        queued = http.post(
            "/organise/waves",
            data={
                "csrf_token": token,
                "session": "africa-2021",
                "step": "invitation",
                "at": "0001-01-01T00:00",
            },
        )
        assert queued.status_code == 400
        assert "the send time '0001-01-01T00:00' is outside the years 1970 to 9998" in queued.text


def test_the_api_refuses_a_queue_time_outside_the_window(
    api: httpx.Client,
    tokens: dict[str, str],
) -> None:
    body = {"session": "africa-2021", "step": "invitation-2", "at": "0001-01-01T00:00:00+01:00"}
    queued = api.post("/api/v1/waves", json=body, headers=bearer(tokens["write"]))
    assert queued.status_code == 422, queued.text
    assert "is outside the years 1970 to 9998" in queued.json()["error"]


def test_a_webhook_event_outside_the_window_is_refused(
    hook_web: ThreadedServer,
    hook_clock: VirtualClock,
) -> None:
    body = {
        **event("old", "created", "ana@example.org", hook_clock.now()),
        "occurred_at": "0001-01-01T00:00:00+01:00",
    }
    response = post(hook_web.url, body, hook_clock)
    assert (response.status_code, response.json()) == (
        422,
        {
            "error": "occurred_at '0001-01-01T00:00:00+01:00' is outside the years 1970 to 9998 that the mailer"
            " accepts: check the year"
        },
    )


# --- ids and limits ------------------------------------------------------------------------------------------


def test_the_command_lines_largest_id_is_the_stores() -> None:
    assert MAX_ROW_ID == STORE_MAX_ROW_ID


@pytest.mark.parametrize("action", ["pause", "resume", "cancel"])
def test_an_oversized_wave_id_is_a_range_error(run, app: App, action: str) -> None:  # type: ignore[no-untyped-def]
    result = run("waves", action, HUGE, store=app)
    assert result.code == 2
    assert f"Invalid value for 'WAVE_ID': {HUGE} is not in the range 1<=x<=2147483647." in result.err


@pytest.mark.parametrize(
    "command", [["log"], ["contacts", "list"], ["imports", "list"], ["suppressions", "list"]], ids=" ".join
)
def test_an_oversized_limit_shows_every_row(run, app: App, command: list[str]) -> None:  # type: ignore[no-untyped-def]
    with transaction(app.factory) as db:
        add_contact(db, "ana@example.org")
    result = run(*command, "--limit", HUGE, store=app)
    assert result.code == 0, result.err


def test_the_api_answers_oversized_ids_and_cursors_with_4xx(
    api: httpx.Client,
    tokens: dict[str, str],
) -> None:
    paused = api.post(f"/api/v1/waves/{HUGE}/pause", headers=bearer(tokens["write"]))
    assert (paused.status_code, paused.json()) == (404, {"error": f"no such wave {HUGE}"})
    page = api.get(
        "/api/v1/log", params={"cursor": "99999999999999999999999"}, headers=bearer(tokens["read"])
    )
    assert page.status_code == 422, page.text


@pytest.mark.parametrize("port", ["99999", "-1"])
def test_web_refuses_a_port_outside_0_to_65535(run, port: str) -> None:  # type: ignore[no-untyped-def]
    result = run("web", "--port", port)
    assert result.code == 2
    assert f"Invalid value for '--port': {port} is not in the range 0<=x<=65535." in result.err


# --- NUL characters and huge numbers -------------------------------------------------------------------------


def test_the_api_refuses_nul_characters_and_huge_numbers(
    api: httpx.Client,
    tokens: dict[str, str],
    app: App,
) -> None:
    write = bearer(tokens["write"])
    nul = api.post(
        "/api/v1/suppressions",
        json={"email": "member4@parliament.example", "detail": "a\x00b"},
        headers=write,
    )
    assert (nul.status_code, nul.json()) == (
        400,
        {"error": "the body's JSON holds a NUL character (\\u0000) in detail: remove it"},
    )
    huge = api.post(
        "/api/v1/contacts",
        content=b'{"email": "ada@example.org", "region": "africa", "name": ' + b"9" * 5000 + b"}",
        headers={**write, "content-type": "application/json"},
    )
    assert (huge.status_code, huge.json()) == (
        400,
        {"error": "the body's JSON holds a number of 5000 digits: at most 20 are taken"},
    )
    assert count(app, Suppression) == 0


def test_the_webhook_refuses_nul_characters_and_huge_numbers(
    hook_web: ThreadedServer,
    hook_clock: VirtualClock,
) -> None:
    now = hook_clock.now()
    with_id = post(hook_web.url, event("a\x00", "created", "ana@example.org", now), hook_clock)
    assert (with_id.status_code, with_id.json()) == (
        400,
        {"error": "the body's JSON holds a NUL character (\\u0000) in id: remove it"},
    )
    named = post(hook_web.url, event("b", "created", "ana@example.org", now, first_name="A\x00"), hook_clock)
    assert named.json() == {
        "error": "the body's JSON holds a NUL character (\\u0000) in registrant.first_name: remove it"
    }
    raw = (
        b'{"id": ' + b"1" * 5000 + b', "type": "registration.created", "occurred_at": "2021-06-20T12:00:00Z",'
        b' "session": "africa-2021", "registrant": {"email": "ana@example.org"}}'
    )
    huge = post(hook_web.url, raw, hook_clock)
    assert huge.status_code == 400 and "a number of 5000 digits" in huge.json()["error"]


def test_the_webhook_refuses_a_lone_surrogate(
    hook_web: ThreadedServer, hook_clock: VirtualClock, hook_app: App
) -> None:
    # JSON may escape half a UTF-16 pair ("\\ud800"): a string no UTF-8 encodes, so no store keeps it (a 500).
    now = hook_clock.now()
    named = post(
        hook_web.url, event("s", "created", "ana@example.org", now, first_name="A\ud800"), hook_clock
    )
    assert (named.status_code, named.json()) == (
        400,
        {
            "error": "the body's JSON holds a lone surrogate (\\ud800 to \\udfff, not a character) in "
            "registrant.first_name: remove it"
        },
    )
    keyed = post(hook_web.url, b'{"\\udfff": 1}', hook_clock)
    assert keyed.status_code == 400 and "lone surrogate" in keyed.json()["error"]
    assert count(hook_app, Registration) == 0


def test_a_form_field_with_a_nul_character_is_a_400(
    app: App,
    web: ThreadedServer,
    accounts: dict[str, str],
    signing_secret: str,
) -> None:
    with signed_in(web, "olga") as http:
        token = csrf_of(http.get("/organise/sessions").text)
        sent = http.post(
            "/organise/preview/send",
            data={
                "csrf_token": token,
                "session": "africa-2021",
                "step": "invitation",
                "contact": "a\x00@example.org",
            },
        )
    assert sent.status_code == 400
    assert "a form field holds a NUL character" in sent.text


# --- the command line's own input ----------------------------------------------------------------------------


def test_command_line_bytes_that_are_not_utf8_are_a_one_line_error(run, app: App) -> None:  # type: ignore[no-untyped-def]
    bad = b"\xff@x".decode("utf-8", "surrogateescape")
    for command in (
        ["contacts", "show", bad],
        ["log", "--address", bad],
        ["contacts", "list", "--search", bad],
    ):
        result = run(*command, store=app)
        assert result.code == 2
        assert "(\\xff@x) holds bytes that are not UTF-8: write it in UTF-8" in result.err
    assert undecodable_argument(["ok", "é"]) is None


def test_a_file_name_that_is_not_utf8_is_a_one_line_error(run, app: App, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    name = b"\xff.csv".decode("utf-8", "surrogateescape")
    path = Path(str(tmp_path) + "/" + name)
    path.write_bytes(b"email\nana@example.org\n")
    result = run("contacts", "import", str(path), "--region", "africa", store=app)
    assert result.code == 2
    assert "\\xff.csv) holds bytes that are not UTF-8" in result.err and "rename" in result.err
    assert count(app, Contact) == 0


def test_an_unwritable_rejects_file_is_refused_before_anything_is_imported(
    run, app: App, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    source = tmp_path / "c.csv"
    source.write_text("email\nana@example.org\nnot-an-address\n", encoding="utf-8")
    result = run(
        "contacts", "import", str(source), "--region", "africa", "--rejects", "/proc/nope/x.csv", store=app
    )
    assert result.code == 2
    assert result.err.startswith("error: cannot write rejected rows to /proc/nope/x.csv: ")
    assert "Nothing was imported" in result.err
    assert count(app, Contact) == 0
    kept = tmp_path / "r.csv"
    assert (
        run("contacts", "import", str(source), "--region", "africa", "--rejects", str(kept), store=app).code
        == 0
    )
    assert count(app, Contact) == 1 and kept.is_file()
