"""The shape every transport shares: :class:`Transport` (what the service sends through), :class:`Lane` (one
sender's consecutive messages over one connection), :class:`Closing` (``async with`` closes it) and
:class:`Forwarding` (a transport that hands each message on to another).

The real sending happens in :class:`mailer.delivery.pool.SmtpPool`; :class:`mailer.delivery.transport.SmtpRouter`
forwards each step kind to its server's pool; benches and tests forward to a pool to count or observe
messages on their way (a :class:`Forwarding` with :meth:`Forwarding.before_send`).
"""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Protocol, Self

from mailer.config import StepKind
from mailer.delivery.replies import Reply


class NotAttempted(Exception):
    """``send`` gave up before the mail transaction began because its ``stop`` was set: nothing reached the
    server, so the message is as unsent as before the call (the service gives it back, no attempt spent)."""


class Lane:
    """One sender's consecutive messages through a transport, over one connection held between them, so each
    message's content can go out with the next one's commands (RFC 2920 sec. 3.1); an async context
    manager: leaving the block normally sends what is held (:meth:`close`), leaving it by an exception
    abandons it (:meth:`abort`)."""

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
        """Begin sending one message (arguments as :meth:`mailer.delivery.pool.SmtpPool.send`); the future
        gets its classified reply. The message may be held after its DATA was accepted: its reply then comes
        with the next message's :meth:`submit` or with :meth:`close`. ``alone``: not held, the future is
        done on return (a message whose outcome must be known before the next one goes). Raises
        :class:`NotAttempted` when the lane's stop was set before the mail transaction began; a held message's
        future raises it when its connection closed before its content was written (nothing delivered), and
        is cancelled when the caller is cancelled after its content went out, before its reply came."""
        raise NotImplementedError

    async def close(self) -> None:
        """Send the held message, if any (its future gets its reply), and give the connection back."""
        raise NotImplementedError

    def abort(self) -> None:
        """Give the connection back without sending the held message: its connection is closed and its future
        raises :class:`NotAttempted` (the server drops a transaction whose content never came)."""
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            await self.close()
        else:
            self.abort()


async def send_alone(
    transport: Transport,
    envelope_from: str,
    recipient: str,
    data: bytes,
    *,
    kind: StepKind | None,
    utf8: bool,
    transparent: bool,
    stop: asyncio.Event | None,
) -> Reply:
    """One message through a lane of its own: what ``send`` of every transport does."""
    async with transport.lane(stop) as lane:
        reply = await lane.submit(
            envelope_from, recipient, data, kind=kind, utf8=utf8, transparent=transparent, alone=True
        )
    return reply.result()


class Transport(Protocol):
    """What the service sends through: a pool (one server) or a router (a server per step kind).
    ``send`` delivers one message; :meth:`lane` gives a sender its :class:`Lane` (``stop`` as for ``send``)."""

    def lane(self, stop: asyncio.Event | None = None) -> Lane: ...

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
    ) -> Reply: ...

    async def close(self) -> None: ...


class Closing:
    """An async context manager that calls :meth:`close` on leaving its block."""

    async def close(self) -> None:
        """Release what the transport holds (connections, storage)."""
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


class Forwarding(Closing):
    """A transport that hands each message to the transport :meth:`route` gives for its step kind, after
    calling :meth:`before_send` with the recipient. Subclasses give :meth:`route` and :meth:`close`."""

    def route(self, kind: StepKind | None) -> Transport:
        """The transport a message of step ``kind`` (None: no kind) goes through."""
        raise NotImplementedError

    def before_send(self, recipient: str) -> None:
        """Called on the event loop before each message is handed on; nothing by default."""

    def lane(self, stop: asyncio.Event | None = None) -> Lane:
        """A :class:`Lane` that hands each message to the lane of its route's transport."""
        return _RoutedLane(self, stop)

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
        """Hand the message to :meth:`route` of ``kind``; see :meth:`mailer.delivery.pool.SmtpPool.send`
        for the arguments and the reply."""
        return await send_alone(
            self, envelope_from, recipient, data, kind=kind, utf8=utf8, transparent=transparent, stop=stop
        )


class _RoutedLane(Lane):
    """A :class:`Forwarding`'s lane: each message goes through the lane of its route's transport. One route's
    lane is open at a time (the previous one is closed when the route changes), so a sender holds at most
    one connection and two senders never wait for each other's."""

    def __init__(self, forwarding: Forwarding, stop: asyncio.Event | None) -> None:
        self._forwarding = forwarding
        self._stop = stop
        self._transport: Transport | None = None
        self._lane: Lane | None = None

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
        self._forwarding.before_send(recipient)
        transport = self._forwarding.route(kind)
        lane = self._lane
        if lane is None or transport is not self._transport:
            if lane is not None:
                self._lane = None
                await lane.close()
            lane = self._lane = transport.lane(self._stop)
            self._transport = transport
        return await lane.submit(
            envelope_from, recipient, data, kind=kind, utf8=utf8, transparent=transparent, alone=alone
        )

    async def close(self) -> None:
        lane, self._lane = self._lane, None
        if lane is not None:
            await lane.close()

    def abort(self) -> None:
        lane, self._lane = self._lane, None
        if lane is not None:
            lane.abort()


__all__ = ["Closing", "Forwarding", "Lane", "NotAttempted", "Transport", "send_alone"]
