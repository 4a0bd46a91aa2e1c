"""Start-up reconciliation: jobs a previous process left on printers, brought back in line.

After a crash the database says where each job was when the process died; the printers say
what actually happened. Per state:

* `uploading` — `project_file` is only ever sent after `starting` is written, so nothing was
  started: the job goes back to the queue at once (its next claim is a new attempt);
* `starting` — the start may or may not have reached the printer. The attempt is tracked
  again under its task id (derived, not stored) and the printer's reports decide: our job in
  PREPARE/RUNNING → `printing`, FINISH → `awaiting_clear`, FAILED → `failed`; the printer
  seen online without it after the confirm limit → failed and queued again (it never began);
  the printer out of sight → wait, because it may be printing it;
* `printing`, `paused` — tracked again; the reports say how it went on while we were away
  (finished meanwhile → `awaiting_clear`, with the history row completed).

Nothing here sends a command: a job is never started twice, only recognised.
"""

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType

from bambufarm.fleet.errors import FleetError
from bambufarm.fleet.supervisor import Fleet
from bambufarm.jobs.attempt import Attempt, Phase
from bambufarm.jobs.history import print_for_attempt
from bambufarm.jobs.model import JobState, transition
from bambufarm.jobs.tracker import Tracker
from bambufarm.jobs.watchdog import Stage, StageLimits, Watchdog
from bambufarm.storage.db import Database
from bambufarm.storage.jobs import JobRecord, JobStateConflict, change_state, list_jobs
from bambufarm.storage.library import get_blobs
from bambufarm.storage.paging import MAX_LIMIT

logger = logging.getLogger(__name__)

_PHASES: Mapping[str, Phase] = MappingProxyType(
    {
        JobState.STARTING.value: Phase.STARTING,
        JobState.PRINTING.value: Phase.PRINTING,
        JobState.PAUSED.value: Phase.PAUSED,
    }
)
_LEFT = frozenset({JobState.UPLOADING.value, *_PHASES})


@dataclass(frozen=True, slots=True)
class Recovery:
    """What start-up reconciliation found."""

    requeued: tuple[int, ...]  # interrupted uploads, queued again
    resumed: tuple[int, ...]  # starting/printing/paused jobs tracked again


async def recover(
    *,
    database: Database,
    fleet: Fleet,
    tracker: Tracker,
    watchdog: Watchdog,
    limits: StageLimits,
    wall_clock: Callable[[], datetime],
) -> Recovery:
    """Requeue interrupted uploads and track jobs left starting or printing again."""
    left = await _jobs_left(database)
    requeued: list[int] = []
    resumed: list[int] = []
    async with database.session() as session:
        shas = {job.file_sha256 for job in left if job.file_sha256 is not None}
        blobs = await get_blobs(session, shas) if shas else {}
        for job in left:
            serial = job.printer_serial
            if job.state == JobState.UPLOADING.value or serial is None:
                where = f" to {serial}" if serial else ""
                reason = f"the server stopped during the upload{where}; queued again"
                try:
                    await change_state(
                        session, job.id, transition(JobState.QUEUED, reason=reason),
                        attempt=job.attempt, now=wall_clock(),
                    )  # fmt: skip
                except JobStateConflict as err:
                    logger.info("job %d not requeued: %s", job.id, err)
                    continue
                requeued.append(job.id)
                continue
            blob = blobs.get(job.file_sha256 or "")
            filaments = blob.metadata.plate(job.plate).filaments if blob is not None else ()
            existing = await print_for_attempt(session, job.id, job.attempt)
            attempt = Attempt(
                job_id=job.id,
                attempt=job.attempt,
                serial=serial,
                printer=_label(fleet, serial),
                batch=job.batch,
                copy_index=job.copy_index,
                name=job.name,
                sha256=job.file_sha256 or "",
                size=blob.size if blob is not None else 0,
                plate=job.plate,
                filaments=filaments,
                phase=_PHASES[job.state],
                recovered=True,
                confirmed=job.state != JobState.STARTING.value,
                print_id=existing.id if existing is not None else None,
                progress=job.progress,
            )
            tracker.add(attempt)
            if attempt.phase is Phase.STARTING:
                watchdog.arm(job.id, job.attempt, Stage.CONFIRM, limits.confirm_s)
            tracker.mark(serial)
            resumed.append(job.id)
    if requeued or resumed:
        logger.info(
            "recovered after a restart: %d upload(s) queued again, %d job(s) tracked again",
            len(requeued), len(resumed),
        )  # fmt: skip
    return Recovery(tuple(requeued), tuple(resumed))


async def _jobs_left(database: Database) -> list[JobRecord]:
    out: list[JobRecord] = []
    async with database.session(readonly=True) as session:
        while True:
            page = await list_jobs(session, states=_LEFT, offset=len(out), limit=MAX_LIMIT)
            out.extend(page.items)
            if not page.items or len(out) >= page.total:
                return out


def _label(fleet: Fleet, serial: str) -> str:
    try:
        return fleet.snapshot(serial).config.label
    except FleetError:
        return serial
