"""The shape every transport shares: :class:`Transport` (what the service sends through), :class:`Closing`
(``async with`` closes it) and :class:`Forwarding` (a transport that hands each message on to another).

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
        self.before_send(recipient)
        return await self.route(kind).send(
            envelope_from, recipient, data, kind=kind, utf8=utf8, transparent=transparent, stop=stop
        )


__all__ = ["Closing", "Forwarding", "NotAttempted", "Transport"]
