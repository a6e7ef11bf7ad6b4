from __future__ import annotations

import asyncio
import socket

import pytest

from mailer.config import Security, SmtpSettings
from mailer.delivery.envelope import envelope_address, needs_smtputf8
from mailer.delivery.pool import SmtpPool
from mailer.delivery.replies import Phase, Reply, classify, expected, provider_message_id, refused, unanswered
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


PHASES = (Phase.CONNECT, Phase.AUTH, Phase.MAIL, Phase.RCPT, Phase.DATA)
# Reply-code class boundaries (RFC 5321 sec. 4.2.1), the expected status at each phase, in PHASES' order.
BOUNDARIES: dict[int, tuple[MessageStatus, ...]] = {
    199: (FAILED, DEFERRED, FAILED, FAILED, FAILED),  # 1yz: SMTP has no such reply to a command
    200: (SENT, SENT, SENT, SENT, SENT),
    299: (SENT, SENT, SENT, SENT, SENT),
    300: (FAILED, DEFERRED, FAILED, FAILED, FAILED),  # 3yz is no completion reply
    354: (FAILED, DEFERRED, FAILED, FAILED, FAILED),  # "start mail input" where the end of DATA was due
    399: (FAILED, DEFERRED, FAILED, FAILED, FAILED),
    400: (DEFERRED, DEFERRED, DEFERRED, DEFERRED, DEFERRED),
    421: (DEFERRED, DEFERRED, DEFERRED, DEFERRED, DEFERRED),
    450: (DEFERRED, DEFERRED, DEFERRED, DEFERRED, DEFERRED),
    499: (DEFERRED, DEFERRED, DEFERRED, DEFERRED, DEFERRED),
    500: (FAILED, DEFERRED, FAILED, BOUNCED, FAILED),
    550: (FAILED, DEFERRED, FAILED, BOUNCED, FAILED),
    599: (FAILED, DEFERRED, FAILED, BOUNCED, FAILED),
    600: (FAILED, DEFERRED, FAILED, FAILED, FAILED),  # beyond 5yz: not a bounce
}


@pytest.mark.parametrize(
    ("code", "phase", "expected"),
    [
        (code, phase, expected)
        for code, statuses in BOUNDARIES.items()
        for phase, expected in zip(PHASES, statuses, strict=True)
    ],
)
def test_classify_at_the_class_boundaries(code: int, phase: Phase, expected: MessageStatus) -> None:
    assert classify(code, phase) is expected


def test_a_3xx_reply_is_never_counted_as_sent() -> None:
    for code in (300, 334, 354, 399):
        assert [classify(code, phase) for phase in PHASES] == [FAILED, DEFERRED, FAILED, FAILED, FAILED]


@pytest.mark.parametrize(
    ("phase", "code", "goes_on"),
    [
        (Phase.DATA, 354, True),  # "start mail input": the message may be sent
        (Phase.DATA, 250, False),
        (Phase.DATA, 353, False),
        (Phase.DATA, 355, False),
        (Phase.DATA, 451, False),
        (Phase.MAIL, 250, True),
        (Phase.MAIL, 251, False),  # 251 is a reply to RCPT only
        (Phase.MAIL, 249, False),
        (Phase.MAIL, 354, False),
        (Phase.RCPT, 250, True),
        (Phase.RCPT, 251, True),  # "user not local; will forward"
        (Phase.RCPT, 252, False),
        (Phase.RCPT, 249, False),
        (Phase.RCPT, 354, False),
        (Phase.RCPT, 550, False),
    ],
)
def test_only_the_expected_reply_lets_a_transaction_go_on(phase: Phase, code: int, goes_on: bool) -> None:
    assert expected(phase, code) is goes_on


def test_a_refusal_keeps_its_code_and_says_where_and_what() -> None:
    assert refused(550, "5.1.1 no such user", Phase.RCPT) == Reply(
        BOUNCED, 550, "rcpt: 550 5.1.1 no such user"
    )
    assert refused(421, "try later", Phase.CONNECT) == Reply(DEFERRED, 421, "connect: 421 try later")


def test_no_reply_is_a_deferral_that_says_where_and_why() -> None:
    for phase in PHASES:
        assert unanswered(phase, "timed out") == Reply(DEFERRED, None, f"{phase.value}: timed out")
    # After the message's content went out, no reply leaves its fate open (RFC 1047): said and marked.
    assert unanswered(Phase.DATA, "connection lost", uncertain=True) == Reply(
        DEFERRED,
        None,
        "data: connection lost after the message's content was sent: it may have been delivered",
        uncertain=True,
    )
    assert unanswered(Phase.DATA, "timed out", uncertain=False).uncertain is False


@pytest.mark.parametrize(
    ("text", "relay_id"),
    [
        (
            "Ok 0100017a2b3c4d5e-1a2b3c4d-0000-0000-0000-000000000000-000000",  # Amazon SES
            "0100017a2b3c4d5e-1a2b3c4d-0000-0000-0000-000000000000-000000",
        ),
        ("Ok: queued as 9Oqjh3IZSuynjc_Z7FPBaQ", "9Oqjh3IZSuynjc_Z7FPBaQ"),  # SendGrid
        ("2.0.0 Ok: queued as 4F1A2B3C", "4F1A2B3C"),  # Postfix
        ("2.0.0 Ok: queued as <4F1A2B3C>\nsecond line queued as XYZW1234", "4F1A2B3C"),  # first line only
        ("Queued As: ABCD", "ABCD"),  # 4 characters at least
        ("queued as ABC", ""),
        ("Ok 12345678", "12345678"),  # a bare "Ok ID": 8 characters at least
        ("Ok 1234567", ""),
        ("ok: <abcdefgh>", "abcdefgh"),
        ("2.6.0 Ok 0123456789abcdef", "0123456789abcdef"),
        ("22.0.0 ok abcdefghij", ""),
        ("Ok abcdefgh trailing", ""),  # more words: not an id
        ("Ok -abcdefghij", ""),
        ("Ok: queued as _abcd", ""),
        ("OK", ""),
        ("Great success", ""),
        ("", ""),
        ("  \n", ""),
    ],
)
def test_the_relays_id_is_read_from_its_250_reply(text: str, relay_id: str) -> None:
    assert provider_message_id(text) == relay_id


def test_a_refused_connection_is_deferred_not_permanent() -> None:
    with socket.socket() as closed:  # bound, never listening: a connection to it is refused
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        settings = SmtpSettings("127.0.0.1", port, Security.NONE, "", "", 1, 10, 5.0, connect_timeout=5.0)

        async def send() -> tuple[SmtpPool, Reply]:
            async with SmtpPool(settings) as pool:
                return pool, await pool.send(
                    "news@example.org", "ana@example.org", b"Subject: x\r\n\r\nx\r\n"
                )

        pool, reply = asyncio.run(send())
    reason = (
        f"connect: SMTPConnectError: Error connecting to 127.0.0.1 on port {port}: "
        f"[Errno 111] Connect call failed ('127.0.0.1', {port})"
    )
    # Refused circuit_failures (3) times in a row: the relay counts as unreachable, the message waits for
    # the probe (retry_at) without an attempt counted.
    assert pool.circuit.since is not None and pool.circuit.next_probe is not None
    assert reply == Reply(
        DEFERRED,
        None,
        f"relay 127.0.0.1:{port} (default) unreachable since {pool.circuit.since:%H:%M:%S} UTC, "
        f"next probe {pool.circuit.next_probe:%H:%M:%S} UTC (3 failed connections; last: {reason})",
        retry_at=pool.circuit.next_probe,
    )
    assert pool.connect_attempts == 3
    assert pool.connects == 0


def test_envelope_addresses() -> None:
    assert envelope_address("aicha.toure@assemblée.example") == "aicha.toure@xn--assemble-h1a.example"
    assert envelope_address("a@example.org") == "a@example.org"
    assert needs_smtputf8("josé.núñez@mail.example.com")
    assert not needs_smtputf8("aicha.toure@assemblée.example")


def test_a_refusal_in_another_charset_is_stored_with_replacement_characters() -> None:
    # aiosmtplib keeps a reply's bytes that are not UTF-8 as surrogate escapes, which no store can encode.
    latin1 = b"5.1.1 destinataire inconnu: Andr\xe9 M\xc3\xbcller".decode("utf-8", "surrogateescape")
    reply = refused(550, latin1, Phase.RCPT)
    assert reply == Reply(
        MessageStatus.BOUNCED, 550, "rcpt: 550 5.1.1 destinataire inconnu: Andr\ufffd M\xfcller"
    )
    assert reply.text.encode("utf-8")
