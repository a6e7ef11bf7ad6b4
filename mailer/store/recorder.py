"""Delivery outcomes made durable as soon as they arrive: a group commit from a thread with its own connection.

The senders hand each outcome to :meth:`OutcomeRecorder.add` the moment the server's reply is classified. One
task commits them in groups, in one transaction each, on a worker thread (so the event loop keeps sending
meanwhile): a group is committed once it holds ``group_size`` outcomes (the service passes half its number of
connections), once its first outcome has waited ``max_wait`` (25 ms), or at once when someone waits for it
(a careful message, the end of a batch). A SIGKILL therefore loses the record of at most the group being
filled and the one being committed, never of a whole batch; the cost is one commit per group, not per
message.

A commit that fails because the store is busy or unreachable (SQLAlchemy's or psycopg's ``OperationalError``,
e.g. SQLite's "database is locked", a PostgreSQL lock timeout or a dropped connection) is retried with a growing pause (up
to :data:`MAX_RETRY_PAUSE` seconds) until it succeeds: an outcome the process knows is never dropped. Recording
is idempotent (only messages still ``sending`` and claimed by this worker change), so writing an outcome twice
does no harm.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Sequence
from types import TracebackType

import psycopg
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session as DbSession
from sqlalchemy.orm import sessionmaker

from mailer.config import Settings
from mailer.store.engine import transaction
from mailer.store.models import MessageStatus
from mailer.store.outbox import Outcome, record_outcomes, record_sent
from mailer.timeline.clock import Clock

log = logging.getLogger(__name__)

MAX_RETRY_PAUSE = 5.0  # seconds between attempts to record a group while the store refuses
MAX_WAIT = 0.025  # seconds an outcome may wait for its group to fill before it is committed anyway


def store_busy(exc: BaseException) -> bool:
    """True for an error that says the store is busy or unreachable for now (worth retrying), not a bug:
    SQLAlchemy's or (a statement run on the driver's connection) psycopg's ``OperationalError``."""
    return isinstance(exc, (OperationalError, psycopg.OperationalError)) or (
        isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)
    )


class OutcomeRecorder:
    """Commits delivery outcomes in groups as they arrive; use as ``async with`` around the sending.

    :meth:`add` returns a future done once that outcome is committed; :meth:`flush` waits for everything
    added so far. Leaving the block flushes. :meth:`write_now` records synchronously (for a cancelled task).
    ``group_size`` None and ``max_wait`` None (seconds) commit only when someone waits (:meth:`flush`, an
    urgent outcome): what a bench compares with to measure the cost of committing as replies arrive.
    """

    def __init__(
        self,
        factory: sessionmaker[DbSession],
        settings: Settings,
        clock: Clock,
        *,
        worker: str,
        group_size: int | None = 8,
        max_wait: float | None = MAX_WAIT,
    ) -> None:
        self._factory = factory
        self._engine: Engine = factory.kw["bind"]
        self._postgresql = self._engine.dialect.name == "postgresql"
        self._connection: Connection | None = None  # used by one write at a time, on a worker thread
        self._guard = threading.Lock()  # the connection's owner: a write in progress, or closing
        self._closed = False
        self._settings = settings
        self._clock = clock
        self._worker = worker
        self._group_size = group_size
        self._max_wait = max_wait  # seconds
        self._urgent = False
        self._pending: list[tuple[Outcome, asyncio.Future[None]]] = []
        self._arrived = asyncio.Event()
        self._unsettled: set[asyncio.Future[None]] = set()
        self._task: asyncio.Task[None] | None = None
        self._error: Exception | None = None
        self.commits = 0  # transactions committed, for tests and benches

    async def __aenter__(self) -> OutcomeRecorder:
        self._task = asyncio.create_task(self._run(), name="outcome-recorder")
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if kind is None:
                await self.flush()
        finally:
            if self._task is not None:
                self._task.cancel()
                try:
                    await self._task
                except asyncio.CancelledError:
                    pass
                except Exception as exc:  # the failed commit: raised by flush and carried by its outcomes
                    if exc is not self._error:
                        raise
            with self._guard:  # a write still running on its thread (a cancelled task) closes it after
                self._closed = True
                self._close_connection()

    def add(self, outcome: Outcome, *, urgent: bool = False) -> asyncio.Future[None]:
        """Queue ``outcome`` for the next group commit (at once when ``urgent``: someone waits for it); the
        future is done once it is committed, or carries the error, other than a busy store, that made a
        commit impossible: after such an error the recorder commits nothing more, and every outcome added
        then or still waiting gets that error (so no sender and no :meth:`flush` waits for ever)."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._unsettled.add(done)
        done.add_done_callback(self._unsettled.discard)
        if self._error is not None:  # the recorder stopped at a failed commit: nothing more is committed
            done.set_exception(self._error)
            return done
        self._pending.append((outcome, done))
        self._urgent = self._urgent or urgent
        self._arrived.set()
        return done

    async def flush(self) -> None:
        """Return once every outcome added so far is committed; raises what a commit raised."""
        self._urgent = True
        self._arrived.set()
        if self._unsettled:
            await asyncio.gather(*self._unsettled, return_exceptions=True)
        if self._error is not None:
            raise self._error

    def write_now(self, outcomes: Sequence[Outcome]) -> None:
        """Record ``outcomes`` in this thread, now, on a connection of the pool, retrying while the store is
        busy (a cancelled dispatch keeping what it knows)."""
        settings, clock, worker = self._settings, self._clock, self._worker
        commit_retrying(
            self._factory,
            lambda db: record_outcomes(db, settings, list(outcomes), clock.now(), worker=worker),
            f"recording {len(outcomes)} outcomes",
        )

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._arrived.wait()
            due = None if self._max_wait is None else loop.time() + self._max_wait
            while (self._group_size is None or len(self._pending) < self._group_size) and not self._urgent:
                self._arrived.clear()
                try:
                    await asyncio.wait_for(self._arrived.wait(), None if due is None else due - loop.time())
                except TimeoutError:
                    break
            self._arrived.clear()
            self._urgent = False
            group, self._pending = self._pending, []
            if not group:
                continue
            try:
                await asyncio.to_thread(self._write_retrying, [outcome for outcome, _ in group])
            except Exception as exc:
                self._error = exc
                for _, done in group + self._pending:  # added while it was written: never committed either
                    if not done.done():
                        done.set_exception(exc)
                self._pending = []
                raise
            for _, done in group:
                if not done.done():
                    done.set_result(None)

    def _write_retrying(self, outcomes: list[Outcome]) -> None:
        retrying(lambda: self._write(outcomes), f"recording {len(outcomes)} outcomes")
        self.commits += 1

    def _write(self, outcomes: list[Outcome]) -> None:
        """One transaction on the recorder's own connection (kept between groups: no pool checkout and
        ping per commit); a failed connection is dropped and the next attempt opens another. On PostgreSQL a
        group of 2xx outcomes only (the usual one) is one prepared statement in autocommit mode
        (:func:`~mailer.store.outbox.outcomes.record_sent`): no session, no BEGIN and COMMIT round trips."""
        with self._guard:
            if self._connection is None:
                self._connection = self._engine.connect()
            try:
                if self._postgresql and all(outcome.status is MessageStatus.SENT for outcome in outcomes):
                    self._write_sent(self._connection, outcomes)
                else:
                    with DbSession(bind=self._connection, expire_on_commit=False) as db, db.begin():
                        record_outcomes(db, self._settings, outcomes, self._clock.now(), worker=self._worker)
            except Exception:
                self._close_connection(invalidate=True)
                raise
            finally:
                if self._closed:
                    self._close_connection()

    def _write_sent(self, connection: Connection, outcomes: list[Outcome]) -> None:
        """2xx outcomes as one autocommit statement on the psycopg connection under ``connection`` (idle
        between groups, so its mode can be switched without a round trip), switched back afterwards."""
        raw = connection.connection.dbapi_connection
        if not isinstance(raw, psycopg.Connection):
            raise TypeError(f"not a psycopg connection: {type(raw).__name__}")
        raw.autocommit = True
        try:
            record_sent(raw, outcomes, self._clock.now(), self._worker)
        finally:
            if raw.info.transaction_status is psycopg.pq.TransactionStatus.IDLE:  # else: broken, dropped
                raw.autocommit = False

    def _close_connection(self, *, invalidate: bool = False) -> None:
        connection, self._connection = self._connection, None
        release_connection(connection, invalidate=invalidate, what="the recorder's connection")


def release_connection(connection: Connection | None, *, invalidate: bool, what: str) -> None:
    """Give ``connection`` (if any) back to its pool; ``invalidate`` (after a failure: it may be broken)
    discards it instead, without the pool's reset on a dead connection. A failure to close is logged at
    DEBUG with ``what``, never raised."""
    if connection is None:
        return
    try:
        if invalidate:
            connection.invalidate()
        connection.close()
    except SQLAlchemyError as exc:
        log.debug("closing %s: %s", what, exc)


def retrying(attempt: Callable[[], object], what: str) -> None:
    """Call ``attempt`` until it returns, pausing (0.05 s growing to :data:`MAX_RETRY_PAUSE`) after each
    failure that says the store is busy or unreachable; other errors propagate. Blocks."""
    pause = 0.05
    while True:
        try:
            attempt()
            return
        except Exception as exc:
            if not store_busy(exc):
                raise
            log.warning("%s failed (%s); retrying in %.2f s", what, exc, pause)
            time.sleep(pause)
            pause = min(pause * 2, MAX_RETRY_PAUSE)


def commit_retrying(factory: sessionmaker[DbSession], work: Callable[[DbSession], object], what: str) -> None:
    """Run ``work`` in one transaction from ``factory`` and commit, with :func:`retrying`. Blocks."""

    def attempt() -> None:
        with transaction(factory) as db:
            work(db)

    retrying(attempt, what)
