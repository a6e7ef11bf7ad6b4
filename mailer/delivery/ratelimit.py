"""Sending rate limits as relays impose them: at most N messages in any second, minute, hour and day.

Two rules together make a limit hold over *any* window of its length, also as the relay counts:

- **Even spacing** of a per-second limit (:func:`reserve`, a GCRA without burst): slots are at least
  ``window / limit`` seconds apart (1/30 s for 30 a second), so any window of that length holds at most
  ``limit`` slots, and a few milliseconds of delivery jitter move a message next to one neighbour, not a
  whole second's burst next to the next.
- **A sliding log** of each longer window (the send times of its last ``limit`` messages), so a wave may use a
  minute's or an hour's allowance at once (at the per-second pace when one is set), never more.

:class:`RateLimiter` keeps both in this process. :class:`SharedRateLimiter` keeps them for every process that
counts in one Redis (``[smtp] rate_limit_storage = "redis://127.0.0.1:6379/0"``): the next free slot in one
key, reserved with an optimistic transaction (WATCH/MULTI) that applies :func:`reserve` to Redis's own clock,
and the longer windows in the ``limits`` library's moving window. Without Redis, :class:`StoreRateLimiter`
shares them through a row per relay in a PostgreSQL store. :func:`rate_limiter` picks one from the settings.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Protocol

import redis.asyncio as aioredis
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
from redis.exceptions import WatchError
from sqlalchemy.orm import Session as DbSession
from sqlalchemy.orm import sessionmaker

from mailer.config import RateLimits, SmtpSettings
from mailer.store.engine import transaction
from mailer.store.rate_slots import lock_slot, set_slot

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

    async def acquire(self, max_wait: float) -> float: ...

    async def close(self) -> None: ...


def in_slot(end: float, monotonic: Callable[[], float] = time.monotonic) -> bool:
    """True while a slot taken by ``acquire`` lasts: its ``end`` (seconds on ``time.monotonic()``, as
    ``acquire`` returned it; ``math.inf`` without a per-second limit) is not reached. A message goes to the
    relay only within its slot: a sender starved between taking the slot and writing MAIL FROM gives it up
    and takes another, so a late message never reaches the relay next to the following slot's."""
    return monotonic() < end


class RemoteClock:
    """Moments of a storage's clock (Redis ``TIME``, the database's ``clock_timestamp()``; seconds) translated
    to this process's ``time.monotonic()``.

    The offset is the least ``(local reading - remote moment)`` among the readings of the last ``keep``
    seconds: a reading is taken after the storage answered, so each one is the true offset plus the delay of
    the answer (the network, a busy event loop, a descheduled process), and the least is the closest. A
    slot translated with it is not moved later by a slow answer: that delay counts against the slot, as
    lateness. Older readings age out, so a drift or step of the storage's clock is followed within ``keep``.
    """

    def __init__(self, keep: float = 30.0, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._keep = keep
        self._monotonic = monotonic
        self._readings: deque[tuple[float, float]] = deque()  # (local moment, offset), offsets increasing

    def local(self, remote: float) -> float:
        """Record ``remote``, the storage's clock read just now, and return it on ``time.monotonic()``."""
        here = self._monotonic()
        offset = here - remote
        while self._readings and self._readings[-1][1] >= offset:
            self._readings.pop()
        self._readings.append((here, offset))
        while self._readings[0][0] < here - self._keep:
            self._readings.popleft()
        return remote + self._readings[0][1]


def reserve(next_free: float | None, now: float, interval: float) -> tuple[float, float]:
    """The even-spacing rule (GCRA, no burst): (this caller's slot, the next free slot), in seconds on one
    clock. ``next_free``: the slot after the last one reserved (None: none reserved yet); ``interval``:
    ``window / limit``. The slot is ``now`` or the next free one if that is later, so slots are never closer
    than ``interval``, and callers waiting together are served in the order they reserved."""
    slot = now if next_free is None else max(next_free, now)
    return slot, slot + interval


def _spacing(windows: tuple[tuple[float, int], ...]) -> tuple[float, float, int]:
    """(seconds between slots, 1.0, the limit) for a per-second limit in ``windows``; (0, 0, 0) without
    one: longer windows are held by their logs alone (a few milliseconds of jitter are nothing next to a
    minute), and a wave may use their allowance at once."""
    for window, limit in windows:
        if window == 1.0:
            return window / limit, window, limit
    return 0.0, 0.0, 0


async def _wait_for(
    slot: float,
    interval: float,
    sleep: Callable[[float], Awaitable[None]],
    monotonic: Callable[[], float] = time.monotonic,
) -> float | None:
    """Sleep until a reserved ``slot`` (seconds on ``monotonic``'s clock) and return its end (``slot +
    interval``; ``math.inf`` for ``interval`` 0); None when the wake came at or after the end (a starved
    process): the slot is then left unused and the caller reserves another (see :func:`in_slot`)."""
    wait = slot - monotonic()
    if wait > 0:
        await sleep(wait)
    end = slot + interval if interval > 0 else math.inf
    return end if in_slot(end, monotonic) else None


def _name(window: float) -> str:
    return _NAMES.get(window, f"{window:.0f} s")


class RateLimiter:
    """Even spacing and sliding logs over the windows of ``limits``, in this process; a no-op when no
    limit is set."""

    def __init__(
        self,
        limits: RateLimits,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.windows = limits.windows()
        self._logs: list[deque[float]] = [deque() for _ in self.windows]
        self._next_free: float | None = None
        self._monotonic = monotonic
        self._sleep = sleep

    @property
    def unlimited(self) -> bool:
        return not self.windows

    def wait_time(self) -> tuple[float, float, int]:
        """(seconds until the sliding logs have room, that window's length, its limit); (0, 0, 0) when
        they have room now."""
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

    async def acquire(self, max_wait: float) -> float:
        """Wait for a slot and take it; returns its end (see :func:`in_slot`). Raises :class:`RateLimited`
        when the wait would exceed ``max_wait`` seconds (the caller defers the message instead of holding
        it)."""
        if not self.windows:
            return math.inf
        interval, shortest, limit = _spacing(self.windows)
        while True:
            wait, window, window_limit = self.wait_time()
            if wait > 0:
                if wait > max_wait:
                    raise RateLimited(wait, _name(window), window_limit)
                await self._sleep(wait)
                continue
            now = self._monotonic()
            slot, following = reserve(self._next_free, now, interval)
            if slot - now > max_wait:
                raise RateLimited(slot - now, _name(shortest), limit)
            self._next_free = following
            end = await _wait_for(slot, interval, self._sleep, self._monotonic)
            if end is None:
                continue
            if self.wait_time()[0] <= 0:  # another caller may have filled a longer window meanwhile
                now = self._monotonic()
                for log in self._logs:
                    log.append(now)
                return end

    async def close(self) -> None:
        """Nothing to release."""


_ITEMS: dict[float, type[RateLimitItem]] = {
    1.0: RateLimitItemPerSecond,
    60.0: RateLimitItemPerMinute,
    3600.0: RateLimitItemPerHour,
    86400.0: RateLimitItemPerDay,
}


class SharedRateLimiter:
    """The limits counted in the Redis at ``url`` (``redis://host:port/db``) under ``key``: every process
    using the same Redis and key shares them.

    The next free slot of the per-second limit is the Redis key ``mailer-rate:KEY:next`` (seconds on Redis's
    clock, so the hosts' clocks need not agree), reserved by :func:`reserve` in a WATCH/MULTI transaction
    (retried when another process reserved in between). The longer windows are ``limits``' moving windows
    under ``key``, hit when the slot comes; a window filled by another process meanwhile costs this caller
    its slot and the wait starts over. Redis errors propagate: sending then stops rather than exceeding a
    relay's limit.
    """

    def __init__(
        self,
        limits: RateLimits,
        url: str,
        key: str,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.windows = limits.windows()
        self.key = key
        self._slot_key = f"mailer-rate:{key}:next"
        self._logged = tuple((window, limit) for window, limit in self.windows if window != 1.0)
        self._items = [_ITEMS[window](limit) for window, limit in self._logged]
        self._url = url
        self._redis: aioredis.Redis | None = None
        self._storage: Storage | None = None
        self._sleep = sleep
        self._clock = RemoteClock()

    def _client(self) -> aioredis.Redis:
        if self._redis is None:
            self._redis = aioredis.Redis.from_url(self._url)
        return self._redis

    def _limiter(self) -> MovingWindowRateLimiter:
        if self._storage is None:
            storage = storage_from_string(
                "async+" + self._url, key_prefix="mailer-rate", implementation="redispy"
            )
            assert isinstance(storage, Storage)
            self._storage = storage
        return MovingWindowRateLimiter(self._storage)

    async def wait_time(self) -> tuple[float, float, int]:
        """(seconds until the longer windows have room, that window's length, its limit); (0, 0, 0) when
        they have room now."""
        if not self._items:
            return 0.0, 0.0, 0
        limiter = self._limiter()
        worst = (0.0, 0.0, 0)
        for (window, limit), item in zip(self._logged, self._items, strict=True):
            if not await limiter.test(item, self.key):
                stats = await limiter.get_window_stats(item, self.key)
                wait = max(stats.reset_time - time.time(), 0.001)
                if wait > worst[0]:
                    worst = (wait, window, limit)
        return worst

    async def _reserve(self, max_wait: float) -> tuple[float, float]:
        """Reserve the next evenly spaced slot if it comes within ``max_wait`` seconds: (seconds until it,
        its moment on this process's ``time.monotonic()``, by :class:`RemoteClock`); seconds < 0: it is that
        much further away than allowed (nothing reserved)."""
        interval = _spacing(self.windows)[0]
        if interval <= 0:
            return 0.0, time.monotonic()
        async with self._client().pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(self._slot_key)
                    stored = await pipe.get(self._slot_key)
                    seconds, micros = await pipe.time()
                    now = float(seconds) + float(micros) / 1e6
                    here = self._clock.local(now)
                    slot, following = reserve(float(stored) if stored else None, now, interval)
                    if slot - now > max_wait:
                        return -(slot - now), here  # leaving the block resets the pipeline
                    pipe.multi()  # type: ignore[no-untyped-call]
                    pipe.set(self._slot_key, repr(following), px=int((following - now) * 1000) + 1000)
                    await pipe.execute()
                    return slot - now, here + slot - now
                except WatchError:
                    continue

    async def acquire(self, max_wait: float) -> float:
        """Wait for a slot in every window and take it; returns its end (see :func:`in_slot`). Raises
        :class:`RateLimited` when the wait would exceed ``max_wait`` seconds."""
        if not self.windows:
            return math.inf
        interval, shortest, limit = _spacing(self.windows)
        while True:
            wait, window, window_limit = await self.wait_time()
            if wait > 0:
                if wait > max_wait:
                    raise RateLimited(wait, _name(window), window_limit)
                await self._sleep(wait)
                continue
            wait, slot = await self._reserve(max_wait)
            if wait < 0:
                raise RateLimited(-wait, _name(shortest), limit)
            end = await _wait_for(slot, interval, self._sleep)
            if end is None:
                continue
            if not self._items:
                return end
            limiter = self._limiter()
            if all([await limiter.hit(item, self.key) for item in self._items]):
                return end

    async def close(self) -> None:
        """Close the Redis connections this limiter opened."""
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None


class StoreRateLimiter:
    """The limits shared by every process of one PostgreSQL store, when no Redis is configured: one slot
    row per relay (``key``, :mod:`mailer.store.rate_slots`), reserved by :func:`reserve` in a short
    transaction (row locked) on the database's clock, run in a thread.

    Without a log of sends in the store, every window is held by spacing alone: slots are ``window /
    limit`` apart for the strictest window (the largest interval), so no window of any length set holds
    more than its limit, and a wave uses a longer window's allowance at that window's even pace.
    """

    def __init__(
        self,
        limits: RateLimits,
        factory: sessionmaker[DbSession],
        key: str,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.windows = limits.windows()
        self.key = key
        self._factory = factory
        self._sleep = sleep
        self._clock = RemoteClock()

    def _reserve(self, interval: float, max_wait: float) -> tuple[float, float]:
        """(seconds until the reserved slot, the database's clock when it was reserved); seconds < 0: the
        slot is that much further away than ``max_wait`` allows (nothing reserved)."""
        with transaction(self._factory) as db:
            next_free, now = lock_slot(db, self.key)
            slot, following = reserve(next_free, now, interval)
            if slot - now > max_wait:
                return -(slot - now), now
            set_slot(db, self.key, following)
            return slot - now, now

    async def acquire(self, max_wait: float) -> float:
        """Wait for a slot and take it; returns its end (see :func:`in_slot`). Raises :class:`RateLimited`
        when the wait would exceed ``max_wait`` seconds."""
        if not self.windows:
            return math.inf
        window, limit = max(self.windows, key=lambda pair: pair[0] / pair[1])
        interval = window / limit
        while True:
            wait, now = await asyncio.to_thread(self._reserve, interval, max_wait)
            if wait < 0:
                raise RateLimited(-wait, _name(window), limit)
            # translated here, on the event loop: the thread's commit and hand-back count as lateness
            end = await _wait_for(self._clock.local(now) + wait, interval, self._sleep)
            if end is not None:
                return end

    async def close(self) -> None:
        """Nothing to release: each reservation is its own transaction."""


def rate_limiter(
    settings: SmtpSettings, factory: sessionmaker[DbSession] | None = None
) -> RateLimiter | SharedRateLimiter | StoreRateLimiter:
    """The limiter for one SMTP server (key: its host and port, so every process and every configured name
    sending to one relay count together): shared through the Redis of ``rate_limit_storage`` when set;
    else, with the ``factory`` of a PostgreSQL store, shared through the store; else in this process (also
    for ``memory://``, and on SQLite: one sending process per file)."""
    storage = settings.rate_limit_storage
    key = f"{settings.host}:{settings.port}"
    if not settings.rate.windows():
        return RateLimiter(settings.rate)
    if storage.startswith(("redis://", "rediss://")):
        return SharedRateLimiter(settings.rate, storage, key)
    if not storage and factory is not None:
        with factory() as db:
            dialect = db.get_bind().dialect.name
        if dialect == "postgresql":
            return StoreRateLimiter(settings.rate, factory, key)
    return RateLimiter(settings.rate)
