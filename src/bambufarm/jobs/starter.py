"""`Starter`: one claimed job's way onto its printer — the file, `starting`, then `project_file`.

In this order, and only in this order, so that a crash anywhere leaves a state the next
process can reconcile (see `reconcile`):

1. the file: nothing to do when the printer holds it (pre-staged, or an earlier copy), even
   while another file is being pre-staged to it; otherwise the pre-stage of this file is
   awaited, or one of another file aborted, and the file uploaded through the fleet's
   `Uploader` (one transfer per printer, a global limit) under the watchdog's upload limit;
2. `starting` written (compare-and-set on the attempt) — the write-ahead record;
3. `project_file` sent once, with the attempt's task id; never re-sent. A refusal fails the
   attempt (the policy may retry it); no answer leaves it to the printer's reports.
"""

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from bambufarm.fleet.commands import CommandStatus
from bambufarm.fleet.errors import FleetError
from bambufarm.fleet.supervisor import Fleet
from bambufarm.jobs.attempt import Attempt
from bambufarm.jobs.library import Library
from bambufarm.jobs.sd_cleanup import SdCleanup
from bambufarm.jobs.staging import Staging
from bambufarm.jobs.tracker import Tracker
from bambufarm.jobs.watchdog import Stage, StageLimits, Watchdog
from bambufarm.protocol.errors import ProtocolError
from bambufarm.storage.errors import StorageError

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class DispatchStats:
    """Counters for the bench and the metrics."""

    rounds: int = 0
    decisions: int = 0  # jobs considered, summed over rounds
    assignments: int = 0
    match_cpu_s: float = 0.0  # CPU in building views and matching (no database time)
    uploads: int = 0
    upload_bytes: int = 0
    upload_s: float = 0.0  # summed durations of the transfers
    starts_sent: int = 0
    start_sent_at: dict[str, float] = field(default_factory=dict)  # serial -> last send, clock
    # (serial, clock at project_file, how the file got there: "held", "staging", "upload"),
    # the latest starts only: a server runs for months.
    starts: deque[tuple[str, float, str]] = field(default_factory=lambda: deque(maxlen=10_000))


class Starter:
    """Uploads and starts claimed attempts."""

    def __init__(
        self,
        *,
        fleet: Fleet,
        library: Library,
        tracker: Tracker,
        watchdog: Watchdog,
        staging: Staging,
        limits: StageLimits,
        stats: DispatchStats,
        clock: Callable[[], float],
        cleanup: SdCleanup | None = None,
    ) -> None:
        self._fleet = fleet
        self._library = library
        self._tracker = tracker
        self._watchdog = watchdog
        self._staging = staging
        self._limits = limits
        self._stats = stats
        self._clock = clock
        self._cleanup = cleanup

    async def run(self, attempt: Attempt) -> None:
        """Upload (unless the printer has the file), write `starting`, send `project_file`."""
        try:
            await self._run(attempt)
        except asyncio.CancelledError:
            raise
        except Exception:
            # The task's boundary (even failing the attempt failed, e.g. the database is
            # down): logged; the job is reconciled by the safety re-check or a restart.
            logger.exception("job %d: start on %s not completed", attempt.job_id, attempt.printer)

    async def _run(self, attempt: Attempt) -> None:
        serial, label = attempt.serial, attempt.printer
        cleanup = self._cleanup
        try:
            if cleanup is not None:
                # A sweep of this card must not delete the file this start is about to use.
                await cleanup.settle(serial)
            handle = self._fleet.get(serial)
            how = "held"
            if not self._staging.holds(serial, attempt.sha256, handle.state):
                # Only a start that must upload waits for (or aborts) a pre-stage in flight:
                # an aborted transfer whose bytes are all sent still waits for the printer.
                how = "staging" if self._staging.in_flight(serial) == attempt.sha256 else "upload"
                await self._staging.settle(serial, attempt.sha256)
                if not self._staging.holds(serial, attempt.sha256, handle.state):
                    how = "upload"
                    if cleanup is not None:
                        # Room on the card before the file lands: a listing and a delete per
                        # old file (~1 s each on a printer) before minutes of upload.
                        await cleanup.sweep(serial, keep=(attempt.remote,))
                    await self._upload(attempt)
            if not await self._tracker.starting(attempt) or attempt.cancel_requested:
                return  # moved on, or cancelled while `starting` was written: nothing sent
            trays = [-1] * max((c.slot for c in attempt.trays), default=0)
            for choice in attempt.trays:
                trays[choice.slot - 1] = choice.tray_id
            self._stats.starts_sent += 1
            self._stats.start_sent_at[serial] = now = self._clock()
            self._stats.starts.append((serial, now, how))
            attempt.reports_at_send = handle.state.report_count
            result = await handle.start_print(
                attempt.remote, plate=attempt.plate, ams_mapping=trays or None,
                task_id=attempt.task_id, subtask_name=attempt.name, timeout=self._limits.ack_s,
            )  # fmt: skip
        except asyncio.CancelledError:
            raise
        except (FleetError, StorageError, ProtocolError, OSError) as err:
            await self._tracker.start_failed(attempt, f"{label}: {err}")
            return
        except Exception as err:
            # The task's boundary: a bug must fail this attempt, not the dispatcher.
            logger.exception("job %d: start on %s failed", attempt.job_id, label)
            await self._tracker.start_failed(attempt, f"{label}: internal error {err!r}")
            return
        if result.ok:
            attempt.acknowledged = True
            logger.info("job %d: %s accepted the start", attempt.job_id, label)
        elif result.status is CommandStatus.REJECTED or not result.sent:
            await self._tracker.start_failed(attempt, f"{label} refused the start: {result.reason}")
        else:
            # Sent, but no clear answer: only the printer's reports can say; the watchdog waits.
            logger.warning(
                "job %d: start on %s unconfirmed: %s", attempt.job_id, label, result.reason
            )

    async def _upload(self, attempt: Attempt) -> None:
        path = await self._library.local_path(attempt.sha256)
        limit = self._limits.upload_limit(attempt.size)
        self._watchdog.arm(attempt.job_id, attempt.attempt, Stage.UPLOAD, limit)
        tracker = self._tracker

        def progress(sent: int, total: int) -> None:
            tracker.upload_progress(attempt, sent, total)

        result = await self._fleet.get(attempt.serial).upload(path, attempt.remote, progress)
        if self._watchdog.stage(attempt.job_id) is Stage.UPLOAD:
            self._watchdog.disarm(attempt.job_id)
        self._staging.add(attempt.serial, attempt.sha256)
        self._stats.uploads += 1
        self._stats.upload_bytes += result.bytes
        self._stats.upload_s += result.seconds
