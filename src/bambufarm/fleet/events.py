"""Typed fleet events and the in-process bus that fans them out to subscribers.

Events are small frozen dataclasses of JSON-safe values (str, int, float, sets of str): they
say *what* changed, never carry the printer state itself (consumers read the latest state
from the fleet). `to_dict()` / `event_from_dict()` turn them into plain dicts with a `kind`
tag, so a later issue can carry the same events between processes over an MQTT broker
(design.md §8) without a second event model.

`EventBus.publish` is synchronous and never blocks: every subscriber owns a bounded queue, and
a full queue loses its OLDEST events (counted in `dropped`) so one slow WebSocket client never
delays the fleet or the other subscribers.
"""

import asyncio
import dataclasses
import logging
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType, TracebackType
from typing import Any, ClassVar, Self

from bambufarm.fleet.errors import EventError

logger = logging.getLogger(__name__)

# 1,024 events is ~17 minutes of one printer's state changes at 1 Hz, or one second of a
# 1,000-printer fleet for a wildcard subscriber: enough to ride out a GC pause or a slow send.
DEFAULT_QUEUE_SIZE = 1024


@dataclass(frozen=True, slots=True)
class Event:
    """Base of every fleet event: which printer, and when (the publisher's clock, seconds)."""

    kind: ClassVar[str] = "event"

    serial: str
    at: float

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict of this event with its `kind` tag; `event_from_dict` reverses it."""
        out: dict[str, Any] = {"kind": self.kind}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            # Sorted so the same event always serialises to the same bytes.
            out[field.name] = sorted(value) if isinstance(value, frozenset) else value
        return out


@dataclass(frozen=True, slots=True)
class PrinterAdded(Event):
    """A printer joined the fleet."""

    kind: ClassVar[str] = "printer_added"


@dataclass(frozen=True, slots=True)
class PrinterRemoved(Event):
    """A printer left the fleet; no further events come for its serial."""

    kind: ClassVar[str] = "printer_removed"


@dataclass(frozen=True, slots=True)
class ConnectionChanged(Event):
    """The connection moved to a new state (a `ConnectionState` value) with a readable reason."""

    kind: ClassVar[str] = "connection_changed"

    state: str
    reason: str


@dataclass(frozen=True, slots=True)
class StateChanged(Event):
    """A report changed these top-level state fields; read the new state from the fleet."""

    kind: ClassVar[str] = "state_changed"

    changed: frozenset[str]


@dataclass(frozen=True, slots=True)
class HmsRaised(Event):
    """An HMS code appeared (code as `0300_0100_0001_0007`, severity a `Severity` value)."""

    kind: ClassVar[str] = "hms_raised"

    code: str
    severity: str


@dataclass(frozen=True, slots=True)
class HmsCleared(Event):
    """An HMS code that was raised is no longer reported."""

    kind: ClassVar[str] = "hms_cleared"

    code: str
    severity: str


@dataclass(frozen=True, slots=True)
class PrintStarted(Event):
    """A print job started (`job` is the subtask or file name; print_error 0 when clean)."""

    kind: ClassVar[str] = "print_started"

    job: str
    print_error: int


@dataclass(frozen=True, slots=True)
class PrintPaused(Event):
    """The running job paused (by a user, or by the printer with a print_error)."""

    kind: ClassVar[str] = "print_paused"

    job: str
    print_error: int


@dataclass(frozen=True, slots=True)
class PrintResumed(Event):
    """A paused job resumed."""

    kind: ClassVar[str] = "print_resumed"

    job: str
    print_error: int


@dataclass(frozen=True, slots=True)
class PrintFinished(Event):
    """A job finished successfully."""

    kind: ClassVar[str] = "print_finished"

    job: str
    print_error: int


@dataclass(frozen=True, slots=True)
class PrintFailed(Event):
    """A job ended without finishing (failed or stopped); print_error says why when known."""

    kind: ClassVar[str] = "print_failed"

    job: str
    print_error: int


@dataclass(frozen=True, slots=True)
class LayerChanged(Event):
    """The running job reached another layer."""

    kind: ClassVar[str] = "layer_changed"

    layer: int
    total: int


@dataclass(frozen=True, slots=True)
class CommandSent(Event):
    """A command went out to the printer."""

    kind: ClassVar[str] = "command_sent"

    section: str
    command: str
    sequence_id: str


@dataclass(frozen=True, slots=True)
class CommandAcked(Event):
    """The printer answered a command; `result` is the ack outcome, `reason` its explanation."""

    kind: ClassVar[str] = "command_acked"

    section: str
    command: str
    sequence_id: str
    result: str
    reason: str


EVENT_TYPES: tuple[type[Event], ...] = (
    PrinterAdded,
    PrinterRemoved,
    ConnectionChanged,
    StateChanged,
    HmsRaised,
    HmsCleared,
    PrintStarted,
    PrintPaused,
    PrintResumed,
    PrintFinished,
    PrintFailed,
    LayerChanged,
    CommandSent,
    CommandAcked,
)
EVENT_KINDS: MappingProxyType[str, type[Event]] = MappingProxyType(
    {cls.kind: cls for cls in EVENT_TYPES}
)


def event_from_dict(data: Mapping[str, Any]) -> Event:
    """The event a `to_dict()` produced; anything else raises EventError."""
    if not isinstance(data, Mapping):
        raise EventError(f"an event must be a mapping, not {type(data).__name__}")
    kind = data.get("kind")
    cls = EVENT_KINDS.get(kind) if isinstance(kind, str) else None
    if cls is None or not isinstance(kind, str):
        known = ", ".join(EVENT_KINDS)
        raise EventError(f"unknown event kind {kind!r:.60}; known kinds: {known}")
    values: dict[str, Any] = {}
    for field in dataclasses.fields(cls):
        if field.name not in data:
            raise EventError(f"{kind} event has no {field.name!r}")
        values[field.name] = _field_value(kind, field.name, field.type, data[field.name])
    extra = set(data) - {"kind"} - values.keys()
    if extra:
        raise EventError(f"{kind} event has unknown fields {sorted(map(str, extra))!r:.120}")
    return cls(**values)


def _field_value(kind: str, name: str, expected: object, value: object) -> object:
    # bool is an int subclass; a JSON true where a number belongs is a bug upstream, not 1.
    if expected is str and isinstance(value, str):
        return value
    if expected is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if expected is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if expected == frozenset[str] and isinstance(value, list | tuple | set | frozenset):
        items = tuple(value)
        if all(isinstance(item, str) for item in items):
            return frozenset(items)
    type_name = getattr(expected, "__name__", str(expected))
    raise EventError(f"{kind} event field {name!r} must be {type_name}, got {value!r:.60}")


class Subscription:
    """One subscriber's bounded queue of events; iterate with `async for`, end with `close()`."""

    __slots__ = ("_bus", "_closed", "_queue", "_waiter", "dropped", "kinds", "serials")

    def __init__(
        self,
        bus: "EventBus",
        serials: frozenset[str] | None,
        kinds: frozenset[type[Event]] | None,
        maxsize: int,
    ) -> None:
        self._bus = bus
        self.serials = serials
        self.kinds = kinds
        self._queue: deque[Event] = deque(maxlen=maxsize)
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False
        self.dropped = 0  # events lost because this subscriber fell behind

    @property
    def closed(self) -> bool:
        """True once closed by the subscriber or by the bus."""
        return self._closed

    @property
    def pending(self) -> int:
        """Events queued and not yet read."""
        return len(self._queue)

    def offer(self, event: Event) -> None:
        """Queue an event for this subscriber, dropping the oldest one if the queue is full."""
        if self._closed or (self.kinds is not None and type(event) not in self.kinds):
            return
        if len(self._queue) == self._queue.maxlen:
            self.dropped += 1  # the deque's maxlen discards the oldest on append
        self._queue.append(event)
        self._wake()

    def get_nowait(self) -> Event | None:
        """The next queued event, or None when the queue is empty."""
        return self._queue.popleft() if self._queue else None

    def close(self) -> None:
        """Stop receiving events; a pending `async for` ends once the queue is empty."""
        if self._closed:
            return
        self._closed = True
        self._bus.detach(self)
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Event:
        """The next event, waiting for one; ends when closed and drained."""
        while True:
            if self._queue:
                return self._queue.popleft()
            if self._closed:
                raise StopAsyncIteration
            if self._waiter is not None:
                raise RuntimeError("a subscription has one reader; subscribe again for another")
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class EventBus:
    """Fan events out to subscribers filtered by serial and kind; publishing never blocks."""

    def __init__(self) -> None:
        # Subscribers for one serial sit under that serial so a 1,000-printer fleet's publish
        # looks at one short list plus the wildcard ones, not at every subscriber.
        self._by_serial: dict[str, list[Subscription]] = {}
        self._wildcard: list[Subscription] = []
        self._closed = False

    @property
    def subscriber_count(self) -> int:
        """How many subscriptions are open."""
        return len(self._wildcard) + sum(len(subs) for subs in self._by_serial.values())

    def publish(self, event: Event) -> None:
        """Hand the event to every matching subscriber; never blocks, never raises when full."""
        for sub in self._wildcard:
            sub.offer(event)
        for sub in self._by_serial.get(event.serial, ()):
            sub.offer(event)

    def publish_many(self, events: Iterable[Event]) -> None:
        """Publish several events in order."""
        for event in events:
            self.publish(event)

    def subscribe(
        self,
        *,
        serials: frozenset[str] | None = None,
        kinds: frozenset[type[Event]] | None = None,
        maxsize: int = DEFAULT_QUEUE_SIZE,
    ) -> Subscription:
        """A new subscription (None: all serials / all kinds); already closed on a closed bus."""
        if maxsize < 1:
            raise ValueError(f"a subscription queue holds at least 1 event, not {maxsize}")
        sub = Subscription(self, serials, kinds, maxsize)
        if self._closed:
            sub.close()
        elif serials is None:
            self._wildcard.append(sub)
        else:
            for serial in serials:
                self._by_serial.setdefault(serial, []).append(sub)
        return sub

    def detach(self, sub: Subscription) -> None:
        """Forget a subscription (called by `Subscription.close`)."""
        if sub.serials is None:
            if sub in self._wildcard:
                self._wildcard.remove(sub)
            return
        for serial in sub.serials:
            subs = self._by_serial.get(serial)
            if subs is None or sub not in subs:
                continue
            subs.remove(sub)
            if not subs:
                del self._by_serial[serial]

    def close(self) -> None:
        """Close every subscription; later subscriptions end at once and publishing does nothing."""
        self._closed = True
        subs = [*self._wildcard, *{id(s): s for v in self._by_serial.values() for s in v}.values()]
        for sub in subs:
            sub.close()
        logger.debug("event bus closed with %d subscriptions", len(subs))
