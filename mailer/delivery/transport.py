"""What the service sends through: the :class:`Transport` API and :class:`SmtpRouter`, which sends each step
kind through its configured SMTP server (``[smtp.routes]``).

Where delivery happens, by file: :mod:`~mailer.delivery.pool` (reused connections to one server, rate
limits, reconnects), :mod:`~mailer.delivery.dialogue` (one SMTP transaction, pipelined: RFC 2920),
:mod:`~mailer.delivery.replies` (the one place a reply code or a connection error is classified),
:mod:`~mailer.delivery.envelope` (MAIL FROM / RCPT TO addresses).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from types import TracebackType
from typing import Protocol

from sqlalchemy.orm import Session as DbSession
from sqlalchemy.orm import sessionmaker

from mailer.config import Settings, StepKind
from mailer.delivery.pool import SmtpPool
from mailer.delivery.replies import Reply
from mailer.store.engine import transaction
from mailer.store.relays import CircuitState, save_circuit


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
    With ``factory``, each relay's circuit state (unreachable since, next probe) is saved in the store,
    where ``mailer report`` and the staff dashboard of any process read it.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        local_hostname: str | None = None,
        factory: sessionmaker[DbSession] | None = None,
    ) -> None:
        self.settings = settings
        self.local_hostname = local_hostname
        self.factory = factory
        self.pools: dict[str, SmtpPool] = {}

    def pool_for(self, kind: StepKind | None) -> SmtpPool:
        """The pool of the server ``kind`` is routed to (the default server for None), opened on first use."""
        smtp = self.settings.smtp_for(kind)
        pool = self.pools.get(smtp.name)
        if pool is None:
            on_circuit = self._save_circuit if self.factory is not None else None
            pool = SmtpPool(smtp, local_hostname=self.local_hostname, on_circuit=on_circuit)
            self.pools[smtp.name] = pool
        return pool

    async def _save_circuit(self, state: CircuitState) -> None:
        """Save a relay's circuit in the store (in a thread: the store may be busy)."""
        factory = self.factory
        assert factory is not None

        def save() -> None:
            with transaction(factory) as db:
                save_circuit(db, state, datetime.now(UTC))

        await asyncio.to_thread(save)

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
