"""`Tracker`: every attempt from its upload to its end, written down as the printer reports it.

The tracker holds the attempts this process runs (one per printer at most) and moves their
jobs along what the printers say (`attempt.observe`), state-based rather than event-based: a
burst of reports or a lost event costs nothing, because each look reads the printer's latest
state. Per sighting:

* PREPARE/RUNNING → `printing` (history row started), with progress, layer and time left
  written when the whole percent changes (at most every `PROGRESS_EVERY_S`); PREPARE arms
  the watchdog's prepare limit;
* PAUSE → `paused`; FINISH → `awaiting_clear` (or `done` when the plate clears itself) and
  the plate gate closes; FAILED → `failed` with the printer's decoded reason, the gate closes,
  and the policy may queue the job again (a new attempt, never the same one twice).

A job is never started twice: a failed start is retried only once the printer has been seen
not running it, and a job whose printer cannot be seen stays where it is.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime

from bambufarm.fleet.errors import FleetError
from bambufarm.fleet.supervisor import Fleet
from bambufarm.jobs.attempt import Attempt, Phase, Sighting, failure_text, is_cancel_error, observe
from bambufarm.jobs.closing import PATHS, Ending, RetryPolicy, close_attempt, queue_again
from bambufarm.jobs.history import PrintOutcome, print_for_attempt, start_print
from bambufarm.jobs.model import JobState, fail, transition
from bambufarm.jobs.sd_cleanup import SdCleanup
from bambufarm.jobs.staging import Staging
from bambufarm.jobs.wakeup import Wakeup
from bambufarm.jobs.watchdog import (
    ConfirmVerdict,
    Expiry,
    Stage,
    StageLimits,
    Watchdog,
    confirm_reason,
    confirm_verdict,
    prepare_reason,
    stop_reason,
    upload_reason,
)
from bambufarm.protocol.state import PrinterState
from bambufarm.storage.db import Database
from bambufarm.storage.errors import StorageError
from bambufarm.storage.jobs import JobStateConflict, change_state, get_job, update_progress
from bambufarm.storage.plates import mark_ended

logger = logging.getLogger(__name__)

_P, _Z = JobState.PRINTING, JobState.PAUSED
# Progress is written when the whole percent changes, at most this often per job: a 2-hour
# print moves a percent every 72 s anyway, while a farm of short prints (or a compressed
# simulation) must not turn every report into a database write.
PROGRESS_EVERY_S = 5.0
# print_error of an unreadable job file (protocol.md §8.2): the staged copy is unusable.
_FILE_ERROR = 0x0500_C010


class Tracker:
    """The attempts this process runs, and what their printers report about them."""

    def __init__(
        self,
        *,
        database: Database,
        fleet: Fleet,
        watchdog: Watchdog,
        staging: Staging,
        limits: StageLimits,
        policy: RetryPolicy,
        wall_clock: Callable[[], datetime],
        wakeup: Wakeup,
        clock: Callable[[], float],
        cleanup: SdCleanup | None = None,
    ) -> None:
        self._db = database
        self._fleet = fleet
        self._watchdog = watchdog
        self._staging = staging
        self._limits = limits
        self._policy = policy
        self._wall = wall_clock
        self._clock = clock
        self._wakeup = wakeup
        self._cleanup = cleanup
        self._by_job: dict[int, Attempt] = {}
        self._by_serial: dict[str, Attempt] = {}
        self._ended: dict[str, int] = {}  # serial -> task id of our attempt that ended last
        self._dirty: set[str] = set()
        self._wake = asyncio.Event()

    # ------------------------------------------------------------------ bookkeeping

    def __len__(self) -> int:
        return len(self._by_job)

    def add(self, attempt: Attempt) -> None:
        """Track a claimed (or recovered) attempt."""
        self._by_job[attempt.job_id] = attempt
        self._by_serial[attempt.serial] = attempt

    def holds(self, serial: str) -> Attempt | None:
        """The attempt running on this printer, if any."""
        return self._by_serial.get(serial)

    def get(self, job_id: int) -> Attempt | None:
        """The attempt of this job, if this process runs it."""
        return self._by_job.get(job_id)

    def attempts(self) -> tuple[Attempt, ...]:
        """Every attempt tracked now."""
        return tuple(self._by_job.values())

    def ours_ended_last(self, serial: str, state: PrinterState) -> bool:
        """True when the printer's ended job is the attempt of ours that ended there last."""
        task = self._ended.get(serial)
        return task is not None and str(task) in (state.job.task_id, state.job.subtask_id)

    def mark(self, serial: str) -> None:
        """Look at this printer's attempt again soon (its state or upload moved)."""
        if serial in self._by_serial:
            self._dirty.add(serial)
            self._wake.set()

    def upload_progress(self, attempt: Attempt, sent: int, total: int) -> None:
        """Called as an upload advances; the percent is written in steps of 5."""
        attempt.uploaded = sent
        if total > 0 and sent * 20 // total != attempt.recorded_upload // 5:
            self.mark(attempt.serial)

    async def follow(self) -> None:
        """Forever: look at every printer marked since the last look."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            serials, self._dirty = self._dirty, set()
            for serial in serials:
                attempt = self._by_serial.get(serial)
                if attempt is None:
                    continue
                try:
                    await self._guarded(self.observe(attempt), attempt)
                except Exception:
                    # The loop's boundary: a bug with one attempt must not stop the others.
                    logger.exception("job %d on %s not followed", attempt.job_id, serial)

    async def _guarded(self, work: Awaitable[None], attempt: Attempt) -> None:
        try:
            await work
        except (StorageError, FleetError) as err:
            # The database (or the printer's removal) is the operator's to fix; the next
            # report or the safety re-check tries again.
            logger.warning("job %d on %s not updated: %s", attempt.job_id, attempt.serial, err)

    # ------------------------------------------------------------------ the printer's word

    async def observe(self, attempt: Attempt) -> None:
        """Move the attempt's job along what its printer reports now."""
        async with attempt.lock:
            if self._by_job.get(attempt.job_id) is not attempt:
                return
            if attempt.phase is Phase.UPLOADING:
                await self._record_upload(attempt)
                return
            try:
                state = self._fleet.snapshot(attempt.serial).state
            except FleetError:
                return  # removed from the fleet: nothing to see until it is back
            await self._apply(attempt, observe(attempt, state.job), state)

    async def _apply(self, attempt: Attempt, seen: Sighting, state: PrinterState) -> None:
        phase = attempt.phase
        if phase is Phase.STOPPING:
            if seen in (Sighting.FAILED, Sighting.IDLE, Sighting.ELSEWHERE, Sighting.FINISHED):
                await self._end_stopped(attempt, seen, state)
            return
        match seen:
            case Sighting.PREPARING | Sighting.RUNNING:
                await self._printing(attempt, state, preparing=seen is Sighting.PREPARING)
            case Sighting.PAUSED:
                if phase is not Phase.PAUSED:
                    await self._confirm(attempt, state)
                    reason = failure_text(state.print_error) if state.print_error else None
                    if await self._move(attempt, PATHS.get((attempt.phase, _Z), ()), reason):
                        attempt.phase = Phase.PAUSED
                        self._watchdog.disarm(attempt.job_id)  # a pause waits for a person
            case Sighting.FINISHED:
                await self._finished(attempt, state)
            case Sighting.FAILED | Sighting.IDLE:
                await self._failed(attempt, state, seen)
            case Sighting.ELSEWHERE if attempt.confirmed:
                shows = _describe(state)
                reason = f"{attempt.printer} now reports {shows}; this job's outcome is unknown"
                ending = Ending(PrintOutcome.FAILED, reason, _progress(state, attempt), True)
                await self._end(attempt, ending, retry=False)
            case _:
                return  # not started yet, or nothing that tells: the watchdog keeps time

    async def _printing(self, attempt: Attempt, state: PrinterState, *, preparing: bool) -> None:
        if attempt.phase is not Phase.PRINTING:
            await self._confirm(attempt, state)
            if not await self._move(attempt, PATHS.get((attempt.phase, _P), ())):
                return
            attempt.phase = Phase.PRINTING
        watched = self._watchdog.stage(attempt.job_id)
        if preparing and watched is not Stage.PREPARE:
            self._watchdog.arm(
                attempt.job_id, attempt.attempt, Stage.PREPARE, self._limits.prepare_s
            )
        elif not preparing and watched is not None:
            self._watchdog.disarm(attempt.job_id)
        job = state.job
        now = self._clock()
        if (
            not preparing
            and job.progress is not None
            and job.progress != attempt.progress
            and (now - attempt.progress_at >= PROGRESS_EVERY_S or job.progress >= 100)
        ):
            remaining = None if job.remaining_minutes is None else job.remaining_minutes * 60
            async with self._db.session() as session:
                await update_progress(
                    session, attempt.job_id, attempt=attempt.attempt,
                    states={JobState.PRINTING.value}, progress=max(0, min(job.progress, 100)),
                    layer=job.layer, remaining_s=remaining, now=self._wall(),
                )  # fmt: skip
            attempt.progress = job.progress
            attempt.progress_at = now

    async def _finished(self, attempt: Attempt, state: PrinterState) -> None:
        await self._confirm(attempt, state)
        ending = Ending(PrintOutcome.DONE, None, 100, plate_used=True)
        await self._end(attempt, ending, retry=False)

    async def _failed(self, attempt: Attempt, state: PrinterState, seen: Sighting) -> None:
        error = state.print_error
        if is_cancel_error(error):
            reason = "stopped at the printer or by another client"
            ending = Ending(PrintOutcome.CANCELLED, reason, _progress(state, attempt), True)
            await self._end(attempt, ending, retry=False)
            return
        if seen is Sighting.IDLE:
            reason = f"{attempt.printer} went idle " + (
                "during the print" if attempt.confirmed else "without starting the job"
            )
        else:
            reason = f"{attempt.printer} failed the job: {failure_text(error)}"
        if error == _FILE_ERROR:
            self._staging.forget(attempt.serial, attempt.sha256)  # unreadable: upload it again
        again = not attempt.confirmed or self._policy.retry_print_failures
        # A job that failed on the printer may have left anything on the plate; one that
        # merely went idle without beginning left nothing.
        used = seen is Sighting.FAILED or attempt.confirmed
        ending = Ending(PrintOutcome.FAILED, reason, _progress(state, attempt), plate_used=used)
        await self._end(attempt, ending, retry=again)

    async def _confirm(self, attempt: Attempt, state: PrinterState) -> None:
        """The printer shows the attempt as its own: the print has begun; record it once."""
        if attempt.confirmed and attempt.print_id is not None:
            return
        attempt.confirmed = True
        if self._watchdog.stage(attempt.job_id) is Stage.CONFIRM:
            self._watchdog.disarm(attempt.job_id)
        async with self._db.session() as session:
            existing = await print_for_attempt(session, attempt.job_id, attempt.attempt)
            if existing is None:
                existing = await start_print(
                    session, printer_serial=attempt.serial, file_name=attempt.name,
                    plate=attempt.plate, filaments=attempt.filaments, started_at=self._wall(),
                    file_sha256=attempt.sha256, job_id=attempt.job_id, attempt=attempt.attempt,
                )  # fmt: skip
        attempt.print_id = existing.id
        logger.info("job %d started on %s", attempt.job_id, attempt.printer)
        # A printing printer may now receive its next job's file (pre-staging).
        self._wakeup.poke(f"{attempt.serial} printing")

    # ------------------------------------------------------------------ endings

    async def _end(self, attempt: Attempt, ending: Ending, *, retry: bool) -> None:
        """Close the attempt (job state, history, plate gate), then maybe queue it again."""
        now = self._wall()
        async with self._db.session() as session:
            moved = await close_attempt(session, attempt, ending, now=now)
            if moved and retry and ending.outcome is PrintOutcome.FAILED:
                reason = ending.reason or "failed"
                await queue_again(session, attempt, reason, self._policy, now=now)
        self._forget(attempt)
        self._ended[attempt.serial] = attempt.task_id
        if self._cleanup is not None:
            # The job is over: the card's older files of the queue may go (in the background).
            self._cleanup.request(attempt.serial)
        logger.info(
            "job %d on %s ended: %s%s", attempt.job_id, attempt.printer, ending.outcome.value,
            f" ({ending.reason})" if ending.reason else "",
        )  # fmt: skip

    async def _end_stopped(self, attempt: Attempt, seen: Sighting, state: PrinterState) -> None:
        """A job we stopped is stopped: record it; retry it if it was the watchdog's stop."""
        if seen is Sighting.FINISHED:
            outcome = PrintOutcome.DONE  # it finished before the stop arrived
        elif attempt.stop_reason is None:
            outcome = PrintOutcome.CANCELLED
        else:
            outcome = PrintOutcome.FAILED
        ending = Ending(
            outcome, attempt.stop_reason or "cancelled", _progress(state, attempt),
            plate_used=seen is not Sighting.ELSEWHERE and attempt.confirmed, move_job=False,
        )  # fmt: skip
        await self._end(attempt, ending, retry=False)
        if attempt.stop_reason is not None:
            async with self._db.session() as session:
                await queue_again(
                    session, attempt, attempt.stop_reason, self._policy, now=self._wall()
                )

    async def start_failed(self, attempt: Attempt, reason: str) -> None:
        """The file never reached the printer, or the printer refused the start: fail, retry."""
        async with attempt.lock:
            if self._by_job.get(attempt.job_id) is not attempt:
                return
            logger.warning("job %d on %s: %s", attempt.job_id, attempt.printer, reason)
            # Nothing printed: no history row, no plate to clear.
            ending = Ending(PrintOutcome.FAILED, reason, None, plate_used=False)
            await self._end(attempt, ending, retry=True)

    async def starting(self, attempt: Attempt) -> bool:
        """Write `starting` before `project_file` goes out; False if the job moved on."""
        async with attempt.lock:
            if self._by_job.get(attempt.job_id) is not attempt or attempt.cancel_requested:
                return False
            try:
                async with self._db.session() as session:
                    await change_state(
                        session, attempt.job_id, transition(JobState.STARTING),
                        attempt=attempt.attempt, now=self._wall(),
                    )  # fmt: skip
            except JobStateConflict as err:
                logger.info("job %d not started: %s", attempt.job_id, err)
                self._forget(attempt)
                return False
            attempt.phase = Phase.STARTING
            limit = self._limits.ack_s + self._limits.confirm_s
            self._watchdog.arm(attempt.job_id, attempt.attempt, Stage.CONFIRM, limit)
            return True

    def _forget(self, attempt: Attempt) -> None:
        self._by_job.pop(attempt.job_id, None)
        if self._by_serial.get(attempt.serial) is attempt:
            del self._by_serial[attempt.serial]
        self._watchdog.disarm(attempt.job_id)
        task = attempt.task
        if task is not None and task is not asyncio.current_task() and not task.done():
            task.cancel()
        # The printer left our hands: the dispatcher may give it the next job.
        self._wakeup.poke(f"{attempt.serial} free")

    # ------------------------------------------------------------------ the clock and the operator

    async def expire(self, expiry: Expiry) -> None:
        """A stage ran out of time: fail, stop or keep waiting, per stage."""
        attempt = self._by_job.get(expiry.job_id)
        if attempt is None or attempt.attempt != expiry.attempt:
            return
        await self._guarded(self._expire(attempt, expiry), attempt)

    async def _expire(self, attempt: Attempt, expiry: Expiry) -> None:
        limit = expiry.limit
        if expiry.stage is Stage.UPLOAD:
            total = attempt.size
            await self.start_failed(
                attempt, upload_reason(attempt.printer, limit, attempt.uploaded, total)
            )
            return
        async with attempt.lock:
            if self._by_job.get(attempt.job_id) is not attempt:
                return
            snapshot = self._fleet.snapshot(attempt.serial)
            state = snapshot.state
            seen = observe(attempt, state.job)
            if expiry.stage is Stage.STOP:
                reason = stop_reason(attempt.printer, limit)
                logger.warning("job %d: %s", attempt.job_id, reason)
                self._forget(attempt)
                return
            if expiry.stage is Stage.PREPARE and seen is Sighting.PREPARING:
                reason = prepare_reason(attempt.printer, limit, attempt.trays_text())
                await self._stop(attempt, reason)
                return
            if expiry.stage is Stage.CONFIRM and seen in (Sighting.UNKNOWN, Sighting.ELSEWHERE):
                known = state.report_count > 0 and state.job.gcode_state.value not in (
                    "UNKNOWN", "INIT",
                )  # fmt: skip
                verdict = confirm_verdict(
                    online=snapshot.connection.connected, state_known=known,
                    reported_since=state.report_count > attempt.reports_at_send,
                )  # fmt: skip
                if verdict is ConfirmVerdict.WAIT:
                    # Out of sight: it may be printing the job. Look again after another limit.
                    self._watchdog.arm(attempt.job_id, attempt.attempt, Stage.CONFIRM, limit)
                    return
                reason = confirm_reason(
                    attempt.printer, limit, acknowledged=attempt.acknowledged,
                    shows=_describe(state),
                )  # fmt: skip
                ending = Ending(PrintOutcome.FAILED, reason, None, plate_used=False)
                await self._end(attempt, ending, retry=True)
                return
            await self._apply(attempt, seen, state)  # the stage moved on: act on what it shows

    async def cancel(self, job_id: int) -> None:
        """The operator cancelled the job: abort its upload or stop its printer."""
        attempt = self._by_job.get(job_id)
        if attempt is None:
            return
        async with attempt.lock:
            if self._by_job.get(job_id) is not attempt or attempt.phase is Phase.STOPPING:
                return
            attempt.cancel_requested = True
            if attempt.phase is Phase.UPLOADING:
                self._forget(attempt)  # cancels the upload; nothing reached the printer's queue
                return
            await self._stop(attempt, None)

    async def _stop(self, attempt: Attempt, reason: str | None) -> None:
        """Stop the attempt on its printer (`reason` None: the operator cancelled it)."""
        if reason is not None:
            try:
                async with self._db.session() as session:
                    await change_state(
                        session, attempt.job_id, fail(reason), attempt=attempt.attempt,
                        now=self._wall(),
                    )  # fmt: skip
            except JobStateConflict as err:
                logger.info("job %d: %s", attempt.job_id, err)
        attempt.phase = Phase.STOPPING
        attempt.stop_reason = reason
        self._watchdog.arm(attempt.job_id, attempt.attempt, Stage.STOP, self._limits.stop_s)
        result = await self._fleet.get(attempt.serial).stop()
        logger.info("job %d: stop sent to %s: %s", attempt.job_id, attempt.printer, result.reason)

    async def recheck(self) -> None:
        """The slow safety pass: catch cancellations from elsewhere and missed reports."""
        for attempt in self.attempts():
            try:
                async with self._db.session(readonly=True) as session:
                    record = await get_job(session, attempt.job_id)
            except StorageError as err:
                logger.warning("re-check of job %d skipped: %s", attempt.job_id, err)
                continue
            if record.state == JobState.CANCELLED.value and attempt.phase is not Phase.STOPPING:
                await self.cancel(attempt.job_id)
            else:
                await self._guarded(self.observe(attempt), attempt)

    async def foreign_end(self, serial: str, outcome: str) -> None:
        """A print not from the queue ended on this printer: its plate needs clearing too."""
        async with self._db.session() as session:
            await mark_ended(session, serial, outcome=outcome, job_id=None, now=self._wall())
        logger.info("%s: a print from outside the queue %s; plate to be cleared", serial, outcome)

    async def _record_upload(self, attempt: Attempt) -> None:
        if attempt.size <= 0:
            return
        percent = min(100, attempt.uploaded * 100 // attempt.size) // 5 * 5
        if percent == attempt.recorded_upload:
            return
        async with self._db.session() as session:
            await update_progress(
                session, attempt.job_id, attempt=attempt.attempt,
                states={JobState.UPLOADING.value}, progress=percent, now=self._wall(),
            )  # fmt: skip
        attempt.recorded_upload = percent

    async def _move(
        self, attempt: Attempt, path: Iterable[JobState], reason: str | None = None
    ) -> bool:
        """Apply job state steps; on a conflict (cancelled meanwhile) stop the printer."""
        steps = tuple(path)
        if not steps:
            return True
        try:
            async with self._db.session() as session:
                for step in steps:
                    change = transition(step, reason=reason) if reason else transition(step)
                    await change_state(
                        session, attempt.job_id, change, attempt=attempt.attempt, now=self._wall()
                    )
        except JobStateConflict as err:
            logger.info("job %d: %s; stopping it on %s", attempt.job_id, err, attempt.printer)
            attempt.cancel_requested = True
            await self._stop(attempt, None)
            return False
        return True


def _describe(state: PrinterState) -> str:
    job = state.job
    name = job.subtask_name or job.file or ""
    what = job.gcode_state.value
    return f"{what} with {name!r}" if name and what != "IDLE" else what


def _progress(state: PrinterState, attempt: Attempt) -> int | None:
    progress = state.job.progress
    return progress if progress is not None else attempt.progress
