"""One SMTP connection's rules (mailer/delivery/dialogue.py, pool.py) against a real aiosmtpd server on
loopback: a late reply ends the connection, a connection out of step is never reused, DATA taken after a
refused recipient is ended before the next command."""

from __future__ import annotations

import asyncio

import aiosmtplib
import pytest

from mailer.config import Security, SmtpSettings
from mailer.delivery.dialogue import ConnectionFailed, Dialogue
from mailer.delivery.envelope import envelope_commands
from mailer.delivery.pool import SmtpPool
from mailer.delivery.replies import Reply
from mailer.store.models import MessageStatus
from tests.smtp_faults import Faults, fault_server

SENDER = "webinars@example.org"
MESSAGE = b"Subject: x\r\n\r\nx\r\n"


def _settings(port: int, timeout: float = 10.0) -> SmtpSettings:
    return SmtpSettings("127.0.0.1", port, Security.NONE, "", "", 1, 100, timeout, connect_timeout=10.0)


def test_a_reply_later_than_the_timeout_closes_the_connection() -> None:
    server, _ = fault_server(Faults(rcpt_slow={"slow@example.org": (2.0, 1)}, pipelining=False))

    async def send() -> tuple[ConnectionFailed, bool]:
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=server.port, timeout=10.0)
        await client.connect()
        dialogue = Dialogue(client)
        mail, rcpt = envelope_commands(SENDER, "slow@example.org", utf8=False, eight_bit=False)
        with pytest.raises(ConnectionFailed) as failed:
            await dialogue.transaction(
                mail,
                rcpt,
                MESSAGE,
                transparent=False,
                pipelining=False,
                timeout=0.3,
                data_timeout=10.0,
                fresh=True,
            )
        connected = dialogue.connected
        client.close()
        return failed.value, connected

    with server:
        failure, connected = asyncio.run(send())
    assert failure.reply == Reply(MessageStatus.DEFERRED, None, "rcpt: timed out")
    assert connected is False  # its late 250 would be read as the reply to the next command


async def _send_each(port: int, recipients: list[str]) -> list[Reply]:
    async with SmtpPool(_settings(port)) as pool:
        return [await pool.send(SENDER, recipient, MESSAGE) for recipient in recipients]


def test_a_connection_whose_reset_is_refused_is_closed_and_not_reused() -> None:
    server, handler = fault_server(
        Faults(rcpt_temporary={"ann@example.org": (451, 1)}, rset_refused=1, pipelining=False)
    )
    with server:
        first, second = asyncio.run(_send_each(server.port, ["ann@example.org", "bob@example.org"]))
    assert first.status is MessageStatus.DEFERRED and first.code == 451
    assert second.status is MessageStatus.SENT
    assert handler.connections == 2
    assert handler.per_connection == {2: 1}  # bob's message went on the new connection


def test_data_taken_after_a_refused_recipient_is_ended_and_the_connection_goes_on() -> None:
    # Pipelined MAIL, RCPT, DATA: the server refuses the recipient yet answers DATA with 354 (RFC 2920
    # sec. 3.1 allows it); the client must end that empty message with "." before anything else.
    server, handler = fault_server(
        Faults(rcpt_permanent={"gone@example.org": 550}, data_without_recipients=True, pipelining=True)
    )
    with server:
        gone, bob = asyncio.run(_send_each(server.port, ["gone@example.org", "bob@example.org"]))
    assert (gone.status, gone.code) == (MessageStatus.BOUNCED, 550)
    assert gone.text.startswith("rcpt: 550 5.1.1 <gone@example.org>")
    assert bob.status is MessageStatus.SENT
    assert handler.connections == 1 and handler.per_connection == {1: 1}
    assert handler.received_by() == {"bob@example.org": 1}
