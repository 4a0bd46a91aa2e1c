"""The queue's engine against simulated printers, on SQLite and PostgreSQL.

"3 copies on any P1S with white PLA" prints on the right printers with the right tray, waiting
jobs say why per printer, the plate gate holds the next job until the plate is cleared,
pre-staged files start without an upload, cancelling stops the printer, and auto-clear lets a
printer go on by itself.
"""

from pathlib import Path

from bambufarm.jobs.dispatch import Target, WaitReason
from bambufarm.jobs.history import print_history
from bambufarm.jobs.model import Job, JobSpec, JobState
from bambufarm.jobs.runner import DispatcherOptions
from bambufarm.storage.db import Database
from tests.support.queue_harness import P1S, add_file, queue_rig, set_tray, sliced_file

pytest_plugins = ["tests.support.postgres"]


async def test_three_copies_on_any_p1s_with_white_pla(tmp_path: Path, db: Database) -> None:
    # Printers 0, 1 and 3 are P1S, 2 is an X1C; printer 3 has red PLA where white was.
    async with queue_rig(tmp_path, db, models=("P1S", "P1S", "X1C", "P1S")) as rig:
        p1s_a, p1s_b, x1c, red = (rig.serial(i) for i in range(4))
        set_tray(rig.sim, red, tray_color="FF0000FF")
        sha = await add_file(rig.library, sliced_file(color="#FFFFFF"), "bracket.gcode.3mf")
        jobs = await rig.queue.add(
            JobSpec(sha, "bracket", copies=3, target=Target.of_models(P1S), created_by="ann")
        )
        ids = [j.id for j in jobs]

        # Two P1S carry white PLA: two copies print, the third waits for a plate.
        done = await rig.until_jobs(
            ids,
            lambda js: sum(j.state is JobState.AWAITING_CLEAR for j in js) == 2,
            "two copies printed and awaiting a clear plate",
        )
        printed = {j.printer for j in done if j.state is JobState.AWAITING_CLEAR}
        assert printed == {p1s_a, p1s_b}
        third_id = next(j.id for j in done if j.state is not JobState.AWAITING_CLEAR)

        def plates_block(jobs: list[Job]) -> bool:
            # The reasons in memory and the stored summary are written by the same round, the
            # stored one a moment later: wait for both, or the summary may be the last round's.
            why = {r.serial: r.reason for r in rig.dispatcher.waiting_reasons(third_id)}
            blocked = why.get(p1s_a) is why.get(p1s_b) is WaitReason.PLATE_NOT_CLEARED
            stored = jobs[0].reason or ""
            return blocked and stored.endswith("(plate not cleared, missing filament)")

        (third,) = await rig.until_jobs(
            [third_id], lambda js: js[0].state is JobState.WAITING and plates_block(js),
            "the third copy waiting for a plate",
        )  # fmt: skip
        reasons = {r.serial: r for r in rig.dispatcher.waiting_reasons(third.id)}
        assert reasons[x1c].reason is WaitReason.NOT_TARGETED
        assert reasons[red].reason is WaitReason.MISSING_FILAMENT
        assert "#FFFFFF" in reasons[red].detail
        assert reasons[p1s_a].reason is WaitReason.PLATE_NOT_CLEARED
        assert reasons[p1s_b].reason is WaitReason.PLATE_NOT_CLEARED
        assert third.reason is not None
        assert third.reason.endswith("(plate not cleared, missing filament)")

        # Clearing one plate completes its job and starts the third copy there.
        _, completed = await rig.plates.clear(p1s_b, by="ann")
        assert [j.state for j in completed] == [JobState.DONE]
        final = await rig.until_jobs(
            [third.id], lambda js: js[0].state is JobState.AWAITING_CLEAR, "the third copy"
        )
        assert final[0].printer == p1s_b
        assert final[0].attempt == 1

        # Each copy started exactly once, with the white tray (AMS 1 slot 1 = tray 0).
        assert len(rig.started.starts) == 3
        assert {s for s, _, _ in rig.started.starts} == {p1s_a, p1s_b}
        assert len(rig.started.of(p1s_b)) == 2
        assert len({task for _, task, _ in rig.started.starts}) == 3
        for serial in (p1s_a, p1s_b):
            assert rig.fleet.snapshot(serial).state.job.ams_mapping in ((0,), None)
        async with db.session(readonly=True) as session:
            history = await print_history(session)
        assert sorted(p.job_id for p in history.items if p.job_id) == sorted(ids)
        assert {p.outcome.value for p in history.items} == {"done"}


async def test_cancel_stops_the_printer_and_frees_it(tmp_path: Path, db: Database) -> None:
    async with queue_rig(tmp_path, db, time_scale=60.0) as rig:
        serial = rig.serial(0)
        sha = await add_file(rig.library, sliced_file(prediction_s=3600), "long.gcode.3mf")
        (job,) = await rig.queue.add(JobSpec(sha, "long"))
        await rig.until_jobs([job.id], lambda js: js[0].state is JobState.PRINTING, "printing")
        cancelled = await rig.queue.cancel(job.id, by="ann")
        assert cancelled.state is JobState.CANCELLED
        # The dispatcher stops the print: the printer reports the cancel error and FAILED.
        await rig.events.until(
            lambda _e: rig.fleet.snapshot(serial).state.job.gcode_state.value == "FAILED",
            "the printer stopped",
        )
        await rig.until_jobs(
            [job.id], lambda _js: rig.dispatcher.attempt(job.id) is None, "the attempt closed"
        )
        async with db.session(readonly=True) as session:
            history = await print_history(session)
        assert [p.outcome.value for p in history.items] == ["cancelled"]
        assert (await rig.plates.get(serial)).cleared is False
        assert (await rig.job(job.id)).state is JobState.CANCELLED


async def test_auto_clear_printer_goes_on_by_itself(tmp_path: Path, db: Database) -> None:
    async with queue_rig(tmp_path, db) as rig:
        serial = rig.serial(0)
        await rig.plates.set_auto_clear(serial, True)
        sha = await add_file(rig.library, sliced_file(), "clip.gcode.3mf")
        jobs = await rig.queue.add(JobSpec(sha, "clip", copies=2))
        final = await rig.until_jobs(
            [j.id for j in jobs],
            lambda js: all(j.state is JobState.DONE for j in js),
            "both copies done without a person",
        )
        assert {j.printer for j in final} == {serial}
        # One upload for both copies: the second found the file on the printer.
        assert rig.dispatcher.stats.uploads == 1
        assert len(rig.started.of(serial)) == 2


async def test_next_file_is_prestaged_while_printing(tmp_path: Path, db: Database) -> None:
    options = DispatcherOptions(prestage=True)
    async with queue_rig(tmp_path, db, time_scale=100.0, options=options) as rig:
        serial = rig.serial(0)
        first = await add_file(rig.library, sliced_file(prediction_s=300), "a.gcode.3mf")
        second = await add_file(rig.library, sliced_file(color="#FFFFFF", grams=5.0), "b.gcode.3mf")
        (job_a,) = await rig.queue.add(JobSpec(first, "a"))
        await rig.until_jobs([job_a.id], lambda js: js[0].state is JobState.PRINTING, "a printing")
        (job_b,) = await rig.queue.add(JobSpec(second, "b"))
        # While a prints, b's file goes to the same printer.
        await rig.events.until(
            lambda _e: rig.dispatcher.staging.holds(serial, second), "b's file pre-staged"
        )
        assert (await rig.job(job_b.id)).state is JobState.WAITING
        await rig.until_jobs(
            [job_a.id], lambda js: js[0].state is JobState.AWAITING_CLEAR, "a finished"
        )
        uploads_before = rig.dispatcher.stats.uploads
        await rig.plates.clear(serial, by="ann")
        await rig.until_jobs([job_b.id], lambda js: js[0].state is JobState.PRINTING, "b started")
        assert rig.dispatcher.stats.uploads == uploads_before  # no upload after the clear
        assert rig.dispatcher.staging.staged == 1
