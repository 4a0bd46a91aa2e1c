"""Print history and statistics on SQLite and PostgreSQL."""

import hashlib
from datetime import UTC, datetime, timedelta

import pytest

from bambufarm.jobs.history import (
    UNKNOWN_MATERIAL,
    DuplicatePrint,
    PrintAlreadyEnded,
    PrintNotFound,
    PrintOutcome,
    PrintRecord,
    PrintStats,
    combine,
    finish_print,
    fleet_statistics,
    get_print,
    print_for_attempt,
    print_history,
    printer_statistics,
    start_print,
    used_grams,
)
from bambufarm.jobs.model import JobSpec, claim
from bambufarm.protocol.threemf import PlateFilament, read_3mf
from bambufarm.storage.db import Database
from bambufarm.storage.errors import InvalidValue
from bambufarm.storage.jobs import add_jobs, change_state
from bambufarm.storage.library import put_blob
from tests.support.threemf_factory import FilamentSpec, PlateSpec, build_gcode_3mf

pytest_plugins = ["tests.support.postgres"]

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
P1S = "01P00A000000001"
X1C = "00M00A000000001"
FILE = build_gcode_3mf(
    plates=[
        PlateSpec(
            filaments=(
                FilamentSpec(1, "PLA", "#FFFFFF", 40.0, 13.0),
                FilamentSpec(3, "PETG", "#FF0000", 10.0, 3.2),
            )
        )
    ]
)
FILAMENTS = read_3mf(FILE).plate(1).filaments
SHA = hashlib.sha256(FILE).hexdigest()


async def run(
    db: Database,
    serial: str,
    outcome: PrintOutcome,
    *,
    start: datetime,
    hours: float,
    progress: int = 100,
    filaments: tuple[PlateFilament, ...] = FILAMENTS,
) -> PrintRecord:
    """One print outside the queue, from start to its outcome."""
    async with db.session() as s:
        started = await start_print(
            s, printer_serial=serial, file_name="part", plate=1, filaments=filaments,
            started_at=start, file_sha256=SHA,
        )  # fmt: skip
        if outcome is PrintOutcome.RUNNING:
            return started
        return await finish_print(
            s, started.id, outcome=outcome, progress=progress, ended_at=start + hours * HOUR
        )


def test_used_grams_is_all_of_the_plan_when_done_and_a_share_otherwise() -> None:
    assert used_grams(40.0, PrintOutcome.DONE, 20) == 40.0
    assert used_grams(40.0, PrintOutcome.FAILED, 25) == 10.0
    assert used_grams(40.0, PrintOutcome.CANCELLED, 0) == 0.0
    assert used_grams(40.0, PrintOutcome.FAILED, 150) == 40.0
    assert used_grams(None, PrintOutcome.DONE, 100) is None
    assert used_grams(40.0, PrintOutcome.RUNNING, 50) is None


async def test_a_print_is_recorded_from_start_to_outcome(db: Database) -> None:
    running = await run(db, P1S, PrintOutcome.RUNNING, start=T0, hours=0)
    assert running.outcome is PrintOutcome.RUNNING
    assert (running.ended_at, running.duration_s, running.progress) == (None, None, 0)
    assert [(f.slot, f.material, f.color, f.planned_g, f.used_g) for f in running.filament] == [
        (1, "PLA", "#FFFFFF", 40.0, None),
        (3, "PETG", "#FF0000", 10.0, None),
    ]
    async with db.session() as s:
        done = await finish_print(
            s, running.id, outcome=PrintOutcome.DONE, progress=99, ended_at=T0 + 2 * HOUR
        )
    assert done.outcome is PrintOutcome.DONE
    assert (done.progress, done.duration_s, done.ended_at) == (100, 7200, T0 + 2 * HOUR)
    assert [f.used_g for f in done.filament] == [40.0, 10.0]
    assert (done.printer_serial, done.file_sha256, done.file_name) == (P1S, SHA, "part")


async def test_a_failed_print_used_filament_in_proportion_to_its_progress(db: Database) -> None:
    failed = await run(db, P1S, PrintOutcome.FAILED, start=T0, hours=0.5, progress=40)
    assert [f.used_g for f in failed.filament] == [16.0, 4.0]
    assert failed.progress == 40
    cancelled = await run(db, P1S, PrintOutcome.CANCELLED, start=T0, hours=0.1, progress=5)
    assert [f.used_g for f in cancelled.filament] == [2.0, 0.5]


async def test_a_print_ends_once(db: Database) -> None:
    done = await run(db, P1S, PrintOutcome.DONE, start=T0, hours=1)
    async with db.session() as s:
        with pytest.raises(PrintAlreadyEnded, match=f"print {done.id} already ended as done"):
            await finish_print(
                s, done.id, outcome=PrintOutcome.FAILED, progress=10, ended_at=T0 + 2 * HOUR
            )
        with pytest.raises(PrintNotFound, match="no print with id 987654"):
            await finish_print(s, 987654, outcome=PrintOutcome.DONE, progress=100, ended_at=T0)
        with pytest.raises(InvalidValue, match="not running"):
            await finish_print(s, done.id, outcome=PrintOutcome.RUNNING, progress=1, ended_at=T0)
    async with db.session(readonly=True) as s:
        assert (await get_print(s, done.id)).outcome is PrintOutcome.DONE


async def test_a_jobs_attempt_starts_one_print_only(db: Database) -> None:
    async with db.session() as s:
        await put_blob(s, SHA, len(FILE), read_3mf(FILE), now=T0)
        (job,) = await add_jobs(s, JobSpec(SHA, "part").to_new_job(), now=T0)
        await change_state(s, job.id, claim(P1S), now=T0)
    fields = {
        "printer_serial": P1S, "file_name": "part", "plate": 1, "filaments": FILAMENTS,
        "started_at": T0, "file_sha256": SHA, "job_id": job.id, "attempt": 1,
    }  # fmt: skip
    async with db.session() as s:
        first = await start_print(s, **fields)  # type: ignore[arg-type]
        with pytest.raises(DuplicatePrint, match=f"job {job.id} attempt 1 has already started"):
            await start_print(s, **fields)  # type: ignore[arg-type]
        # The savepoint kept the transaction usable after the refusal.
        assert await print_for_attempt(s, job.id, 1) == first
        assert await print_for_attempt(s, job.id, 2) is None
    async with db.session(readonly=True) as s:
        page = await print_history(s, job_id=job.id)
    assert [p.id for p in page.items] == [first.id]


async def test_a_print_needs_consistent_values(db: Database) -> None:
    good = {
        "printer_serial": P1S, "file_name": "part", "plate": 1, "filaments": FILAMENTS,
        "started_at": T0,
    }  # fmt: skip
    for changes, message in (
        ({"job_id": 3}, "both job_id and attempt"),
        ({"started_at": datetime(2025, 1, 1)}, "time zone"),  # noqa: DTZ001
        ({"plate": 0}, "plate must be 1"),
        ({"printer_serial": "not a serial"}, "letters and digits"),
        ({"filaments": FILAMENTS + FILAMENTS[:1]}, "distinct"),
    ):
        async with db.session() as s:
            with pytest.raises(InvalidValue, match=message):
                await start_print(s, **{**good, **changes})  # type: ignore[arg-type]


async def test_history_pages_newest_first_with_filters(db: Database) -> None:
    made = [
        await run(db, P1S if n % 2 else X1C, PrintOutcome.DONE, start=T0 + n * HOUR, hours=0.5)
        for n in range(5)
    ]
    failed = await run(db, P1S, PrintOutcome.FAILED, start=T0 + 10 * HOUR, hours=1, progress=3)
    async with db.session(readonly=True) as s:
        first = await print_history(s, limit=4)
        assert first.next_cursor is not None
        rest = await print_history(s, limit=4, after=first.next_cursor)
        on_p1s = await print_history(s, serial=P1S)
        failures = await print_history(s, outcomes=[PrintOutcome.FAILED])
        window = await print_history(s, since=T0 + HOUR, until=T0 + 3 * HOUR)
        with pytest.raises(InvalidValue, match="limit"):
            await print_history(s, limit=0)
    ids = [p.id for p in first.items + rest.items]
    assert ids == [failed.id, *(p.id for p in reversed(made))]
    assert rest.next_cursor is None
    assert [p.id for p in on_p1s.items] == [failed.id, made[3].id, made[1].id]
    assert [p.id for p in failures.items] == [failed.id]
    assert [p.id for p in window.items] == [made[2].id, made[1].id]


async def test_statistics_per_printer_and_for_the_fleet(db: Database) -> None:
    await run(db, P1S, PrintOutcome.DONE, start=T0, hours=2)
    await run(db, P1S, PrintOutcome.DONE, start=T0 + 3 * HOUR, hours=1.5)
    await run(db, P1S, PrintOutcome.FAILED, start=T0 + 5 * HOUR, hours=0.5, progress=50)
    await run(db, P1S, PrintOutcome.CANCELLED, start=T0 + 6 * HOUR, hours=0.25, progress=10)
    await run(db, P1S, PrintOutcome.RUNNING, start=T0 + 7 * HOUR, hours=0)
    unknown = (PlateFilament(1, None, None, None, 5.0, None),)
    await run(db, X1C, PrintOutcome.FAILED, start=T0, hours=1, progress=100, filaments=unknown)
    async with db.session(readonly=True) as s:
        per_printer = await printer_statistics(s)
        fleet = await fleet_statistics(s)
        early = await fleet_statistics(s, until=T0 + 4 * HOUR)
        only_x1c = await printer_statistics(s, serials=[X1C])
    by_serial = {p.serial: p.stats for p in per_printer}
    assert list(by_serial) == [X1C, P1S]
    p1s = by_serial[P1S]
    assert (p1s.prints, p1s.done, p1s.failed, p1s.cancelled, p1s.running) == (5, 2, 1, 1, 1)
    assert p1s.success_rate == pytest.approx(2 / 3)  # the cancel counts in neither
    assert p1s.print_hours == pytest.approx(2 + 1.5 + 0.5 + 0.25)  # running not yet
    # PLA: 40 + 40 + 40 * 50 % + 40 * 10 %; PETG: 10 + 10 + 5 + 1.
    assert dict(p1s.filament_g) == {"PETG": pytest.approx(26.0), "PLA": pytest.approx(104.0)}
    x1c = by_serial[X1C]
    assert x1c.success_rate == 0.0
    assert dict(x1c.filament_g) == {UNKNOWN_MATERIAL: 5.0}
    assert (fleet.prints, fleet.done, fleet.failed) == (6, 2, 2)
    assert fleet.success_rate == pytest.approx(0.5)
    assert fleet.print_hours == pytest.approx(5.25)
    assert dict(fleet.filament_g) == {
        "PETG": pytest.approx(26.0),
        "PLA": pytest.approx(104.0),
        UNKNOWN_MATERIAL: 5.0,
    }
    assert (early.prints, early.done, early.failed) == (3, 2, 1)
    assert [p.serial for p in only_x1c] == [X1C]


async def test_statistics_of_nothing_are_empty(db: Database) -> None:
    async with db.session(readonly=True) as s:
        assert await printer_statistics(s) == ()
        fleet = await fleet_statistics(s)
        with pytest.raises(InvalidValue, match="time zone"):
            await fleet_statistics(s, since=datetime(2025, 1, 1))  # noqa: DTZ001
    assert fleet == combine([])
    assert (fleet.prints, fleet.print_hours, dict(fleet.filament_g)) == (0, 0.0, {})
    assert fleet.success_rate is None
    assert PrintStats(1, 0, 0, 1, 0, 0.1, {}).success_rate is None
