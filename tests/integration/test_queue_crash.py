"""Crash safety: the dispatcher runs in a child process that is SIGKILLed at the worst moments.

Killed during an upload, right after `project_file` reached the printer, and during a print
that then finishes while no server is running; each time a new process takes over the same
database and printers. Every job must end in the right state, reconciled from the printers'
reports, with the print started exactly once on the printer and one history row per print.
On SQLite and on PostgreSQL.
"""

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from bambufarm.jobs.history import print_history
from bambufarm.jobs.library import Library
from bambufarm.jobs.model import Job, JobSpec, JobState
from bambufarm.jobs.queue import JobQueue
from bambufarm.jobs.wakeup import Wakeup
from bambufarm.simulator.fleet import SimFleet
from bambufarm.simulator.manifest import Manifest
from bambufarm.storage.db import Database
from bambufarm.storage.jobs import get_job
from tests.support.queue_harness import StartLog, add_file, sliced_file, watch_starts
from tests.support.sim import running_fleet

pytest_plugins = ["tests.support.postgres"]

ROOT = Path(__file__).resolve().parents[2]
WAIT = 60.0  # a child process starts in ~2 s here; a loaded machine may take much longer


class Child:
    """One dispatcher process; `kill()` is SIGKILL, nothing is flushed or closed."""

    def __init__(self, proc: asyncio.subprocess.Process, log: Path) -> None:
        self.proc = proc
        self.log = log

    @property
    def pid(self) -> int:
        return self.proc.pid

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGKILL)

    async def reap(self) -> None:
        self.kill()
        await self.proc.wait()


class Rig:
    """The simulator and the database in this process; dispatchers in children."""

    def __init__(self, tmp_path: Path, db: Database, url: str, sim: SimFleet, manifest: Manifest):
        self.tmp_path = tmp_path
        self.db = db
        self.url = url
        self.sim = sim
        self.manifest_path = tmp_path / "manifest.json"
        manifest.write(self.manifest_path)
        self.serial = manifest.printers[0].serial
        self.library = Library(tmp_path / "library", db)
        self.queue = JobQueue(db, Wakeup())  # pokes no one: the child finds jobs on start
        self.started = StartLog()
        self.children: list[Child] = []

    async def spawn(self) -> tuple[Child, str]:
        """Start a dispatcher process; its `ready` line once it dispatches."""
        log = self.tmp_path / f"child-{len(self.children)}.log"
        with log.open("wb") as err:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "tests.support.queue_child",
                "--database", self.url, "--manifest", str(self.manifest_path),
                "--library", str(self.tmp_path / "library"),
                cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=err,
            )  # fmt: skip
        child = Child(proc, log)
        self.children.append(child)
        assert proc.stdout is not None
        try:
            async with asyncio.timeout(WAIT):
                line = (await proc.stdout.readline()).decode().strip()
        except TimeoutError:
            raise AssertionError(f"child not ready: {log.read_text()[-3000:]}") from None
        assert line.startswith("ready"), log.read_text()[-3000:]
        return child, line

    async def job(self, job_id: int) -> Job:
        async with self.db.session(readonly=True) as session:
            return Job.from_record(await get_job(session, job_id))

    async def until(self, job_id: int, check: Callable[[Job], bool], what: str) -> Job:
        job: Job | None = None
        try:
            async with asyncio.timeout(WAIT):
                while True:
                    job = await self.job(job_id)
                    if check(job):
                        return job
                    # The database has no change notification for tests: look every 50 ms.
                    await asyncio.sleep(0.05)
        except TimeoutError:
            logs = "\n".join(c.log.read_text()[-2000:] for c in self.children)
            raise AssertionError(f"timed out waiting for {what}: {job}\n{logs}") from None

    async def history(self) -> list[tuple[int | None, int | None, str]]:
        async with self.db.session(readonly=True) as session:
            page = await print_history(session)
        return sorted((p.job_id, p.attempt, p.outcome.value) for p in page.items)


@contextlib.asynccontextmanager
async def crash_rig(
    tmp_path: Path, db: Database, url: str, **sim_options: object
) -> AsyncIterator[Rig]:
    async with running_fleet(tmp_path / "sim", tick_interval=0.05, **sim_options) as (  # type: ignore[arg-type]
        sim,
        manifest,
    ):
        rig = Rig(tmp_path, db, url, sim, manifest)
        try:
            yield rig
        finally:
            for child in rig.children:
                await child.reap()


async def test_killed_during_an_upload(tmp_path: Path, db: Database, database_url: str) -> None:
    # ~100 KB at 40 KB/s: the upload takes seconds, long enough to be killed in.
    quirks = {"ftps_write_rate": 40_000}
    async with crash_rig(tmp_path, db, database_url, time_scale=400.0, quirks=quirks) as rig:
        watch_starts(rig.sim, rig.started)
        sha = await add_file(rig.library, sliced_file(padding=300_000), "gear.gcode.3mf")
        (job,) = await rig.queue.add(JobSpec(sha, "gear"))
        first, _ = await rig.spawn()
        await rig.until(job.id, lambda j: j.state is JobState.UPLOADING, "the upload")
        first.kill()
        await first.reap()
        assert (await rig.job(job.id)).state is JobState.UPLOADING

        _, ready = await rig.spawn()
        assert ready == "ready 1 0"  # the interrupted upload was queued again
        final = await rig.until(
            job.id, lambda j: j.state is JobState.AWAITING_CLEAR, "printed after the restart"
        )
        assert final.attempt == 2
        assert len(rig.started.starts) == 1
        assert await rig.history() == [(job.id, 2, "done")]


async def test_killed_right_after_project_file(
    tmp_path: Path, db: Database, database_url: str
) -> None:
    async with crash_rig(tmp_path, db, database_url, time_scale=200.0) as rig:
        victims: list[Child] = []

        def kill_the_sender(_serial: str) -> None:
            # The printer has the start in hand; its sender dies before hearing the answer.
            for child in victims:
                child.kill()

        watch_starts(rig.sim, rig.started, before=kill_the_sender)
        sha = await add_file(rig.library, sliced_file(prediction_s=1200), "nut.gcode.3mf")
        (job,) = await rig.queue.add(JobSpec(sha, "nut"))
        first, _ = await rig.spawn()
        victims.append(first)
        await first.proc.wait()
        victims.clear()
        assert (await rig.job(job.id)).state is JobState.STARTING

        _, ready = await rig.spawn()
        assert ready == "ready 0 1"  # tracked again, not restarted
        await rig.until(job.id, lambda j: j.state is JobState.PRINTING, "printing, recognised")
        final = await rig.until(job.id, lambda j: j.state is JobState.AWAITING_CLEAR, "finished")
        assert final.attempt == 1
        assert len(rig.started.starts) == 1
        assert await rig.history() == [(job.id, 1, "done")]


async def test_killed_during_a_print_that_finishes_while_down(
    tmp_path: Path, db: Database, database_url: str
) -> None:
    async with crash_rig(tmp_path, db, database_url, time_scale=400.0) as rig:
        watch_starts(rig.sim, rig.started)
        sha = await add_file(rig.library, sliced_file(prediction_s=1200), "cap.gcode.3mf")
        (job,) = await rig.queue.add(JobSpec(sha, "cap"))
        first, _ = await rig.spawn()
        printing = await rig.until(
            job.id, lambda j: j.state is JobState.PRINTING and (j.progress or 0) > 0, "printing"
        )
        first.kill()
        await first.reap()
        # No server runs while the printer finishes.
        printer = rig.sim.node(rig.serial).printer
        for _ in range(int(WAIT / 0.05)):
            if printer.gcode_state == "FINISH":
                break
            await asyncio.sleep(0.05)  # the simulator has no finish notification to wait on
        assert printer.gcode_state == "FINISH"
        assert (await rig.job(job.id)).state is JobState.PRINTING

        _, ready = await rig.spawn()
        assert ready == "ready 0 1"
        final = await rig.until(
            job.id, lambda j: j.state is JobState.AWAITING_CLEAR, "finished, reconciled"
        )
        assert final.attempt == 1
        assert final.started_at == printing.started_at
        assert len(rig.started.starts) == 1
        assert await rig.history() == [(job.id, 1, "done")]
