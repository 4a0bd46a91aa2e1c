"""The WebSocket's `jobs` topic: jobs and plate states that changed, read from the database.

Jobs change in the queue's API, in the dispatcher (claims, waiting reasons, progress every
5 s) and in the plate gate, possibly in another server process (design.md §8). The one place
all of them meet is the database, so while at least one client follows `jobs` a single task
reads the unfinished jobs and the plate states once a second (at once after a change made
through this server's API) and compares each job's (updated_at, state, priority, position)
and each plate's (cleared, updated_at) with the last read. What differs goes to every
follower in one frame:

    {"type": "jobs", "jobs": [JobOut, ...], "plates": [PlateOutState, ...]}

A job that left the unfinished set is read once more to send its final state. Per client,
pending items are kept by job id and serial (the latest wins), so a slow client holds at most
one entry per job and printer however long it lags. Clients load the lists over REST after
subscribing and then apply these frames (newer `updated_at` wins).

Cost: two indexed reads a second for all clients together; 1,000 unfinished jobs read in a
few milliseconds on SQLite, and only changed rows are serialised.
"""

import asyncio
import contextlib
import logging
from collections.abc import Hashable
from typing import Final, Protocol

from bambufarm.api.queue_schemas import job_out, plate_state_out
from bambufarm.jobs.model import UNFINISHED, Job
from bambufarm.jobs.plate import PlateGate
from bambufarm.jobs.queue import JobQueue
from bambufarm.storage.errors import NotFound, StorageError
from bambufarm.storage.paging import MAX_LIMIT

logger = logging.getLogger(__name__)

# Seconds between reads while anyone follows `jobs`: state changes show within a second,
# like a printer's report; the dispatcher itself writes progress only every 5 s.
POLL_S: Final = 1.0
# Beyond this many unfinished jobs a read takes several pages; 10 pages of 1,000 is far past
# any farm's queue, and the rest would only be late, not lost (the REST list has them).
MAX_PAGES: Final = 10


class Follower(Protocol):
    """What the feed needs of a WebSocket client: a way to wake its sender."""

    ready: asyncio.Event


class JobFeed:
    """Reads job and plate changes while followed; hands each follower its pending frame."""

    def __init__(self, queue: JobQueue, plates: PlateGate, *, interval: float = POLL_S) -> None:
        self._queue = queue
        self._plates = plates
        self._interval = interval
        self._followers: dict[Follower, tuple[dict[int, bytes], dict[str, bytes]]] = {}
        self._jobs: dict[int, Hashable] | None = None  # None: no baseline read yet
        self._plate_keys: dict[str, Hashable] = {}
        self._nudged = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._failing = False

    @property
    def followers(self) -> int:
        """How many clients follow `jobs`."""
        return len(self._followers)

    def follow(self, follower: Follower) -> None:
        """Start sending job changes to `follower` (and start reading with the first one)."""
        self._followers.setdefault(follower, ({}, {}))
        if self._task is None or self._task.done():
            self._jobs = None
            self._task = asyncio.create_task(self._run(), name="websocket-jobs")
            self._task.add_done_callback(self._ended)

    def unfollow(self, follower: Follower) -> None:
        """Stop sending to `follower`; the last one out stops the reads."""
        self._followers.pop(follower, None)
        if not self._followers and self._task is not None:
            self._task.cancel()
            self._task = None

    def nudge(self) -> None:
        """Read now rather than at the next tick (a change was just made through the API)."""
        self._nudged.set()

    def take(self, follower: Follower) -> list[bytes]:
        """The frame due to `follower` (none when nothing changed), cleared."""
        pending = self._followers.get(follower)
        if pending is None:
            return []
        jobs, plates = pending
        if not jobs and not plates:
            return []
        frame = (
            b'{"type":"jobs","jobs":[' + b",".join(jobs.values())
            + b'],"plates":[' + b",".join(plates.values()) + b"]}"
        )  # fmt: skip
        jobs.clear()
        plates.clear()
        return [frame]

    async def _run(self) -> None:
        while True:
            self._nudged.clear()
            try:
                await self._read()
            except StorageError as err:
                # The database is down: followers keep what they have; logged once per outage.
                if not self._failing:
                    logger.warning("job changes for WebSocket clients paused: %s", err)
                self._failing = True
            else:
                if self._failing:
                    logger.info("job changes for WebSocket clients resumed")
                self._failing = False
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._interval):
                    await self._nudged.wait()

    def _ended(self, task: "asyncio.Task[None]") -> None:
        if not task.cancelled() and task.exception() is not None:
            logger.error("the WebSocket job feed failed", exc_info=task.exception())

    async def _read(self) -> None:
        current: dict[int, Job] = {}
        for page in range(MAX_PAGES):
            found = await self._queue.list(
                states=UNFINISHED, offset=page * MAX_LIMIT, limit=MAX_LIMIT
            )
            current.update((job.id, job) for job in found.items)
            if (page + 1) * MAX_LIMIT >= found.total:
                break
        plates = await self._plates.states()
        keys: dict[int, Hashable] = {
            i: (j.updated_at, j.state, j.priority, j.position) for i, j in current.items()
        }
        plate_keys: dict[str, Hashable] = {s: (p.cleared, p.updated_at) for s, p in plates.items()}
        before, self._jobs = self._jobs, keys
        plates_before, self._plate_keys = self._plate_keys, plate_keys
        if before is None:
            return  # the baseline: followers loaded the lists themselves
        changed = [job for i, job in current.items() if before.get(i) != keys[i]]
        for job_id in before.keys() - keys.keys():
            with contextlib.suppress(NotFound):
                # Gone from the unfinished set: done, failed or cancelled. A deleted job
                # cannot be told apart here; clients drop it at their next full load.
                changed.append(await self._queue.get(job_id))
        job_items = {job.id: job_out(job).model_dump_json().encode() for job in changed}
        plate_items = {
            serial: plate_state_out(plate).model_dump_json().encode()
            for serial, plate in plates.items()
            if plates_before.get(serial) != plate_keys[serial]
        }
        if not job_items and not plate_items:
            return
        for follower, (jobs, pending_plates) in self._followers.items():
            jobs.update(job_items)
            pending_plates.update(plate_items)
            follower.ready.set()
