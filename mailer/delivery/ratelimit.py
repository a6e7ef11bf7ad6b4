"""Sending rate limits as relays impose them: at most N messages in any second, minute, hour and day.

:class:`RateLimiter` keeps, per window, the send times of the last ``limit`` messages (a sliding log), so a
limit holds over *any* window of that length, not only over calendar seconds or minutes. One limiter per
SMTP server and process: with several sending processes, give each its share of the relay's limits.
Time comes from an injectable monotonic function (seconds), so tests need not sleep.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable

from mailer.config import RateLimits

_NAMES = {1.0: "second", 60.0: "minute", 3600.0: "hour", 86400.0: "day"}


class RateLimited(Exception):
    """No slot within the allowed wait; ``retry_after`` seconds until one frees, ``window`` its name."""

    def __init__(self, retry_after: float, window: str, limit: int) -> None:
        super().__init__(f"rate limit of {limit} per {window} reached; next slot in {retry_after:.0f} s")
        self.retry_after = retry_after
        self.window = window
        self.limit = limit


class RateLimiter:
    """Sliding-log limiter over the windows of ``limits``; a no-op when no limit is set."""

    def __init__(
        self,
        limits: RateLimits,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.windows = limits.windows()
        self._logs: list[deque[float]] = [deque() for _ in self.windows]
        self._monotonic = monotonic
        self._sleep = sleep

    @property
    def unlimited(self) -> bool:
        return not self.windows

    def wait_time(self) -> tuple[float, float, int]:
        """(seconds until a slot is free, that window's length, its limit); (0, 0, 0) when free now."""
        now = self._monotonic()
        worst = (0.0, 0.0, 0)
        for (window, limit), log in zip(self.windows, self._logs, strict=True):
            while log and log[0] <= now - window:
                log.popleft()
            if len(log) >= limit:
                wait = log[0] + window - now
                if wait > worst[0]:
                    worst = (wait, window, limit)
        return worst

    def take(self) -> None:
        """Record one send now (call only when :meth:`wait_time` said 0)."""
        now = self._monotonic()
        for log in self._logs:
            log.append(now)

    async def acquire(self, max_wait: float) -> None:
        """Wait for a slot and take it. Raises :class:`RateLimited` when the wait would exceed ``max_wait``
        seconds (the caller defers the message instead of holding it)."""
        if not self.windows:
            return
        while True:
            wait, window, limit = self.wait_time()
            if wait <= 0:
                self.take()
                return
            if wait > max_wait:
                raise RateLimited(wait, _NAMES.get(window, f"{window:.0f} s"), limit)
            await self._sleep(wait)
