"""One SMTP connection's rules (mailer/delivery/dialogue.py, pool.py) against a real aiosmtpd server on
loopback: a late reply ends the connection, a connection out of step is never reused, DATA taken after a
refused recipient is ended before the next command, replies are read as RFC 5321 sec. 4.2 has them (lines
continued by "-", in pieces as they come), and a malformed or endless reply ends the connection."""

from __future__ import annotations

import asyncio

import aiosmtplib
import pytest

from mailer.config import Security, SmtpSettings
from mailer.delivery.dialogue import ConnectionFailed, Dialogue, transparent_form
from mailer.delivery.envelope import envelope_commands
from mailer.delivery.pool import SmtpPool
from mailer.delivery.replies import Reply
from mailer.store.models import MessageStatus
from tests.smtp_faults import Faults, fault_server

SENDER = "webinars@example.org"
MESSAGE = b"Subject: x\r\n\r\nx\r\n"


UNCERTAIN = " after the message's content was sent: it may have been delivered"


def _settings(port: int, timeout: float = 10.0) -> SmtpSettings:
    return SmtpSettings("127.0.0.1", port, Security.NONE, "", "", 1, 100, timeout, connect_timeout=10.0)


def test_a_reply_later_than_the_timeout_closes_the_connection() -> None:
    server, _ = fault_server(Faults(rcpt_slow={"slow@example.org": (2.0, 1)}, pipelining=False))

    with server:
        connected, failure = asyncio.run(
            _transaction(server.port, "slow@example.org", fresh=True, timeout=0.3)
        )
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
    assert handler.quits == 1  # the connection out of step is closed without QUIT; the other gets one


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


@pytest.mark.parametrize(
    ("data", "sent"),
    [
        (b"a\r\nb\r\n", b"a\r\nb\r\n"),  # already CRLF with a final CRLF: as it is
        (b"a\nb", b"a\r\nb\r\n"),  # bare LF, no final line end
        (b"a\nb\r\n", b"a\r\nb\r\n"),  # one bare LF among CRLFs
        (b"a\rb\r\n", b"a\r\nb\r\n"),  # one bare CR among CRLFs
        (b"a\r\nb", b"a\r\nb\r\n"),  # CRLFs but no final one
        (b".a\r\n.b\r\n", b"..a\r\n..b\r\n"),  # the first line's dot and a later line's
        (b"a\r\n..b\n", b"a\r\n...b\r\n"),
        (b"a\r\n.\r\n", b"a\r\n..\r\n"),  # a lone dot would end the message early
        (b"a.b\r\nc .\r\n", b"a.b\r\nc .\r\n"),  # dots inside a line stay single
    ],
)
def test_data_is_sent_with_crlf_line_ends_and_leading_dots_doubled(data: bytes, sent: bytes) -> None:
    # RFC 5321 sec. 2.3.8 (CRLF only, a final CRLF) and sec. 4.5.2 (a line's leading "." doubled).
    assert transparent_form(data) == sent


async def _transaction(
    port: int, recipient: str, *, fresh: bool, timeout: float = 10.0
) -> tuple[bool, ConnectionFailed]:
    """(whether the dialogue is still connected, the failure) of a transaction that must fail; ``timeout``
    seconds for each command's reply."""
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=10.0)
    await client.connect()
    dialogue = Dialogue(client)
    mail, rcpt = envelope_commands(SENDER, recipient, utf8=False, eight_bit=False)
    with pytest.raises(ConnectionFailed) as failed:
        await dialogue.transaction(
            mail,
            rcpt,
            MESSAGE,
            transparent=False,
            pipelining=False,
            timeout=timeout,
            data_timeout=10.0,
            fresh=fresh,
        )
    connected = dialogue.connected
    client.close()
    return connected, failed.value


def test_a_connection_the_server_ends_in_data_is_a_deferral_with_no_retry_on_a_new_one() -> None:
    server, _ = fault_server(
        Faults(drop_in_data={"ann@example.org": 1, "bob@example.org": 1}, pipelining=False)
    )
    with server:
        connected, fresh = asyncio.run(_transaction(server.port, "ann@example.org", fresh=True))
        _, reused = asyncio.run(_transaction(server.port, "bob@example.org", fresh=False))
    # The message may have reached the server: never retried at once, even on a reused connection.
    expected = Reply(  # the content went out: it may have been kept (RFC 1047)
        MessageStatus.DEFERRED,
        None,
        "data: connection lost: Unexpected EOF received" + UNCERTAIN,
        uncertain=True,
    )
    assert (fresh.reply, fresh.retry, fresh.unreachable) == (expected, False, False)
    assert (reused.reply, reused.retry) == (expected, False)
    assert connected is False


def test_a_closed_dialogue_refuses_the_next_exchange_at_once() -> None:
    server, _ = fault_server(Faults(pipelining=False))

    async def close_then_write() -> tuple[bool, str]:
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=server.port, timeout=10.0)
        await client.connect()
        dialogue = Dialogue(client)
        dialogue.close()
        connected = dialogue.connected
        with pytest.raises(aiosmtplib.SMTPServerDisconnected) as lost:
            await dialogue.exchange(b"NOOP\r\n", 1, 10.0)
        return connected, str(lost.value)

    with server:
        connected, error = asyncio.run(close_then_write())
    assert (connected, error) == (False, "Connection closed")


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "one-by-one"])
def test_a_421_reply_closes_the_connection_and_defers_the_message(pipelining: bool) -> None:
    # RFC 5321 sec. 3.8: 421 means the server is closing the channel; nothing more may go on it.
    server, _ = fault_server(Faults(rcpt_temporary={"ann@example.org": (421, 1)}, pipelining=pipelining))

    async def send() -> tuple[bool, ConnectionFailed]:
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=server.port, timeout=10.0)
        await client.connect()
        dialogue = Dialogue(client)
        mail, rcpt = envelope_commands(SENDER, "ann@example.org", utf8=False, eight_bit=False)
        with pytest.raises(ConnectionFailed) as failed:
            await dialogue.transaction(
                mail,
                rcpt,
                MESSAGE,
                transparent=False,
                pipelining=pipelining,
                timeout=10.0,
                data_timeout=10.0,
                fresh=False,
            )
        connected = dialogue.connected  # before the client lets go of the socket
        client.close()
        return connected, failed.value

    with server:
        connected, failure = asyncio.run(send())
    assert (failure.reply.status, failure.reply.code, failure.retry) == (MessageStatus.DEFERRED, 421, False)
    assert str(failure) == failure.reply.text and failure.reply.text.startswith("rcpt: 421 ")
    assert connected is False


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "one-by-one"])
@pytest.mark.parametrize(
    ("code", "status", "connections"),
    [
        (554, MessageStatus.FAILED, 1),  # refused for good: the connection carries the next message
        (422, MessageStatus.DEFERRED, 1),  # refused for now: the same
        (421, MessageStatus.DEFERRED, 2),  # the server is closing the channel (RFC 5321 sec. 3.8)
    ],
)
def test_a_message_refused_after_its_final_dot_keeps_the_connection_unless_421(
    pipelining: bool, code: int, status: MessageStatus, connections: int
) -> None:
    server, handler = fault_server(
        Faults(message_refused={"ann@example.org": (code, 1)}, pipelining=pipelining)
    )
    with server:
        ann, bob = asyncio.run(_send_each(server.port, ["ann@example.org", "bob@example.org"]))
    assert ann == Reply(status, code, f"data: {code} {code // 100}.7.1 message refused")
    assert bob == Reply(MessageStatus.SENT, 250, "2.0.0 OK: queued")
    assert (handler.connections, handler.received_by()) == (connections, {"bob@example.org": 1})


def test_commands_refused_one_by_one_name_their_phase() -> None:
    # Without PIPELINING each command's reply is read before the next is written: the refusal names it.
    server, handler = fault_server(
        Faults(
            rcpt_permanent={"gone@example.org": 550},
            data_refused={"ann@example.org": (451, 1)},
            pipelining=False,
        )
    )
    with server:
        gone, ann = asyncio.run(_send_each(server.port, ["gone@example.org", "ann@example.org"]))
    assert gone == Reply(
        MessageStatus.BOUNCED,
        550,
        "rcpt: 550 5.1.1 <gone@example.org>: Recipient address rejected: User unknown",
    )
    assert ann == Reply(MessageStatus.DEFERRED, 451, "data: 451 4.3.0 not now")
    assert (handler.connections, handler.messages) == (1, [])


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "one-by-one"])
def test_a_recipient_answered_251_will_be_forwarded_and_the_message_goes(pipelining: bool) -> None:
    # RFC 5321 sec. 3.4: 251 "user not local; will forward" accepts the recipient, as 250 does.
    server, handler = fault_server(
        Faults(rcpt_forwarded=frozenset({"fwd@example.org"}), pipelining=pipelining)
    )
    with server:
        [reply] = asyncio.run(_send_each(server.port, ["fwd@example.org"]))
    assert reply == Reply(MessageStatus.SENT, 250, "2.0.0 OK: queued")
    assert handler.received_by() == {"fwd@example.org": 1}


def test_a_sender_refused_one_by_one_names_mail() -> None:
    server, handler = fault_server(Faults(mail_raw=(b"553 5.7.1 sender refused\r\n",), pipelining=False))
    with server:
        [refused] = asyncio.run(_send_each(server.port, ["ann@example.org"]))
    assert refused == Reply(MessageStatus.FAILED, 553, "mail: 553 5.7.1 sender refused")
    assert handler.messages == []


def test_a_reply_in_another_charset_is_kept_readable_and_storable() -> None:
    # Some servers answer in Latin-1: the text keeps its ASCII and UTF-8, the other bytes become U+FFFD.
    reply = b"553 5.7.1 exp\xe9diteur refus\xe9, caf\xc3\xa9 ferm\xc3\xa9\r\n"
    server, handler = fault_server(Faults(mail_raw=(reply,), pipelining=False))
    with server:
        [refused] = asyncio.run(_send_each(server.port, ["ann@example.org"]))
    assert refused == Reply(
        MessageStatus.FAILED, 553, "mail: 553 5.7.1 exp\ufffdditeur refus\ufffd, caf\xe9 ferm\xe9"
    )
    assert refused.text.encode("utf-8")  # no surrogate escape: a store can hold it
    assert handler.messages == []


def test_a_pool_needs_a_host() -> None:
    with pytest.raises(ValueError) as error:
        SmtpPool(SmtpSettings("", 25, Security.NONE, "", "", 1, 1, 1.0))
    assert str(error.value) == "SmtpPool needs an SMTP host (the capture server's or a relay's)"


def test_the_pool_greets_with_the_local_hostname_it_was_given() -> None:
    # RFC 5321 sec. 4.1.1.1: EHLO names the client's host; relays check it against the sender's domain.
    server, handler = fault_server(Faults(pipelining=False))

    async def send() -> Reply:
        async with SmtpPool(_settings(server.port), local_hostname="mailer.example.org") as pool:
            return await pool.send(SENDER, "ann@example.org", MESSAGE)

    with server:
        reply = asyncio.run(send())
    assert reply.status is MessageStatus.SENT
    assert handler.ehlo_names == ["mailer.example.org"]


def test_a_421_greeting_is_retried_at_once_on_a_new_connection() -> None:
    # A 421 greeting (RFC 5321 sec. 3.8) opens no connection: the relay counts as unreachable for it, and the
    # message goes on the next connection, before the circuit's threshold (3) is reached.
    server, handler = fault_server(Faults(greeting_421=2, pipelining=False))

    async def send() -> tuple[SmtpPool, Reply]:
        async with SmtpPool(_settings(server.port)) as pool:
            return pool, await pool.send(SENDER, "ann@example.org", MESSAGE)

    with server:
        pool, reply = asyncio.run(send())
    assert reply.status is MessageStatus.SENT
    assert (pool.connect_attempts, pool.connects, handler.connections) == (3, 1, 3)
    assert pool.circuit.open is False


async def _mail_reply(port: int) -> Reply | ConnectionFailed:
    """What a transaction whose MAIL gets the server's raw bytes (:attr:`Faults.mail_raw`) ends with: the
    reply, or the failure that ended the connection."""
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=10.0)
    await client.connect()
    dialogue = Dialogue(client)
    mail, rcpt = envelope_commands(SENDER, "ann@example.org", utf8=False, eight_bit=False)
    try:
        return await dialogue.transaction(
            mail,
            rcpt,
            MESSAGE,
            transparent=False,
            pipelining=False,
            timeout=10.0,
            data_timeout=10.0,
            fresh=True,
        )
    except ConnectionFailed as failure:
        return failure
    finally:
        client.close()


def _answer_mail(*pieces: bytes) -> Reply | ConnectionFailed:
    server, _ = fault_server(Faults(mail_raw=pieces, pipelining=False))
    with server:
        return asyncio.run(_mail_reply(server.port))


def test_a_multi_line_reply_is_read_whole_across_pieces_and_line_ends() -> None:
    # RFC 5321 sec. 4.2.1: "550-" lines continue the reply, "550 " ends it; a bare LF ends a line too.
    reply = _answer_mail(b"550-5.1.0 first", b" line\r\n550-  5.1.0 second  \n", b"550 5.1.0 last\r\n")
    assert reply == Reply(MessageStatus.FAILED, 550, "mail: 550 5.1.0 first line\n5.1.0 second\n5.1.0 last")


def test_a_reply_of_exactly_the_limit_is_read() -> None:
    # 65,536 bytes waiting unparsed is the most a reply may take; one byte more ends the connection.
    line = b"550-" + b"y" * 996 + b"\r\n"  # 1,002 bytes
    pieces = (line * 65, b"550-" + b"y" * (65536 - 65 * 1002 - 4), b"\r\n550 end\r\n")
    assert sum(map(len, pieces[:2])) == 65536
    reply = _answer_mail(*pieces)
    assert isinstance(reply, Reply) and (reply.status, reply.code) == (MessageStatus.FAILED, 550)
    assert reply.text.endswith("\nend") and reply.text.count("\n") == 66


@pytest.mark.parametrize(
    ("pieces", "reason"),
    [
        ((b"\r\n",), "malformed reply b''"),  # a blank line where a reply code belongs
        ((b"25O ok\r\n",), "malformed reply b'25O ok'"),
        ((b"x" * 100 + b"\r\n",), "malformed reply " + repr(b"x" * 80)),  # named by its first 80 bytes
        ((b"550-" + b"y" * 1000 + b"\r\n",) * 70, "reply too long: the server is out of step"),
        ((b"550 " + b"z" * 70000,), "reply too long: the server is out of step"),  # one line, no end
    ],
    ids=["blank", "letter-in-code", "long-garbage", "endless-multi-line", "endless-line"],
)
def test_a_malformed_or_endless_reply_ends_the_connection(pieces: tuple[bytes, ...], reason: str) -> None:
    failure = _answer_mail(*pieces)
    assert isinstance(failure, ConnectionFailed)
    assert (failure.reply, failure.retry) == (
        Reply(MessageStatus.DEFERRED, None, f"mail: connection lost: {reason}"),
        False,
    )


def test_each_exchange_waits_its_own_timeout_whatever_the_exchanges_before_it_waited() -> None:
    # One timer serves every wait of a connection (mailer.delivery.dialogue.Dialogue._expire): a timer set for
    # an earlier, longer wait is moved earlier, one that fires before a later wait's deadline moves on to it.
    slow = {"b@example.org": (1.0, 1), "c@example.org": (1.0, 1)}
    server, _ = fault_server(Faults(rcpt_slow=slow, pipelining=False))

    async def exchanges() -> tuple[list[int], bool, list[dict[str, object]]]:
        errors: list[dict[str, object]] = []  # what a callback of the loop raised (a timer's, say)
        asyncio.get_running_loop().set_exception_handler(lambda _, context: errors.append(context))
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=server.port, timeout=10.0)
        await client.connect()
        dialogue = Dialogue(client)
        codes = [r.code for r in await dialogue.exchange(b"MAIL FROM:<" + SENDER.encode() + b">\r\n", 1, 0.6)]
        codes += [r.code for r in await dialogue.exchange(b"RCPT TO:<a@example.org>\r\n", 1, 0.2)]
        await asyncio.sleep(0.3)  # the timer set for a's reply fires with no wait under way
        # b's reply comes 1 s later, within its 1.5 s: the timer of MAIL's 0.6 s, moved for a's, never fires
        codes += [r.code for r in await dialogue.exchange(b"RCPT TO:<b@example.org>\r\n", 1, 1.5)]
        # c's reply comes 1 s later, after the timer set for b's deadline: that one moves on to c's
        codes += [r.code for r in await dialogue.exchange(b"RCPT TO:<c@example.org>\r\n", 1, 1.5)]
        connected = dialogue.connected
        client.close()
        return codes, connected, errors

    with server:
        codes, connected, errors = asyncio.run(exchanges())
    assert (codes, connected, errors) == ([250, 250, 250, 250], True, [])


def test_a_shorter_timeout_after_a_longer_one_ends_its_wait_in_time() -> None:
    server, _ = fault_server(Faults(rcpt_slow={"slow@example.org": (3.0, 1)}, pipelining=False))

    async def exchanges() -> tuple[int, float, str, bool]:
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=server.port, timeout=10.0)
        await client.connect()
        dialogue = Dialogue(client)
        [mail] = await dialogue.exchange(b"MAIL FROM:<" + SENDER.encode() + b">\r\n", 1, 30.0)
        started = asyncio.get_running_loop().time()
        with pytest.raises(aiosmtplib.SMTPReadTimeoutError) as late:
            await dialogue.exchange(b"RCPT TO:<slow@example.org>\r\n", 1, 0.3)
        waited = asyncio.get_running_loop().time() - started
        connected = dialogue.connected
        client.close()
        return mail.code, waited, str(late.value), connected

    with server:
        code, waited, error, connected = asyncio.run(exchanges())
    assert (code, error, connected) == (250, "Timed out waiting for server response", False)
    assert 0.3 <= waited < 2.0  # not the 30 s of MAIL's timer, nor the reply 3 s later
