"""One path for the message the service sends: ``mailer send-test`` and ``templates render-all`` make the same
message as the service (header fields, DKIM signature, List-Unsubscribe-Post, Auto-Submitted, List-Id),
received by a real aiosmtpd server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mailer.app import App, outgoing
from mailer.cli import AppContext
from mailer.cli.run import send_test
from mailer.compose.checks import write_samples
from mailer.compose.outgoing import notice_extra
from mailer.config import DkimSettings
from mailer.delivery.transport import SmtpPool
from mailer.service import Service
from mailer.store.engine import transaction
from mailer.store.outbox import queue_wave
from mailer.timeline.clock import VirtualClock
from tests.conftest import RunningServer, with_smtp
from tests.factories import add_contact, dkim_signing
from tests.test_mime import HEADERS

INVITATION_AT = datetime(2021, 6, 1, 13, 0, tzinfo=UTC)
BASE_URL = "https://mailer.example.org"


def _signing_app(app: App, server: RunningServer, tmp_path: Path, *, base_url: str = BASE_URL) -> App:
    """``app`` sending to ``server``, its links under ``base_url``, signing with a fresh RSA key."""
    signing, _ = dkim_signing(tmp_path)
    settings = with_smtp(app.settings, server, username="")
    settings = dataclasses.replace(
        settings, dkim=signing, web=dataclasses.replace(settings.web, base_url=base_url)
    )
    return dataclasses.replace(app, settings=settings)


def _service_sends_the_invitation(app: App, address: str) -> None:
    series = app.settings.series
    with transaction(app.factory) as db:
        add_contact(db, address, name="Ana Lima", language="fr", time_zone="Africa/Abidjan")
    with transaction(app.factory) as db:
        queue_wave(db, app.settings, series.session("africa-2021"), series.step("invitation"), INVITATION_AT)

    async def run() -> None:
        async with SmtpPool(app.settings.smtp) as pool:
            await Service(app, VirtualClock(INVITATION_AT)).dispatch(pool)

    asyncio.run(run())


def _send_test(app: App, address: str) -> None:
    context = AppContext(None, None)
    context._app = app
    result = CliRunner().invoke(
        send_test,
        [
            "--session",
            "africa-2021",
            "--step",
            "invitation",
            "--to",
            f"Ana Lima <{address}>",
            "--language",
            "fr",
            "--zone",
            "Africa/Abidjan",
        ],
        obj=context,
    )
    assert result.exit_code == 0, result.output
    assert result.output.startswith("sent: 250")


def _parsed(data: bytes) -> EmailMessage:
    message = BytesParser(policy=policy.default).parsebytes(data)
    assert isinstance(message, EmailMessage) and not message.defects
    return message


def test_send_test_sends_the_message_the_service_sends(
    app: App, smtp_server: RunningServer, tmp_path: Path
) -> None:
    app = _signing_app(app, smtp_server, tmp_path)
    _service_sends_the_invitation(app, "ana.lima@example.org")
    _send_test(app, "ana.lima@example.org")
    sent, test = (_parsed(message.data) for message in smtp_server.messages)
    names = ["DKIM-Signature", *(name for name in HEADERS if name != "Auto-Submitted")]
    assert list(sent.keys()) == list(test.keys()) == names  # invitations are not Auto-Submitted
    for name in ("From", "Reply-To", "To", "Subject", "Content-Language", "List-Id", "List-Unsubscribe-Post"):
        assert test[name] == sent[name], name
    assert test["List-Unsubscribe"].startswith("<mailto:") and sent["List-Unsubscribe"].startswith("<mailto:")
    assert test["List-Unsubscribe"].endswith(f"<{BASE_URL}/u/preview>")
    assert sent["List-Unsubscribe"].split(", ")[1].startswith(f"<{BASE_URL}/u/")
    assert "d=example.org" in test["DKIM-Signature"] and "s=s2021" in test["DKIM-Signature"]
    assert [part.get_content_type() for part in test.walk()] == [
        part.get_content_type() for part in sent.walk()
    ]


def test_send_test_without_https_has_no_one_click_post(
    app: App, smtp_server: RunningServer, tmp_path: Path
) -> None:
    app = _signing_app(app, smtp_server, tmp_path, base_url="http://127.0.0.1:8080")
    _send_test(app, "ana.lima@example.org")
    (test,) = (_parsed(message.data) for message in smtp_server.messages)
    assert test["List-Unsubscribe-Post"] is None  # RFC 8058 one-click needs https
    assert test["List-Unsubscribe"].endswith("<http://127.0.0.1:8080/u/preview>")
    assert test["DKIM-Signature"] is not None


def test_render_all_writes_the_service_headers(app: App, smtp_server: RunningServer, tmp_path: Path) -> None:
    app = _signing_app(app, smtp_server, tmp_path)
    _service_sends_the_invitation(app, "ana.lima@example.org")
    (sent,) = (_parsed(message.data) for message in smtp_server.messages)
    written = write_samples(
        app.settings,
        tmp_path / "samples",
        date=INVITATION_AT,
        sessions=["africa-2021"],
        languages=("fr",),
        outgoing=outgoing(app.settings),
    )
    emls = {path.name: _parsed(path.read_bytes()) for path in written if path.suffix == ".eml"}
    follow_up, invitation = emls["follow-up.fr.eml"], emls["invitation.fr.eml"]
    assert follow_up["Auto-Submitted"] == "auto-generated"
    assert (
        follow_up["List-Id"]
        == invitation["List-Id"]
        == sent["List-Id"]
        == "<budapest-convention-2021.example.org>"
    )
    assert list(invitation.keys()) == list(sent.keys())
    assert follow_up["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert emls["cancelled-2.fr.eml"]["Auto-Submitted"] == "auto-generated"


@pytest.mark.parametrize(
    ("step", "previous", "extra"),
    [
        ("cancelled-2", None, {"change": "cancelled"}),
        ("date-changed-1", None, {"change": "rescheduled"}),
        ("date-changed-1", INVITATION_AT, {"change": "rescheduled", "previous_start": INVITATION_AT}),
        ("invitation", INVITATION_AT, {}),
    ],
)
def test_notice_extra(step: str, previous: datetime | None, extra: dict[str, object]) -> None:
    assert notice_extra(step, previous) == extra
