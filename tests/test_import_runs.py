"""Imports under way are kept in the store: any web process shows their progress, and an upload is imported
once however many times, and through whichever process, its import is confirmed."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select, update

from mailer.app import App
from mailer.store.engine import transaction
from mailer.store.import_runs import STALE_AFTER, claim_run, finish_run, load_run, note_progress
from mailer.store.models import ImportRecord, ImportRun, ListMembership
from mailer.timeline.clock import VirtualClock
from mailer.web import imports as web_imports
from mailer.web.server import ThreadedServer
from tests.conftest import CONTACTS_DIR, ROOT
from tests.test_web_imports import MANIFEST, hidden
from tests.test_web_support import PASSWORD, check_upload, csrf_of, signed_in

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def _age(app: App, token: str, updated_at: datetime) -> None:
    with transaction(app.factory) as db:
        db.execute(update(ImportRun).where(ImportRun.token == token).values(updated_at=updated_at))


def test_one_claim_per_upload_until_its_run_stops(app: App) -> None:
    factory = app.factory
    assert load_run(factory, "a" * 24) is None
    assert claim_run(factory, "a" * 24, "africa.csv", "web:olga", T0)
    assert not claim_run(factory, "a" * 24, "africa.csv", "web:sam", T0)  # under way
    note_progress(factory, "a" * 24, 40, 200, T0 + timedelta(seconds=3))
    run = load_run(factory, "a" * 24)
    assert run is not None
    assert (run.name, run.done, run.total, run.import_id, run.error) == ("africa.csv", 40, 200, None, "")
    assert run.updated_at == T0 + timedelta(seconds=3)
    with transaction(factory) as db:
        assert db.get(ImportRun, "a" * 24).started_by == "web:olga"  # type: ignore[union-attr]

    # Stopped by an error: shown, and the next confirm starts it again from nothing.
    finish_run(factory, "a" * 24, T0 + timedelta(seconds=4), error="no email column")
    assert load_run(factory, "a" * 24).stopped(T0 + timedelta(seconds=5)) == "no email column"  # type: ignore[union-attr]
    assert claim_run(factory, "a" * 24, "africa.csv", "web:sam", T0 + timedelta(seconds=6))
    run = load_run(factory, "a" * 24)
    assert run is not None and (run.done, run.total, run.error) == (0, 0, "")

    # Done: never started again, and nothing stopped it however old it grows.
    finish_run(factory, "a" * 24, T0 + timedelta(seconds=7), import_id=12)
    assert not claim_run(factory, "a" * 24, "africa.csv", "web:sam", T0 + STALE_AFTER * 3)
    done = load_run(factory, "a" * 24)
    assert done is not None and done.import_id == 12 and done.stopped(T0 + STALE_AFTER * 3) == ""


def test_a_run_without_progress_for_five_minutes_has_stopped(app: App) -> None:
    factory = app.factory
    assert claim_run(factory, "b" * 24, "asia.csv", "web:olga", T0)
    run = load_run(factory, "b" * 24)
    assert run is not None
    assert run.stopped(T0 + STALE_AFTER - timedelta(seconds=1)) == ""
    assert "no progress for 5 minutes" in run.stopped(T0 + STALE_AFTER)
    assert not claim_run(factory, "b" * 24, "asia.csv", "web:sam", T0 + STALE_AFTER - timedelta(seconds=1))
    assert claim_run(factory, "b" * 24, "asia.csv", "web:sam", T0 + STALE_AFTER)  # its process died


def test_runs_are_forgotten_after_a_day_and_finishing_needs_one_outcome(app: App) -> None:
    factory = app.factory
    assert claim_run(factory, "c" * 24, "old.csv", "web:olga", T0)
    assert claim_run(factory, "d" * 24, "new.csv", "web:olga", T0 + timedelta(days=1))
    assert load_run(factory, "c" * 24) is not None  # exactly a day: kept
    assert claim_run(factory, "e" * 24, "newer.csv", "web:olga", T0 + timedelta(days=1, seconds=1))
    assert load_run(factory, "c" * 24) is None and load_run(factory, "d" * 24) is not None
    with pytest.raises(ValueError, match="an import id or an error"):
        finish_run(factory, "d" * 24, T0)
    with pytest.raises(ValueError, match="an import id or an error"):
        finish_run(factory, "d" * 24, T0, import_id=1, error="both")


def test_claims_from_many_threads_start_one_run(app: App) -> None:
    factory = app.factory
    start = threading.Barrier(8)
    won: list[bool] = []

    def confirm() -> None:
        start.wait()
        won.append(claim_run(factory, "f" * 24, "africa.csv", "web:olga", T0))

    threads = [threading.Thread(target=confirm) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(won) == [False] * 7 + [True]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def _other_web_process(database_url: str, log: Path) -> Iterator[str]:
    """``mailer web`` in a process of its own on the same store and project folder; its base URL."""
    port = _free_port()
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from mailer.cli import main; main()",
                "--database-url",
                database_url,
                "web",
                "--port",
                str(port),
            ],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, log.read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(20)


@contextmanager
def _signed_in_at(base: str, username: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base, timeout=30) as http:
        token = csrf_of(http.get("/login").text)
        answer = http.post(
            "/login",
            data={"username": username, "password": PASSWORD, "csrf_token": token, "next": "/staff/"},
        )
        assert answer.status_code == 303, answer.text
        yield http


def _checked_upload(http: httpx.Client, token: str) -> str:
    """Check the latin-america export for its list; the upload's token the check page holds."""
    export = CONTACTS_DIR / "latin-america.csv"
    checked = check_upload(http, token, "contacts", "latin-america", "latin-america.csv", export.read_bytes())
    assert checked.status_code == 200, checked.text
    return hidden(checked.text, "upload")


def test_another_web_process_shows_the_progress_and_a_second_confirm_imports_nothing(
    app: App,
    web: ThreadedServer,
    accounts: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    clock: VirtualClock,
) -> None:
    clock.set(datetime.now(UTC))  # the other process runs on the wall clock: sign-ins must agree on the time
    monkeypatch.setattr(web_imports, "BACKGROUND_BYTES", 1)  # this process imports every upload in a thread
    release = threading.Event()
    real_note = web_imports.note_progress

    def held_note(*args: object) -> None:  # the import waits here, under way, until the test lets it go
        assert release.wait(60)
        real_note(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(web_imports, "note_progress", held_note)
    expected = MANIFEST["latin-america.csv"]
    with (
        signed_in(web, "olga") as here,
        _other_web_process(app.settings.database_url, tmp_path / "web.log") as there_url,
        _signed_in_at(there_url, "olga") as there,
    ):
        token = csrf_of(here.get("/organise/imports").text)
        upload = _checked_upload(here, token)
        running = f"/organise/imports/running/{upload}"
        form = {"kind": "contacts", "target": "latin-america", "upload": upload, "name": "latin-america.csv"}
        confirmed = here.post("/organise/imports/confirm", data={"csrf_token": token, **form})
        assert (confirmed.status_code, confirmed.headers["location"]) == (303, running)

        # The other process shows the progress of the import this one runs.
        shown = there.get(running)
        assert shown.status_code == 200, shown.text
        assert "Importing latin-america.csv" in shown.text and '<progress max="' in shown.text
        # A confirm of the same upload through it starts nothing: it is sent to the same page.
        there_token = csrf_of(there.get("/organise/imports").text)
        again = there.post("/organise/imports/confirm", data={"csrf_token": there_token, **form})
        assert (again.status_code, again.headers["location"]) == (303, running)
        twice = here.post("/organise/imports/confirm", data={"csrf_token": token, **form})  # a double click
        assert (twice.status_code, twice.headers["location"]) == (303, running)

        release.set()
        deadline = time.monotonic() + 120
        while (answer := there.get(running)).status_code == 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert answer.status_code == 303 and re.fullmatch(
            r"/organise/imports/\d+", answer.headers["location"]
        )
        assert "latin-america.csv" in there.get(answer.headers["location"]).text
    with transaction(app.factory) as db:
        assert db.scalar(select(func.count()).select_from(ImportRecord)) == 1
        assert db.scalar(select(func.count()).select_from(ListMembership)) == expected["expected_contacts"]


def test_a_run_whose_process_died_says_so_and_can_be_confirmed_again(
    app: App, web: ThreadedServer, accounts: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(web_imports, "BACKGROUND_BYTES", 10**9)  # imported while the request waits
    with signed_in(web, "olga") as http:
        token = csrf_of(http.get("/organise/imports").text)
        upload = _checked_upload(http, token)
        running = f"/organise/imports/running/{upload}"
        # Its first confirm was claimed by a process that then died (no progress since).
        assert claim_run(app.factory, upload, "latin-america.csv", "web:olga", datetime.now(UTC))
        _age(app, upload, datetime.now(UTC) - STALE_AFTER - timedelta(seconds=1))
        stopped = http.get(running)
        assert stopped.status_code == 409
        assert "no progress for 5 minutes: the process importing it has stopped" in stopped.text
        assert '<meta http-equiv="refresh"' not in stopped.text
        form = {"kind": "contacts", "target": "latin-america", "upload": upload, "name": "latin-america.csv"}
        confirmed = http.post("/organise/imports/confirm", data={"csrf_token": token, **form})
        assert confirmed.status_code == 303 and re.fullmatch(
            r"/organise/imports/\d+", confirmed.headers["location"]
        )
        assert http.get(running).headers["location"] == confirmed.headers["location"]
        # The upload is gone once imported; confirming it again still leads to its import.
        again = http.post("/organise/imports/confirm", data={"csrf_token": token, **form})
        assert http.get(again.headers["location"]).headers["location"] == confirmed.headers["location"]
        assert http.get("/organise/imports/running/" + "x" * 24).status_code == 404
        assert http.get("/organise/imports/running/not-a-token").status_code == 404
    run = load_run(app.factory, upload)
    assert run is not None and run.import_id == int(confirmed.headers["location"].rsplit("/", 1)[1])
