"""Login rate limiting per (username, client address), on an injected clock.

Five failures within fifteen minutes lock that username for that address until the oldest
of them is fifteen minutes old; a success clears the slate. Keying on the pair means an
attacker guessing one account cannot lock its owner out from another address.

The counts live in this object, owned by the app: each server process counts on its own, so
N processes behind one address allow N times the attempts (design.md §8). That still bounds
guessing to a few thousand tries a day per process; a shared store can replace this class
without changing its callers.
"""

import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Final

from bambufarm.auth.errors import RateLimited

MAX_FAILURES: Final = 5
WINDOW_S: Final = 15 * 60.0
# Bounds memory when someone sprays usernames: 10,000 keys of a few hundred bytes each.
MAX_TRACKED: Final = 10_000


class LoginLimiter:
    """Counts failed logins per (username, address) and refuses more than allowed."""

    def __init__(
        self,
        *,
        max_failures: int = MAX_FAILURES,
        window_s: float = WINDOW_S,
        max_tracked: int = MAX_TRACKED,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max_failures = max_failures
        self._window_s = window_s
        self._max_tracked = max_tracked
        self._clock = clock
        self._failures: OrderedDict[tuple[str, str], deque[float]] = OrderedDict()

    def check(self, username: str, address: str) -> None:
        """Raise `RateLimited` (with the seconds to wait) if this pair is locked out."""
        key = _key(username, address)
        times = self._failures.get(key)
        if times is None:
            return
        now = self._clock()
        self._forget_old(times, now)
        if len(times) >= self._max_failures:
            raise RateLimited(times[0] + self._window_s - now)
        if not times:
            del self._failures[key]

    def failed(self, username: str, address: str) -> None:
        """Count one failed login."""
        key = _key(username, address)
        now = self._clock()
        times = self._failures.setdefault(key, deque(maxlen=self._max_failures))
        self._failures.move_to_end(key)
        self._forget_old(times, now)
        times.append(now)
        if len(self._failures) > self._max_tracked:
            self._evict(now)

    def succeeded(self, username: str, address: str) -> None:
        """Forget the failures of this pair."""
        self._failures.pop(_key(username, address), None)

    def tracked(self) -> int:
        """How many (username, address) pairs have failures on record."""
        return len(self._failures)

    def _forget_old(self, times: deque[float], now: float) -> None:
        while times and times[0] <= now - self._window_s:
            times.popleft()

    def _evict(self, now: float) -> None:
        for key in [k for k, t in self._failures.items() if not t or t[-1] <= now - self._window_s]:
            del self._failures[key]
        # Still too many live entries: drop the least recently failed ones.
        while len(self._failures) > self._max_tracked:
            self._failures.popitem(last=False)


def _key(username: str, address: str) -> tuple[str, str]:
    return username.strip().lower(), address
