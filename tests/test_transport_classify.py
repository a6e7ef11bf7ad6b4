from __future__ import annotations

import pytest

from mailer.delivery.envelope import envelope_address, needs_smtputf8
from mailer.delivery.replies import Phase, classify
from mailer.store.models import MessageStatus

SENT, DEFERRED, BOUNCED, FAILED = (
    MessageStatus.SENT,
    MessageStatus.DEFERRED,
    MessageStatus.BOUNCED,
    MessageStatus.FAILED,
)


@pytest.mark.parametrize(
    ("code", "phase", "expected"),
    [
        (250, Phase.DATA, SENT),
        (251, Phase.RCPT, SENT),
        (None, Phase.CONNECT, DEFERRED),  # connection refused, dropped or timed out
        (421, Phase.CONNECT, DEFERRED),
        (450, Phase.RCPT, DEFERRED),
        (451, Phase.RCPT, DEFERRED),
        (452, Phase.RCPT, DEFERRED),
        (454, Phase.MAIL, DEFERRED),
        (552, Phase.RCPT, DEFERRED),  # RFC 5321 4.5.3.1.10
        (550, Phase.RCPT, BOUNCED),
        (551, Phase.RCPT, BOUNCED),
        (553, Phase.RCPT, BOUNCED),
        (554, Phase.DATA, FAILED),
        (552, Phase.DATA, FAILED),
        (550, Phase.MAIL, FAILED),
        (554, Phase.CONNECT, FAILED),
        (535, Phase.AUTH, DEFERRED),  # our credentials, not the message: deferred until fixed or the deadline
        (454, Phase.AUTH, DEFERRED),
    ],
)
def test_classify(code: int | None, phase: Phase, expected: MessageStatus) -> None:
    assert classify(code, phase) is expected


def test_envelope_addresses() -> None:
    assert envelope_address("aicha.toure@assemblée.example") == "aicha.toure@xn--assemble-h1a.example"
    assert envelope_address("a@example.org") == "a@example.org"
    assert needs_smtputf8("josé.núñez@mail.example.com")
    assert not needs_smtputf8("aicha.toure@assemblée.example")
