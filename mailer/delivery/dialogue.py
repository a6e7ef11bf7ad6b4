"""The mail transactions of one SMTP connection: MAIL, RCPT and DATA in one write when the server offers
PIPELINING (RFC 2920), every reply kept in order, each refusal classified (:mod:`mailer.delivery.replies`).

aiosmtplib opens the connection (greeting, EHLO, STARTTLS, AUTH); :class:`Dialogue` then takes over its
bytes. One recipient per transaction, so a refusal belongs to exactly one message. A timeout or a closed
connection after the message's content was sent is a deferral marked ``uncertain``: the server may have
accepted it (RFC 1047), so the next attempt goes carefully and a second such one holds the message for
review (:func:`mailer.store.outbox.record_outcomes`); the stable Message-ID lets a receiver recognise a copy.

With PIPELINING, a message may be *held* once its DATA was answered 354: its content and final dot then go
out in one write with the next transaction's MAIL, RCPT and DATA (RFC 2920 sec. 3.1: the message content
may begin a group), so a message costs one round trip, not two. The held message's reply is the first of
that write's four; :meth:`Dialogue.flush` sends it alone when no transaction follows.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass

import aiosmtplib
from aiosmtplib import errors as smtp_errors
from aiosmtplib.protocol import normalize_message_line_endings
from aiosmtplib.response import SMTPResponse

from mailer.delivery.forwarding import NotAttempted
from mailer.delivery.replies import Phase, Reply, expected, refused, unanswered
from mailer.store.models import MessageStatus

CONNECTION_ERRORS = (smtp_errors.SMTPException, OSError, asyncio.TimeoutError)
"""What a connection may raise instead of replying: classified as no reply (``code`` None)."""

_REPLY_LIMIT = 65536  # bytes of one reply, multi-line included: a server sending more is out of step


class ConnectionFailed(Exception):
    """A classified failure that leaves the connection unusable; ``retry``: a new connection may try at once
    (nothing was delivered); ``unreachable``: no connection could be opened (refused, lost or timed out
    before EHLO completed, or a 4xx greeting)."""

    def __init__(self, reply: Reply, *, retry: bool = False, unreachable: bool = False) -> None:
        super().__init__(reply.text)
        self.reply = reply
        self.retry = retry
        self.unreachable = unreachable


@dataclass(slots=True)
class Held:
    """A message whose DATA was answered 354 and whose ``payload`` (content in DATA's transparent form, then
    the final ``.``) is not written yet; ``reply`` gets its classified reply to the final dot, or
    :class:`~mailer.delivery.forwarding.NotAttempted` when the connection closes before the payload is
    written (the server then drops the transaction: nothing was delivered); it is cancelled when its sender
    is cancelled after the payload went out, before the reply came (its fate is unknown)."""

    payload: bytes
    reply: asyncio.Future[Reply]

    def settle(self, reply: Reply) -> None:
        """Give the message its reply (once)."""
        if not self.reply.done():
            self.reply.set_result(reply)


class Dialogue(asyncio.Protocol):
    """The mail transactions of a connection aiosmtplib opened (greeting, EHLO, STARTTLS, AUTH): from then
    on this protocol receives the connection's bytes.

    aiosmtplib reads one reply per command written and runs regular expressions over every message; here
    commands go out in groups when the server offers PIPELINING (RFC 2920: MAIL, RCPT and DATA in one write)
    and every reply that arrives is kept, in order, until read. Replies are parsed as RFC 5321 sec. 4.2 has
    them: ``250-...`` lines continue, ``250 ...`` ends. :meth:`exchange` raises SMTPServerDisconnected when
    the connection is lost and SMTPReadTimeoutError when replies are late (and then closes the connection:
    a late reply would be taken for the next command's). Raises SMTPServerDisconnected when the client's
    connection is closed already.
    """

    def __init__(self, client: aiosmtplib.SMTP) -> None:
        transport = client.transport
        if transport is None or transport.is_closing():
            raise smtp_errors.SMTPServerDisconnected("Connection lost")
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]  # asyncio's or uvloop's
        self.extensions = frozenset(client.esmtp_extensions)  # lower case, from the last EHLO
        self.pipelining = "pipelining" in self.extensions  # RFC 2920: commands in groups
        self.smtputf8 = "smtputf8" in self.extensions  # RFC 6531: UTF-8 addresses
        self.eight_bit = "8bitmime" in self.extensions  # RFC 6152: BODY=8BITMIME
        self.transactions = 0  # begun on this connection
        self._loop = asyncio.get_running_loop()
        self._buffer = bytearray()
        self._replies: deque[SMTPResponse] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._lost: Exception | None = None
        self._held: Held | None = None
        # One timer for all the waits: it fires at _timer_at (loop time), no later than the deadline of the
        # wait under way, and is moved on to that deadline when it fires early (only then), so a wait costs
        # no timer of its own (:meth:`_expire`).
        self._deadline = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        transport.set_protocol(self)

    @property
    def holding(self) -> bool:
        """A message is held: its content waits to go out with the next transaction (or :meth:`flush`)."""
        return self._held is not None

    @property
    def connected(self) -> bool:
        """False once the connection is lost, closed or out of step."""
        return self._lost is None and not self.transport.is_closing()

    def close(self) -> None:
        """Close the connection without QUIT; a waiting :meth:`exchange` raises SMTPServerDisconnected."""
        self._lose(smtp_errors.SMTPServerDisconnected("Connection closed"))
        self.transport.close()

    async def exchange(self, data: bytes, replies: int, timeout: float) -> list[SMTPResponse]:
        """Write ``data`` (commands, or a message ending with ``CRLF.CRLF``) and return the next ``replies``
        replies; ``timeout`` seconds for all of them."""
        if self._lost is not None:
            raise self._lost
        if data:
            self.transport.write(data)
        received = self._replies
        deadline = self._deadline = self._loop.time() + timeout
        try:
            while len(received) < replies:
                if self._lost is not None:
                    raise self._lost
                if self._timer is None or self._timer_at > deadline:
                    self._arm(deadline)
                self._waiter = self._loop.create_future()
                await self._waiter
        except TimeoutError:
            self.close()
            raise smtp_errors.SMTPReadTimeoutError("Timed out waiting for server response") from None
        return [received.popleft() for _ in range(replies)]

    def _arm(self, at: float) -> None:
        """(Re)schedule the timer at loop time ``at``."""
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = at
        self._timer = self._loop.call_at(at, self._expire)

    def _expire(self) -> None:
        """The timer fired: a wait whose deadline has come ends with TimeoutError; one that began after the
        timer was set has a later deadline, and the timer moves on to it; with no wait it is left unset."""
        self._timer = None
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        if self._deadline > self._timer_at:
            self._arm(self._deadline)
        else:
            waiter.set_exception(TimeoutError())

    async def transaction(
        self,
        mail: bytes,
        rcpt: bytes,
        data: bytes,
        *,
        transparent: bool,
        pipelining: bool,
        timeout: float,
        data_timeout: float,
        fresh: bool,
        hold: bool = False,
    ) -> Reply | asyncio.Future[Reply]:
        """One mail transaction: the ``mail`` and ``rcpt`` command lines, then DATA with ``data``.

        ``transparent``: ``data`` is already in DATA's transparent form (:func:`transparent_form`); ``pipelining``:
        MAIL, RCPT and DATA go in one write (the server offers it, RFC 2920), after the content of a held
        message if there is one. ``timeout`` seconds for the commands' replies, ``data_timeout`` for the
        message and the reply to its final dot. ``hold`` (with ``pipelining``): once DATA is answered 354 the
        message is held (:class:`Held`) and a future of its reply returned; its content goes out with the next
        transaction's commands or :meth:`flush`. Otherwise returns the classified reply when the connection can
        carry the next transaction (a refused command is reset with RSET); raises :class:`ConnectionFailed`
        when it cannot, with ``retry`` when the connection dropped before DATA and was not ``fresh`` (a reused
        connection the server may have closed meanwhile), or when a held message's reply closed it.
        """
        self.transactions += 1
        held, self._held = self._held, None
        commands = mail + rcpt + b"DATA\r\n"
        # Held only with PIPELINING: its content goes first, in one write with this transaction's commands.
        if held is not None and not await self._finish(held, commands, data_timeout):
            lost = unanswered(Phase.MAIL, "connection closed after the previous message's content")
            raise ConnectionFailed(lost, retry=True)  # nothing of this message was delivered
        phase, in_data = Phase.MAIL, False
        try:
            if pipelining:  # RFC 2920: one write, three replies
                replies = await self.exchange(b"" if held is not None else commands, 3, timeout)
                refusals = [
                    (step, reply)
                    for step, reply in zip((Phase.MAIL, Phase.RCPT, Phase.DATA), replies, strict=False)
                    if not expected(step, reply.code)
                ]
                if refusals:
                    phase = refusals[0][0]
                    if (
                        replies[2].code == 354
                    ):  # DATA taken although MAIL or RCPT was not: end the empty message
                        await self.exchange(b".\r\n", 1, timeout)
                    self._check(*refusals[0])
            else:
                self._check(phase, (await self.exchange(mail, 1, timeout))[0])
                phase = Phase.RCPT
                self._check(phase, (await self.exchange(rcpt, 1, timeout))[0])
                phase = Phase.DATA
                self._check(phase, (await self.exchange(b"DATA\r\n", 1, timeout))[0])
            phase, in_data = Phase.DATA, True
            payload = (data if transparent else transparent_form(data)) + b".\r\n"
            if hold and pipelining:
                self._held = Held(payload, self._loop.create_future())
                return self._held.reply
            [response] = await self.exchange(payload, 1, data_timeout)
        except smtp_errors.SMTPResponseException as exc:
            if exc.code < 400:  # 2xx or 3xx where another was due: a reply too many or too few came before
                self.close()
                lost = unanswered(
                    phase, f"out of step: unexpected reply {exc.code} {exc.message}", uncertain=in_data
                )
                raise ConnectionFailed(lost) from None
            reply = refused(exc.code, exc.message, phase)
            if exc.code == 421 or not self.connected:
                raise ConnectionFailed(reply) from None
            if not in_data:  # the transaction is still open (a refused MAIL, RCPT or DATA command): reset it
                try:
                    [reset] = await self.exchange(b"RSET\r\n", 1, timeout)
                    if reset.code != 250:
                        raise ConnectionFailed(reply)
                except CONNECTION_ERRORS:
                    raise ConnectionFailed(reply) from None
            return reply
        except (smtp_errors.SMTPServerDisconnected, ConnectionError) as exc:
            reply = unanswered(phase, f"connection lost: {exc}", uncertain=in_data)
            raise ConnectionFailed(reply, retry=not in_data and not fresh) from None
        except CONNECTION_ERRORS as exc:
            raise ConnectionFailed(unanswered(phase, _reason(exc), uncertain=in_data)) from None
        reply = self._final(response)
        if not self.connected:
            raise ConnectionFailed(reply)
        return reply

    async def flush(self, data_timeout: float) -> None:
        """Write the held message's content (if any) and settle its reply; ``data_timeout`` seconds."""
        held, self._held = self._held, None
        if held is not None:
            await self._finish(held, b"", data_timeout)

    async def _finish(self, held: Held, then: bytes, data_timeout: float) -> bool:
        """Write ``held``'s payload followed by ``then`` (the next transaction's commands, RFC 2920 sec. 3.1),
        settle its reply (within ``data_timeout`` seconds) and return whether the connection can go on."""
        try:
            [response] = await self.exchange(held.payload + then, 1, data_timeout)
        except (smtp_errors.SMTPServerDisconnected, ConnectionError) as exc:
            held.settle(unanswered(Phase.DATA, f"connection lost: {exc}", uncertain=True))
            return False
        except CONNECTION_ERRORS as exc:
            held.settle(unanswered(Phase.DATA, _reason(exc), uncertain=True))
            return False
        except BaseException:  # cancelled while its reply is due: out of step, and its fate unknown here
            self.close()
            held.reply.cancel()
            raise
        held.settle(self._final(response))
        return self.connected

    def _final(self, response: SMTPResponse) -> Reply:
        """The classified reply to a message's final dot: sent on 250, else refused at DATA (a 421 closes the
        connection: RFC 5321 sec. 3.8)."""
        if response.code == 250:
            return Reply(MessageStatus.SENT, response.code, response.message)
        if response.code == 421:
            self.close()
        return refused(response.code, response.message, Phase.DATA)

    def _check(self, phase: Phase, reply: SMTPResponse) -> None:
        """Raise SMTPResponseException unless ``reply`` is the expected one; a 421 closes the connection."""
        if not expected(phase, reply.code):
            if reply.code == 421:
                self.close()
            raise smtp_errors.SMTPResponseException(reply.code, reply.message)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while (end := self._buffer.find(b"\n")) != -1:
            start = 0
            lines: list[bytes] = []
            while end != -1:  # the lines of one reply
                line = bytes(self._buffer[start:end]).rstrip(b"\r")
                lines.append(line)
                if line[3:4] != b"-":
                    break
                start, end = end + 1, self._buffer.find(b"\n", end + 1)
            else:  # a multi-line reply not complete yet
                break
            del self._buffer[: end + 1]
            if not lines[0][:3].isdigit():
                self._lose(smtp_errors.SMTPServerDisconnected(f"malformed reply {lines[0][:80]!r}"))
                self.transport.close()
                return
            # RFC 5321 replies are ASCII; a server's 8-bit text is shown, its bytes that are not UTF-8 as U+FFFD
            text = "\n".join(line[4:].strip().decode("utf-8", "replace") for line in lines)
            self._replies.append(SMTPResponse(int(lines[0][:3]), text))
        if len(self._buffer) > _REPLY_LIMIT:  # what is left, one reply not complete yet, is too long
            self._lose(smtp_errors.SMTPServerDisconnected("reply too long: the server is out of step"))
            self.transport.close()
        self._wake()

    def eof_received(self) -> bool:
        self._lose(smtp_errors.SMTPServerDisconnected("Unexpected EOF received"))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._lose(smtp_errors.SMTPServerDisconnected("Connection lost"))

    def _lose(self, exc: Exception) -> None:
        if self._lost is None:
            self._lost = exc
        held, self._held = self._held, None
        if held is not None and not held.reply.done():  # its content never went out: nothing was delivered
            held.reply.set_exception(NotAttempted(f"connection closed before the message was sent: {exc}"))
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


def _reason(exc: BaseException) -> str:
    """A connection error as a reply's text: "timed out", or the exception's type and text."""
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
        return "timed out"
    return f"{type(exc).__name__}: {exc}"


def transparent_form(data: bytes) -> bytes:
    """``data`` as DATA carries it: CRLF line ends and a final CRLF (RFC 5321 sec. 2.3.8; aiosmtplib's own
    function), then every line starting with "." given a second one (sec. 4.5.2)."""
    crlf = data.count(b"\r\n")
    if crlf != data.count(b"\n") or crlf != data.count(b"\r") or not data.endswith(b"\r\n"):
        data = normalize_message_line_endings(data)
    stuffed = data.replace(b"\n.", b"\n..")
    return b"." + stuffed if stuffed.startswith(b".") else stuffed
