"""Every writer holds the store briefly (SQLite): a long contact import and 200 one-click unsubscribes during
a wave sent by a real service process lose nothing and duplicate nothing; a web action that cannot get the
store answers 503 with Retry-After, never 500.

The issue's size (a 200,000-row import during a 4,000-message wave, about 10 min here) runs with
``BUSY_IMPORT_ROWS=200000 BUSY_WAVE=4000 .venv/bin/python -m pytest tests/test_busy_store.py -k long_import -s``;
by default 60,000 rows and 3,000 messages keep the suite short. Time limits grow with the sizes.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
from sqlalchemy import func, select
from sqlalchemy.orm import Session as DbSession

from mailer.app import App, open_app
from mailer.compose.links import unsubscribe_url
from mailer.config import Settings, load_settings
from mailer.store.engine import make_engine, session_factory, transaction
from mailer.store.models import Contact, ContactList, ListMembership, Message, Suppression
from mailer.store.outbox import queue_wave
from mailer.timeline.clock import SystemClock
from mailer.web.server import ThreadedServer
from tests.conftest import RunningServer
from tests.factories import add_contact
from tests.service_processes import (
    ROOT,
    ServiceProcess,
    add_contacts,
    message_count,
    pending_count,
    wait_until,
    write_live_config,
)
from tests.test_web_support import INVITATION_AT

WAVE = int(os.environ.get("BUSY_WAVE", "3000"))
IMPORTED = int(os.environ.get("BUSY_IMPORT_ROWS", "60000"))
SCALE = max(IMPORTED / 60_000, WAVE / 3000, 1.0)  # time limits grow with the sizes
UNSUBSCRIBES = 200
ONE_CLICK = {
    "content": b"List-Unsubscribe=One-Click",
    "headers": {"Content-Type": "application/x-www-form-urlencoded"},
}


def _unsubscribe_path(app: App, pk: int, email: str) -> str:
    return "/u/" + unsubscribe_url(app.settings, pk, email).rsplit("/", 1)[1]


def test_a_locked_store_answers_503_with_retry_after_then_200(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'mailer.db'}"
    opened = open_app(load_settings(ROOT / "config", database_url=url))
    engine = make_engine(url, busy_timeout=0.3)
    app = App(opened.settings, engine, session_factory(engine))
    with transaction(app.factory) as db:
        contact = add_contact(db, "ana@example.org")
        db.flush()
        pk = _queue_one(db, app.settings, contact.id)
    path = _unsubscribe_path(app, pk, "ana@example.org")
    holder = sqlite3.connect(tmp_path / "mailer.db", isolation_level=None)
    with (
        ThreadedServer(app, clock=SystemClock()) as server,
        httpx.Client(base_url=server.url, timeout=30) as http,
    ):
        holder.execute("BEGIN IMMEDIATE")  # another writer holds the store
        busy = http.post(path, **ONE_CLICK)  # type: ignore[arg-type]
        holder.execute("ROLLBACK")
        done = http.post(path, **ONE_CLICK)  # type: ignore[arg-type]
    holder.close()
    assert (busy.status_code, busy.headers.get("retry-after")) == (503, "5")
    assert done.status_code == 200
    with transaction(app.factory) as db:
        assert db.scalar(select(func.count()).select_from(Suppression)) == 1
    engine.dispose()
    opened.close()


def _queue_one(db: DbSession, settings: Settings, contact_id: int) -> int:
    series = settings.series
    queue_wave(db, settings, series.session("africa-2021"), series.step("invitation"), INVITATION_AT)
    return int(db.scalar(select(Message.id).where(Message.contact_id == contact_id)) or 0)


def _write_export(path: Path, rows: int) -> None:
    with path.open("w", encoding="utf-8") as handle:
        handle.write("email,name,language\n")
        for i in range(rows):
            handle.write(f"imported{i:06d}@example.org,Imported Person {i},en\n")


def test_a_long_import_and_unsubscribes_during_a_wave_lose_and_duplicate_nothing(
    tmp_path: Path, smtp_server: RunningServer
) -> None:
    url = f"sqlite:///{tmp_path / 'mailer.db'}"
    config = write_live_config(tmp_path)
    app = open_app(load_settings(config, database_url=url))
    add_contacts(app, WAVE)
    export = tmp_path / "caribbean.csv"
    _write_export(export, IMPORTED)
    service = ServiceProcess(config, url, smtp_server.port, tmp_path / "service.log")
    try:
        assert wait_until(
            lambda: message_count(app) == WAVE and len(smtp_server.messages) > 0, 120 * SCALE
        ), service.log_path.read_text()[-3000:]
        env = dict(os.environ, DATABASE_URL=url)
        importing = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from mailer.cli import main; main()",
                "--config",
                str(config),
                "contacts",
                "import",
                str(export),
                "--region",
                "caribbean",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        import_started = time.monotonic()
        received_at_start = len(smtp_server.messages)
        with transaction(app.factory) as db:
            targets = db.execute(
                select(Message.id, Message.recipient).order_by(Message.id.desc()).limit(UNSUBSCRIBES)
            ).all()
        codes: Counter[int] = Counter()
        with (
            ThreadedServer(app, clock=SystemClock()) as server,
            httpx.Client(base_url=server.url, timeout=60) as http,
        ):
            for pk, email in targets:
                path = _unsubscribe_path(app, pk, email)
                while True:
                    status = http.post(path, **ONE_CLICK).status_code  # type: ignore[arg-type]
                    codes[status] += 1
                    if status != 503:
                        break
                    time.sleep(0.2)
        output, _ = importing.communicate(timeout=600 * SCALE)
        import_seconds = time.monotonic() - import_started
        received_during_import = len(smtp_server.messages) - received_at_start
        assert importing.returncode == 0, output.decode()[-3000:]
        assert wait_until(lambda: pending_count(app) == 0, 180 * SCALE), service.log_path.read_text()[-3000:]
    finally:
        code = service.terminate()
    assert code == 0
    log = service.log_path.read_text()
    assert "Traceback" not in log
    print(
        f"\n[busy store] import of {IMPORTED} rows in {import_seconds:.0f} s; {received_during_import} messages "
        f"sent meanwhile; web answers {dict(codes)}; wave of {WAVE}, each received at most "
        f"{max(Counter(r for m in smtp_server.messages for r in m.rcpt_tos).values())} time(s)"
    )
    assert set(codes) <= {200, 503} and codes[200] == UNSUBSCRIBES
    received = Counter(rcpt for message in smtp_server.messages for rcpt in message.rcpt_tos)
    assert max(received.values()) == 1, "nobody received the invitation twice"
    with transaction(app.factory) as db:
        sent = set(db.scalars(select(Message.recipient).where(Message.status == "sent")))
        statuses = dict(db.execute(select(Message.status, func.count()).group_by(Message.status)).all())
        suppressed = db.scalar(select(func.count()).select_from(Suppression))
        imported = db.scalar(
            select(func.count())
            .select_from(ListMembership)
            .join(ContactList, ContactList.id == ListMembership.list_id)
            .where(ContactList.region == "caribbean")
        )
        contacts = db.scalar(select(func.count()).select_from(Contact))
    assert sent == set(received), "every message the server accepted is recorded as sent, and only those"
    assert statuses.get("sent", 0) + statuses.get("suppressed", 0) == WAVE, statuses
    assert suppressed == UNSUBSCRIBES
    assert (imported, contacts) == (IMPORTED, WAVE + IMPORTED)
    assert received_during_import > 0 or import_seconds < 2, "the wave kept going while the import ran"
    app.close()
