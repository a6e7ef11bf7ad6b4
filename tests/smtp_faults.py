"""An aiosmtpd server that injects faults on demand, for delivery tests.

:class:`Faults` says what goes wrong; :func:`fault_server` runs aiosmtpd on 127.0.0.1 (port 0) with a handler
that records every accepted message and applies the faults. Counters are thread-safe: the server runs in its
own thread and event loop.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope
from aiosmtpd.smtp import Session as SmtpSession

from mailer.delivery.capture import SmtpServer
from tests.conftest import Received

NO_RECIPIENT = "no-recipient@faults.example"  # stands for none in a DATA taken without recipients


@dataclass
class Faults:
    """What the server does wrong. Address-keyed faults apply to RCPT of that address."""

    greeting_421: int = 0  # the next N connections get "421" at the greeting and are closed
    rcpt_temporary: dict[str, tuple[int, int]] = field(default_factory=dict)  # address -> (code, times)
    rcpt_permanent: dict[str, int] = field(default_factory=dict)  # address -> 5xx code, always
    rcpt_slow: dict[str, tuple[float, int]] = field(default_factory=dict)  # address -> (seconds, times)
    rcpt_forwarded: frozenset[str] = frozenset()  # RCPT of these answered 251 (RFC 5321 sec. 3.4), then taken
    drop_in_data: dict[str, int] = field(
        default_factory=dict
    )  # address -> times the connection drops at DATA
    drop_after_message: int = 0  # close the connection right after accepting message number N (1-based)
    # address -> (True, times): its message is accepted (kept) and the connection closed before the 250
    accepted_unanswered: dict[str, tuple[bool, int]] = field(default_factory=dict)
    smtputf8: bool = True
    pipelining: bool = True  # advertise PIPELINING (RFC 2920), as Postfix does; aiosmtpd takes groups anyway
    data_refused: dict[str, tuple[int, int]] = field(default_factory=dict)  # address -> (code, times) at DATA
    message_refused: dict[str, tuple[int, int]] = field(
        default_factory=dict
    )  # address -> (code, times) in reply to the message's final dot
    message_slow: dict[str, tuple[float, int]] = field(
        default_factory=dict
    )  # address -> (seconds, times) before the reply to the message's final dot
    rset_refused: int = 0  # the next N RSET commands get "500" (the client cannot tell the state it is in)
    data_without_recipients: bool = False  # DATA gets 354 with no recipient, and the empty message 554
    greeting_delay: float = 0.0  # seconds each connection waits before its greeting (a silent server)
    auth_delay: float = 0.0  # seconds AUTH waits before its reply (a login that hangs)
    starttls_delay: float = 0.0  # seconds STARTTLS waits before its reply (a TLS upgrade that hangs)
    auth_reply: str = ""  # the reply every AUTH gets instead of a check, e.g. "454 4.7.0 try later"
    close_after_auth: bool = False  # the connection is closed right after AUTH's reply
    drop_at_mail: int = 0  # the next N MAIL commands close the connection without a reply
    quit_unanswered: bool = False  # QUIT gets no reply (the connection stays open)
    mail_raw: tuple[bytes, ...] = ()  # MAIL answered with these bytes as they are, written 50 ms apart


class FaultyHandler:
    """Records accepted messages; applies :class:`Faults`."""

    def __init__(self, faults: Faults) -> None:
        self.faults = faults
        self.messages: list[Received] = []
        self.lock = threading.Lock()
        self.accepted = 0
        self.drop_on_next_command: set[int] = set()
        self.starttls = 0
        self.connections = 0
        self.quits = 0
        self.ehlo_names: list[str] = []  # the name each EHLO gave, in order
        self.logins: list[tuple[str, str]] = []
        self.passwords: list[str] = []  # the password of every login tried, accepted or not
        self.tls_messages = 0
        self.per_connection: Counter[int] = Counter()  # connection number (1-based) -> messages accepted

    def _take(self, table: dict[str, Any], key: str) -> Any:
        with self.lock:
            entry = table.get(key)
            if entry is None:
                return None
            *value, times = entry if isinstance(entry, tuple) else (entry, 1)
            if times <= 0:
                return None
            table[key] = (*value, times - 1)
            return value[0] if len(value) == 1 else value

    async def handle_RCPT(
        self, server: SMTP, session: SmtpSession, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        code = self.faults.rcpt_permanent.get(address)
        if code:
            return f"{code} 5.1.1 <{address}>: Recipient address rejected: User unknown"
        slow = self._take(self.faults.rcpt_slow, address)
        if slow:
            await asyncio.sleep(slow)
        temporary = self._take(self.faults.rcpt_temporary, address)
        if temporary:
            return f"{temporary} 4.7.1 <{address}>: try again later"
        envelope.rcpt_tos.append(address)
        if address in self.faults.rcpt_forwarded:
            return f"251 2.1.5 <{address}>: user not local; will forward"
        return "250 2.1.5 OK"

    async def handle_EHLO(
        self, server: SMTP, session: SmtpSession, envelope: Envelope, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        self.ehlo_names.append(hostname)
        if self.faults.pipelining:
            responses.insert(len(responses) - 1, "250-PIPELINING")
        return responses

    async def handle_DATA(self, server: SMTP, session: SmtpSession, envelope: Envelope) -> str:
        recipient = envelope.rcpt_tos[0]
        if recipient == NO_RECIPIENT:
            return "554 5.5.1 no valid recipients"
        if self._take(self.faults.drop_in_data, recipient):
            assert server.transport is not None
            server.transport.close()  # before the reply: the client cannot know; nothing is kept
            return "451 never seen"
        slow = self._take(self.faults.message_slow, recipient)
        if slow:
            await asyncio.sleep(slow)
        refusal = self._take(self.faults.message_refused, recipient)
        if refusal:
            return f"{refusal} {refusal // 100}.7.1 message refused"
        with self.lock:
            self.accepted += 1
            number = self.accepted
            if session.ssl is not None or (
                server.transport and server.transport.get_extra_info("ssl_object")
            ):
                self.tls_messages += 1
            self.per_connection[getattr(server, "number", 0)] += 1
            self.messages.append(
                Received(
                    str(envelope.mail_from),
                    list(envelope.rcpt_tos),
                    bytes(envelope.original_content or b""),
                    list(envelope.mail_options),
                )
            )
        if self._take(self.faults.accepted_unanswered, recipient):
            assert server.transport is not None
            server.transport.close()  # kept, but the 250 never reaches the client (RFC 1047)
            return "451 never seen"
        if number == self.faults.drop_after_message:
            # The 250 below reaches the client; the connection drops at its next command, as a relay
            # restarting between transactions would (a drop inside a transaction is drop_in_data).
            self.drop_on_next_command.add(id(server))
        return "250 2.0.0 OK: queued"

    async def handle_MAIL(
        self, server: SMTP, session: SmtpSession, envelope: Envelope, address: str, mail_options: list[str]
    ) -> str:
        with self.lock:
            drop = self.faults.drop_at_mail > 0
            self.faults.drop_at_mail -= drop
        if id(server) in self.drop_on_next_command or drop:
            self.drop_on_next_command.discard(id(server))
            assert server.transport is not None
            server.transport.close()
            return "421 4.3.0 closing"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 OK"

    def received_by(self) -> Counter[str]:
        with self.lock:
            return Counter(rcpt for message in self.messages for rcpt in message.rcpt_tos)


class FaultySMTP(SMTP):
    """aiosmtpd's SMTP with a 421 greeting on demand and counters of STARTTLS and QUIT."""

    def __init__(self, handler: FaultyHandler, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.fault_handler = handler

    async def _handle_client(self) -> None:
        handler = self.fault_handler
        with handler.lock:
            handler.connections += 1
            self.number = handler.connections
            refuse = handler.faults.greeting_421 > 0
            if refuse:
                handler.faults.greeting_421 -= 1
        if refuse:
            await self.push("421 4.3.2 busy, try again later")
            assert self.transport is not None
            self.transport.close()
            return
        if handler.faults.greeting_delay:
            await asyncio.sleep(handler.faults.greeting_delay)
        await super()._handle_client()

    async def smtp_AUTH(self, arg: str) -> None:
        """AUTH late by ``Faults.auth_delay``, answered ``Faults.auth_reply`` when set."""
        faults = self.fault_handler.faults
        if faults.auth_delay:
            await asyncio.sleep(faults.auth_delay)
        if faults.auth_reply:
            await self.push(faults.auth_reply)
        else:
            await super().smtp_AUTH(arg)
        if faults.close_after_auth:
            assert self.transport is not None
            self.transport.close()

    async def smtp_STARTTLS(self, arg: str) -> None:
        """STARTTLS counted, and late by ``Faults.starttls_delay``."""
        with self.fault_handler.lock:
            self.fault_handler.starttls += 1
        if self.fault_handler.faults.starttls_delay:
            await asyncio.sleep(self.fault_handler.faults.starttls_delay)
        await super().smtp_STARTTLS(arg)

    async def smtp_RSET(self, arg: str) -> None:
        """RSET refused while ``Faults.rset_refused`` lasts."""
        handler = self.fault_handler
        with handler.lock:
            refuse = handler.faults.rset_refused > 0
            handler.faults.rset_refused -= refuse
        if refuse:
            await self.push("500 5.5.1 RSET not now")
            return
        await super().smtp_RSET(arg)

    async def smtp_DATA(self, arg: str) -> None:
        """The DATA command refused with a code from ``Faults.data_refused`` (the transaction stays open);
        taken with no recipient when ``Faults.data_without_recipients`` (the message is then refused)."""
        handler = self.fault_handler
        if handler.faults.data_without_recipients and not self.envelope.rcpt_tos:
            self.envelope.rcpt_tos.append(NO_RECIPIENT)
        recipient = self.envelope.rcpt_tos[0] if self.envelope.rcpt_tos else ""
        refusal = handler._take(handler.faults.data_refused, recipient)
        if refusal:
            await self.push(f"{refusal} 4.3.0 not now")
            return
        await super().smtp_DATA(arg)

    async def smtp_MAIL(self, arg: str) -> None:
        """MAIL answered with ``Faults.mail_raw`` when set: no line end added, each piece its own write (the
        client reads them as they come); the transaction is not begun."""
        pieces = self.fault_handler.faults.mail_raw
        if not pieces:
            await super().smtp_MAIL(arg)
            return
        assert self.transport is not None
        for piece in pieces:
            self.transport.write(piece)
            await asyncio.sleep(0.05)

    async def smtp_QUIT(self, arg: str) -> None:
        with self.fault_handler.lock:
            self.fault_handler.quits += 1
        if self.fault_handler.faults.quit_unanswered:
            return
        await super().smtp_QUIT(arg)


def fault_server(
    faults: Faults,
    *,
    tls_context: ssl.SSLContext | None = None,
    require_starttls: bool = False,
    implicit_tls: bool = False,
    auth: dict[str, str] | None = None,
) -> tuple[SmtpServer, FaultyHandler]:
    """A started-later :class:`SmtpServer` (use it as a context manager) and its handler."""
    handler = FaultyHandler(faults)

    def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
        from aiosmtpd.smtp import AuthResult, LoginPassword

        if isinstance(data, LoginPassword):
            handler.passwords.append(data.password.decode())
        ok = (
            isinstance(data, LoginPassword)
            and auth is not None
            and auth.get(data.login.decode()) == data.password.decode()
        )
        if ok:
            handler.logins.append((data.login.decode(), mechanism))
        return AuthResult(success=ok)

    def factory(h: Any) -> SMTP:
        kwargs: dict[str, Any] = {"enable_SMTPUTF8": faults.smtputf8, "hostname": "faults.localhost"}
        if tls_context is not None and not implicit_tls:
            kwargs.update(tls_context=tls_context, require_starttls=require_starttls)
        if auth is not None:
            kwargs.update(authenticator=authenticate, auth_require_tls=not implicit_tls)
        return FaultySMTP(h, **kwargs)

    server = SmtpServer(handler, server_factory=factory, ssl_context=tls_context if implicit_tls else None)
    return server, handler
