"""A service process started with an older series.toml leaves a session change made elsewhere (a process
with the new config, or `mailer sessions sync`) alone instead of undoing it. SQLite and PostgreSQL.

Found by a rolling restart on PostgreSQL: process A ran with the old config, process B started with the
session moved one day later; each tick of each process "rescheduled" the session to its own config, so in
10 s the session went to and fro 17 times (SEQUENCE 17) and each of 10 contacts got 17 "date changed" notices.
With `mailer sessions sync` beside a running service: the service moved the session back within a second
and everyone got two notices, the second with the old date.
"""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from sqlalchemy import func, select

from mailer.app import App
from mailer.service import Service
from mailer.store.engine import transaction
from mailer.store.models import Message, SessionRow
from mailer.store.outbox import sync_sessions
from mailer.timeline.clock import VirtualClock
from tests.conftest import INVITATION_AT
from tests.factories import add_contact
from tests.test_api import api, api_clock, bearer, tokens
from tests.test_session_changes import _send_invitations, with_session

__all__ = ["api", "api_clock", "tokens"]


def _state(app: App) -> tuple[object, int, int]:
    with transaction(app.factory) as db:
        row = db.get(SessionRow, "africa-2021")
        assert row is not None
        notices = db.scalar(
            select(func.count()).select_from(Message).where(Message.step.like("date-changed%"))
        )
        return row.starts_at, row.sequence, notices or 0


def test_a_process_with_an_older_config_does_not_undo_a_session_change(app: App) -> None:
    with transaction(app.factory) as db:
        add_contact(db, "invited@example.org")
    _send_invitations(app)
    session = app.settings.series.session("africa-2021")
    moved_start = session.start + timedelta(days=1)
    moved = with_session(app.settings, "africa-2021", start=moved_start)
    clock = VirtualClock(INVITATION_AT + timedelta(minutes=1))
    old = Service(app, clock, worker="old")  # started before the change
    old.materialise()
    assert _state(app)[1:] == (0, 0)
    with transaction(app.factory) as db:  # `mailer sessions sync` with the new config
        sync_sessions(db, moved, clock.now())
    after_sync = _state(app)
    assert after_sync[1:] == (1, 1)
    for _ in range(3):
        clock.advance(timedelta(seconds=30))
        old.materialise()  # the old process's ticks: the change stays
    assert _state(app) == after_sync
    new = Service(App(moved, app.engine, app.factory), clock, worker="new")  # a process with the new config
    for _ in range(3):
        clock.advance(timedelta(seconds=30))
        new.materialise()
        old.materialise()
    assert _state(app) == after_sync, "no process moves the session to and fro"


def test_a_web_process_with_an_older_config_does_not_undo_a_session_change(
    app: App, request: pytest.FixtureRequest
) -> None:
    """The web pages and the API sync the sessions before queuing a wave: a web process started before the
    change (it noted each session's SEQUENCE then) leaves the change alone too."""
    tokens: dict[str, str] = request.getfixturevalue("tokens")  # sessions stored, invitations queued
    api: httpx.Client = request.getfixturevalue("api")  # the web process starts with the old config
    clock: VirtualClock = request.getfixturevalue("api_clock")
    session = app.settings.series.session("africa-2021")
    moved = with_session(app.settings, "africa-2021", start=session.start + timedelta(days=1))
    with transaction(app.factory) as db:  # `mailer sessions sync` with the new config
        sync_sessions(db, moved, clock.now())
    after_sync = _state(app)
    assert after_sync[1] == 1
    queued = api.post(
        "/api/v1/waves",
        json={"session": "africa-2021", "step": "invitation-2", "at": "2021-06-22T13:00:00+00:00"},
        headers=bearer(tokens["write"]),
    )
    assert queued.status_code in (200, 201), queued.text
    assert _state(app) == after_sync, "the web process did not move the session back"
