"""The WebSocket fan-out: one reader of the fleet's events, many clients, none waits for another.

`WsHub` subscribes to the event bus once (while it has clients) and every `tick` (50 ms) hands
what happened to each client's `Watcher`:

* a printer's changed status parts are *coalesced*: each tick's changes are one read-only map
  (serial → parts changed: `job`, `temperatures`, `connection`, ...), shared by every watcher
  that follows all printers; a watcher that falls behind merges its maps into one (the union of
  parts per printer, never values), so a slow client gets the latest status of each printer,
  once, instead of a backlog of stale ones, and holds at most one entry per printer;
* discrete events (print finished, HMS raised, connection changed) go to a bounded queue per
  watcher (oldest dropped and counted) because each of them matters on its own.

The hub only hands out and wakes; each client's own task takes its frames and sends them, so a
client whose network is slow delays nobody but itself, and its memory is bounded by the number
of printers plus the event queue. At most one updates frame per tick per client: at 1,000
printers reporting every second and 100 clients that is 2,000 frames a second, not 100,000.
The JSON of one tick's updates is built once and reused by every client that is up to date
(measured at 1,000 printers and 100 clients: building per client cost ~60 % of a core).
"""

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge

from bambufarm.api.job_feed import JobFeed
from bambufarm.api.printer_schemas import event_out, model_name_of
from bambufarm.api.printer_status import STATUS_PARTS, PartCache
from bambufarm.farm.service import Farm
from bambufarm.fleet.errors import FleetError
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
# A watcher behind by more ticks than this merges them: memory stays one entry per printer.
MAX_PENDING_TICKS: Final = 8
# Frames stay well under the 1 MiB message limit of common clients (websockets' default).
SNAPSHOT_CHUNK: Final = 50
UPDATES_CHUNK: Final = 200
# Shared update JSON is kept for the maps of this many recent ticks (clients a little behind).
SHARED_TICKS: Final = 4

Changes = Mapping[str, frozenset[str]]


@dataclass(frozen=True, slots=True)
class Tick:
    """What happened in one tick: changed parts per printer, printers added, event JSON."""

    changes: Changes
    added: frozenset[str]
    events: tuple[tuple[str, bytes], ...]


class Watcher:
    """One client: what it follows and what waits to be sent to it."""

    __slots__ = (
        "_ticks",
        "all_printers",
        "dropped",
        "events",
        "full",
        "jobs",
        "ready",
        "replies",
        "serials",
    )

    def __init__(self, event_queue: int = EVENT_QUEUE) -> None:
        self.all_printers = False
        self.jobs = False  # follows the `jobs` topic (its frames come from the JobFeed)
        self.serials: set[str] = set()
        self._ticks: list[Changes] = []  # change maps not yet sent (shared: never modified)
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

    @property
    def backlog(self) -> int:
        """How many ticks' change maps wait to be sent (at most MAX_PENDING_TICKS)."""
        return len(self._ticks)

    def pending(self) -> dict[str, frozenset[str]]:
        """The parts changed per printer since the last frame (without taking them)."""
        return _merged(self._ticks)

    def offer(self, tick: Tick) -> None:
        """Take one tick's changes for the printers this client follows; wake its sender."""
        if not self.following:
            return
        woke = False
        changes = tick.changes
        if changes:
            mine = changes if self.all_printers else self._own(changes)
            if mine:
                self._ticks.append(mine)
                if len(self._ticks) > MAX_PENDING_TICKS:
                    self._ticks = [_merged(self._ticks)]
                woke = True
        for serial in tick.added:
            if self.wants(serial):
                self.full.add(serial)
                woke = True
        for serial, data in tick.events:
            if self.wants(serial):
                if len(self.events) == self.events.maxlen:
                    self.dropped += 1  # the deque drops the oldest on append
                self.events.append(data)
                woke = True
        if woke:
            self.ready.set()

    def take_changes(self) -> Changes | None:
        """The changes to send now (one shared map when the client is up to date), cleared."""
        ticks, self._ticks = self._ticks, []
        if not ticks:
            return None
        return ticks[0] if len(ticks) == 1 else _merged(ticks)

    def drop_unwanted(self) -> None:
        """Forget queued changes of printers no longer followed (after an unsubscribe)."""
        merged = {s: parts for s, parts in _merged(self._ticks).items() if self.wants(s)}
        self._ticks = [merged] if merged else []
        self.full = {s for s in self.full if self.wants(s)}

    def reply(self, data: bytes) -> None:
        """Queue a direct answer to the client (sent before the next updates)."""
        self.replies.append(data)
        self.ready.set()

    def _own(self, changes: Changes) -> dict[str, frozenset[str]]:
        if len(self.serials) < len(changes):
            return {s: changes[s] for s in self.serials if s in changes}
        return {s: parts for s, parts in changes.items() if s in self.serials}


def _merged(ticks: list[Changes]) -> dict[str, frozenset[str]]:
    merged: dict[str, frozenset[str]] = {}
    for changes in ticks:
        for serial, parts in changes.items():
            before = merged.get(serial)
            merged[serial] = parts if before is None else before | parts
    return merged


class WsHub:
    """Fans the fleet's events out to WebSocket watchers; runs only while it has some."""

    def __init__(self, farm: Farm, registry: CollectorRegistry, *, tick: float = TICK_S) -> None:
        self.farm = farm
        self.tick = tick
        self.cache = PartCache(farm.wall_time)
        self._watchers: set[Watcher] = set()
        self._task: asyncio.Task[None] | None = None
        self._models: dict[str, str] = {}
        # id(change map) -> (the map, its update items' JSON): built once per tick's map.
        self._shared: dict[int, tuple[Changes, list[bytes]]] = {}
        self._recent: deque[Changes] = deque(maxlen=SHARED_TICKS)
        self.job_feed: JobFeed | None = None  # set by the WebSocket route (it has the services)
        self.clients = Gauge(
            "bambufarm_websocket_clients", "Open WebSocket connections.", registry=registry
        )
        self.clients.set_function(lambda: len(self._watchers))
        self.frames_sent = Counter(
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
        self.unfollow_jobs(watcher)
        if not self._watchers and self._task is not None:
            self._task.cancel()
            self._task = None
            self._shared.clear()
            self._recent.clear()

    def follow_jobs(self, watcher: Watcher) -> None:
        """Send `watcher` the job and plate changes (the `jobs` topic)."""
        watcher.jobs = True
        if self.job_feed is not None:
            self.job_feed.follow(watcher)

    def unfollow_jobs(self, watcher: Watcher) -> None:
        """Stop sending `watcher` job and plate changes."""
        watcher.jobs = False
        if self.job_feed is not None:
            self.job_feed.unfollow(watcher)

    def jobs_changed(self) -> None:
        """A job or plate changed through this server: followers hear of it at once."""
        if self.job_feed is not None:
            self.job_feed.nudge()

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

    # ------------------------------------------------------------------ frames

    def frames(self, watcher: Watcher) -> list[bytes]:
        """Everything due to `watcher` now: replies, then snapshots, then updates."""
        frames = list(watcher.replies)
        watcher.replies.clear()
        if watcher.jobs and self.job_feed is not None:
            frames.extend(self.job_feed.take(watcher))
        changes = watcher.take_changes()
        if watcher.full:
            serials = sorted(watcher.full)
            watcher.full.clear()
            frames.extend(self._snapshots(serials))
            if changes is not None:
                # A full status covers its printer's changes.
                changes = {s: p for s, p in changes.items() if s not in serials}
        if changes or watcher.events or watcher.dropped:
            items = self._updates(changes) if changes else []
            events = b",".join(watcher.events)
            watcher.events.clear()
            dropped, watcher.dropped = watcher.dropped, 0
            chunks = [items[i : i + UPDATES_CHUNK] for i in range(0, len(items), UPDATES_CHUNK)]
            for index, chunk in enumerate(chunks or [[]]):
                frames.append(
                    b'{"type":"updates","printers":[' + b",".join(chunk) + b'],"events":['
                    + (events if index == 0 else b"")
                    + b'],"dropped_events":' + str(dropped if index == 0 else 0).encode() + b"}"
                )  # fmt: skip
        return frames

    def _snapshots(self, serials: list[str]) -> list[bytes]:
        statuses = []
        fleet = self.farm.fleet
        for serial in serials:
            with contextlib.suppress(FleetError):
                # Removed since it was queued: its printer_removed event says so.
                statuses.append(self.cache.status(fleet.snapshot(serial), self.model_name(serial)))
        return [
            b'{"type":"snapshot","printers":[' + b",".join(statuses[i : i + SNAPSHOT_CHUNK]) + b"]}"
            for i in range(0, len(statuses), SNAPSHOT_CHUNK)
        ]

    def _updates(self, changes: Changes) -> list[bytes]:
        """The update items for a change map; a tick's shared map is built once for all."""
        shared = self._shared.get(id(changes))
        if shared is not None and shared[0] is changes:
            return shared[1]
        items: list[bytes] = []
        fleet = self.farm.fleet
        for serial, parts in changes.items():
            with contextlib.suppress(FleetError):
                snapshot = fleet.snapshot(serial)
                items.append(self.cache.update(snapshot, parts, self.model_name(serial)))
        if any(recent is changes for recent in self._recent):
            self._shared[id(changes)] = (changes, items)
        return items

    def _remember(self, changes: Changes) -> None:
        """Keep sharing the JSON of the last few ticks' maps; forget older ones."""
        self._recent.append(changes)
        kept = {id(recent) for recent in self._recent}
        for key in [key for key in self._shared if key not in kept]:
            del self._shared[key]

    # ------------------------------------------------------------------ the bus reader

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
        tick = Tick(
            {serial: frozenset(parts) for serial, parts in dirty.items()},
            frozenset(added),
            tuple(messages),
        )
        self._remember(tick.changes)
        for watcher in self._watchers:
            before = watcher.dropped
            watcher.offer(tick)
            if watcher.dropped != before:
                self.dropped.inc(watcher.dropped - before)
