"""SMTP delivery over aiosmtplib: a small connection pool and the one place SMTP replies are classified.

:func:`classify` (pure) maps a reply to a message status (DESIGN invariant 7):

    2xx                                   -> sent
    4xx, connection drop, timeout         -> deferred (retried with backoff until the deadline)
    552 at RCPT                           -> deferred (RFC 5321 sec. 4.5.3.1.10: treat as 452)
    other 5xx at RCPT                     -> bounced  (hard bounce: the address is suppressed)
    5xx at connect, MAIL, DATA            -> failed   (permanent for this message, address kept)

:class:`SmtpPool` keeps up to ``connections`` clients open, reuses each for ``messages_per_connection``
messages, reconnects after a drop, and sends QUIT when closed. One recipient per SMTP transaction, so a
refusal belongs to exactly one message.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from enum import StrEnum
from types import TracebackType

import aiosmtplib
import idna
from aiosmtplib import errors as smtp_errors

from mailer.config import Security, SmtpSettings
from mailer.models import MessageStatus

log = logging.getLogger(__name__)


class Phase(StrEnum):
    """Where in the SMTP dialogue a reply came."""

    CONNECT = "connect"
    MAIL = "mail"
    RCPT = "rcpt"
    DATA = "data"


@dataclass(frozen=True)
class Reply:
    """A classified delivery result: ``status`` is SENT, DEFERRED, BOUNCED or FAILED."""

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


class _Slot:
    """One pooled client and how many messages it has carried."""

    def __init__(self) -> None:
        self.client: aiosmtplib.SMTP | None = None
        self.used = 0


class SmtpPool:
    """Up to ``settings.connections`` concurrent SMTP connections; an async context manager.

    ``send`` never raises for delivery problems: it returns a classified :class:`Reply`.
    The password comes from the environment variable named in settings and is never logged.
    """

    def __init__(self, settings: SmtpSettings, *, local_hostname: str | None = None) -> None:
        if not settings.host:
            raise ValueError("SmtpPool needs an SMTP host (the capture server's or a relay's)")
        self.settings = settings
        self.local_hostname = local_hostname
        self._slots: asyncio.Queue[_Slot] = asyncio.Queue()
        for _ in range(settings.connections):
            self._slots.put_nowait(_Slot())
        self._all = list(self._slots._queue)  # type: ignore[attr-defined]

    async def __aenter__(self) -> SmtpPool:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """QUIT every open connection (hard close if QUIT fails)."""
        for slot in self._all:
            await self._drop(slot, polite=True)

    async def _drop(self, slot: _Slot, *, polite: bool) -> None:
        client, slot.client, slot.used = slot.client, None, 0
        if client is None or not client.is_connected:
            return
        try:
            if polite:
                await client.quit()
            else:
                client.close()
        except (smtp_errors.SMTPException, OSError, asyncio.TimeoutError):
            client.close()

    async def _connect(self, slot: _Slot) -> aiosmtplib.SMTP:
        if slot.client is not None and slot.client.is_connected and slot.used < self.settings.messages_per_connection:
            return slot.client
        await self._drop(slot, polite=True)
        smtp = self.settings
        client = aiosmtplib.SMTP(
            hostname=smtp.host,
            port=smtp.port,
            timeout=smtp.timeout,
            use_tls=smtp.security is Security.TLS,
            start_tls=smtp.security is Security.STARTTLS,
            local_hostname=self.local_hostname,
        )
        await client.connect()
        if smtp.username:
            await client.login(smtp.username, smtp.password or "")
        slot.client = client
        return client

    async def send(self, envelope_from: str, recipient: str, data: bytes) -> Reply:
        """Deliver ``data`` (the full message, CRLF line ends) to one ``recipient``; returns the classified reply."""
        slot = await self._slots.get()
        try:
            return await self._send_on(slot, envelope_from, recipient, data)
        finally:
            self._slots.put_nowait(slot)

    async def _send_on(self, slot: _Slot, envelope_from: str, recipient: str, data: bytes) -> Reply:
        try:
            client = await self._connect(slot)
        except smtp_errors.SMTPResponseException as exc:
            await self._drop(slot, polite=False)
            return Reply(classify(exc.code, Phase.CONNECT), exc.code, exc.message)
        except (smtp_errors.SMTPException, OSError, asyncio.TimeoutError) as exc:
            await self._drop(slot, polite=False)
            return Reply(MessageStatus.DEFERRED, None, f"connection failed: {exc}")

        utf8 = needs_smtputf8(recipient) or needs_smtputf8(envelope_from)
        if utf8 and not client.supports_extension("smtputf8"):
            return Reply(
                MessageStatus.FAILED,
                None,
                "recipient address has a non-ASCII local part and the server does not offer SMTPUTF8 (RFC 6531)",
            )
        options = ["SMTPUTF8"] if utf8 else []
        if client.supports_extension("8bitmime"):
            options.append("BODY=8BITMIME")
        try:
            slot.used += 1
            response_map, text = await client.sendmail(
                envelope_address(envelope_from), [envelope_address(recipient)], data, mail_options=options
            )
        except smtp_errors.SMTPRecipientsRefused as exc:
            refused = exc.recipients[0]
            return Reply(classify(refused.code, Phase.RCPT), refused.code, refused.message)
        except smtp_errors.SMTPSenderRefused as exc:
            return Reply(classify(exc.code, Phase.MAIL), exc.code, exc.message)
        except smtp_errors.SMTPDataError as exc:
            return Reply(classify(exc.code, Phase.DATA), exc.code, exc.message)
        except smtp_errors.SMTPResponseException as exc:
            await self._drop(slot, polite=False)
            return Reply(classify(exc.code, Phase.MAIL), exc.code, exc.message)
        except (smtp_errors.SMTPException, OSError, asyncio.TimeoutError) as exc:
            await self._drop(slot, polite=False)
            return Reply(MessageStatus.DEFERRED, None, f"connection lost: {type(exc).__name__}: {exc}")
        code, reply_text = 250, text
        refusal = response_map.get(envelope_address(recipient))
        if refusal is not None and refusal.code >= 300:  # partial refusal is reported, not raised
            return Reply(classify(refusal.code, Phase.RCPT), refusal.code, refusal.message)
        return Reply(MessageStatus.SENT, code, reply_text)
