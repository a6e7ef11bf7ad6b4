"""Sign-in throttling with growing delays, counted so that nobody can use it to keep staff out.

Failures are counted under three keys, each with its own free allowance and longest delay:

- the account *and* the client address together (a guesser at one account from one place): 5 free, then
  2 s, 4 s, 8 s ... up to 15 minutes;
- the client address alone (one place trying many accounts): 20 free, then up to 5 minutes;
- the account alone (many places guessing one account): 10 free, then at most 60 seconds.

A failure older than the window (15 minutes) is forgotten. After the free allowance every failure doubles
the wait before the next attempt under that key; an attempt during the wait is refused without being
counted or checked. A success clears the account's keys. So a wrong password typed for one account never
delays another account, and someone guessing at an account from elsewhere delays its owner by at most a
minute. The client address is the real one behind trusted proxies (:mod:`mailer.web.proxy`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Rule:
    """Failures allowed without delay under one kind of key, the first delay and the longest (seconds)."""

    free: int
    first: float
    longest: float

    def delay(self, failures: int) -> float:
        """Seconds to wait after the ``failures``-th failure in a row (0 within the free allowance)."""
        if failures < self.free:
            return 0.0
        return float(min(self.longest, self.first * 2 ** min(failures - self.free, 30)))


PAIR = Rule(free=5, first=2.0, longest=900.0)
CLIENT = Rule(free=20, first=2.0, longest=300.0)
ACCOUNT = Rule(free=10, first=2.0, longest=60.0)


@dataclass
class _Record:
    failures: int
    last: float


class LoginThrottle:
    """Failed sign-ins per account and client, and how long the next attempt must wait; thread-safe.

    ``clock`` gives seconds (``time.monotonic`` unless a test passes its own).
    """

    def __init__(self, window: float = 900.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.window = window
        self.clock = clock
        self._records: dict[tuple[str, str], _Record] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _keys(username: str, client: str) -> list[tuple[tuple[str, str], Rule]]:
        account = username.strip().casefold()
        return [
            (("pair", f"{account}\n{client}"), PAIR),
            (("client", client), CLIENT),
            (("account", account), ACCOUNT),
        ]

    def _record(self, key: tuple[str, str], now: float) -> _Record | None:
        record = self._records.get(key)
        if record is not None and now - record.last >= self.window:
            del self._records[key]
            return None
        return record

    def wait(self, username: str, client: str) -> float:
        """Seconds before ``client`` may try ``username`` again (0: now)."""
        now = self.clock()
        longest = 0.0
        with self._lock:
            for key, rule in self._keys(username, client):
                record = self._record(key, now)
                if record is not None:
                    longest = max(longest, record.last + rule.delay(record.failures) - now)
        return longest

    def failed(self, username: str, client: str) -> int:
        """Count a wrong password; returns the failures in a row for this account from this client."""
        now = self.clock()
        with self._lock:
            if len(self._records) > 10000:  # keep memory bounded under a flood of addresses
                for key in [k for k, r in self._records.items() if now - r.last >= self.window]:
                    del self._records[key]
            counts = []
            for key, _ in self._keys(username, client):
                record = self._record(key, now) or self._records.setdefault(key, _Record(0, now))
                record.failures += 1
                record.last = now
                counts.append(record.failures)
        return counts[0]

    def succeeded(self, username: str, client: str) -> None:
        """Forget the account's failures (the client's own count stays until it ages out)."""
        with self._lock:
            for key, rule in self._keys(username, client):
                if rule is not CLIENT:
                    self._records.pop(key, None)


__all__ = ["ACCOUNT", "CLIENT", "PAIR", "LoginThrottle", "Rule"]
