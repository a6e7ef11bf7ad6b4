"""A sender's consecutive messages over one connection (mailer.delivery.forwarding.Lane, pool.SmtpPool.lane):
with PIPELINING, a message's content and final dot go out with the next message's MAIL, RCPT and DATA
(RFC 2920 sec. 3.1), against a real aiosmtpd server on loopback. Each message still gets its own reply, a
refusal or a 421 after a held message's dot is that message's alone, the next message is retried on a new
connection when the held one's reply closed the old, a held message whose content never went out is given
back (NotAttempted), a stop lets the held message finish, a cancelled sender never leaves a connection one
reply behind, and a reply out of step is never taken as delivery."""

from __future__ import annotations

import asyncio
import logging

import aiosmtplib
import pytest

from mailer.config import Security, SmtpSettings, StepKind
from mailer.delivery.dialogue import Dialogue, transparent_form
from mailer.delivery.envelope import envelope_commands
from mailer.delivery.forwarding import Forwarding, NotAttempted
from mailer.delivery.pool import SmtpPool
from mailer.delivery.replies import Reply
from mailer.store.models import MessageStatus
from tests.smtp_faults import Faults, fault_server

SENDER = "webinars@example.org"
MESSAGE = b"Subject: x\r\n\r\nx\r\n"
SENT = Reply(MessageStatus.SENT, 250, "2.0.0 OK: queued")


def _settings(port: int, *, per_connection: int = 100, data_timeout: float = 10.0) -> SmtpSettings:
    return SmtpSettings(
        "127.0.0.1",
        port,
        Security.NONE,
        "",
        "",
        1,
        per_connection,
        10.0,
        connect_timeout=10.0,
        data_timeout=data_timeout,
    )


async def _lane_sends(
    port: int, recipients: list[str], *, per_connection: int = 100, data_timeout: float = 10.0
) -> tuple[list[Reply], list[bool], int]:
    """Each recipient's reply through one lane, whether each message's reply was known when the lane's next
    message had been submitted (the last: before the lane closed), and how many transactions went out with
    the previous message's content."""
    async with SmtpPool(_settings(port, per_connection=per_connection, data_timeout=data_timeout)) as pool:
        async with pool.lane() as lane:
            futures = [await lane.submit(SENDER, recipient, MESSAGE) for recipient in recipients[:1]]
            known: list[bool] = []
            for recipient in recipients[1:]:
                futures.append(await lane.submit(SENDER, recipient, MESSAGE))
                known.append(futures[-2].done())
            known.append(futures[-1].done())
        return [future.result() for future in futures], known, pool.joined


def test_each_message_goes_out_with_the_next_ones_commands_and_gets_its_own_reply() -> None:
    server, handler = fault_server(Faults(pipelining=True))
    with server:
        replies, known, joined = asyncio.run(
            _lane_sends(server.port, ["a@example.org", "b@example.org", "c@example.org"])
        )
    assert replies == [SENT, SENT, SENT]
    # a's reply came with b's commands' replies, b's with c's; c was held until the lane closed
    assert (known, joined) == ([True, True, False], 2)
    assert handler.per_connection == {1: 3}
    assert [message.rcpt_tos for message in handler.messages] == [
        ["a@example.org"],
        ["b@example.org"],
        ["c@example.org"],
    ]
    assert [message.data for message in handler.messages] == [MESSAGE] * 3


def test_without_pipelining_no_message_is_held() -> None:
    server, handler = fault_server(Faults(pipelining=False))
    with server:
        replies, known, joined = asyncio.run(_lane_sends(server.port, ["a@example.org", "b@example.org"]))
    assert (replies, known, joined) == ([SENT, SENT], [True, True], 0)
    assert handler.received_by() == {"a@example.org": 1, "b@example.org": 1}


@pytest.mark.parametrize(("code", "status"), [(554, MessageStatus.FAILED), (452, MessageStatus.DEFERRED)])
def test_a_held_message_refused_after_its_dot_is_refused_alone(code: int, status: MessageStatus) -> None:
    server, handler = fault_server(Faults(message_refused={"a@example.org": (code, 1)}, pipelining=True))
    with server:
        replies, _, joined = asyncio.run(_lane_sends(server.port, ["a@example.org", "b@example.org"]))
    assert replies == [Reply(status, code, f"data: {code} {code // 100}.7.1 message refused"), SENT]
    assert joined == 1
    assert (handler.connections, handler.received_by()) == (1, {"b@example.org": 1})


def test_a_421_after_a_held_messages_dot_sends_the_next_on_a_new_connection(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # RFC 5321 sec. 3.8: the server closes the channel; the next message's commands, written with the held
    # message's content, were never taken: it goes again at once, once, on a new connection.
    server, handler = fault_server(Faults(message_refused={"a@example.org": (421, 1)}, pipelining=True))
    caplog.set_level(logging.INFO, logger="mailer.delivery.pool")
    with server:
        replies, _, _ = asyncio.run(_lane_sends(server.port, ["a@example.org", "b@example.org"]))
    assert replies == [Reply(MessageStatus.DEFERRED, 421, "data: 421 4.7.1 message refused"), SENT]
    assert (handler.connections, handler.per_connection) == (2, {2: 1})
    assert handler.received_by() == {"b@example.org": 1}
    logged = [r.getMessage() for r in caplog.records if r.name == "mailer.delivery.pool"]
    assert logged == [
        "connection to default dropped before DATA (mail: connection closed after the previous message's"
        " content); retrying on a new one"
    ]


@pytest.mark.parametrize(
    ("fault", "reply"),
    [("dropped", "data: connection lost: Unexpected EOF received"), ("late", "data: timed out")],
)
def test_a_held_message_without_a_reply_is_deferred_and_the_next_goes_on_a_new_connection(
    fault: str, reply: str, caplog: pytest.LogCaptureFixture
) -> None:
    # The connection ends (or its reply to a's dot is late) after a's content went out: a may have arrived
    # (RFC 1047), so it is deferred, not retried at once; b's commands were never answered: b goes again.
    caplog.set_level(logging.INFO, logger="mailer.delivery.pool")
    if fault == "dropped":
        faults = Faults(drop_in_data={"a@example.org": 1})
    else:
        faults = Faults(message_slow={"a@example.org": (5.0, 1)})
    server, handler = fault_server(faults)
    with server:
        replies, _, _ = asyncio.run(
            _lane_sends(server.port, ["a@example.org", "b@example.org"], data_timeout=0.3)
        )
    uncertain = Reply(
        MessageStatus.DEFERRED,
        None,
        reply + " after the message's content was sent: it may have been delivered",
        uncertain=True,
    )
    assert replies == [uncertain, SENT]  # its content went out: it may have been kept (RFC 1047)
    assert handler.connections == 2 and handler.received_by()["b@example.org"] == 1
    logged = [r.getMessage() for r in caplog.records if r.name == "mailer.delivery.pool"]
    assert logged == [
        "connection to default dropped before DATA (mail: connection closed after the previous message's"
        " content); retrying on a new one"
    ]


def test_a_connection_dropped_after_a_held_message_sends_the_next_on_a_new_one() -> None:
    # The server takes a's content, answers 250, and drops the connection at b's MAIL (a relay restarting).
    server, handler = fault_server(Faults(drop_after_message=1, pipelining=True))
    with server:
        replies, _, _ = asyncio.run(_lane_sends(server.port, ["a@example.org", "b@example.org"]))
    assert replies == [SENT, SENT]
    assert (handler.connections, handler.per_connection) == (2, {1: 1, 2: 1})


def test_a_held_message_goes_out_before_the_connection_is_replaced() -> None:
    # Two messages per connection: b is held when c needs a new connection, so b is sent and QUIT follows.
    server, handler = fault_server(Faults(pipelining=True))
    with server:
        replies, known, joined = asyncio.run(
            _lane_sends(server.port, ["a@example.org", "b@example.org", "c@example.org"], per_connection=2)
        )
    assert (replies, known, joined) == ([SENT, SENT, SENT], [True, True, False], 1)
    assert (handler.connections, handler.per_connection, handler.quits) == (2, {1: 2, 2: 1}, 2)


def test_an_aborted_lane_never_sends_the_held_message() -> None:
    server, handler = fault_server(Faults(pipelining=True))

    async def abort() -> tuple[bool, BaseException | None, int, Reply]:
        async with SmtpPool(_settings(server.port)) as pool:
            with pytest.raises(RuntimeError):
                async with pool.lane() as lane:
                    held = await lane.submit(SENDER, "a@example.org", MESSAGE)
                    raise RuntimeError("the sender was cancelled")
            free = pool._slots.qsize()
            after = await pool.send(SENDER, "b@example.org", MESSAGE)
            return held.done(), held.exception(), free, after

    with server:
        done, error, free, after = asyncio.run(abort())
    assert done and isinstance(error, NotAttempted)
    assert str(error).startswith("connection closed before the message was sent")
    assert free == 1  # the connection slot is back in the pool
    # the server dropped the transaction whose content never came; the next message goes on a new connection
    assert (after, handler.connections, handler.received_by()) == (SENT, 2, {"b@example.org": 1})


def test_a_stop_lets_the_held_message_finish_and_attempts_no_other() -> None:
    server, handler = fault_server(Faults(pipelining=True))

    async def stopped() -> tuple[Reply, bool]:
        stop = asyncio.Event()
        async with SmtpPool(_settings(server.port)) as pool:
            async with pool.lane(stop) as lane:
                held = await lane.submit(SENDER, "a@example.org", MESSAGE)
                stop.set()
                with pytest.raises(NotAttempted):
                    await lane.submit(SENDER, "b@example.org", MESSAGE)
                waiting = not held.done()
            return held.result(), waiting

    with server:
        reply, waiting = asyncio.run(stopped())
    assert (reply, waiting) == (SENT, True)
    assert handler.received_by() == {"a@example.org": 1}


def test_an_alone_message_is_answered_before_submit_returns() -> None:
    server, handler = fault_server(Faults(pipelining=True))

    async def alone() -> list[bool]:
        async with SmtpPool(_settings(server.port)) as pool, pool.lane() as lane:
            held = await lane.submit(SENDER, "a@example.org", MESSAGE)
            careful = await lane.submit(SENDER, "b@example.org", MESSAGE, alone=True)
            return [held.done(), careful.done(), careful.result() == SENT]

    with server:
        assert asyncio.run(alone()) == [True, True, True]
    assert handler.per_connection == {1: 2}


def test_a_held_message_does_not_wait_for_the_next_rate_limit_slot() -> None:
    """With a rate limit, the held message is sent before the pool asks for the next message's slot."""
    server, handler = fault_server(Faults(pipelining=True))
    seen: list[int] = []  # messages the server had taken at each slot asked for

    class Slots:
        async def acquire(self, max_wait: float) -> float:
            seen.append(len(handler.messages))
            return float("inf")

        async def close(self) -> None:
            pass

    async def send() -> int:
        async with SmtpPool(_settings(server.port), limiter=Slots()) as pool:
            async with pool.lane() as lane:
                await lane.submit(SENDER, "a@example.org", MESSAGE)
                await lane.submit(SENDER, "b@example.org", MESSAGE)
            return pool.joined

    with server:
        joined = asyncio.run(send())
    assert (seen, joined) == ([0, 1], 0)


def test_closing_the_pool_sends_what_a_lane_still_holds() -> None:
    server, handler = fault_server(Faults(pipelining=True))

    async def close() -> tuple[bool, Reply]:
        pool = SmtpPool(_settings(server.port))
        lane = pool.lane()
        held = await lane.submit(SENDER, "a@example.org", MESSAGE)
        waiting = not held.done()
        await pool.close()  # QUIT, after the held message's content
        return waiting, held.result()

    with server:
        waiting, reply = asyncio.run(close())
    assert (waiting, reply) == (True, SENT)
    assert (handler.received_by(), handler.quits) == ({"a@example.org": 1}, 1)


def test_a_lanes_message_is_written_as_data_carries_it_unless_already_transparent() -> None:
    # Submitted as it is (bare LF, a line starting with "."): CRLF and the dot doubled on the wire (RFC 5321
    # sec. 2.3.8, 4.5.2), no SMTPUTF8; submitted already transparent: written as it is. The server gets the
    # same message both times.
    raw = b"Subject: x\n\n.dot\nend\n"
    server, handler = fault_server(Faults(pipelining=True))

    async def send() -> None:
        async with SmtpPool(_settings(server.port)) as pool, pool.lane() as lane:
            await lane.submit(SENDER, "a@example.org", raw)
            await lane.submit(SENDER, "b@example.org", transparent_form(raw), transparent=True)

    with server:
        asyncio.run(send())
    assert [message.data for message in handler.messages] == [b"Subject: x\r\n\r\n.dot\r\nend\r\n"] * 2
    assert ["SMTPUTF8" in message.mail_options for message in handler.messages] == [False, False]


def test_a_pipelined_transaction_not_held_returns_its_reply() -> None:
    server, handler = fault_server(Faults(pipelining=True))

    async def transaction() -> Reply | asyncio.Future[Reply]:
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=server.port, timeout=10.0)
        await client.connect()
        dialogue = Dialogue(client)
        mail, rcpt = envelope_commands(SENDER, "a@example.org", utf8=False, eight_bit=False)
        try:
            return await dialogue.transaction(
                mail,
                rcpt,
                MESSAGE,
                transparent=False,
                pipelining=True,
                timeout=10.0,
                data_timeout=10.0,
                fresh=True,
            )
        finally:
            client.close()

    with server:
        assert asyncio.run(transaction()) == SENT
    assert handler.received_by() == {"a@example.org": 1}


class _ByKind(Forwarding):
    """Invitations through one pool, reminders through another."""

    def __init__(self, invitations: SmtpPool, reminders: SmtpPool) -> None:
        self.pools = {StepKind.INVITATION: invitations, StepKind.REMINDER: reminders}

    def route(self, kind: StepKind | None) -> SmtpPool:
        assert kind is not None
        return self.pools[kind]

    async def close(self) -> None:
        await asyncio.gather(*(pool.close() for pool in self.pools.values()))


def test_a_routed_lane_sends_the_held_message_before_another_routes_connection() -> None:
    # One connection held at a time: two senders holding one pool's only connection each and waiting for the
    # other's could never go on.
    first, first_handler = fault_server(Faults(pipelining=True))
    second, second_handler = fault_server(Faults(pipelining=True))

    async def send() -> tuple[list[bool], list[Reply]]:
        async with _ByKind(SmtpPool(_settings(first.port)), SmtpPool(_settings(second.port))) as router:
            async with router.lane() as lane:
                invitation = await lane.submit(SENDER, "a@example.org", MESSAGE, kind=StepKind.INVITATION)
                held_before = invitation.done()
                reminder = await lane.submit(SENDER, "b@example.org", MESSAGE, kind=StepKind.REMINDER)
                known = [held_before, invitation.done(), reminder.done()]
                free = [pool._slots.qsize() for pool in router.pools.values()]
            return [*known, free == [1, 0]], [invitation.result(), reminder.result()]

    with first, second:
        known, replies = asyncio.run(send())
    assert known == [False, True, False, True]
    assert replies == [SENT, SENT]
    assert (first_handler.received_by(), second_handler.received_by()) == (
        {"a@example.org": 1},
        {"b@example.org": 1},
    )


def test_a_recipient_refused_for_now_keeps_the_connection_for_the_next_message() -> None:
    # Only 421 closes the channel (RFC 5321 sec. 3.8); another 4xx to RCPT is reset with RSET.
    server, handler = fault_server(Faults(rcpt_temporary={"a@example.org": (422, 1)}, pipelining=True))
    with server:
        replies, _, _ = asyncio.run(_lane_sends(server.port, ["a@example.org", "b@example.org"]))
    assert replies == [
        Reply(MessageStatus.DEFERRED, 422, "rcpt: 422 4.7.1 <a@example.org>: try again later"),
        SENT,
    ]
    assert (handler.connections, handler.received_by()) == (1, {"b@example.org": 1})


def test_a_cancelled_lane_close_does_not_hand_the_next_message_the_held_ones_reply() -> None:
    # Cancelled while a's reply is due, the lane's connection is closed: b, sent next, must not read a's
    # late 250 as its own (and be recorded sent, undelivered).
    server, handler = fault_server(Faults(message_slow={"a@example.org": (1.0, 1)}, pipelining=True))

    async def run() -> tuple[bool, Reply]:
        async with SmtpPool(_settings(server.port)) as pool:
            lane = pool.lane()
            held = await lane.submit(SENDER, "a@example.org", MESSAGE)
            closing = asyncio.ensure_future(lane.close())
            await asyncio.sleep(0.3)
            closing.cancel()
            await asyncio.wait({closing})
            return held.cancelled(), await asyncio.wait_for(pool.send(SENDER, "b@example.org", MESSAGE), 10)

    with server:
        cancelled, reply = asyncio.run(asyncio.wait_for(run(), 30))
    assert (cancelled, reply) == (True, SENT)
    assert handler.connections == 2 and handler.received_by()["b@example.org"] == 1


def test_a_held_message_whose_sender_is_cancelled_after_its_content_went_out_is_settled() -> None:
    server, _ = fault_server(Faults(message_slow={"a@example.org": (1.0, 1)}, pipelining=True))

    async def run() -> bool:
        async with SmtpPool(_settings(server.port)) as pool:
            held: list[asyncio.Future[Reply]] = []

            async def sender() -> None:
                async with pool.lane() as lane:
                    held.append(await lane.submit(SENDER, "a@example.org", MESSAGE))
                    await lane.submit(SENDER, "b@example.org", MESSAGE)

            task = asyncio.ensure_future(sender())
            await asyncio.sleep(0.3)
            task.cancel()
            await asyncio.wait({task})
            return held[0].cancelled()

    with server:
        assert asyncio.run(asyncio.wait_for(run(), 30)) is True  # its fate is unknown: given back


async def _one_reply_too_many(accepted: list[bytes]) -> asyncio.Server:
    """A raw server that answers every final dot with two 250 replies (out of step from then on)."""

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 raw ESMTP\r\n")
        try:
            while line := await reader.readline():
                verb = line[:4].upper()
                if verb == b"EHLO":
                    writer.write(b"250-raw\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
                elif verb == b"DATA":
                    writer.write(b"354 go on\r\n")
                    content = b""
                    while (part := await reader.readline()) not in (b".\r\n", b""):
                        content += part
                    if not part:
                        break
                    accepted.append(content)
                    writer.write(b"250 2.0.0 queued\r\n250 2.0.0 an extra reply\r\n")
                elif verb == b"QUIT":
                    writer.write(b"221 bye\r\n")
                    break
                else:
                    writer.write(b"250 2.1.0 ok\r\n")
                await writer.drain()
        finally:
            writer.close()

    return await asyncio.start_server(client, "127.0.0.1", 0)


def test_a_reply_out_of_step_never_makes_a_message_sent_that_the_server_did_not_take() -> None:
    accepted: list[bytes] = []

    async def run() -> list[Reply]:
        server = await _one_reply_too_many(accepted)
        port = server.sockets[0].getsockname()[1]
        try:
            async with SmtpPool(_settings(port)) as pool, pool.lane() as lane:
                futures = [
                    await lane.submit(SENDER, f"{n}@example.org", f"Subject: {n}\r\n\r\n{n}\r\n".encode())
                    for n in "abc"
                ]
            return [future.result() for future in futures]
        finally:
            server.close()

    replies = asyncio.run(asyncio.wait_for(run(), 30))
    sent = [reply for reply in replies if reply.status is MessageStatus.SENT]
    assert len(sent) == len(accepted) == 2  # a, then c on a new connection
    # the extra 250 shifted every reply by one: b's DATA got its RCPT's 250, out of step, deferred
    assert replies[1] == Reply(
        MessageStatus.DEFERRED, None, "data: out of step: unexpected reply 250 2.1.0 ok"
    )
