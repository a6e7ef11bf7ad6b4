"""What the service prints for each wave it materialises: messages to send and messages skipped on arrival,
each counted once."""

from __future__ import annotations

from datetime import timedelta

from mailer.app import App
from mailer.scheduler import wave_line
from mailer.store.engine import transaction
from mailer.store.outbox import queue_wave
from tests.conftest import INVITATION_AT
from tests.factories import add_contact


def test_a_wave_past_its_deadline_prints_none_queued_and_all_skipped(app: App) -> None:
    series = app.settings.series
    with transaction(app.factory) as db:
        for address in ("ann@example.org", "bob@example.org"):
            add_contact(db, address)
    with transaction(app.factory) as db:
        late = queue_wave(
            db,
            app.settings,
            series.session("africa-2021"),
            series.step("invitation"),
            INVITATION_AT + timedelta(days=4),
        )
        assert (
            wave_line(late) == f"wave {late.wave.id} africa-2021/invitation: 0 queued, 2 skipped (too late)"
        )


def test_a_wave_in_time_prints_every_message_queued(app: App) -> None:
    series = app.settings.series
    with transaction(app.factory) as db:
        for address in ("ann@example.org", "bob@example.org"):
            add_contact(db, address)
    with transaction(app.factory) as db:
        due = queue_wave(
            db, app.settings, series.session("africa-2021"), series.step("invitation"), INVITATION_AT
        )
        assert wave_line(due) == f"wave {due.wave.id} africa-2021/invitation: 2 queued"
