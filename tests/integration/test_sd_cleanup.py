"""SD-card housekeeping against simulated printers and their real FTPS servers, on SQLite and
PostgreSQL: the queue's old `bf-` files go once jobs are done, while the operator's files, the
files of queued and pre-staged jobs and the file a printer prints stay; a printer that cannot be
reached is skipped and swept at the next chance.
"""

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from bambufarm.jobs.attempt import remote_name
from bambufarm.jobs.dispatch import Target
from bambufarm.jobs.model import JobSpec, JobState
from bambufarm.jobs.runner import DispatcherOptions
from bambufarm.jobs.sd_cleanup import SdCleanup
from bambufarm.protocol.job import GcodeState
from bambufarm.simulator.ftps_commands import NO_FAULTS, FtpsFaults
from bambufarm.storage.db import Database
from tests.support.queue_harness import WAIT, X1C, QueueRig, add_file, queue_rig, sliced_file

pytest_plugins = ["tests.support.postgres"]

# Names the queue never made: left alone whatever happens.
OPERATORS = (
    "notes.gcode.3mf",
    "bf-notes.gcode.3mf",
    f"bf-{'A' * 24}.gcode.3mf",  # upper-case hex: not a name the queue writes
    f"bf-{'a' * 24}.3mf",
)


def card(rig: QueueRig, serial: str) -> set[str]:
    """The files at the root of a simulated printer's card."""
    return {e.name for e in rig.sim.node(serial).storage.list_dir("/") if not e.is_dir}


async def until_card(
    rig: QueueRig, serial: str, check: Callable[[set[str]], bool], what: str
) -> set[str]:
    """Poll the simulated card until `check` holds; fail naming `what` and the files otherwise."""
    files: set[str] = set()
    try:
        async with asyncio.timeout(WAIT):
            while True:
                files = card(rig, serial)
                if check(files):
                    return files
                # The simulator's storage has no change notification: look every 50 ms.
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}: {sorted(files)}") from None


async def test_old_files_go_once_jobs_are_done_and_the_operators_stay(
    tmp_path: Path, db: Database
) -> None:
    options = DispatcherOptions(prestage=False, sd_keep_recent=0)
    async with queue_rig(tmp_path, db, options=options) as rig:
        serial = rig.serial(0)
        storage = rig.sim.node(serial).storage
        for name in OPERATORS:
            storage.write_file(name, b"the operator's")
        nested = f"cache/{remote_name('e' * 64)}"  # only the card's root is the queue's
        storage.write_file(nested, b"not at the root")
        leftover = remote_name("f" * 64)  # ours, from before: no job needs it
        storage.write_file(leftover, b"an old upload")
        shas = [
            await add_file(rig.library, sliced_file(grams=g), f"part-{g}.gcode.3mf")
            for g in (1.0, 2.0, 3.0)
        ]
        names = [remote_name(sha) for sha in shas]
        jobs = [(await rig.queue.add(JobSpec(sha, f"part {i}")))[0] for i, sha in enumerate(shas)]
        for job in jobs:
            await rig.until_jobs(
                [job.id], lambda js: js[0].state is JobState.AWAITING_CLEAR, f"job {job.id} done"
            )
            if job is not jobs[-1]:
                await rig.plates.clear(serial, by="ann")

        # The last job ended: the earlier files and the leftover go, in the background.
        await until_card(
            rig, serial, lambda f: not f & {names[0], names[1], leftover}, "old files deleted"
        )
        await rig.plates.clear(serial, by="ann")
        files = card(rig, serial)
        # The printer still reports the last file as its job: a re-print from its screen uses it.
        assert names[2] in files
        assert set(OPERATORS) <= files
        assert storage.exists(nested)
        assert len(rig.started.of(serial)) == 3
        assert rig.dispatcher.stats.uploads == 3
        assert rig.dispatcher.cleanup.deleted >= 3
        assert rig.dispatcher.cleanup.failed == 0
        # What was deleted is not believed to be on the card: a re-print uploads it again.
        assert not rig.dispatcher.staging.holds(serial, shas[0])


async def test_files_of_queued_staged_and_printing_jobs_stay(tmp_path: Path, db: Database) -> None:
    options = DispatcherOptions(prestage=True, sd_keep_recent=0)
    async with queue_rig(tmp_path, db, time_scale=100.0, options=options) as rig:
        serial = rig.serial(0)
        storage = rig.sim.node(serial).storage
        # A job no printer of this farm can take (X1C only), its file on the card from earlier.
        sha_d = await add_file(rig.library, sliced_file(model=X1C), "x1c.gcode.3mf")
        storage.write_file(remote_name(sha_d), b"uploaded before")
        (job_d,) = await rig.queue.add(JobSpec(sha_d, "d", target=Target.of_models(X1C)))
        sha_a = await add_file(rig.library, sliced_file(prediction_s=60), "a.gcode.3mf")
        sha_b = await add_file(rig.library, sliced_file(prediction_s=7200), "b.gcode.3mf")
        sha_c = await add_file(rig.library, sliced_file(grams=5.0), "c.gcode.3mf")

        (job_a,) = await rig.queue.add(JobSpec(sha_a, "a"))
        await rig.until_jobs([job_a.id], lambda js: js[0].state is JobState.AWAITING_CLEAR, "a")
        await rig.plates.clear(serial, by="ann")
        (job_b,) = await rig.queue.add(JobSpec(sha_b, "b"))
        await rig.until_jobs([job_b.id], lambda js: js[0].state is JobState.PRINTING, "b")
        (job_c,) = await rig.queue.add(JobSpec(sha_c, "c"))
        # While b prints, c's file is pre-staged to the printer (and its card swept meanwhile).
        await rig.events.until(
            lambda _e: rig.dispatcher.staging.holds(serial, sha_c), "c's file pre-staged"
        )
        result = await rig.dispatcher.cleanup.sweep(serial)
        assert result.skipped is None
        files = card(rig, serial)
        assert remote_name(sha_b) in files  # printing
        assert remote_name(sha_c) in files  # pre-staged for a waiting job
        assert remote_name(sha_d) in files  # a queued job's
        assert remote_name(sha_a) not in files  # done, and the printer moved on to b
        assert {remote_name(s) for s in (sha_b, sha_c, sha_d)} <= set(result.kept)
        assert (await rig.job(job_c.id)).state is JobState.WAITING
        assert (await rig.job(job_d.id)).state is JobState.WAITING
        assert rig.dispatcher.staging.holds(serial, sha_c)


async def test_a_printed_file_stays_and_an_unreachable_printer_is_skipped(
    tmp_path: Path, db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    options = DispatcherOptions(prestage=False, sd_keep_recent=0)
    async with queue_rig(tmp_path, db, options=options) as rig:
        serial = rig.serial(0)
        node = rig.sim.node(serial)
        cleanup = rig.dispatcher.cleanup
        printing, spare = remote_name("b" * 64), remote_name("c" * 64)
        node.storage.write_file(printing, sliced_file(prediction_s=7200))
        node.storage.write_file(spare, b"no job needs this")

        # Started at the printer, not by the queue: the printer's own word protects it.
        handle = rig.fleet.get(serial)
        await handle.start_print(printing, plate=1, task_id=42)
        await rig.events.until(
            lambda _e: handle.state.job.gcode_state in (GcodeState.PREPARE, GcodeState.RUNNING),
            "the printer printing a file named like the queue's",
        )
        result = await cleanup.sweep(serial)
        assert result.deleted == (spare,)
        assert card(rig, serial) >= {printing}
        assert spare not in card(rig, serial)

        # The FTPS server refuses: logged with the printer and the reason; nothing else happens.
        node.storage.write_file(spare, b"no job needs this")
        node.set_ftps_faults(FtpsFaults(refuse_logins=True))
        with caplog.at_level(logging.WARNING, logger="bambufarm.jobs.sd_cleanup"):
            result = await cleanup.sweep(serial)
        assert result.skipped is not None
        assert result.deleted == ()
        assert cleanup.failed == 1
        assert any(serial in r.getMessage() for r in caplog.records if "SD cleanup" in r.msg)
        assert spare in card(rig, serial)
        node.set_ftps_faults(NO_FAULTS)
        assert (await cleanup.sweep(serial)).deleted == (spare,)  # the next chance sweeps it

        # Offline: skipped without trying; a background request ends the same way.
        node.storage.write_file(spare, b"no job needs this")
        await rig.fleet.disable(serial)
        result = await cleanup.sweep(serial)
        assert result.skipped == "the printer is offline"
        cleanup.request(serial)
        assert cleanup.busy(serial)
        await cleanup.settle(serial)  # as a start would: the sweep is stopped
        async with asyncio.timeout(WAIT):
            while True:
                if not cleanup.busy(serial):
                    break
                await asyncio.sleep(0)  # a loop turn: the cancelled task and its callback run
        assert spare in card(rig, serial)
        assert rig.dispatcher.running

        # Switched off: nothing is listed or deleted.
        await rig.fleet.enable(serial)
        off = SdCleanup(
            database=db, fleet=rig.fleet, staging=rig.dispatcher.staging, wakeup=rig.wakeup,
            enabled=False,
        )  # fmt: skip
        assert (await off.sweep(serial)).skipped == "SD cleanup is off"
        assert spare in card(rig, serial)
        await off.aclose()
