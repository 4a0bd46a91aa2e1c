"""Jittered exponential backoff between reconnect attempts (pure: the random source is injected).

When a switch reboots, a thousand printers drop at once; without jitter they would all retry in
the same instant, every time. "Full" jitter draws each delay uniformly from [0, ceiling], which
spreads the herd over the whole window and, for a given cap, puts the least load on the server
(the AWS Architecture Blog's 2015 comparison of backoff strategies found the same).
"""

import random
from collections.abc import Callable
from enum import StrEnum


class Jitter(StrEnum):
    """How much of each delay is random."""

    NONE = "none"  # exactly the exponential ceiling (tests, or a single client)
    FULL = "full"  # uniform in [0, ceiling]: the widest spread
    EQUAL = "equal"  # uniform in [ceiling / 2, ceiling]: never retries almost at once


class Backoff:
    """Delays that grow as base * factor**n up to cap, with jitter; `reset()` after success."""

    def __init__(
        self,
        *,
        base: float = 1.0,
        factor: float = 2.0,
        cap: float = 300.0,
        jitter: Jitter = Jitter.FULL,
        rng: Callable[[], float] | None = None,
    ) -> None:
        if base <= 0 or cap < base or factor < 1:
            raise ValueError(
                f"backoff needs 0 < base <= cap and factor >= 1 (got {base=}, {cap=}, {factor=})"
            )
        self.base = base
        self.factor = factor
        self.cap = cap
        self.jitter = jitter
        # Jitter only needs spread, not secrecy; a seeded rng makes tests repeatable.
        self._rng = rng if rng is not None else random.Random().random  # noqa: S311
        self._attempt = 0
        self._max_exponent = _steps_to_cap(base, factor, cap)

    @property
    def attempts(self) -> int:
        """How many delays were handed out since the last reset."""
        return self._attempt

    def ceiling(self) -> float:
        """The largest delay the next call can return."""
        # Once past the cap the exponent stops mattering; min() before ** would overflow at
        # ~1,000 attempts with factor 2, which a printer switched off for a week reaches.
        exponent = min(self._attempt, self._max_exponent)
        return float(min(self.cap, self.base * self.factor**exponent))

    def next_delay(self) -> float:
        """The seconds to wait before the next attempt; each call counts as one more failure."""
        ceiling = self.ceiling()
        self._attempt += 1
        match self.jitter:
            case Jitter.NONE:
                return ceiling
            case Jitter.FULL:
                return self._rng() * ceiling
            case Jitter.EQUAL:
                return ceiling / 2 + self._rng() * ceiling / 2

    def reset(self) -> None:
        """Start again from `base` (call once a connection has proven itself)."""
        self._attempt = 0


def _steps_to_cap(base: float, factor: float, cap: float) -> int:
    if factor == 1:
        return 0
    steps, value = 0, base
    while value < cap:
        value *= factor
        steps += 1
    return steps
