"""The last hour of every printer's temperatures, in memory, for the printer page's chart.

Fed from the fleet's events: a `StateChanged` that touched `temperatures` is sampled when the
printer's last sample is `interval_s` old (10 s: a heater moves a few degrees in that time, so
the curve keeps its shape), or at once when a target changed (a set-point step is drawn where
it happened, not up to 10 s later). A connection that leaves online/stale writes one gap marker
(every channel unknown), so the chart breaks the line instead of bridging an outage with a
straight one. A printer removed from the fleet loses its history.

Memory is bounded and counted: one sample is a float64 time and 8 channels of int16 tenths of
a degree (24 bytes), kept in `array`s rather than Python objects (a tuple of 8 floats costs
~250 bytes). A printer keeps at most `capacity` samples (default 420: 360 for one hour at 10 s
plus 60 for target steps and gaps), about 10 KB; 1,000 printers about 10 MB
(`memory_bytes()` says what it is now). Samples older than `window_s` are not returned.

Nothing is stored: after a server restart the chart starts empty. The history belongs to
this process, like the live state it samples.
"""

import asyncio
import logging
import math
import sys
import time
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Final

from bambufarm.fleet.connection import CONNECTED_STATES
from bambufarm.fleet.errors import UnknownPrinter
from bambufarm.fleet.events import (
    ConnectionChanged,
    EventBus,
    PrinterRemoved,
    StateChanged,
    Subscription,
)
from bambufarm.fleet.supervisor import Fleet
from bambufarm.protocol.telemetry import Temperatures

logger = logging.getLogger(__name__)

CHANNELS: Final = (
    "nozzle",
    "nozzle_target",
    # Dual-nozzle printers: `nozzle` is the right (main) nozzle, this the left one.
    "left_nozzle",
    "left_nozzle_target",
    "bed",
    "bed_target",
    "chamber",
    "chamber_target",
)
WIDTH: Final = len(CHANNELS)
TARGETS: Final = tuple(i for i, name in enumerate(CHANNELS) if name.endswith("_target"))
INTERVAL_S: Final = 10.0
WINDOW_S: Final = 3600.0
CAPACITY: Final = int(WINDOW_S / INTERVAL_S) + 60
# int16 tenths of a degree: -3276.7 .. 3276.7 °C covers every heater; the lowest value is
# reserved for "unknown".
MISSING: Final = -32768
_SCALE: Final = 10.0
_LIMIT: Final = 32767
# Reports of 1,000 printers at 1 Hz are 1,000 StateChanged a second; 16 s of them fit, so a
# GC pause or a busy loop does not lose samples (an overflow only thins the curve).
QUEUE_SIZE: Final = 16_384
SAMPLE_BYTES: Final = 8 + 2 * WIDTH

Reader = Callable[[str], Temperatures | None]


@dataclass(frozen=True, slots=True)
class TemperatureSeries:
    """One printer's samples, oldest first: fleet-clock times and a column per channel."""

    serial: str
    times: tuple[float, ...]
    columns: dict[str, tuple[float | None, ...]]


def _tenths(value: float | None) -> int:
    if value is None or math.isnan(value):
        return MISSING
    # Clamped before rounding: a nonsense reading of 1e308 must not overflow int().
    return round(max(-_LIMIT, min(_LIMIT, value * _SCALE)))


def sample_of(temps: Temperatures) -> tuple[int, ...]:
    """The 8 channels of `temps` in tenths of a degree (MISSING where unknown)."""
    right = left = None
    for extruder in temps.extruders:
        if extruder.id == 0:
            right = extruder
        elif extruder.id == 1:
            left = extruder
    pairs: tuple[float | int | None, ...]
    if right is not None and left is not None:
        pairs = (right.temp, right.target, left.temp, left.target)
    else:
        pairs = (temps.nozzle, temps.nozzle_target, None, None)
    values = (
        *pairs,
        temps.bed,
        temps.bed_target,
        temps.chamber,
        temps.chamber_target,
    )
    return tuple(_tenths(None if v is None else float(v)) for v in values)


GAP: Final = (MISSING,) * WIDTH


class _Ring:
    """One printer's samples: a ring of `capacity` rows in two flat arrays."""

    __slots__ = ("capacity", "count", "head", "times", "values")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.times = array("d")
        self.values = array("h")
        self.head = 0  # where the next sample goes once the ring is full
        self.count = 0

    def append(self, at: float, sample: tuple[int, ...]) -> None:
        if self.count < self.capacity:
            self.times.append(at)
            self.values.extend(sample)
            self.count += 1
            return
        self.times[self.head] = at
        start = self.head * WIDTH
        self.values[start : start + WIDTH] = array("h", sample)
        self.head = (self.head + 1) % self.capacity

    def last(self) -> tuple[float, tuple[int, ...]] | None:
        if self.count == 0:
            return None
        index = (self.head - 1) % self.capacity if self.count == self.capacity else self.count - 1
        start = index * WIDTH
        return self.times[index], tuple(self.values[start : start + WIDTH])

    def rows(self) -> Iterator[tuple[float, "array[int]"]]:
        order = range(self.count)
        if self.count == self.capacity:
            order = range(self.head, self.head + self.count)
        for i in order:
            index = i % self.capacity
            yield self.times[index], self.values[index * WIDTH : (index + 1) * WIDTH]

    def nbytes(self) -> int:
        return sys.getsizeof(self.times) + sys.getsizeof(self.values)


class TemperatureHistory:
    """Keeps the last `window_s` of every printer's temperatures; `start()` / `close()`."""

    def __init__(
        self,
        bus: EventBus,
        read: Reader,
        *,
        clock: Callable[[], float] = time.monotonic,
        interval_s: float = INTERVAL_S,
        window_s: float = WINDOW_S,
        capacity: int = CAPACITY,
    ) -> None:
        if interval_s <= 0 or window_s <= 0 or capacity < 2:
            raise ValueError("interval and window must be positive, capacity at least 2")
        self._bus = bus
        self._read = read
        self.clock = clock
        self.interval_s = interval_s
        self.window_s = window_s
        self._capacity = capacity
        self._rings: dict[str, _Ring] = {}
        self._task: asyncio.Task[None] | None = None
        self.samples = 0  # samples taken since start, for tests and metrics

    @classmethod
    def of_fleet(
        cls, fleet: Fleet, *, clock: Callable[[], float] = time.monotonic
    ) -> "TemperatureHistory":
        """A history of `fleet`'s printers reading their live state; `clock` is the fleet's."""

        def read(serial: str) -> Temperatures | None:
            try:
                return fleet.session(serial).state.temperatures
            except UnknownPrinter:
                return None

        return cls(fleet.bus, read, clock=clock)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start following the fleet's events (idempotent)."""
        if self._task is None:
            # Subscribed here, not in the task: events published before it first runs count.
            kinds = frozenset({StateChanged, ConnectionChanged, PrinterRemoved})
            events = self._bus.subscribe(kinds=kinds, maxsize=QUEUE_SIZE)
            self._task = asyncio.create_task(self._follow(events), name="temperature-history")

    async def close(self) -> None:
        """Stop following events; the samples stay readable."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait([task])

    async def _follow(self, subscription: Subscription) -> None:
        with subscription as events:
            async for event in events:
                try:
                    if isinstance(event, StateChanged):
                        if "temperatures" in event.changed:
                            self.observe(event.serial, event.at)
                    elif isinstance(event, ConnectionChanged):
                        if event.state not in CONNECTED_STATES:
                            self.gap(event.serial, event.at)
                    else:
                        self._rings.pop(event.serial, None)
                except Exception:
                    # The task's boundary: one bad reading must not end the chart of all.
                    logger.exception("temperature sample of %s failed", event.serial)

    # ------------------------------------------------------------------ sampling

    def observe(self, serial: str, at: float) -> bool:
        """Sample the printer's temperatures now if due; True when a sample was kept."""
        temps = self._read(serial)
        if temps is None:
            return False
        sample = sample_of(temps)
        ring = self._rings.get(serial)
        if ring is None:
            ring = self._rings[serial] = _Ring(self._capacity)
        last = ring.last()
        if last is not None:
            last_at, last_sample = last
            due = at - last_at >= self.interval_s or last_sample == GAP
            stepped = any(sample[i] != last_sample[i] for i in TARGETS)
            if not (due or stepped):
                return False
        ring.append(at, sample)
        self.samples += 1
        return True

    def gap(self, serial: str, at: float) -> None:
        """Mark that the printer's readings stopped (it went offline): the line breaks here."""
        ring = self._rings.get(serial)
        if ring is None:
            return
        last = ring.last()
        if last is not None and last[1] != GAP:
            ring.append(at, GAP)

    # ------------------------------------------------------------------ reading

    def series(self, serial: str, now: float | None = None) -> TemperatureSeries:
        """The printer's samples of the window ending `now` (default: the clock), oldest first."""
        if now is None:
            now = self.clock()
        ring = self._rings.get(serial)
        times: list[float] = []
        columns: list[list[float | None]] = [[] for _ in CHANNELS]
        if ring is not None:
            since = now - self.window_s
            for at, values in ring.rows():
                if at < since:
                    continue
                times.append(at)
                for column, value in zip(columns, values, strict=True):
                    column.append(None if value == MISSING else value / _SCALE)
        return TemperatureSeries(
            serial=serial,
            times=tuple(times),
            columns={name: tuple(col) for name, col in zip(CHANNELS, columns, strict=True)},
        )

    def memory_bytes(self) -> int:
        """What the samples take in memory now (arrays and the table of printers)."""
        return sys.getsizeof(self._rings) + sum(
            ring.nbytes() + sys.getsizeof(ring) for ring in self._rings.values()
        )

    def __len__(self) -> int:
        return len(self._rings)
