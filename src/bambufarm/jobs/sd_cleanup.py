"""SD-card housekeeping: the queue deletes the files it put on a printer once nothing needs them.

The dispatcher uploads each job's file as `bf-<24 hex>.gcode.3mf` (`attempt.remote_name`) and
pre-stages next jobs' files. At 40 MB a job a 32 GB card is full after ~800 jobs, and firmware
misbehaves on a full card. A sweep of one printer lists its card's root over FTPS and deletes
the queue's files that nothing needs. It never deletes:

* a name `attempt.is_remote_name` refuses: the operator's files, slicers' uploads, timelapses;
* the file the printer reports as its job, whatever its state: the one it prints, or its last
  print, which a re-print from its screen uses and `Staging.holds` counts as on the card;
* the file of a job of ours on that printer that is not finished (uploading … awaiting_clear);
* the file of any queued or waiting job (the printer may get it: pre-staged files are such
  files), and the file being pre-staged to the printer;
* of the rest, the `keep_recent` most recently printed on that printer (see `DEFAULT_KEEP`).

When: after an attempt of ours ends on the printer and when a file is pre-staged to it (in the
background: the printer is printing, or waits for its plate), and before a start uploads a file
to it (in the start's task: room before the file lands; a 40 MB upload takes ~4 minutes, the
sweep one listing and a delete per old file, ~1 s each). A start whose file is already on the
printer sweeps nothing and waits for nothing: `settle` stops a sweep of its printer, at worst
after the one delete in flight.

Why starts are safe: a start sends `project_file` without uploading only when `Staging.holds`
says the file is there. A sweep drops each file from `Staging` just before deleting it, never
deletes the file the printer reports, re-reads what the printer and pre-staging use before each
delete, and a start settles the sweep of its printer before looking. A job claimed after the
sweep read the database is on that printer in the database for any later sweep, and pre-staging
does not begin on a printer while it is swept (`busy`), so no upload races a delete.

Failures (printer offline, FTPS or database errors) are logged with the printer and the reason;
they never fail a job or the dispatcher, and the next trigger tries again.
"""

import asyncio
import logging
from collections.abc import Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from sqlalchemy import and_, or_, select

from bambufarm.fleet.config import PrinterSnapshot
from bambufarm.fleet.errors import FleetError
from bambufarm.fleet.supervisor import Fleet
from bambufarm.jobs.attempt import is_remote_name, remote_name
from bambufarm.jobs.model import DISPATCHABLE, ON_PRINTER
from bambufarm.jobs.staging import Staging
from bambufarm.jobs.wakeup import Wakeup
from bambufarm.protocol.ftps import (
    FtpsClient,
    FtpsError,
    FtpsNotFoundError,
    RemoteFile,
    ftps_executor,
    shutdown_executor,
)
from bambufarm.protocol.job import BUSY_STATES, GcodeState
from bambufarm.storage.db import Database
from bambufarm.storage.errors import StorageError
from bambufarm.storage.job_tables import JobRow, PrintRow

logger = logging.getLogger(__name__)

# Re-prints are the cheap case worth keeping for: a file still on the card starts with one
# `project_file` instead of a 4-minute upload (40 MB at ~160 KB/s). Two files besides the
# printer's current one cost 80 MB, 0.25 % of a 32 GB card.
DEFAULT_KEEP: Final = 2
# Uploads land in the FTPS login directory, the card's root (protocol.md §2.2).
_ROOT: Final = "/"
# One worker for background sweeps, one for a start's sweep before its upload: listings and
# deletes answer within a second, and sweeps never queue behind uploads (their own pool).
_WORKERS: Final = 2
_BACKGROUND: Final = 1
_TIMEOUT_S: Final = 30.0
# Prints of a printer read to rank its files by recency: far more than anyone keeps.
_RECENT_PRINTS: Final = 100
_DISPATCHABLE: Final = tuple(sorted(s.value for s in DISPATCHABLE))
_ON_PRINTER: Final = tuple(sorted(s.value for s in ON_PRINTER))


@dataclass(frozen=True, slots=True)
class SweepResult:
    """What one sweep of one printer's card did."""

    serial: str
    deleted: tuple[str, ...] = ()
    kept: tuple[str, ...] = ()  # the queue's files left on the card
    skipped: str | None = None  # why it did not run, failed, or stopped short


@dataclass(slots=True, eq=False)
class _Sweep:
    """A sweep in progress on one printer."""

    task: "asyncio.Task[None] | None" = None  # a background sweep's task (None: inline)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    deleting: bool = False  # a delete is in flight: its file is already dropped from Staging
    stop: bool = False  # a start wants the printer: stop before the next delete


def deletable(
    files: Mapping[str, RemoteFile],
    protected: Collection[str],
    recent: Sequence[str],
    keep: int,
) -> list[str]:
    """The queue's files to delete: not protected, and not among the `keep` most recent.

    `recent` names files newest print first; files never printed here (a pre-stage for a job
    that went elsewhere) rank after them, newest upload first. Deleted oldest first.
    """
    rank = {name: i for i, name in reversed(list(enumerate(recent)))}
    candidates = [name for name in files if name not in protected]

    def recency(name: str) -> tuple[int, float, str]:
        modified = files[name].modified
        stamp = -modified.timestamp() if isinstance(modified, datetime) else 0.0
        return (rank.get(name, len(rank)), stamp, name)

    candidates.sort(key=recency)
    return list(reversed(candidates[keep:]))


class SdCleanup:
    """Deletes the queue's files from printers' cards once no job, print or pre-stage needs them."""

    def __init__(
        self,
        *,
        database: Database,
        fleet: Fleet,
        staging: Staging,
        wakeup: Wakeup,
        enabled: bool = True,
        keep_recent: int = DEFAULT_KEEP,
        timeout: float = _TIMEOUT_S,
    ) -> None:
        if keep_recent < 0:
            raise ValueError(f"keep_recent must be 0 or more, not {keep_recent}")
        self._db = database
        self._fleet = fleet
        self._staging = staging
        self._wakeup = wakeup
        self.enabled = enabled
        self._keep = keep_recent
        self._timeout = timeout
        self._executor: ThreadPoolExecutor | None = None  # made on first use, shut in aclose
        self._slots = asyncio.Semaphore(_BACKGROUND)
        self._sweeps: dict[str, _Sweep] = {}
        self._owed: set[str] = set()  # printers pre-staging skipped while they were swept
        self.deleted = 0  # files deleted since start
        self.failed = 0  # sweeps that failed (offline printers are skipped, not failed)

    def busy(self, serial: str) -> bool:
        """True while this printer's card is being swept (or a sweep waits to begin)."""
        return serial in self._sweeps

    def staging_skips(self) -> frozenset[str]:
        """The printers pre-staging must skip now (being swept); each is poked when it ends."""
        busy = frozenset(self._sweeps)
        self._owed.update(busy)
        return busy

    def request(self, serial: str) -> None:
        """Sweep the printer's card in the background, unless a sweep of it is under way."""
        if not self.enabled or serial in self._sweeps:
            return
        run = _Sweep()
        self._sweeps[serial] = run
        run.task = asyncio.create_task(self._background(serial, run), name=f"sd-cleanup-{serial}")
        # Also when cancelled before its first step (a start came at once): no `finally` runs then.
        run.task.add_done_callback(lambda _task: self._finish(serial, run))

    async def sweep(self, serial: str, *, keep: Collection[str] = ()) -> SweepResult:
        """Sweep the printer's card now (after a sweep of it under way); never raises."""
        if not self.enabled:
            return SweepResult(serial, skipped="SD cleanup is off")
        while (other := self._sweeps.get(serial)) is not None:
            await other.done.wait()
        run = _Sweep()
        self._sweeps[serial] = run
        return await self._run(serial, run, frozenset(keep))

    async def settle(self, serial: str) -> None:
        """Before a start: stop a sweep of this printer, waiting at most for one delete."""
        run = self._sweeps.get(serial)
        if run is None:
            return
        run.stop = True
        if run.task is not None and not run.deleting:
            run.task.cancel()  # it has dropped nothing yet: let it unwind on its own
            return
        await run.done.wait()

    async def aclose(self) -> None:
        """Abort background sweeps and stop the FTPS workers."""
        tasks = [run.task for run in self._sweeps.values() if run.task is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        executor, self._executor = self._executor, None
        if executor is not None:
            await shutdown_executor(executor)

    # ------------------------------------------------------------------ one sweep

    async def _background(self, serial: str, run: _Sweep) -> None:
        async with self._slots:
            await self._run(serial, run, frozenset())

    async def _run(self, serial: str, run: _Sweep, keep: frozenset[str]) -> SweepResult:
        try:
            return await self._sweep(serial, run, keep)
        except (FtpsError, FleetError, StorageError) as err:
            self.failed += 1
            logger.warning(
                "SD cleanup of %s failed, tried again at its next job or upload: %s",
                self._label(serial), err,
            )  # fmt: skip
            return SweepResult(serial, skipped=str(err))
        except Exception as err:
            # The boundary: housekeeping must never fail a start or stop the dispatcher.
            self.failed += 1
            logger.exception("SD cleanup of %s failed", self._label(serial))
            return SweepResult(serial, skipped=f"internal error {err!r}")
        finally:
            self._finish(serial, run)

    def _finish(self, serial: str, run: _Sweep) -> None:
        run.done.set()
        if self._sweeps.get(serial) is run:
            del self._sweeps[serial]
            if serial in self._owed:
                self._owed.discard(serial)
                # Pre-staging skipped this printer while it was swept: plan it again.
                self._wakeup.poke(f"card of {serial} swept")

    async def _sweep(self, serial: str, run: _Sweep, keep: frozenset[str]) -> SweepResult:
        snapshot = self._fleet.snapshot(serial)
        label = snapshot.config.label
        why = _cannot_sweep(snapshot)
        if why is not None:
            logger.info("SD cleanup of %s skipped: %s", label, why)
            return SweepResult(serial, skipped=why)
        client = self._client(serial)
        listing = await client.list(_ROOT)
        ours = {e.name: e for e in listing if not e.is_dir and is_remote_name(e.name)}
        if not ours:
            return SweepResult(serial)
        needed, recent = await self._needed(serial)
        protected = needed | keep | self._in_use(serial)
        deleted: list[str] = []
        stopped = False
        for name in deletable(ours, protected, recent, self._keep):
            if run.stop:
                stopped = True
                break
            if name in self._in_use(serial):
                continue  # started at the printer's screen, or pre-staged, since the listing
            run.deleting = True
            self._staging.drop(serial, name)
            try:
                await client.delete(f"{_ROOT}{name}")
            except FtpsNotFoundError:
                logger.debug("%s: %s was already gone", label, name)
            finally:
                run.deleting = False
            deleted.append(name)
            self.deleted += 1
        kept = tuple(sorted(set(ours) - set(deleted)))
        if deleted:
            logger.info(
                "SD cleanup of %s: deleted %d file(s) of the queue, %d kept%s",
                label, len(deleted), len(kept), " (stopped for a start)" if stopped else "",
            )  # fmt: skip
        return SweepResult(
            serial, tuple(deleted), kept, skipped="stopped for a start" if stopped else None
        )

    def _in_use(self, serial: str) -> set[str]:
        """Names the printer reports as its job, and the file being pre-staged to it."""
        names: set[str] = set()
        try:
            job = self._fleet.snapshot(serial).state.job
        except FleetError:
            return names
        for path in (job.file, job.gcode_file):
            name = path.rsplit("/", 1)[-1]
            if name:
                names.add(name)
        staging = self._staging.in_flight(serial)
        if staging is not None:
            names.add(remote_name(staging))
        return names

    async def _needed(self, serial: str) -> tuple[set[str], list[str]]:
        """Files of queued jobs and of this printer's unfinished jobs; its prints, newest first."""
        waiting = JobRow.state.in_(_DISPATCHABLE)
        here = and_(JobRow.state.in_(_ON_PRINTER), JobRow.printer_serial == serial)
        jobs = (
            select(JobRow.file_sha256)
            .where(JobRow.file_sha256.is_not(None), or_(waiting, here))
            .distinct()
        )
        prints = (
            select(PrintRow.file_sha256)
            .where(PrintRow.printer_serial == serial, PrintRow.file_sha256.is_not(None))
            .order_by(PrintRow.started_at.desc(), PrintRow.id.desc())
            .limit(_RECENT_PRINTS)
        )
        async with self._db.session(readonly=True) as session:
            needed = {remote_name(sha) for sha in await session.scalars(jobs) if sha}
            recent = [remote_name(sha) for sha in await session.scalars(prints) if sha]
        return needed, recent

    def _client(self, serial: str) -> FtpsClient:
        if self._executor is None:
            self._executor = ftps_executor(_WORKERS)
        target = self._fleet.upload_target(serial)
        return FtpsClient(
            target.host,
            target.port,
            target.access_code,
            target.ssl_context,
            executor=self._executor,
            timeout=self._timeout,
            verify_peer=target.verify_peer,
        )

    def _label(self, serial: str) -> str:
        try:
            return self._fleet.snapshot(serial).config.label
        except FleetError:
            return serial


def _cannot_sweep(snapshot: PrinterSnapshot) -> str | None:
    """Why this printer's card is not swept now, or None."""
    if not snapshot.connection.connected:
        return "the printer is offline"
    state = snapshot.state
    if state.report_count == 0:
        return "no report from the printer yet: what it prints is unknown"
    job = state.job
    working = job.gcode_state in BUSY_STATES or job.gcode_state is GcodeState.UNKNOWN
    if working and not (job.file or job.gcode_file):
        # It prints something it does not name: that file might be one of ours.
        return "the printer does not say which file it prints"
    return None
