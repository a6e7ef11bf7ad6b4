"""Reused SMTP connections to one server: :class:`SmtpPool`.

The pool keeps up to ``connections`` clients open, reuses each for ``messages_per_connection`` messages
(a sender keeps one through its :meth:`SmtpPool.lane`, each message's content written with the next one's
commands when the server offers PIPELINING: RFC 2920 sec. 3.1),
applies the server's rate limits, reconnects after a drop (a drop before DATA on a reused connection is
retried at once on a new one: nothing was delivered), and sends QUIT when closed. aiosmtplib opens each
connection (greeting, EHLO, STARTTLS, AUTH); its transactions then run over a
:class:`~mailer.delivery.dialogue.Dialogue`. Timeouts are per phase: ``connect_timeout`` (TCP, greeting,
EHLO, STARTTLS, AUTH), ``timeout`` (MAIL, RCPT, RSET, QUIT), ``data_timeout`` (the message and the reply
to its final dot). A relay that cannot be reached is noticed by a :class:`~mailer.delivery.circuit.Circuit`:
after ``circuit_failures`` consecutive failed connections, messages are deferred without an attempt until
a probe connection succeeds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Coroutine
from typing import Any, TypeVar

import aiosmtplib
from aiosmtplib import errors as smtp_errors

from mailer.config import Security, SmtpSettings, StepKind
from mailer.delivery.circuit import Circuit, SharedCircuit
from mailer.delivery.dialogue import CONNECTION_ERRORS, ConnectionFailed, Dialogue
from mailer.delivery.envelope import envelope_commands, needs_smtputf8, unsendable
from mailer.delivery.forwarding import Closing, Lane, NotAttempted, send_alone
from mailer.delivery.ratelimit import Limiter, RateLimited, RateLimiter, in_slot, rate_limiter
from mailer.delivery.replies import Phase, Reply, refused, unanswered
from mailer.errors import ConfigError
from mailer.store.models import MessageStatus

log = logging.getLogger(__name__)

_T = TypeVar("_T")


async def unless_stopped(step: Coroutine[Any, Any, _T], stop: asyncio.Event | None) -> _T:
    """Await ``step`` unless ``stop`` is set first: then ``step`` is cancelled and :class:`NotAttempted`
    raised (a ``step`` that finished meanwhile still gives its result). For the waits before a mail
    transaction (circuit, free connection, connecting, rate limit), so a stop never waits them out."""
    if stop is None:
        return await step
    if stop.is_set():
        step.close()
        raise NotAttempted("stopped")
    task = asyncio.ensure_future(step)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if not task.done():
            task.cancel()
            await asyncio.wait({task})
    finally:
        stopped.cancel()
        task.cancel()  # no-op once done; reached undone only when the caller itself is cancelled
    if task.cancelled():
        raise NotAttempted("stopped")
    return task.result()


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


class _Slot:
    """One pooled connection: the aiosmtplib client that opened it and the :class:`Dialogue` that carries its
    mail transactions (and counts them)."""

    def __init__(self) -> None:
        self.client: aiosmtplib.SMTP | None = None
        self.dialogue: Dialogue | None = None


class SmtpPool(Closing):
    """Up to ``settings.connections`` concurrent SMTP connections to one server; an async context manager.

    ``send`` never raises for delivery problems: it returns a classified :class:`Reply`.
    The password comes from the environment variable named in settings and is never logged.
    ``limiter``: the rate limiter (default: :func:`~mailer.delivery.ratelimit.rate_limiter` of the settings);
    ``shared_circuit``: the relay's circuit state shared with other processes (the store's row), if any.
    Raises ValueError without a host, ConfigError when a login is configured but its variable is unset.
    """

    def __init__(
        self,
        settings: SmtpSettings,
        *,
        local_hostname: str | None = None,
        limiter: Limiter | None = None,
        shared_circuit: SharedCircuit | None = None,
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
        self.limiter = limiter or rate_limiter(settings)
        # A limiter of this process without windows: its acquire() would return math.inf (a slot that never
        # ends) at once, so it is not called. Any other limiter (shared, or a test's) is asked every time.
        self._unlimited = isinstance(self.limiter, RateLimiter) and self.limiter.unlimited
        self.circuit = Circuit(
            f"{settings.host}:{settings.port}",
            settings.name,
            threshold=settings.circuit_failures,
            backoff=settings.circuit_backoff,
            backoff_max=settings.circuit_backoff_max,
            shared=shared_circuit,
            probe_timeout=4 * settings.connect_timeout,  # connect, greeting, EHLO, STARTTLS or AUTH
        )
        self._tls = tls_context(settings)
        self._all = [_Slot() for _ in range(settings.connections)]
        self._slots: asyncio.Queue[_Slot] = asyncio.Queue()
        for slot in self._all:
            self._slots.put_nowait(slot)
        self.connects = 0  # connections opened, for reports and tests
        self.connect_attempts = 0  # connections tried, opened or not
        self._attempts: set[asyncio.Future[None]] = set()  # connections being opened now
        self.pipelined = 0  # transactions sent as one PIPELINING group (RFC 2920)
        self.joined = 0  # of those, sent with the previous message's content (RFC 2920 sec. 3.1)

    async def close(self) -> None:
        """QUIT every open connection (hard close if QUIT fails); release the rate limiter's storage."""
        await asyncio.gather(*(self._drop(slot, polite=True) for slot in self._all))
        await self.limiter.close()

    async def _drop(self, slot: _Slot, *, polite: bool) -> None:
        """Close the slot's connection (:meth:`_hang_up`): ``polite``, the held message is sent first and QUIT
        after it; else at once (a held message is then not sent: its reply raises NotAttempted)."""
        dialogue = slot.dialogue
        try:
            if polite and dialogue is not None and dialogue.connected:
                await dialogue.flush(self.settings.data_timeout)
                with contextlib.suppress(*CONNECTION_ERRORS):  # a server gone already needs no QUIT
                    await dialogue.exchange(b"QUIT\r\n", 1, self.settings.timeout)
        finally:
            self._hang_up(slot)

    def _hang_up(self, slot: _Slot) -> None:
        """Close the slot's connection now, without QUIT, and empty the slot."""
        client, dialogue, slot.client, slot.dialogue = slot.client, slot.dialogue, None, None
        if dialogue is not None:
            dialogue.close()
        if client is not None:
            client.close()

    async def _connect(self, slot: _Slot) -> Dialogue:
        """A new connection for the slot (its connection, not reusable, is dropped first: QUIT if it is still
        connected); the caller found none to reuse (:meth:`_reusable`).

        Raises :class:`ConnectionFailed` when the server cannot be reached or refuses the connection or login
        (``unreachable`` when no connection could be opened, which the circuit counts).
        """
        await self._drop(slot, polite=True)
        smtp = self.settings
        client = aiosmtplib.SMTP(
            hostname=smtp.host,
            port=smtp.port,
            timeout=smtp.connect_timeout,
            use_tls=smtp.security is Security.TLS,
            start_tls=False,  # STARTTLS is sent by _open, once the EHLO shows the server offers it
            tls_context=self._tls,
            local_hostname=self.local_hostname,
        )
        self.connect_attempts += 1
        attempt = asyncio.get_running_loop().create_future()
        self._attempts.add(attempt)
        try:
            try:
                await self._open(client)
            except ConnectionFailed as failure:
                if failure.unreachable:
                    await self.circuit.failed(failure.reply.text)
                raise
            dialogue = Dialogue(client)
        except smtp_errors.SMTPServerDisconnected as exc:  # closed by the server right after the login
            client.close()
            raise ConnectionFailed(unanswered(Phase.CONNECT, str(exc))) from None
        except asyncio.CancelledError:  # a stop while connecting: the half-open connection is closed
            client.close()
            raise
        finally:
            self._attempts.discard(attempt)
            attempt.set_result(None)
        slot.client, slot.dialogue = client, dialogue
        self.connects += 1
        await self.circuit.connected()
        return dialogue

    def _reusable(self, slot: _Slot) -> Dialogue | None:
        """The slot's dialogue when it is connected and may carry another message, else None."""
        dialogue = slot.dialogue
        if (
            dialogue is not None
            and dialogue.connected
            and dialogue.transactions < self.settings.messages_per_connection
        ):
            return dialogue
        return None

    async def _open(self, client: aiosmtplib.SMTP) -> None:
        """Connect, greeting, EHLO (STARTTLS) and login; raises :class:`ConnectionFailed` (``unreachable``
        when no connection could be opened: refused, lost, timed out or a 4xx greeting), and ConfigError when
        ``security`` is starttls but the server's EHLO does not offer it (no retry can help)."""
        smtp = self.settings
        phase = Phase.CONNECT
        try:
            await client.connect()
            if client.is_ehlo_or_helo_needed:
                await client.ehlo()
            if smtp.security is Security.STARTTLS:
                if not client.supports_extension("starttls"):
                    client.close()
                    raise starttls_not_offered(smtp)
                await client.starttls(tls_context=self._tls, timeout=smtp.connect_timeout)
                if client.is_ehlo_or_helo_needed:
                    await client.ehlo()  # RFC 3207 sec. 4.2: what the server offers may change after TLS
            if smtp.username:
                phase = Phase.AUTH
                await client.login(smtp.username, smtp.password or "", timeout=smtp.connect_timeout)
        except smtp_errors.SMTPResponseException as exc:
            client.close()
            if phase is Phase.AUTH:
                log.error(
                    "SMTP server %s refused the login of %s: %s %s",
                    smtp.name,
                    smtp.username,
                    exc.code,
                    exc.message,
                )
            reply = refused(exc.code, exc.message, phase)
            down = phase is Phase.CONNECT and reply.status is MessageStatus.DEFERRED  # e.g. 421 greeting
            raise ConnectionFailed(reply, unreachable=down) from None
        except CONNECTION_ERRORS as exc:
            client.close()
            reason = f"{type(exc).__name__}: {exc}"
            raise ConnectionFailed(unanswered(phase, reason), unreachable=phase is Phase.CONNECT) from None

    def lane(self, stop: asyncio.Event | None = None) -> Lane:
        """A sender's :class:`~mailer.delivery.forwarding.Lane`: one connection of the pool, taken at its first
        message and given back when it closes; ``stop`` as for :meth:`send`."""
        return _PoolLane(self, stop)

    async def send(
        self,
        envelope_from: str,
        recipient: str,
        data: bytes,
        *,
        kind: StepKind | None = None,
        utf8: bool = False,
        transparent: bool = False,
        stop: asyncio.Event | None = None,
    ) -> Reply:
        """Deliver ``data`` (the full message) to one ``recipient``; returns the classified reply.

        ``utf8``: the message itself carries UTF-8 addresses in its header, so it needs SMTPUTF8 too.
        ``transparent``: ``data`` is already in DATA's transparent form (CRLF line ends, a final CRLF, a
        leading "." doubled: RFC 5321 sec. 4.5.2; mailer.compose.wire.Composed.wire) and goes out as it is;
        otherwise line ends are normalised and leading dots doubled here.
        ``kind`` is ignored (a pool is one server). Waits for a rate-limit slot up to ``max_rate_wait``
        seconds, else the reply is deferred without contacting the server. A failed connection is tried
        again on a new one until the circuit opens (``circuit_failures`` in a row); while it is open the reply
        is a deferral with ``retry_at`` (the next probe) and nothing is sent.
        Once ``stop`` is set, a send that has not begun its mail transaction stops waiting (for the circuit's
        probe, a free connection, a connection being opened, a rate-limit slot) and raises
        :class:`~mailer.delivery.forwarding.NotAttempted`; a transaction under way finishes.
        """
        return await send_alone(
            self, envelope_from, recipient, data, kind=kind, utf8=utf8, transparent=transparent, stop=stop
        )

    async def _submit(
        self,
        lane: _PoolLane,
        envelope_from: str,
        recipient: str,
        data: bytes,
        utf8: bool,
        transparent: bool,
        hold: bool,
    ) -> Reply | asyncio.Future[Reply]:
        """One message of ``lane`` (see :meth:`send`): the circuit's verdict, the lane's connection (taken
        from the pool at its first message), then the transaction; ``hold`` as for
        :meth:`~mailer.delivery.dialogue.Dialogue.transaction`."""
        stop = lane.stop
        if self.circuit.passes:  # the common case costs no task
            verdict = None
        else:
            verdict = await unless_stopped(self.circuit.admit(), stop)
        if verdict is not None:
            return verdict
        probing = self.circuit.open  # admitted while open: this send is the probe
        try:
            slot = lane.slot
            if slot is None:
                if self._slots.empty():
                    slot = await unless_stopped(self._slots.get(), stop)
                else:  # the common case costs no task
                    slot = self._slots.get_nowait()
                lane.slot = slot
            return await self._send_on_slot(
                slot, envelope_from, recipient, data, utf8, transparent, stop, hold
            )
        finally:
            if probing:
                self.circuit.abandon_probe()

    async def _release(self, slot: _Slot) -> None:
        """A lane gives its connection back: its held message is sent first. Cancelled meanwhile, the
        connection is closed (a reply is still due on it: the next user would read it as its own)."""
        try:
            if slot.dialogue is not None:
                await slot.dialogue.flush(self.settings.data_timeout)
        except BaseException:
            self._hang_up(slot)
            raise
        finally:
            self._slots.put_nowait(slot)

    def _abandon(self, slot: _Slot) -> None:
        """A lane gives its slot back at once (its sender was cancelled or failed), the connection closed: it
        may hold a message (then never sent) or be in the middle of a transaction."""
        self._hang_up(slot)
        self._slots.put_nowait(slot)

    async def _send_on_slot(
        self,
        slot: _Slot,
        envelope_from: str,
        recipient: str,
        data: bytes,
        utf8: bool,
        transparent: bool,
        stop: asyncio.Event | None,
        hold: bool,
    ) -> Reply | asyncio.Future[Reply]:
        """:meth:`_send_on`, reconnecting after a drop before DATA (once) or a failed connection (until the
        circuit opens or ``stop`` is set)."""
        dropped = unreachable = 0
        while True:
            try:
                return await self._send_on(
                    slot, envelope_from, recipient, data, utf8, transparent, stop, hold
                )
            except ConnectionFailed as failure:
                await self._drop(slot, polite=False)
                reply = failure.reply
                if failure.unreachable:  # counted by the circuit; the attempts under way count first
                    if self._attempts:
                        await unless_stopped(asyncio.wait(set(self._attempts)), stop)
                    if self.circuit.open:
                        return self.circuit.deferral()
                    unreachable += 1
                    if unreachable >= self.settings.circuit_failures:
                        return reply
                    continue
                if not failure.retry or dropped:
                    return reply
                dropped += 1
                log.info(
                    "connection to %s dropped before DATA (%s); retrying on a new one",
                    self.settings.name,
                    reply.text,
                )

    async def _take_slot(self, stop: asyncio.Event | None) -> None:
        """Take a rate-limit slot that still lasts when this returns: the caller writes MAIL FROM with no
        wait in between (:func:`~mailer.delivery.ratelimit.in_slot`). Raises :class:`RateLimited`, or
        :class:`NotAttempted` when ``stop`` is set while waiting."""
        if self._unlimited:
            return
        while not in_slot(await unless_stopped(self.limiter.acquire(self.settings.max_rate_wait), stop)):
            pass

    async def _send_on(
        self,
        slot: _Slot,
        envelope_from: str,
        recipient: str,
        data: bytes,
        utf8: bool,
        transparent: bool,
        stop: asyncio.Event | None,
        hold: bool,
    ) -> Reply | asyncio.Future[Reply]:
        reused = self._reusable(slot)
        if reused is None and slot.dialogue is not None:  # a held message goes out, stop or not
            await slot.dialogue.flush(self.settings.data_timeout)
        if stop is not None and stop.is_set():
            raise NotAttempted("stopped")
        if reused is not None:  # the common case costs no task
            dialogue, fresh = reused, False
        else:
            dialogue, fresh = await unless_stopped(self._connect(slot), stop), True
        smtp = self.settings
        if not self._unlimited and dialogue.holding:  # a held message does not wait for the rate limit
            await dialogue.flush(smtp.data_timeout)
        try:  # the slot is taken once connected, so the relay sees the messages spaced as the limit says
            await self._take_slot(stop)
        except RateLimited as exc:
            return Reply(MessageStatus.DEFERRED, None, f"server {smtp.name}: {exc}")
        utf8 = utf8 or needs_smtputf8(recipient) or needs_smtputf8(envelope_from)
        reason = unsendable(envelope_from, recipient, utf8=utf8, offers_smtputf8=dialogue.smtputf8)
        if reason is not None:
            return Reply(MessageStatus.FAILED, None, reason)
        mail, rcpt = envelope_commands(envelope_from, recipient, utf8=utf8, eight_bit=dialogue.eight_bit)
        pipelining = dialogue.pipelining
        self.pipelined += pipelining
        self.joined += dialogue.holding
        return await dialogue.transaction(
            mail,
            rcpt,
            data,
            transparent=transparent,
            pipelining=pipelining,
            timeout=smtp.timeout,
            data_timeout=smtp.data_timeout,
            fresh=fresh,
            hold=hold,
        )


class _PoolLane(Lane):
    """:meth:`SmtpPool.lane`: one connection slot of the pool, held from the first message to :meth:`close`."""

    def __init__(self, pool: SmtpPool, stop: asyncio.Event | None) -> None:
        self.pool = pool
        self.stop = stop
        self.slot: _Slot | None = None

    async def submit(
        self,
        envelope_from: str,
        recipient: str,
        data: bytes,
        *,
        kind: StepKind | None = None,
        utf8: bool = False,
        transparent: bool = False,
        alone: bool = False,
    ) -> asyncio.Future[Reply]:
        reply = await self.pool._submit(self, envelope_from, recipient, data, utf8, transparent, not alone)
        if isinstance(reply, Reply):
            done: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
            done.set_result(reply)
            return done
        return reply

    async def close(self) -> None:
        slot, self.slot = self.slot, None
        if slot is not None:
            await self.pool._release(slot)

    def abort(self) -> None:
        slot, self.slot = self.slot, None
        if slot is not None:
            self.pool._abandon(slot)


def starttls_not_offered(smtp: SmtpSettings) -> ConfigError:
    """The configuration error for a server that does not offer the STARTTLS that ``smtp.security`` requires
    (RFC 3207): the fix for a local test server, and why a relay must not be used without it."""
    where = "[smtp]" if smtp.name == "default" else f"[smtp.servers.{smtp.name}]"
    return ConfigError(
        f"SMTP server {smtp.name} ({smtp.host}:{smtp.port})",
        "security",
        "'starttls' is required but the server does not offer STARTTLS",
        f'for a local test server without TLS set security = "none" in {where} or SMTP_SECURITY=none;'
        ' a relay on another machine must offer STARTTLS, or use security = "tls" on its port 465',
    )
