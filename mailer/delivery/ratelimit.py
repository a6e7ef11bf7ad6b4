"""Sending rate limits as relays impose them: at most N messages in any second, minute, hour and day.

:class:`RateLimiter` keeps, per window, the send times of the last ``limit`` messages (a sliding log), so a
limit holds over *any* window of that length, not only over calendar seconds or minutes, within one process.
Time comes from an injectable monotonic function (seconds), so tests need not sleep.

:class:`SharedRateLimiter` holds the same limits for every process that counts in one storage
(``[smtp] rate_limit_storage = "redis://127.0.0.1:6379/0"``): the ``limits`` library's moving window (a
sliding log per window in Redis, checked and taken by one script). :func:`rate_limiter` picks one from the
settings.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Protocol

from limits import (
    RateLimitItem,
    RateLimitItemPerDay,
    RateLimitItemPerHour,
    RateLimitItemPerMinute,
    RateLimitItemPerSecond,
)
from limits.aio.storage import Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string

from mailer.config import RateLimits, SmtpSettings

_NAMES = {1.0: "second", 60.0: "minute", 3600.0: "hour", 86400.0: "day"}


class RateLimited(Exception):
    """No slot within the allowed wait; ``retry_after`` seconds until one frees, ``window`` its name."""

    def __init__(self, retry_after: float, window: str, limit: int) -> None:
        super().__init__(f"rate limit of {limit} per {window} reached; next slot in {retry_after:.0f} s")
        self.retry_after = retry_after
        self.window = window
        self.limit = limit


class Limiter(Protocol):
    """What a pool needs of a rate limiter."""

    async def acquire(self, max_wait: float) -> None: ...

    async def close(self) -> None: ...


class RateLimiter:
    """Sliding-log limiter over the windows of ``limits``, in this process; a no-op when no limit is set."""

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

    async def close(self) -> None:
        """Nothing to release."""


_ITEMS: dict[float, type[RateLimitItem]] = {
    1.0: RateLimitItemPerSecond,
    60.0: RateLimitItemPerMinute,
    3600.0: RateLimitItemPerHour,
    86400.0: RateLimitItemPerDay,
}


class SharedRateLimiter:
    """The windows of ``limits`` counted in shared ``storage`` (a ``limits`` URI, e.g.
    ``async+redis://127.0.0.1:6379/0``) under ``key``: every process using the same storage and key shares them.

    A slot is taken in every window or in none: the windows are checked, then each is hit; a window filled
    by another process in between makes the slot count in the windows already hit (erring on the safe side)
    and the wait starts over. Storage errors (Redis down) propagate: sending then stops rather than
    exceeding a relay's limit.
    """

    def __init__(
        self,
        limits: RateLimits,
        storage: str,
        key: str,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.windows = limits.windows()
        self.key = key
        self._items = [_ITEMS[window](limit) for window, limit in self.windows]
        self._storage: Storage | None = None
        self._uri = storage
        self._sleep = sleep

    def _limiter(self) -> MovingWindowRateLimiter:
        if self._storage is None:
            options = {"implementation": "redispy"} if "redis" in self._uri.partition("://")[0] else {}
            storage = storage_from_string(self._uri, key_prefix="mailer-rate", **options)
            assert isinstance(storage, Storage)
            self._storage = storage
        return MovingWindowRateLimiter(self._storage)

    async def wait_time(self) -> tuple[float, float, int]:
        """(seconds until a slot is free, that window's length, its limit); (0, 0, 0) when free now."""
        limiter = self._limiter()
        worst = (0.0, 0.0, 0)
        for (window, limit), item in zip(self.windows, self._items, strict=True):
            if not await limiter.test(item, self.key):
                stats = await limiter.get_window_stats(item, self.key)
                wait = max(stats.reset_time - time.time(), 0.001)
                if wait > worst[0]:
                    worst = (wait, window, limit)
        return worst

    async def acquire(self, max_wait: float) -> None:
        """Wait for a slot in every window and take it. Raises :class:`RateLimited` when the wait would
        exceed ``max_wait`` seconds."""
        if not self.windows:
            return
        limiter = self._limiter()
        while True:
            wait, window, limit = await self.wait_time()
            if wait <= 0:
                hits = [await limiter.hit(item, self.key) for item in self._items]
                if all(hits):
                    return
                continue
            if wait > max_wait:
                raise RateLimited(wait, _NAMES.get(window, f"{window:.0f} s"), limit)
            await self._sleep(wait)

    async def close(self) -> None:
        """Nothing to release: the storage's connections close with the process."""


def rate_limiter(settings: SmtpSettings) -> RateLimiter | SharedRateLimiter:
    """The limiter for one SMTP server: shared through ``rate_limit_storage`` when set (key: the server's
    host and port, so every process and every configured name sending to one relay count together), else
    in this process."""
    storage = settings.rate_limit_storage
    if not storage or not settings.rate.windows():
        return RateLimiter(settings.rate)
    if storage.startswith(("redis://", "rediss://")):
        storage = "async+" + storage
    elif storage.startswith("memory://"):
        storage = "async+memory://"
    return SharedRateLimiter(settings.rate, storage, f"{settings.host}:{settings.port}")
