"""What the service sends through: the :class:`Transport` API and :class:`SmtpRouter`, which sends each step
kind through its configured SMTP server (``[smtp.routes]``).

Where delivery happens, by file: :mod:`~mailer.delivery.pool` (reused connections to one server, rate
limits, reconnects), :mod:`~mailer.delivery.dialogue` (one SMTP transaction, pipelined: RFC 2920),
:mod:`~mailer.delivery.replies` (the one place a reply code or a connection error is classified),
:mod:`~mailer.delivery.envelope` (MAIL FROM / RCPT TO addresses).
"""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Protocol

from mailer.config import Settings, StepKind
from mailer.delivery.pool import SmtpPool
from mailer.delivery.replies import Reply


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


class SmtpRouter:
    """A pool per configured SMTP server, each step kind sent through its route (``[smtp.routes]``).

    ``settings.smtp`` is the default server; pools are opened on first use and closed (QUIT) together.
    """

    def __init__(self, settings: Settings, *, local_hostname: str | None = None) -> None:
        self.settings = settings
        self.local_hostname = local_hostname
        self.pools: dict[str, SmtpPool] = {}

    def pool_for(self, kind: StepKind | None) -> SmtpPool:
        """The pool of the server ``kind`` is routed to (the default server for None), opened on first use."""
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
        """QUIT every pool's connections."""
        await asyncio.gather(*(pool.close() for pool in self.pools.values()))

    async def __aenter__(self) -> SmtpRouter:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
