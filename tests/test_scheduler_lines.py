"""What the service prints for each wave it materialises: messages to send and messages skipped on arrival,
each counted once."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from mailer.app import App
from mailer.scheduler import wave_line
from mailer.store.engine import transaction
from mailer.store.outbox import queue_wave
from tests.conftest import INVITATION_AT
from tests.factories import add_contact


@pytest.mark.parametrize(
    ("queued_at", "line"),
    [
        (INVITATION_AT + timedelta(days=4), "africa-2021/invitation: 0 queued, 2 skipped (too late)"),
        (INVITATION_AT, "africa-2021/invitation: 2 queued"),
    ],
    ids=["past-its-deadline", "in-time"],
)
def test_a_wave_prints_what_it_queued_and_skipped(app: App, queued_at: datetime, line: str) -> None:
    series = app.settings.series
    with transaction(app.factory) as db:
        for address in ("ann@example.org", "bob@example.org"):
            add_contact(db, address)
    with transaction(app.factory) as db:
        result = queue_wave(
            db, app.settings, series.session("africa-2021"), series.step("invitation"), queued_at
        )
        assert wave_line(result) == f"wave {result.wave.id} {line}"
