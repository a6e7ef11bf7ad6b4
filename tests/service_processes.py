"""Run real service processes (``python schedule.py``) against a test store and SMTP server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

from sqlalchemy import func, select

from mailer.app import App
from mailer.store.engine import transaction
from mailer.store.models import Contact, ContactList, ListMembership, Message, MessageStatus

ROOT = Path(__file__).resolve().parent.parent
GMT_MINUS_3 = timezone(timedelta(hours=-3))


def write_live_config(directory: Path, *, invitation_started: timedelta = timedelta(minutes=1)) -> Path:
    """A config folder whose African session's invitation step became due ``invitation_started`` ago.

    Fast service settings for tests: 6 s lease, 0.5 s poll, 1 s first retry, plain SMTP.
    """
    config = directory / "config"
    config.mkdir(parents=True)
    main = (ROOT / "config" / "mailer.toml").read_text()
    for old, new in (
        ('lease = "5m"', 'lease = "6s"'),  # renewed every 2 s while sending: room for a loaded machine
        ('poll_interval = "30s"', 'poll_interval = "1s"'),
        ('retry_base = "1m"', 'retry_base = "1s"'),
        ('security = "starttls"', 'security = "none"'),
    ):
        assert old in main
        main = main.replace(old, new)
    (config / "mailer.toml").write_text(main)
    start = (datetime.now(UTC) + timedelta(weeks=6) - invitation_started).astimezone(GMT_MINUS_3)
    series = (ROOT / "config" / "series.toml").read_text()
    series = series.replace('start = "2021-07-13T10:00"', f'start = "{start:%Y-%m-%dT%H:%M}"')
    (config / "series.toml").write_text(series)
    (directory / "templates").symlink_to(ROOT / "templates")
    return config


def add_contacts(app: App, count: int, region: str = "africa") -> None:
    """``count`` contacts person00000@example.org ... on ``region``'s list, inserted in bulk."""
    now = datetime.now(UTC)
    with transaction(app.factory) as db:
        contact_list = ContactList(region=region, name=region)
        db.add(contact_list)
        db.flush()
        contacts = [
            Contact(
                email=f"person{i:05d}@example.org",
                email_key=f"person{i:05d}@example.org",
                name=f"Person {i}",
                language=("en", "fr", "ar", "es")[i % 4],
                time_zone="Africa/Lagos",
                created_at=now,
                updated_at=now,
            )
            for i in range(count)
        ]
        db.add_all(contacts)
        db.flush()
        db.add_all(
            ListMembership(contact_id=c.id, list_id=contact_list.id, source="test", added_at=now)
            for c in contacts
        )


class ServiceProcess:
    """One ``python schedule.py`` child; stdout and stderr go to ``log``."""

    def __init__(self, config: Path, database_url: str, smtp_port: int, log: Path) -> None:
        env = dict(os.environ, DATABASE_URL=database_url, SMTP_HOST="127.0.0.1", SMTP_PORT=str(smtp_port))
        self.log_path = log
        self._log = log.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "schedule.py"), "--config", str(config)],
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)
        self._log.close()

    def terminate(self, timeout: float = 30) -> int:
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout)
        self._log.close()
        return code


def pending_count(app: App) -> int:
    """Messages not yet in a final state."""
    with transaction(app.factory) as db:
        return (
            db.scalar(
                select(func.count())
                .select_from(Message)
                .where(
                    Message.status.in_([MessageStatus.QUEUED, MessageStatus.SENDING, MessageStatus.DEFERRED])
                )
            )
            or 0
        )


def message_count(app: App) -> int:
    with transaction(app.factory) as db:
        return db.scalar(select(func.count()).select_from(Message)) or 0


def wait_until(predicate, timeout: float, interval: float = 0.2) -> bool:  # type: ignore[no-untyped-def]
    """Poll ``predicate`` until true or ``timeout`` seconds pass; returns the last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())
