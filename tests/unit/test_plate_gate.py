"""The plate-clear gate on an in-memory SQLite database: close, clear, auto-clear, wake-ups."""

import hashlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from bambufarm.jobs.model import Job, JobSpec, JobState, claim, transition
from bambufarm.jobs.plate import PlateGate
from bambufarm.jobs.wakeup import Wakeup
from bambufarm.protocol.threemf import read_3mf
from bambufarm.storage.db import Database, open_database
from bambufarm.storage.errors import InvalidValue
from bambufarm.storage.jobs import add_jobs, change_state, get_job
from bambufarm.storage.library import put_blob
from bambufarm.storage.plates import get_plate, list_plates, mark_ended, set_auto_clear
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


async def finished_job(db: Database, serial: str = P1S) -> Job:
    """A job printed on `serial` and waiting for its plate to be cleared."""
    data = build_gcode_3mf()
    sha = hashlib.sha256(data).hexdigest()
    async with db.session() as s:
        await put_blob(s, sha, len(data), read_3mf(data), now=T0)
        (record,) = await add_jobs(s, JobSpec(sha, "part").to_new_job(), now=T0)
        record = await change_state(s, record.id, claim(serial), now=T0)
        for state in (JobState.STARTING, JobState.PRINTING, JobState.AWAITING_CLEAR):
            record = await change_state(s, record.id, transition(state), attempt=1, now=T0)
        await mark_ended(s, serial, outcome="finished", job_id=record.id, now=T0)
    return Job.from_record(record)


async def test_a_printer_never_seen_ending_a_print_is_clear(memory_db: Database) -> None:
    async with memory_db.session() as s:
        plate = await get_plate(s, P1S)
        assert await list_plates(s) == {}
    assert plate.cleared
    assert not plate.auto_clear
    assert plate.updated_at is None


async def test_a_print_ending_closes_the_gate_until_someone_clears_it(memory_db: Database) -> None:
    wakeup = Wakeup()
    gate = PlateGate(memory_db, wakeup, clock=lambda: T0)
    job = await finished_job(memory_db)
    closed = await gate.get(P1S)
    assert not closed.cleared
    assert closed.last_outcome == "finished"
    assert closed.last_job_id == job.id
    assert not wakeup.pending

    plate, done = await gate.clear(P1S, by="ann")
    assert plate.cleared
    assert plate.changed_by == "ann"
    assert [(j.id, j.state) for j in done] == [(job.id, JobState.DONE)]
    async with memory_db.session(readonly=True) as s:
        assert (await get_job(s, job.id)).state == "done"
    # The dispatcher is told which printer is free.
    pokes = wakeup.take()
    assert pokes.reasons == frozenset({f"plate cleared on {P1S}"})

    # Clearing again changes nothing and completes nothing.
    again, none = await gate.clear(P1S, by="bob")
    assert again.cleared
    assert none == ()


async def test_a_failed_print_closes_the_gate_even_with_auto_clear(memory_db: Database) -> None:
    async with memory_db.session() as s:
        await set_auto_clear(s, P1S, True, now=T0)
        after_finish = await mark_ended(s, P1S, outcome="finished", job_id=None, now=T0)
        after_failure = await mark_ended(s, P1S, outcome="failed", job_id=None, now=T0)
    # The ejection routine clears a finished part; a failed print needs a person to look.
    assert after_finish.cleared
    assert after_finish.changed_by == "auto-clear"
    assert not after_failure.cleared
    assert after_failure.auto_clear


async def test_auto_clear_acts_on_the_next_print_not_the_current_plate(memory_db: Database) -> None:
    gate = PlateGate(memory_db, Wakeup(), clock=lambda: T0)
    await finished_job(memory_db)
    plate = await gate.set_auto_clear(P1S, True)
    assert plate.auto_clear
    assert not plate.cleared
    states = await gate.states()
    assert set(states) == {P1S}


async def test_gate_refuses_bad_serials_outcomes_and_actors(memory_db: Database) -> None:
    gate = PlateGate(memory_db, Wakeup())
    with pytest.raises(InvalidValue, match="letters and digits"):
        await gate.get("../etc")
    with pytest.raises(InvalidValue, match="who cleared"):
        await gate.clear(P1S, by="  ")
    async with memory_db.session() as s:
        with pytest.raises(InvalidValue, match="finished or failed"):
            await mark_ended(s, P1S, outcome="exploded", job_id=None)
