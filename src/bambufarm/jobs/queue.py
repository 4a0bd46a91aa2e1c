"""`JobQueue`: the print queue as the API and the CLI use it — add, list, reorder, cancel, retry.

A service over `storage.jobs`: every state change is built by `jobs.model` and applied as a
compare-and-set, and every change that could start something pokes the dispatcher (a job
added, moved or retried). A cancelled job that a printer holds is handed to the dispatcher,
which stops the print or aborts the upload; the job is cancelled in the database first, so a
crash in between cannot start it again.

Why a job waits — one reason per candidate printer — is the dispatcher's knowledge (it
changes every round) and is read from it (`Dispatcher.waiting_reasons`); the job's own
`reason` column holds the summary.
"""

import logging
from collections.abc import Callable, Collection
from datetime import UTC, datetime

from bambufarm.jobs.model import ON_PRINTER, Job, JobSpec, JobState, cancel, retry
from bambufarm.jobs.wakeup import Wakeup
from bambufarm.storage.db import Database
from bambufarm.storage.jobs import (
    JobOrder,
    add_jobs,
    change_state,
    duplicate_job,
    get_job,
    list_jobs,
    reorder_job,
)
from bambufarm.storage.paging import DEFAULT_LIMIT, Page
from bambufarm.storage.unset import UNSET, Unset

logger = logging.getLogger(__name__)


def _utc_now() -> datetime:
    return datetime.now(UTC)


class JobQueue:
    """Queue, inspect and change print jobs; wakes the dispatcher when it should look."""

    def __init__(
        self,
        database: Database,
        wakeup: Wakeup,
        *,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self._db = database
        self._wakeup = wakeup
        self._clock = clock

    async def add(self, spec: JobSpec) -> tuple[Job, ...]:
        """Queue `spec.copies` jobs, one per copy (a batch); checked against the library file."""
        async with self._db.session() as session:
            records = await add_jobs(session, spec.to_new_job(), now=self._clock())
        jobs = tuple(Job.from_record(r) for r in records)
        logger.info(
            "queued %d cop%s of %r (jobs %d-%d)",
            len(jobs), "y" if len(jobs) == 1 else "ies", spec.name, jobs[0].id, jobs[-1].id,
        )  # fmt: skip
        self._wakeup.poke("job added")
        return jobs

    async def get(self, job_id: int) -> Job:
        """One job (`JobNotFound` if there is none)."""
        async with self._db.session(readonly=True) as session:
            return Job.from_record(await get_job(session, job_id))

    async def list(
        self,
        *,
        states: Collection[JobState] | None = None,
        printer_serial: str | None = None,
        batch: str | None = None,
        file_sha256: str | None = None,
        order: JobOrder = "queue",
        offset: int = 0,
        limit: int = DEFAULT_LIMIT,
    ) -> Page[Job]:
        """Jobs in queue order (or newest first), filtered by state, printer, batch or file."""
        async with self._db.session(readonly=True) as session:
            page = await list_jobs(
                session,
                states=None if states is None else {s.value for s in states},
                printer_serial=printer_serial, batch=batch, file_sha256=file_sha256,
                order=order, offset=offset, limit=limit,
            )  # fmt: skip
        return Page(tuple(Job.from_record(r) for r in page.items), page.total, offset, limit)

    async def reorder(
        self,
        job_id: int,
        *,
        priority: int | Unset = UNSET,
        before: int | Unset | None = UNSET,
    ) -> Job:
        """Change a job's priority and/or move it before job `before` (None: to the end)."""
        async with self._db.session() as session:
            record = await reorder_job(
                session, job_id, priority=priority, before=before, now=self._clock()
            )
        self._wakeup.poke("queue reordered")
        return Job.from_record(record)

    async def cancel(self, job_id: int, *, by: str) -> Job:
        """Cancel an unfinished job; a printer holding it is stopped by the dispatcher.

        A finished job is refused with `JobStateConflict`, which names its state.
        """
        async with self._db.session() as session:
            record = await change_state(
                session, job_id, cancel(f"cancelled by {by}"), now=self._clock()
            )
        job = Job.from_record(record)
        logger.info("job %d cancelled by %s", job_id, by)
        self._wakeup.job_cancelled(job_id)
        return job

    async def retry(self, job_id: int, *, by: str) -> Job:
        """Queue a failed or cancelled job again; its next start is a new attempt."""
        async with self._db.session() as session:
            record = await change_state(
                session, job_id, retry(f"queued again by {by}"), now=self._clock()
            )
        self._wakeup.poke("job retried")
        return Job.from_record(record)

    async def duplicate(
        self, job_id: int, *, copies: int = 1, created_by: str | None = None
    ) -> tuple[Job, ...]:
        """Queue `copies` new jobs printing what job `job_id` prints."""
        async with self._db.session() as session:
            records = await duplicate_job(
                session, job_id, copies=copies, created_by=created_by, now=self._clock()
            )
        self._wakeup.poke("job added")
        return tuple(Job.from_record(r) for r in records)

    async def on_printer(self, serial: str) -> tuple[Job, ...]:
        """The jobs a printer holds (uploading to printing, or awaiting its plate clear)."""
        async with self._db.session(readonly=True) as session:
            page = await list_jobs(
                session, states={s.value for s in ON_PRINTER}, printer_serial=serial
            )
        return tuple(Job.from_record(r) for r in page.items)
