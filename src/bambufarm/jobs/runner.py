"""`Dispatcher`: matches queued jobs to printers when something changes, then uploads and starts.

Event-driven, not a polling loop. It sleeps until a poke (`Wakeup`): a job added, retried,
moved or cancelled (the queue), a plate cleared (the gate), a printer online, ready, or with
new filament (the fleet's events), an attempt ended (the tracker). Then one round:

1. read the dispatchable jobs (queue order), the reservations and the plate gate;
2. build each printer's `PrinterView` from the fleet's last known state, run the pure
   `match`, keep every waiting job's reasons per printer (`waiting_reasons`) and write a
   one-line summary on the job when it changed;
3. per assignment: claim the job (compare-and-set, a new attempt), then in its own task
   upload the file (bounded by the fleet's `Uploader`: one transfer per printer, a global
   limit) unless the printer holds it already, write `starting`, and only then send
   `project_file` with the attempt's task id;
4. plan pre-staging: upload the likely next file to printers that are still printing.

Pokes that arrive during a round make one more round; rounds are at least `round_gap_s` apart,
so a burst of a thousand events costs a few rounds. A slow safety re-check (`recheck_s`, a
minute) re-reads everything in case an event was lost — it is not how work is found.

What the printers report afterwards is the `Tracker`'s; stage timeouts are the `Watchdog`'s.
"""

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType

from bambufarm.fleet.connection import ConnectionState
from bambufarm.fleet.errors import FleetError
from bambufarm.fleet.events import (
    ConnectionChanged,
    Event,
    PrinterAdded,
    PrinterRemoved,
    PrintFailed,
    PrintFinished,
    StateChanged,
    Subscription,
)
from bambufarm.fleet.supervisor import Fleet
from bambufarm.jobs.attempt import Attempt, Phase
from bambufarm.jobs.closing import RetryPolicy
from bambufarm.jobs.dispatch import Assignment, CandidateReason, JobRequest, PrinterView, match
from bambufarm.jobs.library import Library
from bambufarm.jobs.model import DISPATCHABLE, JobState, claim, transition
from bambufarm.jobs.reconcile import Recovery, recover
from bambufarm.jobs.sd_cleanup import DEFAULT_KEEP, SdCleanup
from bambufarm.jobs.staging import Staging
from bambufarm.jobs.starter import DispatchStats, Starter
from bambufarm.jobs.tracker import Tracker
from bambufarm.jobs.views import job_request, model_of, printer_view, wait_summary
from bambufarm.jobs.wakeup import Wakeup
from bambufarm.jobs.watchdog import StageLimits, Watchdog
from bambufarm.protocol.errors import ProtocolError
from bambufarm.protocol.job import BUSY_STATES, GcodeState
from bambufarm.protocol.models import PrinterModel
from bambufarm.storage.db import Database
from bambufarm.storage.errors import StorageError
from bambufarm.storage.jobs import JobRecord, JobStateConflict, change_state, list_jobs
from bambufarm.storage.library import BlobRecord, get_blobs
from bambufarm.storage.paging import MAX_LIMIT
from bambufarm.storage.plates import list_plates

logger = logging.getLogger(__name__)

_EVENTS = frozenset(
    {StateChanged, ConnectionChanged, PrintFinished, PrintFailed, PrinterAdded, PrinterRemoved}
)
_DISPATCHABLE = frozenset(s.value for s in DISPATCHABLE)
_HELD = frozenset(
    s.value for s in (JobState.UPLOADING, JobState.STARTING, JobState.PRINTING, JobState.PAUSED)
)
_FILAMENT_PARTS = frozenset({"ams", "nozzle"})
# A subscription this deep rides out ~1 min of a 1,000-printer fleet's reports while a round
# or the database stalls; a lost event only delays a decision until the safety re-check.
_QUEUE_DEPTH = 65_536


@dataclass(frozen=True, slots=True)
class DispatcherOptions:
    """How the dispatcher behaves; the defaults suit a farm."""

    limits: StageLimits = field(default_factory=StageLimits)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    prestage: bool = True
    prestage_concurrency: int = 2
    recheck_s: float = 60.0
    round_gap_s: float = 0.1  # at most 10 rounds a second, whatever the rate of pokes
    color_tolerance: float = 0.0  # CIE76 ΔE between the file's and the tray's colour
    max_jobs_per_round: int = MAX_LIMIT  # the head of the queue a round considers
    storage_retry_s: float = 5.0  # start-up reconciliation retried while the database is down
    sd_cleanup: bool = True  # delete the queue's files from printers' cards once unneeded
    sd_keep_recent: int = DEFAULT_KEEP  # of those, the most recently printed kept per printer


def _utc_now() -> datetime:
    return datetime.now(UTC)


class Dispatcher:
    """The queue's engine: matching rounds, uploads and starts, tracking, watchdog, pre-staging."""

    def __init__(
        self,
        *,
        database: Database,
        fleet: Fleet,
        library: Library,
        wakeup: Wakeup,
        options: DispatcherOptions | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self._db = database
        self._fleet = fleet
        self._library = library
        self._wakeup = wakeup
        self.options = options or DispatcherOptions()
        self._clock = clock
        self._wall = wall_clock
        self.watchdog = Watchdog(clock)
        self.staging = Staging(
            fleet=fleet, library=library, wakeup=wakeup,
            concurrency=self.options.prestage_concurrency,
        )  # fmt: skip
        self.cleanup = SdCleanup(
            database=database, fleet=fleet, staging=self.staging, wakeup=wakeup,
            enabled=self.options.sd_cleanup, keep_recent=self.options.sd_keep_recent,
        )  # fmt: skip
        self.tracker = Tracker(
            database=database,
            fleet=fleet,
            watchdog=self.watchdog,
            staging=self.staging,
            limits=self.options.limits,
            policy=self.options.retry,
            wall_clock=wall_clock,
            wakeup=wakeup,
            clock=clock,
            cleanup=self.cleanup,
        )
        self.stats = DispatchStats()
        self._starter = Starter(
            fleet=fleet, library=library, tracker=self.tracker, watchdog=self.watchdog,
            staging=self.staging, limits=self.options.limits, stats=self.stats, clock=clock,
            cleanup=self.cleanup,
        )  # fmt: skip
        self.recovery: Recovery | None = None
        self._reasons: Mapping[str, tuple[CandidateReason, ...]] = MappingProxyType({})
        self._blobs: dict[str, BlobRecord] = {}  # by sha256: content-addressed, never changes
        self._models: dict[tuple[str, str], PrinterModel] = {}
        self._ready: dict[str, bool] = {}  # serial -> free at the last report
        self._ready_since: dict[str, float] = {}
        self._waiting = False  # the last round left jobs waiting
        self._subscription: Subscription | None = None
        self._task: asyncio.Task[None] | None = None
        self._group: asyncio.TaskGroup | None = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def running(self) -> bool:
        """True between `start()` and `stop()`."""
        return self._task is not None

    async def start(self) -> Recovery | None:
        """Reconcile jobs a previous process left on printers, then start dispatching.

        Returns what reconciliation found, or None when the database cannot be reached: the
        server still starts (its API answers 503s that say why) and reconciliation is retried
        in the background. Nothing is dispatched before it succeeds, so a job a previous
        process left printing is never started a second time.
        """
        if self._task is not None:
            return self.recovery
        # Subscribed before reconciling, so no report between the two is missed.
        self._subscription = self._fleet.bus.subscribe(kinds=_EVENTS, maxsize=_QUEUE_DEPTH)
        try:
            await self._recover()
        except StorageError as err:
            logger.warning(
                "queue not started: %s; retrying every %g s", err, self.options.storage_retry_s
            )
        self._task = asyncio.create_task(self._run(), name="dispatcher")
        return self.recovery

    async def _recover(self) -> None:
        self.recovery = await recover(
            database=self._db, fleet=self._fleet, tracker=self.tracker,
            watchdog=self.watchdog, limits=self.options.limits, wall_clock=self._wall,
        )  # fmt: skip
        self._wakeup.poke("dispatcher started")

    async def _recover_when_reachable(self) -> None:
        while self.recovery is None:
            await asyncio.sleep(self.options.storage_retry_s)
            try:
                await self._recover()
            except StorageError as err:
                logger.debug("queue still not started: %s", err)
        logger.info("the database is reachable again: the queue runs")

    async def stop(self) -> None:
        """Stop dispatching; uploads in flight are aborted, printers keep what they print."""
        task, self._task = self._task, None
        if self._subscription is not None:
            self._subscription.close()
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        if self.recovery is None:
            await self._recover_when_reachable()
        try:
            # Every task below catches its own errors; should one still escape, the group
            # ends and that is logged here (the process keeps serving everything else).
            async with asyncio.TaskGroup() as group:
                self._group = group
                group.create_task(self._intake(), name="dispatcher-events")
                group.create_task(self._rounds(), name="dispatcher-rounds")
                group.create_task(self._watch(), name="dispatcher-watchdog")
                group.create_task(self.tracker.follow(), name="dispatcher-tracker")
        except Exception:
            logger.exception("the dispatcher stopped: jobs are no longer started")
        finally:
            self._group = None
            await self.staging.aclose()
            await self.cleanup.aclose()

    # ------------------------------------------------------------------ reading

    def waiting_reasons(self, job_id: int) -> tuple[CandidateReason, ...]:
        """Why this job waits, one reason per printer, as of the last round (empty if not)."""
        return self._reasons.get(str(job_id), ())

    def attempt(self, job_id: int) -> Attempt | None:
        """The live attempt of a job this process runs."""
        return self.tracker.get(job_id)

    def _label(self, serial: str) -> str:
        try:
            return self._fleet.snapshot(serial).config.label
        except FleetError:
            return serial

    # ------------------------------------------------------------------ loops

    async def _intake(self) -> None:
        subscription = self._subscription
        if subscription is None:
            return
        async for event in subscription:
            try:
                self._on_event(event)
            except Exception:
                # The loop's boundary: one odd event must not stop dispatching.
                logger.exception("dispatcher: event %r not handled", event)

    def _on_event(self, event: Event) -> None:
        serial = event.serial
        tracker = self.tracker
        if isinstance(event, StateChanged):
            if tracker.holds(serial) is not None:
                tracker.mark(serial)
            elif "job" in event.changed or (self._waiting and event.changed & _FILAMENT_PARTS):
                self._printer_moved(serial, filament=bool(event.changed & _FILAMENT_PARTS))
        elif isinstance(event, ConnectionChanged):
            tracker.mark(serial)
            if event.state == ConnectionState.ONLINE.value:
                self._wakeup.poke(f"{serial} online")
        elif isinstance(event, PrintFinished | PrintFailed):
            if tracker.holds(serial) is None and self._group is not None:
                try:
                    state = self._fleet.snapshot(serial).state
                except FleetError:
                    return  # removed meanwhile
                if not tracker.ours_ended_last(serial, state):
                    outcome = "finished" if isinstance(event, PrintFinished) else "failed"
                    self._group.create_task(self._foreign_end(serial, outcome))
        elif isinstance(event, PrinterAdded):
            self._wakeup.poke(f"{serial} added")
        elif isinstance(event, PrinterRemoved):
            self._ready.pop(serial, None)
            self._ready_since.pop(serial, None)

    def _printer_moved(self, serial: str, *, filament: bool) -> None:
        """A printer without our job reported: poke when it became free or its filament moved."""
        try:
            state = self._fleet.snapshot(serial).state
        except FleetError:
            return
        gcode = state.job.gcode_state
        ready = gcode not in BUSY_STATES and gcode is not GcodeState.UNKNOWN
        was = self._ready.get(serial, False)
        self._ready[serial] = ready
        if ready and not was:
            self._wakeup.poke(f"{serial} ready")
        elif ready and filament and self._waiting:
            self._wakeup.poke(f"{serial} filament changed")

    async def _foreign_end(self, serial: str, outcome: str) -> None:
        try:
            await self.tracker.foreign_end(serial, outcome)
        except StorageError as err:
            logger.warning("%s: plate state not stored: %s", serial, err)
        except Exception:
            logger.exception("%s: plate state not stored", serial)

    async def _rounds(self) -> None:
        last = -math.inf
        while True:
            pokes = await self._wakeup.wait(self.options.recheck_s)
            try:
                for job_id in sorted(pokes.cancelled):
                    await self.tracker.cancel(job_id)
                if pokes.timed_out:
                    await self.tracker.recheck()
                gap = last + self.options.round_gap_s - self._clock()
                if gap > 0:
                    await asyncio.sleep(gap)  # pokes meanwhile fold into this round
                last = self._clock()
                await self._round()
            except (StorageError, FleetError) as err:
                logger.warning("dispatch round failed, retried on the next event: %s", err)
            except Exception:
                logger.exception("dispatch round failed; retried on the next event")

    async def _watch(self) -> None:
        while True:
            for expiry in await self.watchdog.expired():
                try:
                    await self.tracker.expire(expiry)
                except Exception:
                    logger.exception(
                        "watchdog: %s of job %d not handled", expiry.stage, expiry.job_id
                    )

    # ------------------------------------------------------------------ one round

    async def _round(self) -> None:
        async with self._db.session(readonly=True) as session:
            queue = await list_jobs(
                session, states=_DISPATCHABLE, limit=self.options.max_jobs_per_round
            )
            if not queue.items and not self._waiting:
                self._reasons = MappingProxyType({})
                return
            held = await list_jobs(session, states=_HELD, limit=MAX_LIMIT)
            plates = await list_plates(session)
            missing = {
                j.file_sha256
                for j in queue.items
                if j.file_sha256 is not None and j.file_sha256 not in self._blobs
            }
            if missing:
                self._blobs.update(await get_blobs(session, missing))
        started = time.thread_time()
        now = self._clock()
        requests, unusable = self._requests(queue.items)
        reserved = {j.printer_serial: str(j.id) for j in held.items if j.printer_serial}
        views = self._views(plates, reserved, now)
        plan = match(views, requests, now=now)
        jobs = {str(j.id): j for j in queue.items}
        files = {k: j.file_sha256 for k, j in jobs.items() if j.file_sha256 is not None}
        assignments: Sequence[Assignment] = plan.assignments
        if self.options.prestage and assignments:
            by_serial = {v.serial: v for v in views}
            assignments, passed = self.staging.prefer_held(
                assignments, by_serial, requests, files, now=now
            )
            if passed:
                self._wakeup.poke("jobs passed over for files already on printers")
        self.stats.match_cpu_s += time.thread_time() - started
        self.stats.rounds += 1
        self.stats.decisions += len(requests)
        self._reasons = plan.waiting
        self._waiting = bool(plan.waiting)
        await self._record_waiting(plan.waiting, unusable, jobs)
        if assignments:
            await self._claim(assignments, jobs)
        if self.options.prestage and self._group is not None:
            taken = {a.job_id for a in assignments}
            left = [r for r in requests if r.job_id not in taken]
            for serial, sha in self.staging.plan(
                views, left, files, now=now, spare=self._spare_uploads(),
                skip=self.cleanup.staging_skips(),
            ):  # fmt: skip
                self.staging.begin(serial, sha, self._group)
                # A file lands on the card: sweep it meanwhile (the printer prints for a while).
                self.cleanup.request(serial)

    def _spare_uploads(self) -> int:
        """Transfer slots no real upload is using or waiting for."""
        uploader = self._fleet.uploader
        if uploader is None:
            return 0
        real = sum(1 for a in self.tracker.attempts() if a.phase is Phase.UPLOADING)
        return uploader.max_concurrent - real - self.staging.in_flight_count

    def _requests(self, records: tuple[JobRecord, ...]) -> tuple[list[JobRequest], dict[str, str]]:
        requests: list[JobRequest] = []
        unusable: dict[str, str] = {}
        tolerance = self.options.color_tolerance
        for record in records:
            blob = self._blobs.get(record.file_sha256 or "")
            if blob is None:
                unusable[str(record.id)] = "cannot be dispatched: its file is not in the library"
                continue
            try:
                requests.append(job_request(record, blob, color_tolerance=tolerance))
            except (ProtocolError, ValueError) as err:
                unusable[str(record.id)] = f"cannot be dispatched: {err}"
        return requests, unusable

    def _views(
        self, plates: Mapping[str, object], reserved: dict[str, str], now: float
    ) -> list[PrinterView]:
        views: list[PrinterView] = []
        for snapshot in self._fleet.printers():
            config = snapshot.config
            serial = config.serial
            key = (serial, config.model)
            model = self._models.get(key)
            if model is None:
                try:
                    model = self._models[key] = model_of(config)
                except ProtocolError:
                    continue  # an unknown model cannot be matched; the farm says so elsewhere
            attempt = self.tracker.holds(serial)
            holder = str(attempt.job_id) if attempt is not None else reserved.get(serial)
            plate = plates.get(serial)
            cleared = True if plate is None else bool(getattr(plate, "cleared", True))
            view = printer_view(
                snapshot, model, plate_cleared=cleared, reserved_for=holder,
                ready_since=self._ready_since.get(serial),
            )  # fmt: skip
            free = (
                holder is None
                and cleared
                and view.online
                and snapshot.state.job.gcode_state not in BUSY_STATES
            )
            if free:
                self._ready_since.setdefault(serial, now)
            else:
                self._ready_since.pop(serial, None)
            views.append(view)
        return views

    async def _record_waiting(
        self,
        waiting: Mapping[str, tuple[CandidateReason, ...]],
        unusable: Mapping[str, str],
        jobs: Mapping[str, JobRecord],
    ) -> None:
        """Write the summary of each waiting job whose summary changed (few per round)."""
        changes: list[tuple[JobRecord, str]] = []
        for job_id, text in (
            *((k, wait_summary(v)) for k, v in waiting.items()),
            *unusable.items(),
        ):
            record = jobs.get(job_id)
            if record is not None and (record.state != "waiting" or record.reason != text):
                changes.append((record, text))
        if not changes:
            return
        async with self._db.session() as session:
            for record, text in changes:
                with contextlib.suppress(JobStateConflict):  # claimed or cancelled meanwhile
                    await change_state(
                        session, record.id, transition(JobState.WAITING, reason=text),
                        attempt=record.attempt, now=self._wall(),
                    )  # fmt: skip

    async def _claim(
        self, assignments: Sequence[Assignment], jobs: Mapping[str, JobRecord]
    ) -> None:
        claimed: list[tuple[JobRecord, Assignment]] = []
        async with self._db.session() as session:
            for assignment in assignments:
                try:
                    record = await change_state(
                        session, int(assignment.job_id), claim(assignment.serial), now=self._wall()
                    )
                except JobStateConflict:
                    continue  # cancelled, or claimed by another process
                claimed.append((record, assignment))
        group = self._group
        for record, assignment in claimed:
            blob = self._blobs[record.file_sha256 or ""]
            attempt = Attempt(
                job_id=record.id,
                attempt=record.attempt,
                serial=assignment.serial,
                printer=self._label(assignment.serial),
                batch=record.batch,
                copy_index=record.copy_index,
                name=record.name,
                sha256=blob.sha256,
                size=blob.size,
                plate=record.plate,
                filaments=blob.metadata.plate(record.plate).filaments,
                trays=assignment.trays,
            )
            self.tracker.add(attempt)
            self.stats.assignments += 1
            self._ready_since.pop(assignment.serial, None)
            if group is not None:
                attempt.task = group.create_task(
                    self._starter.run(attempt), name=f"start-{record.id}-{record.attempt}"
                )
