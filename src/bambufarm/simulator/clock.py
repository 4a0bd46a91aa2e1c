"""Simulated time: a scaled clock for time compression and a manual clock for tests.

Every simulated printer reads time from a `Clock` instead of the system, so a day-long print
can finish in minutes (`ScaledClock(scale=600)`) and tests step time exactly (`ManualClock`).
`now()` returns simulated Unix seconds: the same number serves for durations (differences)
and for the Unix timestamps printers put in reports (`gcode_start_time`).
"""

import time
from collections.abc import Callable
from typing import Protocol

# 2024-05-20T10:13:20Z: a fixed, plausible epoch so that manual-clock reports are reproducible.
MANUAL_EPOCH = 1_716_200_000.0


class Clock(Protocol):
    """A source of simulated Unix time in seconds."""

    def now(self) -> float:
        """Simulated Unix seconds; never goes backwards."""
        ...


class ScaledClock:
    """Simulated time that runs `scale` times faster than real time, from a real start."""

    __slots__ = ("_mono", "_origin_mono", "_origin_unix", "_scale")

    def __init__(
        self,
        scale: float = 1.0,
        *,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if not scale > 0:
            raise ValueError(f"time scale must be positive, got {scale!r}")
        self._scale = float(scale)
        self._mono = monotonic
        # Anchor simulated time to the wall clock once, then advance by the monotonic clock so
        # that a wall-clock step (NTP) cannot make simulated time jump or run backwards.
        self._origin_unix = wall()
        self._origin_mono = monotonic()

    @property
    def scale(self) -> float:
        """How many simulated seconds pass per real second."""
        return self._scale

    def now(self) -> float:
        """Simulated Unix seconds."""
        return self._origin_unix + (self._mono() - self._origin_mono) * self._scale

    def real_seconds(self, simulated: float) -> float:
        """How many real seconds a simulated duration takes (for the caller's sleep)."""
        return simulated / self._scale


class ManualClock:
    """A clock that moves only when told to; for tests and deterministic runs."""

    __slots__ = ("_now",)

    def __init__(self, start: float = MANUAL_EPOCH) -> None:
        self._now = float(start)

    def now(self) -> float:
        """Simulated Unix seconds."""
        return self._now

    def advance(self, seconds: float) -> float:
        """Move time forward by `seconds` (never backwards) and return the new time."""
        if seconds < 0:
            raise ValueError(f"a clock cannot go backwards ({seconds!r} s)")
        self._now += seconds
        return self._now
