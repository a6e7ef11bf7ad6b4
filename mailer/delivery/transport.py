"""What the service sends through: the :class:`~mailer.delivery.forwarding.Transport` API and
:class:`SmtpRouter`, which sends each step kind through its configured SMTP server (``[smtp.routes]``).

Where delivery happens, by file: :mod:`~mailer.delivery.pool` (reused connections to one server, rate
limits, reconnects), :mod:`~mailer.delivery.dialogue` (one SMTP transaction, pipelined: RFC 2920),
:mod:`~mailer.delivery.replies` (the one place a reply code or a connection error is classified),
:mod:`~mailer.delivery.envelope` (MAIL FROM / RCPT TO addresses).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from sqlalchemy.orm import Session as DbSession
from sqlalchemy.orm import sessionmaker

from mailer.config import Settings, StepKind
from mailer.delivery.forwarding import Forwarding, NotAttempted, Transport
from mailer.delivery.pool import SmtpPool
from mailer.delivery.ratelimit import rate_limiter
from mailer.store.engine import transaction
from mailer.store.relays import CircuitState, claim_probe, load_circuit, save_circuit


class SmtpRouter(Forwarding):
    """A pool per configured SMTP server, each step kind sent through its route (``[smtp.routes]``).

    ``settings.smtp`` is the default server; pools are opened on first use and closed (QUIT) together.
    With ``factory``, each relay's circuit (unreachable since, next probe) is kept in the store and shared
    by every process sending to it (:class:`StoredCircuit`); ``mailer report`` and the staff dashboard of
    any process read it there; its rate limits are shared through the store when it is PostgreSQL and no
    Redis is configured (:func:`~mailer.delivery.ratelimit.rate_limiter`).
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

    def route(self, kind: StepKind | None) -> SmtpPool:
        """:meth:`pool_for` ``kind``: each message goes through the server its step kind is routed to."""
        return self.pool_for(kind)

    def pool_for(self, kind: StepKind | None) -> SmtpPool:
        """The pool of the server ``kind`` is routed to (the default server for None), opened on first use."""
        smtp = self.settings.smtp_for(kind)
        pool = self.pools.get(smtp.name)
        if pool is None:
            shared = StoredCircuit(self.factory, f"{smtp.host}:{smtp.port}") if self.factory else None
            limiter = rate_limiter(smtp, self.factory)
            pool = SmtpPool(smtp, local_hostname=self.local_hostname, limiter=limiter, shared_circuit=shared)
            self.pools[smtp.name] = pool
        return pool

    async def close(self) -> None:
        """QUIT every pool's connections."""
        await asyncio.gather(*(pool.close() for pool in self.pools.values()))


class StoredCircuit:
    """A relay's circuit shared through the store (:mod:`mailer.store.relays`): the
    :class:`~mailer.delivery.circuit.SharedCircuit` of one process's pool, one short transaction per call,
    run in a thread (the store may be busy)."""

    def __init__(self, factory: sessionmaker[DbSession], relay: str) -> None:
        self.factory = factory
        self.relay = relay

    async def save(self, state: CircuitState) -> None:
        """Save ``state`` as the relay's row."""

        def save() -> None:
            with transaction(self.factory) as db:
                save_circuit(db, state, datetime.now(UTC))

        await asyncio.to_thread(save)

    async def load(self) -> CircuitState | None:
        """The relay's row, or None."""

        def load() -> CircuitState | None:
            with transaction(self.factory) as db:
                return load_circuit(db, self.relay)

        return await asyncio.to_thread(load)

    async def claim_probe(self, now: datetime, until: datetime) -> bool:
        """Claim the due probe (see :func:`mailer.store.relays.claim_probe`)."""

        def claim() -> bool:
            with transaction(self.factory) as db:
                return claim_probe(db, self.relay, now, until)

        return await asyncio.to_thread(claim)


__all__ = ["NotAttempted", "SmtpRouter", "StoredCircuit", "Transport"]
