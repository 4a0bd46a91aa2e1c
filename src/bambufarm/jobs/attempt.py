"""One attempt of one job on one printer: who it is on the wire, and what the printer says of it.

An attempt is recognised in the printer's reports by its task id, which `project_file` sets and
the printer echoes in `task_id` / `subtask_id` (protocol.md §1.5.1). The id is derived from the
job's batch (a random UUID), copy and attempt number, so that a restarted server recognises
its own jobs without having written the id down, and every attempt gets a fresh id (a P1S
ignores a `project_file` repeating the previous job's id, §1.8.2). Firmware that echoes no
ids ("0") is matched on the file name and the display name instead.

`observe(attempt, job)` is pure: it says what the printer's job report means for the attempt.
"""

import asyncio
import hashlib
import re
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Final

from bambufarm.jobs.dispatch import TrayChoice
from bambufarm.protocol.envelope import INT32_MAX
from bambufarm.protocol.errors import HmsError
from bambufarm.protocol.hms import PrintError
from bambufarm.protocol.job import GcodeState, Job
from bambufarm.protocol.threemf import PlateFilament

# Slicers use small task ids; ours stay above them and within int32 (protocol.md §1.8.2).
TASK_ID_LOW: Final = 1_000_000
REMOTE_PREFIX: Final = "bf-"
REMOTE_SUFFIX: Final = ".gcode.3mf"
# 24 hex digits (96 bits) of the file's sha256 tell files apart on one card.
REMOTE_HEX: Final = 24
_REMOTE_NAME: Final = re.compile(
    f"{re.escape(REMOTE_PREFIX)}[0-9a-f]{{{REMOTE_HEX}}}{re.escape(REMOTE_SUFFIX)}"
)
_NO_ID: Final = frozenset({"", "0"})


class Phase(StrEnum):
    """Where an attempt is, as the dispatcher tracks it."""

    UPLOADING = "uploading"  # the file is on its way to the printer
    STARTING = "starting"  # project_file sent (or about to be): not yet seen on the printer
    PRINTING = "printing"  # the printer reports it in PREPARE or RUNNING
    PAUSED = "paused"
    STOPPING = "stopping"  # we asked the printer to stop it; waiting to see it stopped


class Sighting(StrEnum):
    """What the printer's report says about an attempt."""

    UNKNOWN = "unknown"  # no report yet, or nothing that tells
    ELSEWHERE = "elsewhere"  # the printer reports another job (or none): not ours
    PREPARING = "preparing"
    RUNNING = "running"
    PAUSED = "paused"
    FINISHED = "finished"
    FAILED = "failed"
    IDLE = "idle"  # ours, but the printer went idle: it stopped or never began


_SIGHTINGS: Final = MappingProxyType(
    {
        GcodeState.PREPARE: Sighting.PREPARING,
        GcodeState.SLICING: Sighting.PREPARING,
        GcodeState.RUNNING: Sighting.RUNNING,
        GcodeState.PAUSE: Sighting.PAUSED,
        GcodeState.FINISH: Sighting.FINISHED,
        GcodeState.FAILED: Sighting.FAILED,
        GcodeState.IDLE: Sighting.IDLE,
    }
)


def task_id_for(batch: str, copy_index: int, attempt: int) -> int:
    """The task id of one attempt: stable across restarts, fresh for every attempt."""
    digest = hashlib.blake2b(f"{batch}:{copy_index}:{attempt}".encode(), digest_size=8).digest()
    return TASK_ID_LOW + int.from_bytes(digest, "big") % (INT32_MAX - TASK_ID_LOW + 1)


def remote_name(sha256: str) -> str:
    """The file name on the printer for a library file: one name per content.

    Copies of one file on one printer reuse the upload, and a pre-staged file is found again.
    """
    return f"{REMOTE_PREFIX}{sha256[:REMOTE_HEX]}{REMOTE_SUFFIX}"


def is_remote_name(name: str) -> bool:
    """True for a name `remote_name` makes (`bf-<24 hex>.gcode.3mf`): a file the queue put there."""
    return _REMOTE_NAME.fullmatch(name) is not None


@dataclass(slots=True)
class Attempt:
    """The dispatcher's live record of one job's attempt on one printer."""

    job_id: int
    attempt: int
    serial: str
    printer: str  # "name (serial)" for reasons and logs
    batch: str
    copy_index: int
    name: str  # the job's display name (subtask_name)
    sha256: str
    size: int
    plate: int
    filaments: tuple[PlateFilament, ...]
    trays: tuple[TrayChoice, ...] = ()  # empty for an attempt recovered after a restart
    phase: Phase = Phase.UPLOADING
    recovered: bool = False  # found in the database at start-up, not started by this process
    confirmed: bool = False  # seen on the printer as its own job
    acknowledged: bool = False  # project_file's ack came back ok
    print_id: int | None = None  # the history row of this attempt
    cancel_requested: bool = False
    stop_reason: str | None = None  # why we stopped it (None: the operator cancelled)
    progress: int | None = None  # last recorded, percent
    progress_at: float = float("-inf")  # when it was recorded (the dispatcher's clock)
    uploaded: int = 0  # bytes sent so far
    recorded_upload: int = -1  # upload percent last written
    reports_at_send: int = 0  # the printer's report count when project_file went out
    task: "asyncio.Task[None] | None" = field(default=None, repr=False)  # upload and start
    # Serialises the moves of this attempt (reports, the watchdog, the operator, the upload).
    lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)
    task_id: int = field(init=False)
    remote: str = field(init=False)

    def __post_init__(self) -> None:
        self.task_id = task_id_for(self.batch, self.copy_index, self.attempt)
        self.remote = remote_name(self.sha256)

    def trays_text(self) -> str:
        """ "filament 1 → AMS 1 slot 1", for the prepare-hang reason."""
        if not self.trays:
            return "the trays the job was mapped to"
        return ", ".join(f"filament {c.slot} → {c.location}" for c in self.trays)


def observe(attempt: Attempt, job: Job) -> Sighting:
    """What the printer's job report says about `attempt`."""
    state = job.gcode_state
    if state is GcodeState.UNKNOWN or state is GcodeState.INIT:
        return Sighting.UNKNOWN
    if not _is_ours(attempt, job):
        # An idle printer that names no job has none; an ended or busy one that names none
        # may be ours behind a partial first report: unknown until it says more.
        if _tells(job) or state is GcodeState.IDLE:
            return Sighting.ELSEWHERE
        return Sighting.UNKNOWN
    return _SIGHTINGS.get(state, Sighting.UNKNOWN)


def _is_ours(attempt: Attempt, job: Job) -> bool:
    ours = str(attempt.task_id)
    if job.task_id not in _NO_ID or job.subtask_id not in _NO_ID:
        return ours in (job.task_id, job.subtask_id)
    # No ids echoed: the file and the display name must both be ours.
    file = (job.file or job.gcode_file).rsplit("/", 1)[-1]
    return file == attempt.remote and job.subtask_name == attempt.name


def _tells(job: Job) -> bool:
    """Whether the report names its job at all (a first delta after connecting may not)."""
    return bool(
        job.task_id not in _NO_ID
        or job.subtask_id not in _NO_ID
        or job.file
        or job.gcode_file
        or job.subtask_name
    )


def failure_text(print_error: int) -> str:
    """The printer's reason for a failed job, decoded ("0500_C010: The printer could not …")."""
    if print_error == 0:
        return "the printer reported the job as failed without an error code"
    try:
        error = PrintError.from_int(print_error)
    except HmsError:
        return f"the printer reported error {print_error}"
    return f"{error.display}: {error.description}"


def is_cancel_error(print_error: int) -> bool:
    """True for the error a printer raises when a job is stopped on purpose."""
    try:
        return print_error != 0 and PrintError.from_int(print_error).is_cancel
    except HmsError:
        return False
