"""The event history writer: the fleet's lasting events, from the bus into the events table.

Kept: connection changes, printers added and removed, HMS raised and cleared, print starts,
pauses, resumes, ends and failures, and command acknowledgements. Not kept: `StateChanged`
(one per report, a thousand a second at scale; the live state is in the fleet), layer changes
and sent commands (the audit log has who sent what).

Events are written in batches, one INSERT per batch: the writer waits for the first event,
gathers for `flush_interval` (so a burst of a thousand connections becomes a few statements,
not a thousand fsyncs), then writes. If the database is down, the batch stays in memory and is
retried (up to `max_backlog` events, oldest dropped first and counted), so a database restart
loses nothing that fits in the backlog.
"""

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Final

from bambufarm.fleet.events import (
    CommandAcked,
    ConnectionChanged,
    Event,
    EventBus,
    HmsCleared,
    HmsRaised,
    PrinterAdded,
    PrinterRemoved,
    PrintFailed,
    PrintFinished,
    PrintPaused,
    PrintResumed,
    PrintStarted,
)
from bambufarm.storage.db import Database
from bambufarm.storage.errors import StorageError
from bambufarm.storage.events import NewEvent, append_events

logger = logging.getLogger(__name__)

KEPT_EVENTS: Final = frozenset(
    {
        ConnectionChanged,
        PrinterAdded,
        PrinterRemoved,
        HmsRaised,
        HmsCleared,
        PrintStarted,
        PrintPaused,
        PrintResumed,
        PrintFinished,
        PrintFailed,
        CommandAcked,
    }
)
# A cold start of 1,000 printers publishes ~3,000 kept events within seconds; the queue holds
# several times that so the writer never drops during one.
QUEUE_SIZE: Final = 65_536
# Half a second of gathering keeps a batch to a few hundred rows at start-up and adds at most
# that much before an event is readable in the history.
FLUSH_INTERVAL_S: Final = 0.5
BATCH_MAX: Final = 2000
# An outage of a few minutes at full start-up rate; beyond it the oldest go first.
MAX_BACKLOG: Final = 100_000
RETRY_S: Final = 5.0


class EventRecorder:
    """Writes the fleet's lasting events to the database in batches; `run()` is its task."""

    def __init__(
        self,
        bus: EventBus,
        database: Database,
        *,
        wall_time: Callable[[float], datetime],
        flush_interval: float = FLUSH_INTERVAL_S,
        max_backlog: int = MAX_BACKLOG,
        retry_s: float = RETRY_S,
    ) -> None:
        self._database = database
        self._wall_time = wall_time
        self._flush_interval = flush_interval
        self._retry_s = retry_s
        self._subscription = bus.subscribe(kinds=KEPT_EVENTS, maxsize=QUEUE_SIZE)
        self._backlog: deque[NewEvent] = deque(maxlen=max_backlog)
        self.written = 0  # events stored since start
        self.lost = 0  # events dropped: backlog full, or the bus queue overflowed
        self.failures = 0  # batches the database refused
        self._failing = False
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def pending(self) -> int:
        """Events received and not yet stored."""
        return len(self._backlog) + self._subscription.pending

    async def run(self) -> None:
        """Write batches until `close()`; then write what is left (one last try)."""
        subscription = self._subscription
        async for event in subscription:
            self._idle.clear()
            self._take(event)
            if not subscription.closed:
                # Gathering a batch: the fleet publishes synchronously, so events of the same
                # burst are already queued, and more arrive during this pause.
                await asyncio.sleep(self._flush_interval)
            self._drain()
            while self._backlog:
                if await self._write():
                    continue
                if subscription.closed:
                    logger.error(
                        "%d event(s) not stored at shutdown: the database is unavailable",
                        len(self._backlog),
                    )
                    self.lost += len(self._backlog)
                    self._backlog.clear()
                    break
                await asyncio.sleep(self._retry_s)
                self._drain()
            self._idle.set()

    async def flush(self) -> None:
        """Wait until every event received so far is stored (or being retried)."""
        while self._subscription.pending or not self._idle.is_set():
            await self._idle.wait()
            if self._subscription.pending:
                # The writer is between batches; let it take the next one.
                await asyncio.sleep(0)

    def close(self) -> None:
        """Stop receiving; `run()` writes what it holds and returns."""
        self._subscription.close()

    def _drain(self) -> None:
        while (event := self._subscription.get_nowait()) is not None:
            self._take(event)

    def _take(self, event: Event) -> None:
        if len(self._backlog) == self._backlog.maxlen:
            self.lost += 1  # the deque drops the oldest on append
        body = event.to_dict()
        for key in ("kind", "serial", "at"):
            body.pop(key, None)
        self._backlog.append(NewEvent(event.serial, event.kind, body, self._wall_time(event.at)))

    async def _write(self) -> bool:
        """Store up to BATCH_MAX events; False when the database refused them."""
        batch = [self._backlog[i] for i in range(min(BATCH_MAX, len(self._backlog)))]
        try:
            async with self._database.session() as session:
                await append_events(session, batch)
        except StorageError as err:
            self.failures += 1
            if not self._failing:
                logger.warning(
                    "event history: %d event(s) kept in memory, retrying every %g s: %s",
                    len(self._backlog),
                    self._retry_s,
                    err,
                )
            self._failing = True
            return False
        for _ in batch:
            self._backlog.popleft()
        self.written += len(batch)
        if self._failing:
            logger.info("event history: the database is back; stored %d event(s)", len(batch))
            self._failing = False
        self.lost += self._subscription.dropped
        self._subscription.dropped = 0
        return True


def wall_clock_of(
    monotonic: Callable[[], float], wall: Callable[[], datetime]
) -> Callable[[float], datetime]:
    """Turns a fleet timestamp (monotonic seconds) into the wall-clock time it happened."""

    def at(fleet_seconds: float) -> datetime:
        return wall() - timedelta(seconds=monotonic() - fleet_seconds)

    return at
