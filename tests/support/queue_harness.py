"""The print queue against simulated printers: library, fleet, dispatcher, queue and plate gate.

`queue_rig(...)` starts everything a test of the queue needs on loopback: the simulator (big
time scale, fast ticks), a supervised `Fleet` trusting its CA with an `Uploader`, a `Library`
and the queue services on the test's database. Helpers add sliced files to the library, change
a simulated tray, count the jobs a simulated printer really started, and wait on the database.
"""

import asyncio
import tempfile
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bambufarm.fleet.connection import ConnectionState
from bambufarm.fleet.supervisor import Fleet
from bambufarm.fleet.uploads import Uploader
from bambufarm.jobs.library import Library
from bambufarm.jobs.model import Job
from bambufarm.jobs.plate import PlateGate
from bambufarm.jobs.queue import JobQueue
from bambufarm.jobs.runner import Dispatcher, DispatcherOptions
from bambufarm.jobs.wakeup import Wakeup
from bambufarm.simulator.fleet import SimFleet
from bambufarm.simulator.manifest import Manifest
from bambufarm.simulator.report_builder import ById
from bambufarm.storage.db import Database
from bambufarm.storage.jobs import get_job
from tests.support.fleet_harness import EventLog, supervised
from tests.support.sim import running_fleet
from tests.support.threemf_factory import FilamentSpec, PlateSpec, build_gcode_3mf

P1S = "C12"  # model codes as the slicer writes them
X1C = "BL-P001"
BeforeStart = Callable[[str], bool | None]
WAIT = 30.0  # generous for a loaded 2-core machine; a hang fails the test instead of stalling


@dataclass
class StartLog:
    """Every job a simulated printer started: (serial, task id, file), in order."""

    starts: list[tuple[str, str, str]] = field(default_factory=list)
    lost: list[tuple[str, str, str]] = field(default_factory=list)  # acknowledged, not started

    def of(self, serial: str) -> list[tuple[str, str, str]]:
        """The starts on one printer."""
        return [s for s in self.starts if s[0] == serial]


@dataclass
class QueueRig:
    """Everything a queue test drives."""

    sim: SimFleet
    manifest: Manifest
    db: Database
    library: Library
    fleet: Fleet
    events: EventLog
    wakeup: Wakeup
    queue: JobQueue
    plates: PlateGate
    dispatcher: Dispatcher
    started: StartLog

    def serial(self, index: int) -> str:
        """The serial of simulated printer `index`."""
        return self.manifest.printers[index].serial

    async def job(self, job_id: int) -> Job:
        """A job as stored now."""
        return Job.from_record(await _get(self.db, job_id))

    async def until_jobs(
        self, ids: Iterable[int], check: Callable[[list[Job]], bool], what: str,
        within: float = WAIT,
    ) -> list[Job]:  # fmt: skip
        """Poll the jobs until `check` holds; fail naming `what` (and the jobs) otherwise."""
        wanted = list(ids)
        jobs: list[Job] = []
        try:
            async with asyncio.timeout(within):
                while True:
                    jobs = [await self.job(i) for i in wanted]
                    if check(jobs):
                        return jobs
                    # The database has no change notification for tests: look every 50 ms.
                    await asyncio.sleep(0.05)
        except TimeoutError:
            states = [(j.id, j.state.value, j.printer, j.reason) for j in jobs]
            raise AssertionError(f"timed out waiting for {what}: {states}") from None


async def _get(db: Database, job_id: int) -> Any:
    async with db.session(readonly=True) as session:
        return await get_job(session, job_id)


def sliced_file(
    *,
    model: str = P1S,
    color: str = "#FFFFFF",
    material: str = "PLA",
    prediction_s: int = 600,
    padding: int = 0,
    grams: float = 12.0,
) -> bytes:
    """A small sliced file for one plate with one filament."""
    spec = PlateSpec(
        prediction_s=prediction_s,
        layers=40,
        filaments=(FilamentSpec(slot=1, type=material, color=color, used_g=grams),),
    )
    return build_gcode_3mf(plates=[spec], printer_model_id=model, gcode_padding_bytes=padding)


async def add_file(library: Library, data: bytes, name: str) -> str:
    """Store `data` in the library under `name`; its sha256."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(data)
        entry = await library.add(path, name=name)
    return entry.sha256


def set_tray(sim: SimFleet, serial: str, *, unit: int = 0, slot: int = 0, **values: Any) -> None:
    """Change one simulated AMS tray's report values (e.g. tray_type="", tray_color=...)."""
    report = sim.node(serial).printer.report
    path = ("ams", "ams", ById(str(unit)), "tray", ById(str(slot)))
    tray = dict(report.get(path))
    tray.update(values)
    report.set(path, tray)


def watch_starts(sim: SimFleet, log: StartLog, *, before: "BeforeStart | None" = None) -> None:
    """Record every job the simulated printers start.

    `before(serial)` runs first; when it returns False the printer acknowledges the
    `project_file` but loses it (the job never starts), which `log.lost` records.
    """
    for node in sim.nodes:
        printer = node.printer
        original = printer.start_job

        def start_job(
            request: dict[str, Any], file: str, mapping: list[int],
            _serial: str = node.serial, _original: Any = original,
        ) -> None:  # fmt: skip
            entry = (_serial, str(request.get("task_id")), file)
            if before is not None and before(_serial) is False:
                log.lost.append(entry)
                return
            log.starts.append(entry)
            _original(request, file, mapping)

        printer.start_job = start_job  # type: ignore[method-assign]


@asynccontextmanager
async def queue_rig(
    tmp_path: Path,
    db: Database,
    *,
    models: Sequence[str] = ("P1S",),
    count: int | None = None,
    time_scale: float = 400.0,
    quirks: Mapping[str, Any] | None = None,
    options: DispatcherOptions | None = None,
    uploads: int = 4,
    before_start: BeforeStart | None = None,
) -> AsyncIterator[QueueRig]:
    """The queue running against a simulated fleet on the test's database."""
    async with running_fleet(
        tmp_path / "sim", models=models, count=count, time_scale=time_scale,
        quirks=quirks, tick_interval=0.05,
    ) as (sim, manifest):  # fmt: skip
        started = StartLog()
        watch_starts(sim, started, before=before_start)
        library = Library(tmp_path / "library", db)
        async with (
            Uploader(max_concurrent=uploads) as uploader,
            supervised(manifest, uploader=uploader) as (fleet, events),
        ):
            serials = [p.serial for p in manifest.printers]
            await events.until_state(serials, ConnectionState.ONLINE, within=WAIT)
            await events.until(
                lambda _e: all(fleet.snapshot(s).state.report_count > 0 for s in serials),
                "a first report from every printer",
            )
            wakeup = Wakeup()
            dispatcher = Dispatcher(
                database=db, fleet=fleet, library=library, wakeup=wakeup, options=options
            )
            rig = QueueRig(
                sim=sim, manifest=manifest, db=db, library=library, fleet=fleet,
                events=events, wakeup=wakeup, queue=JobQueue(db, wakeup),
                plates=PlateGate(db, wakeup), dispatcher=dispatcher, started=started,
            )  # fmt: skip
            await dispatcher.start()
            try:
                yield rig
            finally:
                await dispatcher.stop()
