"""The job queue's storage on SQLite and PostgreSQL: create, list, reorder, change, claim."""

import asyncio
import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.fernet import Fernet

from bambufarm.jobs.dispatch import Target
from bambufarm.jobs.model import (
    DISPATCHABLE,
    PROGRESS_STATES,
    UNFINISHED,
    Job,
    JobSpec,
    JobState,
    cancel,
    claim,
    fail,
    retry,
    transition,
)
from bambufarm.protocol.threemf import read_3mf
from bambufarm.storage.db import Database, open_database
from bambufarm.storage.errors import InvalidValue, PrinterNotFound
from bambufarm.storage.jobs import (
    POSITION_STEP,
    JobNotFound,
    JobRecord,
    JobStateConflict,
    NewJob,
    add_jobs,
    change_state,
    duplicate_job,
    get_job,
    list_jobs,
    lock_jobs,
    reorder_job,
    update_progress,
)
from bambufarm.storage.library import BlobNotFound, add_file, put_blob, remove_file
from bambufarm.storage.printers import NewPrinter, add_printer
from bambufarm.storage.secrets import SecretBox
from bambufarm.storage.unset import UNSET
from tests.support.threemf_factory import PlateSpec, build_gcode_3mf

pytest_plugins = ["tests.support.postgres"]

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
P1S = "01P00A000000001"
X1C = "00M00A000000001"


async def store_file(db: Database, *, model: str = "C12", plates: int = 2) -> str:
    """A sliced file's content row (no bytes on disk: the queue only needs the row)."""
    data = build_gcode_3mf(printer_model_id=model, plates=[PlateSpec()] * plates)
    sha = hashlib.sha256(data).hexdigest()
    async with db.session() as s:
        await put_blob(s, sha, len(data), read_3mf(data), now=T0)
    return sha


async def queue(db: Database, spec: JobSpec, *, now: datetime = T0) -> tuple[Job, ...]:
    async with db.session() as s:
        return tuple(Job.from_record(r) for r in await add_jobs(s, spec.to_new_job(), now=now))


async def state_of(db: Database, job_id: int) -> JobRecord:
    async with db.session(readonly=True) as s:
        return await get_job(s, job_id)


async def queue_ids(db: Database) -> list[int]:
    async with db.session(readonly=True) as s:
        page = await list_jobs(s, states=DISPATCHABLE)
    return [j.id for j in page.items]


@pytest.fixture
async def sha(db: Database) -> str:
    return await store_file(db)


async def test_copies_are_one_job_each_sharing_a_batch(db: Database, sha: str) -> None:
    jobs = await queue(db, JobSpec(sha, "bracket", plate=2, copies=3, created_by="alice"))
    assert [j.copy_index for j in jobs] == [1, 2, 3]
    assert {j.batch for j in jobs} == {jobs[0].batch}
    assert len(jobs[0].batch) == 32
    assert all(j.copies == 3 and j.plate == 2 and j.name == "bracket" for j in jobs)
    assert all(j.state is JobState.QUEUED and j.attempt == 0 and j.printer is None for j in jobs)
    assert jobs[0].position < jobs[1].position < jobs[2].position
    assert jobs[0].created_by == "alice"
    assert jobs[0].created_at == T0
    again = await state_of(db, jobs[1].id)
    assert Job.from_record(again) == jobs[1]


async def test_a_job_is_checked_against_its_file_and_target(db: Database, sha: str) -> None:
    box = SecretBox(Fernet.generate_key())
    async with db.session() as s:
        for serial, code in ((P1S, "C12"), (X1C, "BL-P001")):
            await add_printer(
                s, box, NewPrinter(serial, serial, code, "127.0.0.1", "12345678"), now=T0
            )
    bad = {
        "plate": (NewJob(sha, "x", plate=3), InvalidValue, "no plate 3; its plates are: 1, 2"),
        "copies": (NewJob(sha, "x", copies=0), InvalidValue, "copies must be between 1"),
        "both": (
            NewJob(sha, "x", target_serial=P1S, target_models=("C12",)),
            InvalidValue,
            "one printer or some models",
        ),
        "no such printer": (
            NewJob(sha, "x", target_serial="01P00A000000099"),
            PrinterNotFound,
            "no printer with serial",
        ),
        "printer of another model": (
            NewJob(sha, "x", target_serial=X1C),
            InvalidValue,
            "sliced for P1S, but printer .* is a X1C",
        ),
        "models without the file's": (
            NewJob(sha, "x", target_models=("BL-P001", "N1")),
            InvalidValue,
            "can never print on A1 mini, X1C",
        ),
        "unknown model": (NewJob(sha, "x", target_models=("Z9",)), InvalidValue, "unknown"),
        "naive due": (NewJob(sha, "x", due_at=datetime(2025, 1, 1)), InvalidValue, "time zone"),  # noqa: DTZ001
        "name": (NewJob(sha, "a/b"), InvalidValue, "without '/'"),
        "no file": (NewJob("cd" * 32, "x"), BlobNotFound, "no file with sha256"),
    }
    for new, error, message in bad.values():
        async with db.session() as s:
            with pytest.raises(error, match=message):
                await add_jobs(s, new, now=T0)
    async with db.session() as s:
        on_p1s = await add_jobs(s, NewJob(sha, "x", target_serial=P1S), now=T0)
        by_model = await add_jobs(s, NewJob(sha, "x", target_models=("C12", "C12")), now=T0)
    assert Job.from_record(on_p1s[0]).target == Target.printer(P1S)
    assert Job.from_record(by_model[0]).target == Target.of_models("C12")


async def test_jobs_list_in_the_dispatchers_order_with_filters_and_pages(
    db: Database, sha: str
) -> None:
    plain = (await queue(db, JobSpec(sha, "plain", copies=2)))[0]
    urgent = (await queue(db, JobSpec(sha, "urgent", priority=10)))[0]
    later = (await queue(db, JobSpec(sha, "due later", due=T0 + timedelta(days=2))))[0]
    sooner = (await queue(db, JobSpec(sha, "due sooner", due=T0 + timedelta(days=1))))[0]
    async with db.session() as s:
        page = await list_jobs(s)
        newest = await list_jobs(s, order="newest", limit=2)
        second = await list_jobs(s, offset=2, limit=2)
        batch = await list_jobs(s, batch=plain.batch)
        await change_state(s, plain.id, claim(P1S), now=T0)
        on_printer = await list_jobs(s, printer_serial=P1S)
        dispatchable = await list_jobs(s, states=DISPATCHABLE)
        by_file = await list_jobs(s, file_sha256=sha.upper())
    names = [j.name for j in page.items]
    assert names == ["urgent", "due sooner", "due later", "plain", "plain"]
    assert page.total == 5
    assert [j.id for j in newest.items] == [sooner.id, later.id]
    assert newest.total == 5
    assert [j.name for j in second.items] == ["due later", "plain"]
    assert [j.copy_index for j in batch.items] == [1, 2]
    assert [j.id for j in on_printer.items] == [plain.id]
    assert plain.id not in [j.id for j in dispatchable.items]
    assert dispatchable.total == 4
    assert by_file.total == 5
    assert urgent.id == page.items[0].id
    async with db.session() as s:
        with pytest.raises(InvalidValue, match="unknown job state 'running'"):
            await list_jobs(s, states=["running"])
        with pytest.raises(InvalidValue, match="limit"):
            await list_jobs(s, limit=0)


async def test_a_job_goes_through_a_whole_print(db: Database, sha: str) -> None:
    job = (await queue(db, JobSpec(sha, "cube")))[0]
    steps = [
        (T0, transition(JobState.WAITING, reason="every P1S is busy"), None),
        (T0 + timedelta(seconds=1), claim(P1S), 0),
        (T0 + timedelta(seconds=2), transition(JobState.STARTING), 1),
        (T0 + timedelta(seconds=3), transition(JobState.PRINTING), 1),
        (T0 + timedelta(seconds=4), transition(JobState.PAUSED, reason="filament runout"), 1),
        (T0 + timedelta(seconds=5), transition(JobState.PRINTING, reason=None), 1),
        (T0 + timedelta(seconds=6), transition(JobState.AWAITING_CLEAR), 1),
        (T0 + timedelta(seconds=7), transition(JobState.DONE), 1),
    ]
    seen = []
    for at, change, attempt in steps:
        async with db.session() as s:
            seen.append(await change_state(s, job.id, change, attempt=attempt, now=at))
    waiting, claimed, _, printing, paused, resumed, _, done = seen
    assert waiting.state == "waiting"
    assert waiting.reason == "every P1S is busy"
    assert claimed.state == "uploading"
    assert claimed.attempt == 1
    assert claimed.printer_serial == P1S
    assert claimed.reason is None
    assert printing.started_at == T0 + timedelta(seconds=3)
    assert paused.reason == "filament runout"
    assert resumed.started_at == printing.started_at  # resuming is not a new start
    assert resumed.reason is None
    assert done.state == "done"
    assert done.finished_at == T0 + timedelta(seconds=7)
    assert done.printer_serial == P1S
    assert done.updated_at == T0 + timedelta(seconds=7)


async def test_an_illegal_change_is_refused_and_changes_nothing(db: Database, sha: str) -> None:
    job = (await queue(db, JobSpec(sha, "cube")))[0]
    before = await state_of(db, job.id)
    async with db.session() as s:
        with pytest.raises(
            JobStateConflict, match=r"job \d+ is queued, so it cannot become printing"
        ):
            await change_state(s, job.id, transition(JobState.PRINTING), now=T0)
        with pytest.raises(JobStateConflict, match="only from: failed, cancelled"):
            await change_state(s, job.id, retry(), now=T0)
        with pytest.raises(JobNotFound, match="no job with id 999999"):
            await change_state(s, 999_999, cancel("x"), now=T0)
    assert await state_of(db, job.id) == before


async def test_a_finished_job_cannot_be_cancelled_or_restarted(db: Database, sha: str) -> None:
    job = (await queue(db, JobSpec(sha, "cube")))[0]
    async with db.session() as s:
        await change_state(s, job.id, claim(P1S), now=T0)
        await change_state(s, job.id, transition(JobState.STARTING), attempt=1, now=T0)
        await change_state(s, job.id, transition(JobState.DONE), attempt=1, now=T0)
    for change in (cancel("too late"), claim(P1S), transition(JobState.PRINTING)):
        async with db.session() as s:
            with pytest.raises(JobStateConflict, match="is done"):
                await change_state(s, job.id, change, now=T0)
    assert (await state_of(db, job.id)).state == "done"


async def test_a_change_for_an_older_attempt_is_refused(db: Database, sha: str) -> None:
    job = (await queue(db, JobSpec(sha, "cube")))[0]
    async with db.session() as s:
        await change_state(s, job.id, claim(P1S), attempt=0, now=T0)
        await change_state(s, job.id, fail("upload timed out"), attempt=1, now=T0)
        failed = await get_job(s, job.id)
        await change_state(s, job.id, retry(), now=T0)
        again = await change_state(s, job.id, claim("01P00A000000002"), now=T0)
    assert failed.reason == "upload timed out"
    assert failed.finished_at == T0
    assert again.attempt == 2
    assert again.printer_serial == "01P00A000000002"
    assert again.finished_at is None
    # The first attempt's uploader wakes up late and wants to send project_file: refused.
    async with db.session() as s:
        with pytest.raises(JobStateConflict, match="on attempt 2, not 1"):
            await change_state(s, job.id, transition(JobState.STARTING), attempt=1, now=T0)
    assert (await state_of(db, job.id)).state == "uploading"


async def test_retry_and_requeue_clear_the_previous_attempt(db: Database, sha: str) -> None:
    job = (await queue(db, JobSpec(sha, "cube")))[0]
    async with db.session() as s:
        await change_state(s, job.id, claim(P1S), now=T0)
        await update_progress(s, job.id, attempt=1, states=PROGRESS_STATES, progress=30, now=T0)
        requeued = await change_state(
            s, job.id, transition(JobState.QUEUED, reason="printer went offline"), now=T0
        )
        await change_state(s, job.id, claim(P1S), now=T0)
        await change_state(s, job.id, transition(JobState.STARTING), now=T0)
        await change_state(s, job.id, transition(JobState.PRINTING), now=T0)
        await update_progress(
            s, job.id, attempt=2, states=PROGRESS_STATES, progress=55, layer=80,
            remaining_s=900, now=T0,
        )  # fmt: skip
        await change_state(s, job.id, cancel("stopped by alice"), now=T0)
        retried = await change_state(s, job.id, retry(), now=T0)
    assert requeued.state == "queued"
    assert requeued.printer_serial is None
    assert requeued.progress is None
    assert requeued.attempt == 1
    assert requeued.reason == "printer went offline"
    assert retried.state == "queued"
    assert retried.attempt == 2
    assert retried.reason is None
    assert retried.started_at is None
    assert retried.finished_at is None
    assert (retried.progress, retried.layer, retried.remaining_s) == (None, None, None)


async def test_progress_belongs_to_the_current_attempt(db: Database, sha: str) -> None:
    job = (await queue(db, JobSpec(sha, "cube")))[0]
    async with db.session() as s:
        with pytest.raises(JobStateConflict, match="is queued, so it cannot record progress"):
            await update_progress(s, job.id, attempt=0, states=PROGRESS_STATES, progress=5)
        await change_state(s, job.id, claim(P1S), now=T0)
        with pytest.raises(JobStateConflict, match="on attempt 1, not 7"):
            await update_progress(s, job.id, attempt=7, states=PROGRESS_STATES, progress=5)
        with pytest.raises(InvalidValue, match="0 to 100"):
            await update_progress(s, job.id, attempt=1, states=PROGRESS_STATES, progress=101)
        record = await update_progress(
            s, job.id, attempt=1, states=PROGRESS_STATES, progress=12, now=T0
        )
    assert record.progress == 12


async def test_a_long_reason_is_cut_not_refused(db: Database, sha: str) -> None:
    job = (await queue(db, JobSpec(sha, "cube")))[0]
    async with db.session() as s:
        record = await change_state(s, job.id, cancel("x" * 5000), now=T0)
    assert record.reason is not None
    assert len(record.reason) == 2000
    assert record.reason.endswith("…")


async def test_two_claims_of_one_job_never_both_win(db: Database, sha: str) -> None:
    job = (await queue(db, JobSpec(sha, "cube")))[0]

    async def try_claim(serial: str) -> JobRecord | JobStateConflict:
        try:
            async with db.session() as s:
                return await change_state(s, job.id, claim(serial), attempt=0)
        except JobStateConflict as err:
            return err

    results = await asyncio.gather(*(try_claim(f"01P00A00000000{n}") for n in range(1, 5)))
    winners = [r for r in results if isinstance(r, JobRecord)]
    assert len(winners) == 1
    assert all(isinstance(r, JobStateConflict) for r in results if r not in winners)
    stored = await state_of(db, job.id)
    assert stored.attempt == 1
    assert stored.printer_serial == winners[0].printer_serial


async def test_concurrent_dispatchers_claim_every_job_exactly_once(db: Database, sha: str) -> None:
    jobs = await queue(db, JobSpec(sha, "part", copies=12))
    claimed: list[tuple[int, str]] = []

    async def dispatcher(serial: str) -> None:
        # One "server process" per coroutine, each with its own transactions.
        while True:
            async with db.session() as s:
                locked = await lock_jobs(s, states=DISPATCHABLE, limit=1)
                if not locked:
                    return
                await change_state(s, locked[0].id, claim(serial), attempt=locked[0].attempt)
            claimed.append((locked[0].id, serial))

    await asyncio.gather(*(dispatcher(f"01P00A00000000{n}") for n in range(1, 5)))
    assert sorted(job_id for job_id, _ in claimed) == sorted(j.id for j in jobs)
    async with db.session(readonly=True) as s:
        page = await list_jobs(s, states=["uploading"])
    assert page.total == 12
    assert all(j.attempt == 1 for j in page.items)


async def test_locked_jobs_are_skipped_by_another_dispatcher_on_postgresql(
    pg_database_url: str,
) -> None:
    db = await open_database(pg_database_url)
    try:
        sha = await store_file(db)
        jobs = await queue(db, JobSpec(sha, "part", copies=4))
        first_has_locked = asyncio.Event()
        release = asyncio.Event()

        async def first() -> list[int]:
            async with db.session() as s:
                locked = await lock_jobs(s, states=DISPATCHABLE, limit=2)
                first_has_locked.set()
                await release.wait()
            return [j.id for j in locked]

        holder = asyncio.create_task(first())
        await first_has_locked.wait()
        async with db.session() as s:
            others = [j.id for j in await lock_jobs(s, states=DISPATCHABLE, limit=10)]
        release.set()
        held = await holder
        assert held == [jobs[0].id, jobs[1].id]
        assert others == [jobs[2].id, jobs[3].id]
    finally:
        await db.aclose()


async def test_reorder_moves_a_job_before_another_or_to_the_end(db: Database, sha: str) -> None:
    a, b, c = await queue(db, JobSpec(sha, "part", copies=3))
    async with db.session() as s:
        await reorder_job(s, c.id, before=a.id, now=T0)
    assert await queue_ids(db) == [c.id, a.id, b.id]
    async with db.session() as s:
        await reorder_job(s, c.id, before=None, now=T0)
    assert await queue_ids(db) == [a.id, b.id, c.id]
    async with db.session() as s:
        moved = await reorder_job(s, b.id, priority=3, now=T0)
    assert moved.priority == 3
    assert await queue_ids(db) == [b.id, a.id, c.id]
    # Dropped before a job of another priority, it takes that priority.
    async with db.session() as s:
        moved = await reorder_job(s, c.id, before=b.id, now=T0)
    assert moved.priority == 3
    assert await queue_ids(db) == [c.id, b.id, a.id]
    async with db.session() as s:
        with pytest.raises(InvalidValue, match="before itself"):
            await reorder_job(s, a.id, before=a.id)
        with pytest.raises(JobNotFound):
            await reorder_job(s, a.id, before=424242)
        unchanged = await reorder_job(s, a.id, priority=UNSET, before=UNSET, now=T0)
    assert unchanged.position == a.position


async def test_reordering_again_and_again_between_two_jobs_keeps_the_order(
    db: Database, sha: str
) -> None:
    jobs = list(await queue(db, JobSpec(sha, "part", copies=3)))
    expected = [j.id for j in jobs]
    # Each move halves the gap before the anchor; 3x the 10 halvings of POSITION_STEP forces
    # the re-spacing path several times.
    assert POSITION_STEP == 1024
    for n in range(30):
        mover = expected[2]
        anchor = expected[1] if n % 2 else expected[0]
        async with db.session() as s:
            await reorder_job(s, mover, before=anchor, now=T0)
        expected.remove(mover)
        expected.insert(expected.index(anchor), mover)
        assert await queue_ids(db) == expected


async def test_duplicate_queues_the_same_print_as_a_new_batch(db: Database, sha: str) -> None:
    (source,) = await queue(
        db, JobSpec(sha, "cube", plate=2, priority=4, target=Target.of_models("C12"))
    )
    async with db.session() as s:
        await change_state(s, source.id, cancel("wrong colour"), now=T0)
        copies = await duplicate_job(s, source.id, copies=2, created_by="bob", now=T0)
    assert len(copies) == 2
    assert copies[0].batch != source.batch
    for copy in map(Job.from_record, copies):
        assert (copy.file_sha256, copy.plate, copy.priority) == (sha, 2, 4)
        assert copy.target == Target.of_models("C12")
        assert copy.state is JobState.QUEUED
        assert copy.created_by == "bob"


async def test_a_deleted_file_leaves_finished_jobs_without_it(db: Database, sha: str) -> None:
    (job,) = await queue(db, JobSpec(sha, "cube"))
    async with db.session() as s:
        entry = await add_file(s, sha, name="cube.gcode.3mf", now=T0)
        await change_state(s, job.id, cancel("not needed"), now=T0)
        removed = await remove_file(s, entry.id, busy_states=UNFINISHED)
    assert removed.blob_removed
    stored = await state_of(db, job.id)
    assert stored.file_sha256 is None
    assert stored.name == "cube"
    async with db.session() as s:
        with pytest.raises(InvalidValue, match="deleted from the library"):
            await duplicate_job(s, job.id)


async def test_a_job_can_be_read_back_by_id_and_is_missing_otherwise(
    db: Database, sha: str
) -> None:
    (job,) = await queue(db, JobSpec(sha, "cube"))
    async with db.session(readonly=True) as s:
        assert (await get_job(s, job.id)).id == job.id
        with pytest.raises(JobNotFound, match="no job with id 0"):
            await get_job(s, 0)
