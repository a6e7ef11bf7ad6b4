"""A circuit breaker per relay: after ``circuit_failures`` consecutive failed connections the relay counts
as unreachable, and messages are deferred at once, without an attempt, until a probe connection succeeds.

States::

    closed --K consecutive failed connections--> open --next probe due--> probing (one connection)
    probing --connected--> closed        probing --failed--> open (next probe: backoff doubled, jitter)

While open, :meth:`Circuit.admit` answers with a deferral whose ``retry_at`` is the next probe, so a batch
against a dead relay costs the K failed connections, not one connect timeout per message. While a probe is
under way, other senders wait for its result.

With a :class:`SharedCircuit` (the store's row per relay, :mod:`mailer.store.relays`), every process sending
to the relay keeps one circuit: each change is saved there; each process reads the row back at most every
``refresh`` seconds, so one process's open circuit defers the others' batches and a probe that succeeded
closes theirs; and a due probe is claimed in the row first, so one process at a time probes. ``mailer
report`` and the staff dashboard show the same row.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol

from mailer.delivery.replies import Reply
from mailer.store.models import MessageStatus
from mailer.store.relays import CircuitState, describe

log = logging.getLogger(__name__)


def _utc_now() -> datetime:
    return datetime.now(UTC)


class SharedCircuit(Protocol):
    """Where the circuits of every process sending to one relay meet (one row: :mod:`mailer.store.relays`).
    Each method may raise on a store error; the circuit logs it and goes on with what it knows."""

    async def save(self, state: CircuitState) -> None:
        """Write this process's view of the relay (opened, re-opened after a failed probe, or closed)."""

    async def load(self) -> CircuitState | None:
        """The relay's last saved state (None: never saved)."""

    async def claim_probe(self, now: datetime, until: datetime) -> bool:
        """True for exactly one caller when the saved circuit is open and its probe due at ``now``; moves
        the next probe to ``until`` for the others."""


class Circuit:
    """The reachability of one relay (``host:port``) as one pool sees it.

    ``threshold``: consecutive failed connections that open the circuit; ``backoff`` and ``backoff_max``:
    seconds from opening to the first probe, doubled after each failed probe up to the cap, times a jitter
    of 0.8-1.2 (never beyond the cap). ``shared``: the state shared with other processes, read back every
    ``refresh`` seconds at most; ``probe_timeout``: seconds a claimed probe keeps the others waiting (after
    that another process probes, in case the claimer died). ``now`` gives aware wall-clock time.
    """

    def __init__(
        self,
        relay: str,
        server: str,
        *,
        threshold: int,
        backoff: float,
        backoff_max: float,
        shared: SharedCircuit | None = None,
        refresh: float = 1.0,
        probe_timeout: float = 60.0,
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
        self._shared = shared
        self.refresh = refresh
        self.probe_timeout = probe_timeout
        self._loaded_at: float | None = None  # time.monotonic() of the last read of the shared state
        self._now = now
        self._rng = rng or random.Random()
        self._probe: asyncio.Future[None] | None = None
        self._saved = False  # a state was handed to on_change (before: another process may have left it open)

    @property
    def open(self) -> bool:
        return self.since is not None

    @property
    def passes(self) -> bool:
        """True when :meth:`admit` would return None at once, with no wait: the circuit is closed and the
        shared state, if any, was read less than ``refresh`` seconds ago. A caller may then skip admit (and
        the task a stoppable wait for it costs)."""
        if self.open:
            return False
        loaded = self._loaded_at
        return self._shared is None or (loaded is not None and time.monotonic() - loaded < self.refresh)

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

        Reads the shared state first when ``refresh`` seconds have passed. While another caller's probe is
        under way in this process, waits for its result; a probe due here is claimed in the shared state
        first, and another process's claim makes this a deferral until the probe it moved.
        """
        await self._refresh()
        while self.open:
            if self._probe is not None:
                await asyncio.shield(self._probe)
                continue
            assert self.next_probe is not None
            now = self._now()
            if now < self.next_probe:
                return self.deferral()
            self._probe = asyncio.get_running_loop().create_future()
            try:
                claimed = await self._claim(now)
            except asyncio.CancelledError:  # stopped while claiming: whoever waits on this probe goes on
                self._end_probe()
                raise
            if not claimed:
                self._end_probe()
                await self._refresh(force=True)
                if not self.open or self.next_probe is None or self._now() < self.next_probe:
                    continue
                self._probe = asyncio.get_running_loop().create_future()  # no row to claim: probe
            log.info("relay %s: probing", self.relay)
            return None
        return None

    async def _claim(self, now: datetime) -> bool:
        """Claim the due probe in the shared state (True without one, or when the store fails)."""
        if self._shared is None:
            return True
        try:
            return await self._shared.claim_probe(now, now + timedelta(seconds=self.probe_timeout))
        except Exception:
            log.exception("relay %s: could not claim the probe in the store", self.relay)
            return True

    async def _refresh(self, *, force: bool = False) -> None:
        """Take over the shared state (another process opened the circuit, moved its probe or closed it)
        when ``refresh`` seconds passed since the last read, or at once with ``force``; never while this
        process probes (its own result decides)."""
        if self._shared is None:
            return
        moment = time.monotonic()
        if not force and self._loaded_at is not None and moment - self._loaded_at < self.refresh:
            return
        self._loaded_at = moment
        try:
            saved = await self._shared.load()
        except Exception:
            log.exception("relay %s: could not read the circuit from the store", self.relay)
            return
        if saved is None or self._probe is not None:
            return
        if saved.open and saved.since is not None and saved.next_probe_at is not None:
            if not self.open:
                log.warning("%s (found by another process)", describe(saved))
            self.since, self.next_probe = saved.since, saved.next_probe_at
            self.failures, self.last_error = saved.failures, saved.last_error
            self.opens = max(self.opens, saved.failures - self.threshold + 1, 1)
            self._saved = True
        elif not saved.open and self.open:
            self.failures, self.opens, self.since, self.next_probe, self.last_error = 0, 0, None, None, ""
            self._saved = True
            log.warning("relay %s reachable again (found by another process): circuit closed", self.relay)

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
        if self._shared is not None:
            try:
                await self._shared.save(self.state())
            except Exception:
                log.exception("relay %s: could not save the circuit's state", self.relay)
