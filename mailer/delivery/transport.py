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
from mailer.delivery.forwarding import Forwarding, Transport
from mailer.delivery.pool import SmtpPool
from mailer.store.engine import transaction
from mailer.store.relays import CircuitState, save_circuit


class SmtpRouter(Forwarding):
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

    def route(self, kind: StepKind | None) -> SmtpPool:
        """:meth:`pool_for` ``kind``: each message goes through the server its step kind is routed to."""
        return self.pool_for(kind)

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

    async def close(self) -> None:
        """QUIT every pool's connections."""
        await asyncio.gather(*(pool.close() for pool in self.pools.values()))


__all__ = ["SmtpRouter", "Transport"]
