"""A circuit breaker per relay: after ``circuit_failures`` consecutive failed connections the relay counts
as unreachable, and messages are deferred at once, without an attempt, until a probe connection succeeds.

States::

    closed --K consecutive failed connections--> open --next probe due--> probing (one connection)
    probing --connected--> closed        probing --failed--> open (next probe: backoff doubled, jitter)

While open, :meth:`Circuit.admit` answers with a deferral whose ``retry_at`` is the next probe, so a batch
against a dead relay costs the K failed connections, not one connect timeout per message. While a probe is
under way, other senders wait for its result. Every change is handed to ``on_change`` (the pool saves it in
the store, where ``mailer report`` and the staff dashboard read it: :mod:`mailer.store.relays`).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from mailer.delivery.replies import Reply
from mailer.store.models import MessageStatus
from mailer.store.relays import CircuitState, describe

log = logging.getLogger(__name__)


def _utc_now() -> datetime:
    return datetime.now(UTC)


class Circuit:
    """The reachability of one relay (``host:port``) as one pool sees it.

    ``threshold``: consecutive failed connections that open the circuit; ``backoff`` and ``backoff_max``:
    seconds from opening to the first probe, doubled after each failed probe up to the cap, times a jitter
    of 0.8-1.2 (never beyond the cap). ``now`` gives aware wall-clock time.
    """

    def __init__(
        self,
        relay: str,
        server: str,
        *,
        threshold: int,
        backoff: float,
        backoff_max: float,
        on_change: Callable[[CircuitState], Awaitable[None]] | None = None,
        now: Callable[[], datetime] = _utc_now,
        rng: random.Random | None = None,
    ) -> None:
        self.relay = relay
        self.server = server
        self.threshold = threshold
        self.backoff = backoff
        self.backoff_max = backoff_max
        self.failures = 0  # consecutive failed connections
        self.opens = 0  # consecutive openings (the first, then each failed probe)
        self.since: datetime | None = None
        self.next_probe: datetime | None = None
        self.last_error = ""
        self._on_change = on_change
        self._now = now
        self._rng = rng or random.Random()
        self._probe: asyncio.Future[None] | None = None
        self._saved = False  # a state was handed to on_change (before: another process may have left it open)

    @property
    def open(self) -> bool:
        return self.since is not None

    def state(self) -> CircuitState:
        """What the store keeps of this circuit."""
        return CircuitState(
            self.relay, self.server, self.open, self.failures, self.since, self.next_probe, self.last_error
        )

    def deferral(self) -> Reply:
        """The reply for a message not attempted because the relay is unreachable: deferred until the probe."""
        state = self.state()
        return Reply(MessageStatus.DEFERRED, None, describe(state), retry_at=self.next_probe)

    async def admit(self) -> Reply | None:
        """None: go ahead and connect (closed, or this caller is the probe); else the deferral to return.

        While another caller's probe is under way, waits for its result first.
        """
        while self.open:
            if self._probe is not None:
                await asyncio.shield(self._probe)
                continue
            assert self.next_probe is not None
            if self._now() < self.next_probe:
                return self.deferral()
            self._probe = asyncio.get_running_loop().create_future()
            log.info("relay %s: probing", self.relay)
            return None
        return None

    async def connected(self) -> None:
        """A connection was opened: the relay is reachable (closes an open circuit, and on the first
        connection the one another process may have saved)."""
        was_open = self.open
        self.failures, self.opens, self.since, self.next_probe, self.last_error = 0, 0, None, None, ""
        self._end_probe()
        if was_open:
            log.warning("relay %s reachable again: circuit closed", self.relay)
        if was_open or not self._saved:
            await self._changed()

    async def failed(self, reason: str) -> bool:
        """A connection could not be opened (``reason``); returns True when the circuit is now open."""
        self.failures += 1
        self.last_error = reason
        probing = self._probe is not None
        if probing or (not self.open and self.failures >= self.threshold):
            now = self._now()
            self.opens += 1
            delay = min(self.backoff * 2 ** (self.opens - 1), self.backoff_max)
            delay = min(delay * self._rng.uniform(0.8, 1.2), self.backoff_max)
            self.since = self.since or now
            self.next_probe = now + timedelta(seconds=delay)
            self._end_probe()
            log.warning("%s", describe(self.state()))
            await self._changed()
        return self.open

    def _end_probe(self) -> None:
        probe, self._probe = self._probe, None
        if probe is not None and not probe.done():
            probe.set_result(None)

    def abandon_probe(self) -> None:
        """The probing caller ended without connecting (cancelled, or another error): let another probe."""
        if self._probe is not None:
            assert self.next_probe is not None
            self._end_probe()

    async def _changed(self) -> None:
        self._saved = True
        if self._on_change is not None:
            try:
                await self._on_change(self.state())
            except Exception:
                log.exception("relay %s: could not save the circuit's state", self.relay)
