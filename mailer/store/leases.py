"""Keeping a live worker's claims: a thread that renews its leases, whatever the event loop is doing.

The send loop may be starved (a busy host, a long render, a slow store); a renewal scheduled on the same
event loop would then come late and another process would take over messages still being sent. The keeper
runs on its own thread with its own connection and renews, every third of the lease, every claim the worker
holds (its messages in ``sending``). It stops with the process: a dead worker's leases expire as before.
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta
from types import TracebackType

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session as DbSession
from sqlalchemy.orm import sessionmaker

from mailer.store.engine import transaction
from mailer.store.outbox import renew_worker_leases
from mailer.timeline.clock import Clock

log = logging.getLogger(__name__)


class LeaseKeeper:
    """Renews ``worker``'s leases to ``now + lease`` every ``lease / 3`` (at least every 0.1 s) on a daemon
    thread, from entering the ``with`` block until leaving it. A failed renewal (store busy or unreachable)
    is logged and tried again at the next interval."""

    def __init__(
        self, factory: sessionmaker[DbSession], clock: Clock, *, worker: str, lease: timedelta
    ) -> None:
        self._factory = factory
        self._clock = clock
        self._worker = worker
        self._lease = lease
        self._interval = max(lease.total_seconds() / 3, 0.1)  # seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"leases-{worker}", daemon=True)
        self.renewals = 0  # transactions committed, for tests

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join()

    def renew(self) -> int:
        """Renew now, in the calling thread; returns how many claims were renewed."""
        with transaction(self._factory) as db:
            renewed = renew_worker_leases(db, self._worker, self._clock.now() + self._lease)
        self.renewals += 1
        return renewed

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.renew()
            except SQLAlchemyError as exc:  # the store is busy or gone for now: the next interval tries again
                log.warning("renewing the leases of %s failed: %s", self._worker, exc)
