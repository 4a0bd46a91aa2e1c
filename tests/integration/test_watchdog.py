"""The start watchdog against simulated printers: each stage that can hang fails with a reason.

* PREPARE forever: real firmware waits silently when `ams_mapping` names an empty tray; the
  simulator does the same. The job is stopped, failed with the trays named, and printed
  elsewhere;
* a start the printer acknowledges and loses while going silent: the job is not failed while
  the printer cannot be seen (it might be printing), only once it reports again without it —
  then it is retried, and printed exactly once;
* an upload that crawls: given up at its limit, retried per policy, never started.
"""

import asyncio
from pathlib import Path

from bambufarm.jobs.closing import RetryPolicy
from bambufarm.jobs.history import print_history
from bambufarm.jobs.model import JobSpec, JobState
from bambufarm.jobs.runner import DispatcherOptions
from bambufarm.jobs.watchdog import StageLimits
from bambufarm.storage.db import Database
from tests.support.queue_harness import add_file, queue_rig, set_tray, sliced_file

pytest_plugins = ["tests.support.postgres"]


async def test_prepare_hang_on_an_empty_tray_fails_and_prints_elsewhere(
    tmp_path: Path, db: Database
) -> None:
    holder: dict[str, object] = {}

    def unload_white_first(serial: str) -> None:
        # The spool is pulled between the decision and the start: the mapping now names an
        # empty tray, and the printer waits in PREPARE without an error.
        if "rig" in holder and not holder.get("done"):
            holder["done"] = serial
            set_tray(holder["rig"].sim, serial, tray_type="", tray_color="00000000")  # type: ignore[attr-defined]

    options = DispatcherOptions(limits=StageLimits(prepare_s=1.0), prestage=False)
    async with queue_rig(
        tmp_path, db, count=2, options=options, before_start=unload_white_first
    ) as rig:
        holder["rig"] = rig
        sha = await add_file(rig.library, sliced_file(color="#FFFFFF"), "hook.gcode.3mf")
        (job,) = await rig.queue.add(JobSpec(sha, "hook"))
        (final,) = await rig.until_jobs(
            [job.id], lambda js: js[0].state is JobState.AWAITING_CLEAR, "the job printed"
        )
        hung = holder["done"]
        assert final.attempt == 2
        assert final.printer != hung
        assert [s for s, _, _ in rig.started.starts] == [hung, final.printer]
        async with db.session(readonly=True) as session:
            history = (await print_history(session)).items
        first = next(p for p in history if p.attempt == 1)
        assert first.printer_serial == hung
        assert first.outcome.value == "failed"
        assert first.reason is not None
        assert "stayed in PREPARE" in first.reason
        assert "filament 1 → AMS 1 slot 1" in first.reason
        # The hung printer was stopped, and its plate waits for a person.
        assert rig.fleet.snapshot(hung).state.job.gcode_state.value == "FAILED"
        assert not (await rig.plates.get(hung)).cleared


async def test_a_lost_start_waits_while_the_printer_is_silent(tmp_path: Path, db: Database) -> None:
    holder: dict[str, object] = {}

    def lose_it_and_go_quiet(serial: str) -> bool:
        if holder.get("lost"):
            return True
        holder["lost"] = serial
        rig = holder["rig"]
        rig.sim.node(serial).printer.set_stale(True)  # type: ignore[attr-defined]
        return False

    limits = StageLimits(ack_s=0.5, confirm_s=0.5)
    options = DispatcherOptions(limits=limits, prestage=False)
    async with queue_rig(tmp_path, db, options=options, before_start=lose_it_and_go_quiet) as rig:
        holder["rig"] = rig
        serial = rig.serial(0)
        sha = await add_file(rig.library, sliced_file(), "peg.gcode.3mf")
        (job,) = await rig.queue.add(JobSpec(sha, "peg"))
        await rig.until_jobs([job.id], lambda _js: bool(holder.get("lost")), "the start lost")
        # Time passing without a report is the scenario: three confirm limits (ack 0.5 s +
        # confirm 0.5 s) go by while the printer is silent, and the job must stay starting,
        # because the printer might be printing it.
        await asyncio.sleep(3.0)
        still = await rig.job(job.id)
        assert still.state is JobState.STARTING
        assert still.attempt == 1
        assert rig.dispatcher.stats.starts_sent == 1
        rig.sim.node(serial).printer.set_stale(False)
        (final,) = await rig.until_jobs(
            [job.id], lambda js: js[0].state is JobState.AWAITING_CLEAR, "printed after all"
        )
        assert final.attempt == 2
        assert len(rig.started.lost) == 1
        assert len(rig.started.starts) == 1  # printed once


async def test_a_crawling_upload_is_given_up_and_never_started(
    tmp_path: Path, db: Database
) -> None:
    limits = StageLimits(upload_min_s=0.5, upload_min_rate=1e9)
    options = DispatcherOptions(limits=limits, retry=RetryPolicy(max_attempts=2), prestage=False)
    async with queue_rig(tmp_path, db, options=options, quirks={"ftps_write_rate": 10_000}) as rig:
        # ~25 KB at 10 KB/s: 2.5 s against a limit of 0.5 s. (A given-up transfer whose bytes
        # are all sent still waits for the printer's verdict before its file is deleted.)
        data = sliced_file(padding=60_000)
        sha = await add_file(rig.library, data, "big.gcode.3mf")
        (job,) = await rig.queue.add(JobSpec(sha, "big"))
        (final,) = await rig.until_jobs(
            [job.id],
            lambda js: js[0].state is JobState.FAILED and js[0].attempt == 2,
            "given up after two attempts",
        )
        assert final.reason is not None
        assert "did not finish within 0.5 s" in final.reason
        assert rig.started.starts == []
        assert rig.dispatcher.stats.starts_sent == 0
