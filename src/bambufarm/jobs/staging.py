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
Pre-stage uploads are capped at `concurrency` at a time, below the uploader's global limit, so
they never hold every transfer slot while a printer waits for a file it needs now.
"""

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Iterable, Mapping

from bambufarm.fleet.errors import FleetError
from bambufarm.fleet.supervisor import Fleet
from bambufarm.jobs.attempt import remote_name
from bambufarm.jobs.dispatch import JobRequest, PrinterView, match
from bambufarm.jobs.library import Library
from bambufarm.jobs.wakeup import Wakeup
from bambufarm.protocol.job import GcodeState
from bambufarm.protocol.state import PrinterState
from bambufarm.storage.errors import StorageError

logger = logging.getLogger(__name__)

# Printer states in which a printer may receive its next job's file ahead of time.
_WORKING = frozenset({GcodeState.PREPARE, GcodeState.RUNNING, GcodeState.PAUSE})
_ENDED = frozenset({GcodeState.FINISH, GcodeState.FAILED})
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
        waiting: Iterable[JobRequest],
        files: Mapping[str, str],
        *,
        now: float,
    ) -> list[tuple[str, str]]:
        """(serial, sha256) pairs to pre-stage: each working printer's likely next file.

        `files` maps job id to the job's file hash; `waiting` are the jobs no printer took
        this round.
        """
        if len(self._inflight) >= 4 * self._concurrency:
            return []  # enough queued behind the slots already
        uploader = self._fleet.uploader
        candidates = [
            _as_free(view, now)
            for view in views
            if view.online
            and view.enabled
            and not view.is_read_only
            and view.serial not in self._inflight
            and (uploader is None or not uploader.busy(view.serial))
            and _working_or_ended(view)
        ]
        jobs = list(waiting)
        if not candidates or not jobs:
            return []
        plan = match(candidates, jobs, now=now)
        out: list[tuple[str, str]] = []
        for assignment in plan.assignments:
            sha = files.get(assignment.job_id)
            if sha is not None and not self.holds(assignment.serial, sha):
                out.append((assignment.serial, sha))
        return out

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
