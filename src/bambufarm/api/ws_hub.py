"""The WebSocket fan-out: one reader of the fleet's events, many clients, none waits for another.

`WsHub` subscribes to the event bus once (while it has clients) and every `tick` (50 ms) hands
what happened to each client's `Watcher`:

* a printer's changed status parts are *coalesced*: a watcher keeps, per printer, the set of
  parts (`job`, `temperatures`, `connection`, ...) changed since its last frame, never the
  values; the values are read when the frame is built, so a slow client gets the latest status
  of each printer, once, instead of a backlog of stale ones;
* discrete events (print finished, HMS raised, connection changed) go to a bounded queue per
  watcher (oldest dropped and counted) because each of them matters on its own.

The hub only marks and wakes; each client's own task builds and sends its frames, so a client
whose network is slow delays nobody but itself, and its memory is bounded by the number of
printers plus the event queue. At most one frame per tick per client: at 1,000 printers
reporting every second and 100 clients that is 2,000 frames a second, not 100,000.
"""

import asyncio
import logging
from collections import deque
from typing import Final

import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge

from bambufarm.api.printer_schemas import event_out, model_name_of
from bambufarm.api.printer_status import STATUS_PARTS, PartCache
from bambufarm.farm.service import Farm
from bambufarm.fleet.events import (
    CommandSent,
    ConnectionChanged,
    Event,
    PrinterAdded,
    PrinterRemoved,
    StateChanged,
    Subscription,
)
from bambufarm.storage.errors import PrinterNotFound

logger = logging.getLogger(__name__)

# 50 ms: report → client latency stays far under the 100 ms p99 budget while each client gets
# at most 20 frames a second however many printers report.
TICK_S: Final = 0.05
# Discrete events queued per client: minutes of a busy farm's job and HMS events.
EVENT_QUEUE: Final = 1000
# The hub's own bus queue: 1,000 printers x 1 report/s is 1,000 StateChanged per second; 64 Ki
# rides out a minute of the hub being starved, and the hub drains it every tick.
BUS_QUEUE: Final = 65_536
_SKIPPED: Final = (StateChanged, CommandSent)


class Watcher:
    """One client: what it follows and what waits to be sent to it."""

    __slots__ = (
        "all_printers",
        "dropped",
        "events",
        "full",
        "pending",
        "ready",
        "replies",
        "serials",
    )

    def __init__(self, event_queue: int = EVENT_QUEUE) -> None:
        self.all_printers = False
        self.serials: set[str] = set()
        self.pending: dict[str, set[str]] = {}  # serial -> parts changed since the last frame
        self.full: set[str] = set()  # serials whose whole status is due (new subscription)
        self.events: deque[bytes] = deque(maxlen=event_queue)
        self.replies: deque[bytes] = deque(maxlen=event_queue)
        self.dropped = 0
        self.ready = asyncio.Event()

    def wants(self, serial: str) -> bool:
        """True if this client follows `serial`."""
        return self.all_printers or serial in self.serials

    @property
    def following(self) -> bool:
        """True if the client follows any printer."""
        return self.all_printers or bool(self.serials)

    def offer(
        self,
        dirty: dict[str, set[str]],
        added: set[str],
        events: list[tuple[str, bytes]],
    ) -> None:
        """Take one tick's changes for the printers this client follows; wake its sender."""
        if not self.following:
            return
        woke = False
        for serial, parts in dirty.items():
            if self.wants(serial):
                self.pending.setdefault(serial, set()).update(parts)
                woke = True
        for serial in added:
            if self.wants(serial):
                self.full.add(serial)
                woke = True
        for serial, data in events:
            if self.wants(serial):
                if len(self.events) == self.events.maxlen:
                    self.dropped += 1  # the deque drops the oldest on append
                self.events.append(data)
                woke = True
        if woke:
            self.ready.set()

    def reply(self, data: bytes) -> None:
        """Queue a direct answer to the client (sent before the next updates)."""
        self.replies.append(data)
        self.ready.set()


class WsHub:
    """Fans the fleet's events out to WebSocket watchers; runs only while it has some."""

    def __init__(self, farm: Farm, registry: CollectorRegistry, *, tick: float = TICK_S) -> None:
        self.farm = farm
        self.tick = tick
        self.cache = PartCache(farm.wall_time)
        self._watchers: set[Watcher] = set()
        self._task: asyncio.Task[None] | None = None
        self._models: dict[str, str] = {}
        self.clients = Gauge(
            "bambufarm_websocket_clients", "Open WebSocket connections.", registry=registry
        )
        self.clients.set_function(lambda: len(self._watchers))
        self.frames = Counter(
            "bambufarm_websocket_frames", "Frames sent to WebSocket clients.", registry=registry
        )
        self.dropped = Counter(
            "bambufarm_websocket_events_dropped",
            "Events a slow WebSocket client lost (its queue was full).",
            registry=registry,
        )

    @property
    def watchers(self) -> int:
        """How many clients are attached."""
        return len(self._watchers)

    def attach(self, watcher: Watcher) -> None:
        """Start delivering to `watcher` (and start reading the bus with the first one)."""
        self._watchers.add(watcher)
        if self._task is None or self._task.done():
            subscription = self.farm.bus.subscribe(maxsize=BUS_QUEUE)
            self._task = asyncio.create_task(self._pump(subscription), name="websocket-hub")
            self._task.add_done_callback(self._pump_ended)

    def detach(self, watcher: Watcher) -> None:
        """Stop delivering to `watcher`; the last one out stops the bus reader."""
        self._watchers.discard(watcher)
        if not self._watchers and self._task is not None:
            self._task.cancel()
            self._task = None

    def model_name(self, serial: str) -> str:
        """The printer's model name (for HMS wiki links), remembered per serial."""
        name = self._models.get(serial)
        if name is None:
            try:
                name = model_name_of(self.farm.printer(serial).record.model_code)
            except PrinterNotFound:
                return ""
            self._models[serial] = name
        return name

    async def _pump(self, subscription: Subscription) -> None:
        with subscription:
            async for first in subscription:
                batch = [first]
                while (event := subscription.get_nowait()) is not None:
                    batch.append(event)
                self._dispatch(batch)
                if subscription.dropped:
                    logger.warning(
                        "WebSocket hub fell behind the fleet: %d event(s) lost; clients will "
                        "see the latest status at the next change",
                        subscription.dropped,
                    )
                    subscription.dropped = 0
                # Gathering: whatever arrives in the next tick becomes one frame per client.
                await asyncio.sleep(self.tick)

    def _pump_ended(self, task: "asyncio.Task[None]") -> None:
        if not task.cancelled() and task.exception() is not None:
            logger.error("the WebSocket hub failed", exc_info=task.exception())

    def _dispatch(self, events: list[Event]) -> None:
        dirty: dict[str, set[str]] = {}
        added: set[str] = set()
        messages: list[tuple[str, bytes]] = []
        for event in events:
            kind = type(event)
            if isinstance(event, StateChanged):
                parts = event.changed & STATUS_PARTS
                if parts:
                    dirty.setdefault(event.serial, set()).update(parts)
                continue
            if kind in _SKIPPED:
                continue
            if kind is ConnectionChanged:
                dirty.setdefault(event.serial, set()).add("connection")
            elif kind is PrinterAdded:
                added.add(event.serial)
            elif kind is PrinterRemoved:
                self.cache.forget(event.serial)
                self._models.pop(event.serial, None)
                dirty.pop(event.serial, None)
                added.discard(event.serial)
            data = orjson.dumps(event_out(event, self.farm.wall_time).model_dump(mode="json"))
            messages.append((event.serial, data))
        for watcher in self._watchers:
            before = watcher.dropped
            watcher.offer(dirty, added, messages)
            if watcher.dropped != before:
                self.dropped.inc(watcher.dropped - before)
