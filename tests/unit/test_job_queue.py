"""The queue service on an in-memory SQLite database: every change that could start something
wakes the dispatcher, cancellations are handed to it by job, and refusals say why."""

import hashlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from bambufarm.jobs.model import JobSpec, JobState, claim, fail, transition
from bambufarm.jobs.queue import JobQueue
from bambufarm.jobs.wakeup import Wakeup
from bambufarm.protocol.threemf import read_3mf
from bambufarm.storage.db import Database, open_database
from bambufarm.storage.jobs import JobNotFound, JobStateConflict, change_state
from bambufarm.storage.library import put_blob
from tests.support.threemf_factory import build_gcode_3mf

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
P1S = "01P00A000000001"


@pytest.fixture
async def memory_db() -> AsyncIterator[Database]:
    db = await open_database("sqlite+aiosqlite:///:memory:")
    try:
        yield db
    finally:
        await db.aclose()


async def stored_file(db: Database) -> str:
    data = build_gcode_3mf()
    sha = hashlib.sha256(data).hexdigest()
    async with db.session() as s:
        await put_blob(s, sha, len(data), read_3mf(data), now=T0)
    return sha


async def test_adding_and_moving_jobs_wakes_the_dispatcher(memory_db: Database) -> None:
    wakeup = Wakeup()
    queue = JobQueue(memory_db, wakeup, clock=lambda: T0)
    sha = await stored_file(memory_db)
    first = await queue.add(JobSpec(sha, "clip", copies=2))
    assert [j.copy_index for j in first] == [1, 2]
    assert wakeup.take().reasons == {"job added"}
    (late,) = await queue.add(JobSpec(sha, "late"))
    wakeup.take()
    moved = await queue.reorder(late.id, before=first[0].id)
    assert wakeup.take().reasons == {"queue reordered"}
    page = await queue.list(states={JobState.QUEUED})
    assert [j.id for j in page.items] == [moved.id, first[0].id, first[1].id]
    copies = await queue.duplicate(late.id, copies=3, created_by="ann")
    assert len(copies) == 3
    assert {j.batch for j in copies} != {late.batch}
    assert wakeup.take().reasons == {"job added"}


async def test_cancel_hands_the_job_to_the_dispatcher(memory_db: Database) -> None:
    wakeup = Wakeup()
    queue = JobQueue(memory_db, wakeup, clock=lambda: T0)
    sha = await stored_file(memory_db)
    (job,) = await queue.add(JobSpec(sha, "clip"))
    async with memory_db.session() as s:
        await change_state(s, job.id, claim(P1S), now=T0)
        await change_state(s, job.id, transition(JobState.STARTING), attempt=1, now=T0)
    assert [j.id for j in await queue.on_printer(P1S)] == [job.id]
    wakeup.take()
    cancelled = await queue.cancel(job.id, by="ann")
    assert cancelled.state is JobState.CANCELLED
    assert cancelled.reason == "cancelled by ann"
    assert wakeup.take().cancelled == {job.id}
    with pytest.raises(JobStateConflict, match="cancelled, so it cannot become cancelled"):
        await queue.cancel(job.id, by="ann")


async def test_retry_queues_a_failed_job_as_a_new_attempt(memory_db: Database) -> None:
    wakeup = Wakeup()
    queue = JobQueue(memory_db, wakeup, clock=lambda: T0)
    sha = await stored_file(memory_db)
    (job,) = await queue.add(JobSpec(sha, "clip"))
    async with memory_db.session() as s:
        await change_state(s, job.id, claim(P1S), now=T0)
        await change_state(s, job.id, fail("upload refused"), attempt=1, now=T0)
    wakeup.take()
    again = await queue.retry(job.id, by="bob")
    assert again.state is JobState.QUEUED
    assert again.printer is None
    assert again.attempt == 1  # the next claim makes it 2
    assert wakeup.take().reasons == {"job retried"}
    with pytest.raises(JobStateConflict, match="queued"):
        await queue.retry(job.id, by="bob")
    with pytest.raises(JobNotFound):
        await queue.get(job.id + 100)
