"""Marking a batch's messages as handed to SMTP a window ahead of the senders.

After a crash, a message whose lease expired may or may not have reached the server. Written before it is
sent, ``handed_at`` tells: a message without it was never handed over and goes back to the queue as it was,
uncounted; one with it counts an expiry (sent carefully next time, held at the second). Marking each message
before its send would cost a commit per message; :class:`HandOver` marks ``window`` messages at once, starts
marking the next window when the senders are half-way through the current one (in a worker thread, so they
rarely wait), and marks a careful message on its own, just before it goes. A crash thus counts an expiry for
at most one window of messages that were not sent yet.

A mark takes only the messages this worker still holds. One it no longer holds (its lease expired while the
store was locked or the worker stalled, and another worker reaped and claimed it) is *lost*:
:meth:`HandOver.before` says so and the sender leaves it to the worker that holds it now.

On PostgreSQL the marks of a batch go through one connection of its own, in autocommit mode: each mark is
one prepared statement committed by itself (:func:`~mailer.store.outbox.mark_handed_now`), with no pool
checkout, ping, session, BEGIN or COMMIT per mark. A mark that fails because the store is busy or
unreachable is retried as the outcome recorder retries (:func:`~mailer.store.recorder.retrying`).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence

import psycopg
from sqlalchemy import Connection, Engine
from sqlalchemy.orm import Session as DbSession
from sqlalchemy.orm import sessionmaker

from mailer.store.engine import transaction
from mailer.store.outbox import ClaimedMessage, mark_handed, mark_handed_now, still_claimed
from mailer.store.recorder import commit_retrying, release_connection, retrying
from mailer.timeline.clock import Clock

log = logging.getLogger(__name__)


class HandOver:
    """Hand-over marks for one claimed batch, taken in order by the senders (index 0, 1, 2, ...)."""

    def __init__(
        self,
        factory: sessionmaker[DbSession],
        clock: Clock,
        *,
        worker: str,
        claimed: Sequence[ClaimedMessage],
        window: int,
    ) -> None:
        self._factory = factory
        self._clock = clock
        self._worker = worker
        self._claimed = claimed
        self._window = max(window, 1)
        self._marked = 0  # messages below this index are marked (careful ones excepted: marked one by one)
        self._marking: asyncio.Task[None] | None = None
        self._engine: Engine = factory.kw["bind"]
        self._postgresql = self._engine.dialect.name == "postgresql"
        self._connection: Connection | None = None  # PostgreSQL, autocommit; used by one mark at a time
        self._guard = threading.Lock()  # the connection's owner: a mark in progress, or closing
        self._closed = False
        self._lost: set[int] = set()  # messages no longer this worker's when they were to be marked

    async def before(self, index: int) -> bool:
        """Return once message ``index`` is marked as handed over (committed): True, or False when this
        worker no longer holds it (another worker took it over: it must not be sent here). Raises what the
        marking raised, other than a busy store (retried)."""
        while index >= self._marked:
            await self._next_window()
        if index >= self._marked - self._window // 2 and self._marked < len(self._claimed):
            self._next_window()
        message = self._claimed[index]
        if message.careful:
            await self._mark([message.pk])
        return message.pk not in self._lost

    async def close(self) -> None:
        """Wait for a marking still under way (a batch ending early); give the connection back."""
        try:
            if self._marking is not None:
                await asyncio.gather(self._marking, return_exceptions=True)
        finally:
            with self._guard:  # a mark still running on its thread (a cancelled sender) closes it after
                self._closed = True
                self._close_connection()

    def _next_window(self) -> asyncio.Task[None]:
        if self._marking is None or self._marking.done():
            self._marking = asyncio.create_task(self._mark_window())
        return self._marking

    async def _mark_window(self) -> None:
        start, end = self._marked, min(self._marked + self._window, len(self._claimed))
        await self._mark([message.pk for message in self._claimed[start:end] if not message.careful])
        self._marked = end

    async def _mark(self, pks: list[int]) -> None:
        if not pks:
            return
        what = f"marking {len(pks)} messages as handed to SMTP"
        marked: list[int] = []
        if self._postgresql:
            await asyncio.to_thread(retrying, lambda: marked.append(self._mark_now(pks)), what)
        else:
            worker, clock = self._worker, self._clock
            await asyncio.to_thread(
                commit_retrying,
                self._factory,
                lambda db: marked.append(mark_handed(db, pks, worker, clock.now())),
                what,
            )
        if marked[-1] < len(pks):  # some are no longer this worker's (rare): which?
            await asyncio.to_thread(retrying, lambda: self._note_lost(pks), "finding the claims taken over")

    def _note_lost(self, pks: list[int]) -> None:
        """Add to the lost messages those of ``pks`` this worker no longer holds. Blocks."""
        with transaction(self._factory) as db:
            held = still_claimed(db, pks, self._worker)
        lost = [pk for pk in pks if pk not in held]
        if lost:
            log.warning(
                "%d claimed messages were taken over by another worker (lease expired): not sent here",
                len(lost),
            )
        self._lost.update(lost)

    def _mark_now(self, pks: list[int]) -> int:
        """PostgreSQL: one autocommit statement on the batch's own connection (opened at the first mark; a
        failed one is dropped and the next attempt opens another). Blocks."""
        with self._guard:
            try:
                if self._connection is None:
                    self._connection = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
                raw = self._connection.connection.dbapi_connection
                if not isinstance(raw, psycopg.Connection):
                    raise TypeError(f"not a psycopg connection: {type(raw).__name__}")
                return mark_handed_now(raw, pks, self._worker, self._clock.now())
            except Exception:
                self._close_connection(invalidate=True)
                raise
            finally:
                if self._closed:
                    self._close_connection()

    def _close_connection(self, *, invalidate: bool = False) -> None:
        connection, self._connection = self._connection, None
        release_connection(connection, invalidate=invalidate, what="the hand-over connection")
