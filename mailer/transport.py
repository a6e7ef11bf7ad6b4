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
Timeouts are per phase: ``connect_timeout`` (TCP, greeting, EHLO, STARTTLS, AUTH), ``timeout`` (MAIL,
RCPT, RSET, QUIT), ``data_timeout`` (the message and the reply to its final dot). A timeout after the
message was sent is deferred like any other; the receiver may then get it twice (RFC 1047), which the
stable Message-ID lets it recognise.

:class:`SmtpRouter` sends each step kind through its configured server (``[smtp.routes]``).
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
from dataclasses import dataclass
from enum import StrEnum
from types import TracebackType
from typing import Protocol

import aiosmtplib
import idna
from aiosmtplib import errors as smtp_errors
from aiosmtplib.protocol import SMTPProtocol, normalize_message_line_endings
from aiosmtplib.response import SMTPResponse

from mailer.config import Security, Settings, SmtpSettings, StepKind
from mailer.errors import ConfigError
from mailer.models import MessageStatus
from mailer.ratelimit import RateLimited, RateLimiter

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
        self, envelope_from: str, recipient: str, data: bytes, *, kind: StepKind | None = None, utf8: bool = False,
        transparent: bool = False,
    ) -> Reply: ...

    async def close(self) -> None: ...


class _Slot:
    """One pooled client and how many messages it has carried."""

    def __init__(self) -> None:
        self.client: aiosmtplib.SMTP | None = None
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
            raise ConfigError("environment", settings.password_env,
                              f"SMTP server {settings.name!r} logs in as {settings.username!r} but the variable is unset",
                              f"export {settings.password_env}=...")
        self.settings = settings
        self.local_hostname = local_hostname
        self.limiter = limiter or RateLimiter(settings.rate)
        self._tls = tls_context(settings)
        self._all = [_Slot() for _ in range(settings.connections)]
        self._slots: asyncio.Queue[_Slot] = asyncio.Queue()
        for slot in self._all:
            self._slots.put_nowait(slot)
        self.connects = 0  # connections opened, for reports and tests

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
        client, slot.client, slot.used = slot.client, None, 0
        if client is None or not client.is_connected:
            return
        try:
            if polite:
                await client.quit(timeout=self.settings.timeout)
            else:
                client.close()
        except _CONNECTION_ERRORS:
            client.close()

    async def _connect(self, slot: _Slot) -> tuple[aiosmtplib.SMTP, bool]:
        """The slot's client, (re)connected as needed; (client, True when it was opened just now)."""
        client = slot.client
        if client is not None and client.is_connected and slot.used < self.settings.messages_per_connection:
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
            raise _Failure(Reply(MessageStatus.DEFERRED, None, f"connect: {type(exc).__name__}: {exc}")) from None
        if smtp.username:
            try:
                await client.login(smtp.username, smtp.password or "", timeout=smtp.connect_timeout)
            except smtp_errors.SMTPResponseException as exc:
                client.close()
                log.error("SMTP server %s refused the login of %s: %s %s", smtp.name, smtp.username, exc.code, exc.message)
                raise _Failure(_refused(exc, Phase.AUTH)) from None
            except _CONNECTION_ERRORS as exc:
                client.close()
                raise _Failure(Reply(MessageStatus.DEFERRED, None, f"auth: {type(exc).__name__}: {exc}")) from None
        slot.client = client
        slot.used = 0
        self.connects += 1
        return client, True

    async def send(
        self, envelope_from: str, recipient: str, data: bytes, *, kind: StepKind | None = None, utf8: bool = False,
        transparent: bool = False,
    ) -> Reply:
        """Deliver ``data`` (the full message) to one ``recipient``; returns the classified reply.

        ``utf8``: the message itself carries UTF-8 addresses in its header, so it needs SMTPUTF8 too.
        ``transparent``: ``data`` is already in DATA's transparent form (CRLF line ends, a final CRLF, a
        leading "." doubled: RFC 5321 sec. 4.5.2; mailer.wire.Composed.wire) and goes out as it is;
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
                    log.info("connection to %s dropped before DATA; retrying on a new one", self.settings.name)
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
            return Reply(MessageStatus.FAILED, None, "control character in an envelope address: never sent to SMTP")
        options = [b"SMTPUTF8"] if utf8 else []
        encoding = "utf-8" if utf8 else "ascii"
        if client.supports_extension("8bitmime"):
            options.append(b"BODY=8BITMIME")
        slot.used += 1
        mail = (b"MAIL", b"FROM:<" + envelope_address(envelope_from).encode(encoding) + b">", *options)
        rcpt = (b"RCPT", b"TO:<" + envelope_address(recipient).encode(encoding) + b">")
        phase, in_data = Phase.MAIL, False
        try:
            await _command(client, Phase.MAIL, smtp.timeout, *mail)
            phase = Phase.RCPT
            await _command(client, Phase.RCPT, smtp.timeout, *rcpt)
            phase = Phase.DATA
            await _command(client, Phase.DATA, smtp.timeout, b"DATA")
            phase, in_data = Phase.DATA, True
            response = await _message(client, data if transparent else _transparent(data), smtp.data_timeout)
        except smtp_errors.SMTPResponseException as exc:
            reply = _refused(exc, phase)
            if exc.code == 421 or not client.is_connected:
                raise _Failure(reply) from None
            if not in_data:  # the transaction is still open (a refused MAIL, RCPT or DATA command): reset it
                try:
                    await client.rset(timeout=smtp.timeout)
                except _CONNECTION_ERRORS:
                    raise _Failure(reply) from None
            return reply
        except (smtp_errors.SMTPServerDisconnected, ConnectionError) as exc:
            reply = Reply(MessageStatus.DEFERRED, None, f"{phase.value}: connection lost: {exc}")
            raise _Failure(reply, retry=not in_data and not fresh) from None
        except _CONNECTION_ERRORS as exc:
            reason = "timed out" if isinstance(exc, (TimeoutError, asyncio.TimeoutError)) else f"{type(exc).__name__}: {exc}"
            raise _Failure(Reply(MessageStatus.DEFERRED, None, f"{phase.value}: {reason}")) from None
        return Reply(MessageStatus.SENT, response.code, response.message)


def _protocol(client: aiosmtplib.SMTP) -> SMTPProtocol:
    if client.protocol is None or not client.is_connected:
        raise smtp_errors.SMTPServerDisconnected("Connection lost")
    return client.protocol


def _expected(phase: Phase, code: int) -> bool:
    """The reply that lets a transaction go on: 250 to MAIL, 250 or 251 to RCPT, 354 to DATA (RFC 5321)."""
    return code == 354 if phase is Phase.DATA else code == 250 or (phase is Phase.RCPT and code == 251)


async def _command(client: aiosmtplib.SMTP, phase: Phase, timeout: float, *args: bytes) -> SMTPResponse:
    """One command of a mail transaction (RFC 5321 sec. 3.3) and its reply; raises SMTPResponseException
    unless the reply is :func:`_expected`, and closes the client when the reply is 421, the server went away
    or the reply timed out (the dialogue is then out of step)."""
    try:
        response = await _protocol(client).execute_command(*args, timeout=timeout)
    except (smtp_errors.SMTPServerDisconnected, smtp_errors.SMTPTimeoutError):
        client.close()
        raise
    if _expected(phase, response.code):
        return response
    if response.code == 421:
        client.close()
    raise smtp_errors.SMTPResponseException(response.code, response.message)


def _transparent(data: bytes) -> bytes:
    """``data`` as DATA carries it: CRLF line ends and a final CRLF (RFC 5321 sec. 2.3.8; aiosmtplib's own
    function), then every line starting with "." given a second one (sec. 4.5.2)."""
    crlf = data.count(b"\r\n")
    if crlf != data.count(b"\n") or crlf != data.count(b"\r") or not data.endswith(b"\r\n"):
        data = normalize_message_line_endings(data)
    stuffed = data.replace(b"\n.", b"\n..")
    return b"." + stuffed if stuffed.startswith(b".") else stuffed


async def _message(client: aiosmtplib.SMTP, data: bytes, timeout: float) -> SMTPResponse:
    """The message after a 354 reply, ``data`` already transparent (:func:`_transparent`), then ``CRLF.CRLF``,
    and the reply. (aiosmtplib's ``data()`` runs two regular expressions over every message.)"""
    protocol = _protocol(client)
    try:
        protocol.write(data + b".\r\n")
        response = await protocol.read_response(timeout=timeout)
    except (smtp_errors.SMTPServerDisconnected, smtp_errors.SMTPTimeoutError):
        client.close()
        raise
    if response.code != 250:
        if response.code == 421:
            client.close()
        raise smtp_errors.SMTPResponseException(response.code, response.message)
    return response


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
        self, envelope_from: str, recipient: str, data: bytes, *, kind: StepKind | None = None, utf8: bool = False,
        transparent: bool = False,
    ) -> Reply:
        """Send through the server ``kind`` is routed to; see :meth:`SmtpPool.send`."""
        return await self.pool_for(kind).send(envelope_from, recipient, data, utf8=utf8, transparent=transparent)

    async def close(self) -> None:
        await asyncio.gather(*(pool.close() for pool in self.pools.values()))

    async def __aenter__(self) -> SmtpRouter:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
