"""SMTP delivery over aiosmtplib: a connection pool per server, a router per step kind, and the one place
SMTP replies are classified.

:func:`classify` (pure) maps a reply to a message status (DESIGN invariant 7):

    2xx                                   -> sent
    4xx, connection drop, timeout         -> deferred (retried with backoff until the deadline)
    552 at RCPT                           -> deferred (RFC 5321 sec. 4.5.3.1.10: treat as 452)
    other 5xx at RCPT                     -> bounced  (hard bounce: the address is suppressed)
    5xx at AUTH                           -> deferred (our credentials, not the message: fix and it goes)
    5xx at connect, MAIL, DATA            -> failed   (permanent for this message, address kept)

:class:`SmtpPool` keeps up to ``connections`` clients open to one server, reuses each for
``messages_per_connection`` messages, applies the server's rate limits, reconnects after a drop (a drop
before DATA on a reused connection is retried at once on a new one: nothing was delivered), and sends
QUIT when closed. One recipient per SMTP transaction, so a refusal belongs to exactly one message.
aiosmtplib opens each connection (greeting, EHLO, STARTTLS, AUTH); its transactions then run over
:class:`_Dialogue`, which sends MAIL, RCPT and DATA in one write when the server offers PIPELINING
(RFC 2920) and keeps every reply in order. Timeouts are per phase: ``connect_timeout`` (TCP, greeting,
EHLO, STARTTLS, AUTH), ``timeout`` (MAIL, RCPT, RSET, QUIT), ``data_timeout`` (the message and the reply
to its final dot). A timeout after the
message was sent is deferred like any other; the receiver may then get it twice (RFC 1047), which the
stable Message-ID lets it recognise.

:class:`SmtpRouter` sends each step kind through its configured server (``[smtp.routes]``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import ssl
from collections import deque
from dataclasses import dataclass
from enum import StrEnum
from types import TracebackType
from typing import Protocol

import aiosmtplib
import idna
from aiosmtplib import errors as smtp_errors
from aiosmtplib.protocol import normalize_message_line_endings
from aiosmtplib.response import SMTPResponse

from mailer.config import Security, Settings, SmtpSettings, StepKind
from mailer.delivery.ratelimit import RateLimited, RateLimiter
from mailer.errors import ConfigError
from mailer.store.models import MessageStatus

log = logging.getLogger(__name__)

_CONTROL = re.compile(r"[\x00-\x20\x7f<>]")  # never in an envelope address: no SMTP command injection
_CONNECTION_ERRORS = (smtp_errors.SMTPException, OSError, asyncio.TimeoutError)


class Phase(StrEnum):
    """Where in the SMTP dialogue a reply came."""

    CONNECT = "connect"  # greeting, EHLO, STARTTLS
    AUTH = "auth"  # AUTH (login)
    MAIL = "mail"
    RCPT = "rcpt"
    DATA = "data"


@dataclass(frozen=True)
class Reply:
    """A classified delivery result: ``status`` is SENT, DEFERRED, BOUNCED or FAILED; ``text`` the reason."""

    status: MessageStatus
    code: int | None
    text: str


def classify(code: int | None, phase: Phase) -> MessageStatus:
    """Classify an SMTP reply ``code`` (None: no reply, i.e. connection error or timeout) at ``phase``."""
    if code is None:
        return MessageStatus.DEFERRED
    if 200 <= code < 300:
        return MessageStatus.SENT
    if 400 <= code < 500:
        return MessageStatus.DEFERRED
    if phase is Phase.RCPT and code == 552:
        return MessageStatus.DEFERRED
    if phase is Phase.RCPT and 500 <= code < 600:
        return MessageStatus.BOUNCED
    if phase is Phase.AUTH:
        return MessageStatus.DEFERRED
    return MessageStatus.FAILED


def envelope_address(address: str) -> str:
    """The address as it goes in MAIL FROM / RCPT TO: an internationalised domain becomes its
    A-label form (IDNA 2008 with UTS 46 mapping, RFC 5891), as email-validator computes it."""
    local, _, domain = address.rpartition("@")
    if not domain.isascii():
        domain = idna.encode(domain, uts46=True).decode("ascii")
    return f"{local}@{domain}"


def needs_smtputf8(address: str) -> bool:
    """True when the local part is not ASCII (RFC 6531): only a server offering SMTPUTF8 can take it."""
    return not address.rpartition("@")[0].isascii()


def tls_context(settings: SmtpSettings) -> ssl.SSLContext | None:
    """The client TLS context: the system's CAs (or ``ca_file``), host name checked; None for plain SMTP."""
    if settings.security is Security.NONE:
        return None
    context = ssl.create_default_context(cafile=settings.ca_file or None)
    if not settings.verify:
        log.warning("SMTP server %s: certificate NOT verified (verify = false)", settings.name)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class Transport(Protocol):
    """What the service sends through: a pool (one server) or a router (a server per step kind)."""

    async def send(
        self,
        envelope_from: str,
        recipient: str,
        data: bytes,
        *,
        kind: StepKind | None = None,
        utf8: bool = False,
        transparent: bool = False,
    ) -> Reply: ...

    async def close(self) -> None: ...


class _Slot:
    """One pooled connection: the aiosmtplib client that opened it, the :class:`_Dialogue` that carries its
    mail transactions, and how many messages it has carried."""

    def __init__(self) -> None:
        self.client: aiosmtplib.SMTP | None = None
        self.dialogue: _Dialogue | None = None
        self.used = 0


class _Failure(Exception):
    """A classified failure that leaves the connection unusable; ``retry``: a new connection may try at once."""

    def __init__(self, reply: Reply, *, retry: bool = False) -> None:
        super().__init__(reply.text)
        self.reply = reply
        self.retry = retry


def _refused(exc: smtp_errors.SMTPResponseException, phase: Phase) -> Reply:
    return Reply(classify(exc.code, phase), exc.code, f"{phase.value}: {exc.code} {exc.message}")


class SmtpPool:
    """Up to ``settings.connections`` concurrent SMTP connections to one server; an async context manager.

    ``send`` never raises for delivery problems: it returns a classified :class:`Reply`.
    The password comes from the environment variable named in settings and is never logged.
    Raises ValueError without a host, ConfigError when a login is configured but its variable is unset.
    """

    def __init__(
        self, settings: SmtpSettings, *, local_hostname: str | None = None, limiter: RateLimiter | None = None
    ) -> None:
        if not settings.host:
            raise ValueError("SmtpPool needs an SMTP host (the capture server's or a relay's)")
        if settings.username and settings.password is None:
            raise ConfigError(
                "environment",
                settings.password_env,
                f"SMTP server {settings.name!r} logs in as {settings.username!r} but the variable is unset",
                f"export {settings.password_env}=...",
            )
        self.settings = settings
        self.local_hostname = local_hostname
        self.limiter = limiter or RateLimiter(settings.rate)
        self._tls = tls_context(settings)
        self._all = [_Slot() for _ in range(settings.connections)]
        self._slots: asyncio.Queue[_Slot] = asyncio.Queue()
        for slot in self._all:
            self._slots.put_nowait(slot)
        self.connects = 0  # connections opened, for reports and tests
        self.pipelined = 0  # transactions sent as one PIPELINING group (RFC 2920)

    async def __aenter__(self) -> SmtpPool:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """QUIT every open connection (hard close if QUIT fails)."""
        await asyncio.gather(*(self._drop(slot, polite=True) for slot in self._all))

    async def _drop(self, slot: _Slot, *, polite: bool) -> None:
        client, dialogue, slot.client, slot.dialogue, slot.used = slot.client, slot.dialogue, None, None, 0
        if client is None:
            return
        try:
            if polite and dialogue is not None and dialogue.connected:
                with contextlib.suppress(*_CONNECTION_ERRORS):  # a server gone already needs no QUIT
                    await dialogue.exchange(b"QUIT\r\n", 1, self.settings.timeout)
        finally:
            client.close()

    async def _connect(self, slot: _Slot) -> tuple[aiosmtplib.SMTP, bool]:
        """The slot's client, (re)connected as needed; (client, True when it was opened just now)."""
        client = slot.client
        if (
            client is not None
            and slot.dialogue is not None
            and slot.dialogue.connected
            and slot.used < self.settings.messages_per_connection
        ):
            return client, False
        await self._drop(slot, polite=True)
        smtp = self.settings
        client = aiosmtplib.SMTP(
            hostname=smtp.host,
            port=smtp.port,
            timeout=smtp.connect_timeout,
            use_tls=smtp.security is Security.TLS,
            start_tls=smtp.security is Security.STARTTLS,
            tls_context=self._tls,
            local_hostname=self.local_hostname,
        )
        try:
            await client.connect()
            if client.is_ehlo_or_helo_needed:
                await client.ehlo()
        except smtp_errors.SMTPResponseException as exc:
            client.close()
            raise _Failure(_refused(exc, Phase.CONNECT)) from None
        except _CONNECTION_ERRORS as exc:
            client.close()
            raise _Failure(
                Reply(MessageStatus.DEFERRED, None, f"connect: {type(exc).__name__}: {exc}")
            ) from None
        if smtp.username:
            try:
                await client.login(smtp.username, smtp.password or "", timeout=smtp.connect_timeout)
            except smtp_errors.SMTPResponseException as exc:
                client.close()
                log.error(
                    "SMTP server %s refused the login of %s: %s %s",
                    smtp.name,
                    smtp.username,
                    exc.code,
                    exc.message,
                )
                raise _Failure(_refused(exc, Phase.AUTH)) from None
            except _CONNECTION_ERRORS as exc:
                client.close()
                raise _Failure(
                    Reply(MessageStatus.DEFERRED, None, f"auth: {type(exc).__name__}: {exc}")
                ) from None
        try:
            dialogue = _Dialogue(client)
        except smtp_errors.SMTPServerDisconnected as exc:  # closed by the server right after the login
            client.close()
            raise _Failure(Reply(MessageStatus.DEFERRED, None, f"connect: {exc}")) from None
        slot.client, slot.dialogue, slot.used = client, dialogue, 0
        self.connects += 1
        return client, True

    async def send(
        self,
        envelope_from: str,
        recipient: str,
        data: bytes,
        *,
        kind: StepKind | None = None,
        utf8: bool = False,
        transparent: bool = False,
    ) -> Reply:
        """Deliver ``data`` (the full message) to one ``recipient``; returns the classified reply.

        ``utf8``: the message itself carries UTF-8 addresses in its header, so it needs SMTPUTF8 too.
        ``transparent``: ``data`` is already in DATA's transparent form (CRLF line ends, a final CRLF, a
        leading "." doubled: RFC 5321 sec. 4.5.2; mailer.compose.wire.Composed.wire) and goes out as it is;
        otherwise line ends are normalised and leading dots doubled here.
        ``kind`` is ignored (a pool is one server). Waits for a rate-limit slot up to ``max_rate_wait``
        seconds, else the reply is deferred without contacting the server.
        """
        try:
            await self.limiter.acquire(self.settings.max_rate_wait)
        except RateLimited as exc:
            return Reply(MessageStatus.DEFERRED, None, f"server {self.settings.name}: {exc}")
        slot = await self._slots.get()
        try:
            for _ in range(2):
                try:
                    return await self._send_on(slot, envelope_from, recipient, data, utf8, transparent)
                except _Failure as failure:
                    await self._drop(slot, polite=False)
                    reply = failure.reply
                    if not failure.retry:
                        break
                    log.info(
                        "connection to %s dropped before DATA; retrying on a new one", self.settings.name
                    )
            return reply
        finally:
            self._slots.put_nowait(slot)

    async def _send_on(
        self, slot: _Slot, envelope_from: str, recipient: str, data: bytes, utf8: bool, transparent: bool
    ) -> Reply:
        client, fresh = await self._connect(slot)
        smtp = self.settings
        utf8 = utf8 or needs_smtputf8(recipient) or needs_smtputf8(envelope_from)
        if utf8 and not client.supports_extension("smtputf8"):
            return Reply(
                MessageStatus.FAILED,
                None,
                "the address has a non-ASCII local part and the server does not offer SMTPUTF8 (RFC 6531)",
            )
        if _CONTROL.search(envelope_from) or _CONTROL.search(recipient):
            return Reply(
                MessageStatus.FAILED, None, "control character in an envelope address: never sent to SMTP"
            )
        options = [b"SMTPUTF8"] if utf8 else []
        encoding = "utf-8" if utf8 else "ascii"
        if client.supports_extension("8bitmime"):
            options.append(b"BODY=8BITMIME")
        slot.used += 1
        mail = (
            b"MAIL FROM:<"
            + envelope_address(envelope_from).encode(encoding)
            + b">"
            + b"".join(b" " + option for option in options)
            + b"\r\n"
        )
        rcpt = b"RCPT TO:<" + envelope_address(recipient).encode(encoding) + b">\r\n"
        dialogue = slot.dialogue
        assert dialogue is not None
        phase, in_data = Phase.MAIL, False
        try:
            if client.supports_extension("pipelining"):  # RFC 2920: one write, three replies
                self.pipelined += 1
                replies = await dialogue.exchange(mail + rcpt + b"DATA\r\n", 3, smtp.timeout)
                refused = [
                    (step, reply)
                    for step, reply in zip((Phase.MAIL, Phase.RCPT, Phase.DATA), replies, strict=False)
                    if not _expected(step, reply.code)
                ]
                if refused:
                    phase = refused[0][0]
                    if (
                        replies[2].code == 354
                    ):  # DATA taken although MAIL or RCPT was not: end the empty message
                        await dialogue.exchange(b".\r\n", 1, smtp.timeout)
                    _check(dialogue, *refused[0])
            else:
                _check(dialogue, phase, (await dialogue.exchange(mail, 1, smtp.timeout))[0])
                phase = Phase.RCPT
                _check(dialogue, phase, (await dialogue.exchange(rcpt, 1, smtp.timeout))[0])
                phase = Phase.DATA
                _check(dialogue, phase, (await dialogue.exchange(b"DATA\r\n", 1, smtp.timeout))[0])
            phase, in_data = Phase.DATA, True
            [response] = await dialogue.exchange(
                (data if transparent else _transparent(data)) + b".\r\n", 1, smtp.data_timeout
            )
            if response.code != 250:
                if response.code == 421:
                    dialogue.close()
                raise smtp_errors.SMTPResponseException(response.code, response.message)
        except smtp_errors.SMTPResponseException as exc:
            reply = _refused(exc, phase)
            if exc.code == 421 or not dialogue.connected:
                raise _Failure(reply) from None
            if not in_data:  # the transaction is still open (a refused MAIL, RCPT or DATA command): reset it
                try:
                    [reset] = await dialogue.exchange(b"RSET\r\n", 1, smtp.timeout)
                    if reset.code != 250:
                        raise _Failure(reply)
                except _CONNECTION_ERRORS:
                    raise _Failure(reply) from None
            return reply
        except (smtp_errors.SMTPServerDisconnected, ConnectionError) as exc:
            reply = Reply(MessageStatus.DEFERRED, None, f"{phase.value}: connection lost: {exc}")
            raise _Failure(reply, retry=not in_data and not fresh) from None
        except _CONNECTION_ERRORS as exc:
            reason = (
                "timed out"
                if isinstance(exc, (TimeoutError, asyncio.TimeoutError))
                else f"{type(exc).__name__}: {exc}"
            )
            raise _Failure(Reply(MessageStatus.DEFERRED, None, f"{phase.value}: {reason}")) from None
        return Reply(MessageStatus.SENT, response.code, response.message)


def _expected(phase: Phase, code: int) -> bool:
    """The reply that lets a transaction go on: 250 to MAIL, 250 or 251 to RCPT, 354 to DATA (RFC 5321)."""
    return code == 354 if phase is Phase.DATA else code == 250 or (phase is Phase.RCPT and code == 251)


def _check(dialogue: _Dialogue, phase: Phase, reply: SMTPResponse) -> None:
    """Raise SMTPResponseException unless ``reply`` is :func:`_expected`; a 421 closes the connection."""
    if not _expected(phase, reply.code):
        if reply.code == 421:
            dialogue.close()
        raise smtp_errors.SMTPResponseException(reply.code, reply.message)


_REPLY_LIMIT = 65536  # bytes of one reply, multi-line included: a server sending more is out of step


class _Dialogue(asyncio.Protocol):
    """The mail transactions of a connection aiosmtplib opened (greeting, EHLO, STARTTLS, AUTH): from then
    on this protocol receives the connection's bytes.

    aiosmtplib reads one reply per command written and runs regular expressions over every message; here
    commands go out in groups when the server offers PIPELINING (RFC 2920: MAIL, RCPT and DATA in one write)
    and every reply that arrives is kept, in order, until read. Replies are parsed as RFC 5321 sec. 4.2 has
    them: ``250-...`` lines continue, ``250 ...`` ends. :meth:`exchange` raises SMTPServerDisconnected when
    the connection is lost and SMTPReadTimeoutError when replies are late (and then closes the connection:
    a late reply would be taken for the next command's).
    """

    def __init__(self, client: aiosmtplib.SMTP) -> None:
        transport = client.transport
        if transport is None or transport.is_closing():
            raise smtp_errors.SMTPServerDisconnected("Connection lost")
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]  # asyncio's or uvloop's
        self._loop = asyncio.get_running_loop()
        self._buffer = bytearray()
        self._replies: deque[SMTPResponse] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._lost: Exception | None = None
        transport.set_protocol(self)

    @property
    def connected(self) -> bool:
        return self._lost is None and not self.transport.is_closing()

    def close(self) -> None:
        self._lose(smtp_errors.SMTPServerDisconnected("Connection closed"))
        self.transport.close()

    async def exchange(self, data: bytes, replies: int, timeout: float) -> list[SMTPResponse]:
        """Write ``data`` (commands, or a message ending with ``CRLF.CRLF``) and return the next ``replies``
        replies; ``timeout`` seconds for all of them."""
        if self._lost is not None:
            raise self._lost
        self.transport.write(data)
        out: list[SMTPResponse] = []
        try:
            async with asyncio.timeout(timeout):
                while len(out) < replies:
                    if self._replies:
                        out.append(self._replies.popleft())
                    elif self._lost is not None:
                        raise self._lost
                    else:
                        self._waiter = self._loop.create_future()
                        await self._waiter
        except TimeoutError:
            self.close()
            raise smtp_errors.SMTPReadTimeoutError("Timed out waiting for server response") from None
        return out

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
                if len(self._buffer) > _REPLY_LIMIT:
                    self._lose(
                        smtp_errors.SMTPServerDisconnected("reply too long: the server is out of step")
                    )
                    self.transport.close()
                break
            del self._buffer[: end + 1]
            if not lines[0][:3].isdigit():
                self._lose(smtp_errors.SMTPServerDisconnected(f"malformed reply {lines[0][:80]!r}"))
                self.transport.close()
                return
            text = "\n".join(line[4:].strip().decode("utf-8", "surrogateescape") for line in lines)
            self._replies.append(SMTPResponse(int(lines[0][:3]), text))
        self._wake()

    def eof_received(self) -> bool:
        self._lose(smtp_errors.SMTPServerDisconnected("Unexpected EOF received"))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._lose(smtp_errors.SMTPServerDisconnected("Connection lost"))

    def _lose(self, exc: Exception) -> None:
        if self._lost is None:
            self._lost = exc
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


def _transparent(data: bytes) -> bytes:
    """``data`` as DATA carries it: CRLF line ends and a final CRLF (RFC 5321 sec. 2.3.8; aiosmtplib's own
    function), then every line starting with "." given a second one (sec. 4.5.2)."""
    crlf = data.count(b"\r\n")
    if crlf != data.count(b"\n") or crlf != data.count(b"\r") or not data.endswith(b"\r\n"):
        data = normalize_message_line_endings(data)
    stuffed = data.replace(b"\n.", b"\n..")
    return b"." + stuffed if stuffed.startswith(b".") else stuffed


class SmtpRouter:
    """A pool per configured SMTP server, each step kind sent through its route (``[smtp.routes]``).

    ``settings.smtp`` is the default server; pools are opened on first use and closed (QUIT) together.
    """

    def __init__(self, settings: Settings, *, local_hostname: str | None = None) -> None:
        self.settings = settings
        self.local_hostname = local_hostname
        self.pools: dict[str, SmtpPool] = {}

    def pool_for(self, kind: StepKind | None) -> SmtpPool:
        smtp = self.settings.smtp_for(kind)
        pool = self.pools.get(smtp.name)
        if pool is None:
            pool = self.pools[smtp.name] = SmtpPool(smtp, local_hostname=self.local_hostname)
        return pool

    async def send(
        self,
        envelope_from: str,
        recipient: str,
        data: bytes,
        *,
        kind: StepKind | None = None,
        utf8: bool = False,
        transparent: bool = False,
    ) -> Reply:
        """Send through the server ``kind`` is routed to; see :meth:`SmtpPool.send`."""
        return await self.pool_for(kind).send(
            envelope_from, recipient, data, utf8=utf8, transparent=transparent
        )

    async def close(self) -> None:
        await asyncio.gather(*(pool.close() for pool in self.pools.values()))

    async def __aenter__(self) -> SmtpRouter:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
