"""An organiser's wave follows a reschedule; one whose time the move makes absurd is held and shown."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

from click.testing import CliRunner
from markupsafe import escape
from sqlalchemy import select

from mailer.app import App
from mailer.cli import cli
from mailer.store.engine import transaction
from mailer.store.models import Message, MessageStatus, Wave, WaveStatus
from mailer.store.outbox import claim_due, queue_wave, set_wave_status, sync_sessions
from mailer.web.server import ThreadedServer
from tests.conftest import ROOT
from tests.factories import add_contact, register
from tests.test_session_changes import with_session
from tests.test_web_support import signed_in

QUEUED_AT = datetime(2021, 7, 1, 12, 0, tzinfo=UTC)


def _queue_one_hour_before(app: App) -> Wave:
    session = app.settings.series.session("africa-2021")
    with transaction(app.factory) as db:
        register(db, add_contact(db, "registered@example.org"), "africa-2021")
    with transaction(app.factory) as db:
        sync_sessions(db, app.settings, QUEUED_AT)
        at = session.start - timedelta(hours=1)
        step = app.settings.series.step("reminder-1h")
        wave = queue_wave(db, app.settings, session, step, QUEUED_AT, at=at, created_by="cli").wave
        db.expunge(wave)
    return wave


def test_an_organiser_wave_moves_with_the_session(app: App) -> None:
    wave = _queue_one_hour_before(app)
    session = app.settings.series.session("africa-2021")
    assert wave.offset_seconds == -3600
    later = session.start + timedelta(days=1)
    with transaction(app.factory) as db:
        changes = sync_sessions(db, with_session(app.settings, "africa-2021", start=later), QUEUED_AT)
    assert [(c.change, c.retimed, c.held) for c in changes] == [("date-changed", 1, ())]
    with transaction(app.factory) as db:
        reminder = db.scalars(select(Message).where(Message.step == "reminder-1h")).one()
        moved = db.get(Wave, wave.id)
        assert moved is not None and moved.status == WaveStatus.ACTIVE and moved.hold_reason == ""
        assert moved.scheduled_at == datetime(2021, 7, 14, 12, 0, tzinfo=UTC)  # 09:00 GMT-3, a day later
        assert reminder.due_at == datetime(2021, 7, 14, 12, 0, tzinfo=UTC)
        assert reminder.deadline_at == datetime(2021, 7, 14, 12, 30, tzinfo=UTC)  # max_late 30m


def _run(config: Path, app: App, *args: str) -> str:
    base = ["--config", str(config), "--database-url", app.settings.database_url]
    result = CliRunner().invoke(cli, [*base, *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_a_wave_the_move_makes_absurd_is_held_and_the_organiser_told(
    app: App, tmp_path: Path, web: ThreadedServer, accounts: dict[str, str]
) -> None:
    wave = _queue_one_hour_before(app)
    with transaction(app.factory) as db:
        stored = db.get(Wave, wave.id)
        assert stored is not None
        stored.offset_seconds = None  # queued before offsets were stored: an absolute time
    config = tmp_path / "config"
    shutil.copytree(ROOT / "config", config)
    shutil.copytree(ROOT / "templates", tmp_path / "templates")
    series = config / "series.toml"
    text = series.read_text(encoding="utf-8")
    assert text.count('start = "2021-07-13T10:00"') == 1
    series.write_text(text.replace('start = "2021-07-13T10:00"', 'start = "2021-07-13T08:00"'), "utf-8")
    # The session now starts at 11:00 UTC: the organiser's 12:00 UTC "one hour before" is after it.
    output = _run(config, app, "sessions", "sync")
    assert f"wave {wave.id} held: its time falls at or after the new start" in output
    reason = (
        f"held: set for 2021-07-13 12:00 UTC, at or after the session's new start (2021-07-13 11:00 UTC),"
        f" for a step before it; resume or cancel wave {wave.id}"
    )
    with transaction(app.factory) as db:
        held = db.get(Wave, wave.id)
        assert held is not None and held.status == WaveStatus.PAUSED and held.hold_reason == reason
        claimed, _ = claim_due(
            db,
            app.settings,
            datetime(2021, 7, 13, 12, 0, tzinfo=UTC),
            worker="w",
            limit=10,
            lease=timedelta(minutes=5),
        )
        assert claimed == []
        assert db.scalars(select(Message.status).where(Message.wave_id == wave.id)).one() == (
            MessageStatus.QUEUED
        )
    listing = _run(config, app, "waves", "list")
    assert f"wave {wave.id} (africa-2021 / reminder-1h) {reason}" in " ".join(listing.split())
    with signed_in(web, "olga") as http:
        shown = str(escape(reason))
        assert shown in http.get(f"/staff/waves/{wave.id}").text
        assert shown in http.get("/organise/sessions").text
    with transaction(app.factory) as db:
        set_wave_status(db, wave.id, WaveStatus.CANCELLED, QUEUED_AT)
    with transaction(app.factory) as db:
        cancelled = db.get(Wave, wave.id)
        assert cancelled is not None and cancelled.hold_reason == ""
