"""Marking a batch's messages as handed to SMTP a window ahead of the senders.

After a crash, a message whose lease expired may or may not have reached the server. Written before it is
sent, ``handed_at`` tells: a message without it was never handed over and goes back to the queue as it was,
uncounted; one with it counts an expiry (sent carefully next time, held at the second). Marking each message
before its send would cost a commit per message; :class:`HandOver` marks ``window`` messages at once, starts
marking the next window when the senders are half-way through the current one (in a worker thread, so they
rarely wait), and marks a careful message on its own, just before it goes. A crash thus counts an expiry for
at most one window of messages that were not sent yet.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from sqlalchemy.orm import Session as DbSession
from sqlalchemy.orm import sessionmaker

from mailer.store.outbox import ClaimedMessage, mark_handed
from mailer.store.recorder import commit_retrying
from mailer.timeline.clock import Clock


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

    async def before(self, index: int) -> None:
        """Return once message ``index`` is marked as handed over (committed); raises what the marking
        raised, other than a busy store (retried)."""
        while index >= self._marked:
            await self._next_window()
        if index >= self._marked - self._window // 2 and self._marked < len(self._claimed):
            self._next_window()
        message = self._claimed[index]
        if message.careful:
            await self._mark([message.pk])

    async def close(self) -> None:
        """Wait for a marking still under way (a batch ending early)."""
        if self._marking is not None:
            await asyncio.gather(self._marking, return_exceptions=True)

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
        worker, clock = self._worker, self._clock
        await asyncio.to_thread(
            commit_retrying,
            self._factory,
            lambda db: mark_handed(db, pks, worker, clock.now()),
            f"marking {len(pks)} messages as handed to SMTP",
        )
