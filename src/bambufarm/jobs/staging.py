"""Pre-staging: the next job's file goes to a printer while it still prints, so starting it later
takes one `project_file` instead of an upload.

SD cards take ~160 KB/s, so a 40 MB file needs four minutes: uploaded after the plate is
cleared, that is four minutes of an idle printer per job. While a printer prints (or waits for
its plate to be cleared), a speculative matching round treats it as free and clear from when
its print should end, and asks which waiting job it would get; that job's file is uploaded to
it in the background. When the printer is free and the real round gives it that job (or
another copy of the same file), the file is already there. A wrong guess costs an upload and
some card space, never a wrong print: the real round decides, and the attempt uploads whatever
is missing.

Files are named by content (`attempt.remote_name`), so a printer holds one copy per file and
copies of one file on one printer share it. Which printer holds which file is known for the
files this process uploaded, and for the file a printer reports as its current job.
Pre-stage uploads only use transfer slots no real upload waits for, and at most `concurrency`.
When a printer is free, the real round prefers, among waiting jobs of the same priority and due
time, one whose file the printer holds, and leaves a job staged on another printer to that one
(`prefer_held`): queue order bends among equals so that staged files are used, never across
priorities.
"""

import asyncio
import contextlib
import dataclasses
import logging
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence

from bambufarm.fleet.errors import FleetError
from bambufarm.fleet.supervisor import Fleet
from bambufarm.jobs.attempt import remote_name
from bambufarm.jobs.dispatch import Assignment, JobRequest, PrinterView, match
from bambufarm.jobs.library import Library
from bambufarm.jobs.wakeup import Wakeup
from bambufarm.protocol.job import GcodeState
from bambufarm.protocol.state import PrinterState
from bambufarm.storage.errors import StorageError

logger = logging.getLogger(__name__)

# Printer states in which a printer may receive its next job's file ahead of time.
_WORKING = frozenset({GcodeState.PREPARE, GcodeState.RUNNING, GcodeState.PAUSE})
_ENDED = frozenset({GcodeState.FINISH, GcodeState.FAILED})
# How many jobs staged nowhere a free printer tries before taking one staged elsewhere: each
# try is a one-printer match (~20 µs), and the first of the right model usually fits.
_SWAP_CANDIDATES = 50
# A job passed over this often for files already on printers is not passed over again: a job
# moved to the head of its priority must not wait behind every staged file in the farm.
_MAX_PASSES = 3
# A printer that does not say how long it has left is guessed last to be free (a day).
_UNKNOWN_END_S = 86_400.0


class Staging:
    """Which library files each printer holds, and the early uploads of next jobs' files."""

    def __init__(
        self, *, fleet: Fleet, library: Library, wakeup: Wakeup, concurrency: int = 2
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"pre-staging concurrency must be at least 1, not {concurrency}")
        self._fleet = fleet
        self._library = library
        self._wakeup = wakeup
        self._concurrency = concurrency
        self._slots = asyncio.Semaphore(concurrency)
        self._held: dict[str, set[str]] = {}  # serial -> sha256 of files on its card
        self._inflight: dict[str, tuple[str, asyncio.Task[None]]] = {}
        self._earmarks: dict[str, str] = {}  # job id -> serial its file is staged for
        self._passed: Counter[str] = Counter()  # job id -> times passed over for a held file
        self.staged = 0  # pre-stage uploads completed
        self.staged_bytes = 0
        self.staged_s = 0.0  # summed durations of those transfers

    def holds(self, serial: str, sha256: str, state: PrinterState | None = None) -> bool:
        """True when the printer has this file on its card (as far as this process knows)."""
        if sha256 in self._held.get(serial, ()):
            return True
        if state is None:
            return False
        job = state.job
        current = (job.file or job.gcode_file).rsplit("/", 1)[-1]
        return bool(current) and current == remote_name(sha256)

    def add(self, serial: str, sha256: str) -> None:
        """The file is now on the printer's card."""
        self._held.setdefault(serial, set()).add(sha256)

    def forget(self, serial: str, sha256: str) -> None:
        """The printer could not read the file: upload it again next time."""
        self._held.get(serial, set()).discard(sha256)

    def drop(self, serial: str, name: str) -> None:
        """The card's file `name` is being deleted: no file held under that name any more."""
        held = self._held.get(serial)
        if held:
            held.difference_update([sha for sha in held if remote_name(sha) == name])

    @property
    def in_flight_count(self) -> int:
        """Pre-stage uploads running or waiting for a slot."""
        return len(self._inflight)

    def in_flight(self, serial: str) -> str | None:
        """The file being pre-staged to this printer, if any."""
        entry = self._inflight.get(serial)
        return entry[0] if entry is not None else None

    async def settle(self, serial: str, sha256: str) -> None:
        """Before a real upload: wait for a pre-stage of this file, or abort one of another."""
        entry = self._inflight.get(serial)
        if entry is None:
            return
        staged, task = entry
        if staged != sha256:
            task.cancel()
        # The task logs its own failures; only its end matters here.
        await asyncio.wait([task])

    def plan(
        self,
        views: Iterable[PrinterView],
        waiting: Sequence[JobRequest],
        files: Mapping[str, str],
        *,
        now: float,
        spare: int,
        skip: Collection[str] = (),
    ) -> list[tuple[str, str]]:
        """(serial, sha256) pairs to pre-stage now: working printers' likely next files.

        `waiting` are the jobs no printer took this round, `files` maps job id to file hash,
        `spare` is how many uploads may start without delaying a real one. A job is staged
        on one printer and a printer stages one job (its earmark) until the job is taken or
        the printer is free, so that rounds that guess differently do not upload twice.
        Printers in `skip` (their card is being swept) get no upload this round.
        """
        uploader = self._fleet.uploader
        working = {
            view.serial: view
            for view in views
            if view.online and view.enabled and not view.is_read_only and _working_or_ended(view)
        }
        waiting_ids = {r.job_id for r in waiting}
        self._earmarks = {
            job: serial
            for job, serial in self._earmarks.items()
            if job in waiting_ids and serial in working
        }
        marked = set(self._earmarks.values())
        candidates = [
            _as_free(view, now)
            for serial, view in working.items()
            if serial not in marked
            and serial not in self._inflight
            and serial not in skip
            and (uploader is None or not uploader.busy(serial))
        ]
        jobs = [r for r in waiting if r.job_id not in self._earmarks]
        if not candidates or not jobs:
            return []
        out: list[tuple[str, str]] = []
        for assignment in match(candidates, jobs, now=now).assignments:
            sha = files.get(assignment.job_id)
            if sha is None:
                continue
            held = self.holds(assignment.serial, sha, working[assignment.serial].state)
            if not held:
                if len(out) >= min(spare, self._concurrency - len(self._inflight)):
                    continue  # no room now: planned again in a later round
                out.append((assignment.serial, sha))
            self._earmarks[assignment.job_id] = assignment.serial
        return out

    def prefer_held(
        self,
        assignments: Sequence[Assignment],
        views: Mapping[str, PrinterView],
        waiting: Sequence[JobRequest],
        files: Mapping[str, str],
        *,
        now: float,
    ) -> tuple[list[Assignment], list[str]]:
        """The round's assignments, each free printer taking a job whose file it holds if it can.

        A free printer given a job it must first upload takes instead, among the waiting jobs
        of the same priority and due time that it fits, the first whose file it holds, else
        (when its job is staged on another printer) the first staged nowhere else: FIFO order
        bends among equals, priority never does, and no job is passed over more than
        `_MAX_PASSES` times. Returns the assignments and the ids of the jobs passed over (they
        wait for the next round).
        """
        requests = {r.job_id: r for r in waiting}
        self._passed = Counter({k: n for k, n in self._passed.items() if k in requests})
        taken = {a.job_id for a in assignments}
        out: list[Assignment] = []
        passed: list[str] = []
        for assignment in assignments:
            serial = assignment.serial
            view = views[serial]
            sha = files.get(assignment.job_id)
            job = requests.get(assignment.job_id)
            if (
                job is None
                or sha is None
                or self._passed[job.job_id] >= _MAX_PASSES
                or self.holds(serial, sha, view.state)
            ):
                out.append(assignment)
                continue
            equals = [
                r
                for r in waiting
                if r.job_id not in taken and r.priority == job.priority and r.due == job.due
            ]
            held = self._held.get(serial, set())
            swap = self._first_fit(view, [r for r in equals if files.get(r.job_id) in held], now)
            elsewhere = self._earmarks.get(assignment.job_id, serial) != serial
            if swap is None and elsewhere:
                free = [r for r in equals if self._earmarks.get(r.job_id, serial) == serial]
                swap = self._first_fit(view, free[:_SWAP_CANDIDATES], now)
            if swap is None:
                out.append(assignment)
                continue
            out.append(swap)
            taken.add(swap.job_id)
            passed.append(assignment.job_id)
            self._passed[assignment.job_id] += 1
        return out, passed

    @staticmethod
    def _first_fit(view: PrinterView, jobs: Sequence[JobRequest], now: float) -> Assignment | None:
        for job in jobs:
            fits = match([view], [job], now=now).assignments
            if fits:
                return fits[0]
        return None

    def begin(self, serial: str, sha256: str, group: asyncio.TaskGroup) -> None:
        """Start pre-staging `sha256` to `serial` in `group`."""
        if serial in self._inflight:
            return
        task = group.create_task(self._stage(serial, sha256), name=f"prestage-{serial}")
        self._inflight[serial] = (sha256, task)

    async def _stage(self, serial: str, sha256: str) -> None:
        try:
            async with self._slots:
                path = await self._library.local_path(sha256)
                result = await self._fleet.get(serial).upload(path, remote_name(sha256))
            self.add(serial, sha256)
            self.staged += 1
            self.staged_bytes += result.bytes
            self.staged_s += result.seconds
            logger.info("pre-staged %s on %s", sha256[:12], serial)
            self._wakeup.poke(f"pre-staged on {serial}")  # a slot is free: plan the next
        except asyncio.CancelledError:
            logger.debug("pre-staging %s on %s aborted for a real upload", sha256[:12], serial)
            raise
        except (FleetError, StorageError) as err:
            logger.info("pre-staging %s on %s failed: %s", sha256[:12], serial, err)
        except Exception:
            # The task's boundary: a pre-stage is an optimisation and must not end the dispatcher.
            logger.exception("pre-staging %s on %s failed", sha256[:12], serial)
        finally:
            entry = self._inflight.get(serial)
            if entry is not None and entry[1] is asyncio.current_task():
                del self._inflight[serial]

    async def aclose(self) -> None:
        """Abort every pre-stage upload in flight."""
        tasks = [task for _, task in self._inflight.values()]
        for task in tasks:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            if tasks:
                await asyncio.wait(tasks)


def _working_or_ended(view: PrinterView) -> bool:
    state = view.state.job.gcode_state
    return state in _WORKING or (state in _ENDED and not view.plate_cleared)


def _as_free(view: PrinterView, now: float) -> PrinterView:
    """The printer as it will be once its job ends and its plate is cleared.

    Its `ready_since` is when it should be free (now plus the time left), so that the
    speculative round gives the queue's head to the printer that frees first, as the real
    round will when that printer is the one that is free.
    """
    state = view.state
    job = state.job
    if job.gcode_state in _ENDED:
        free_at = now
    elif job.remaining_minutes is not None:
        free_at = now + 60.0 * job.remaining_minutes
    else:
        free_at = now + _UNKNOWN_END_S
    idle = dataclasses.replace(state, job=dataclasses.replace(job, gcode_state=GcodeState.IDLE))
    return dataclasses.replace(
        view, state=idle, plate_cleared=True, reserved_for=None, ready_since=free_at
    )
