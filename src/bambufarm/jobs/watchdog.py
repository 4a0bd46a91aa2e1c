"""The start watchdog: a deadline per stage of a job's start, and the reasons it fails one with.

Stages a started job passes, each with a limit (`StageLimits`):

* `upload` — the file must reach the printer within `upload_min_s` plus its size at
  `upload_min_rate` (SD cards write 50-150 KB/s; a 40 MB file needs ~4 min at 160 KB/s, so
  the default floor of 20 KB/s only fires on a transfer that has all but stopped);
* `confirm` — after `project_file` (acknowledged or not) the printer must report the job as
  its own (our task id) within `confirm_s`. A printer that cannot be seen (offline, or silent
  since the start was sent) is waited for: it may be printing the job, and retrying elsewhere
  could print it twice;
* `prepare` — a printer showing the job in PREPARE must reach RUNNING within `prepare_s`.
  Real firmware waits in PREPARE forever, with no error, when `ams_mapping` names an empty
  tray; heating, levelling and calibration take 5-20 minutes, so the default is 30;
* `stop` — after we stop a job (cancelled, or the prepare hang) the printer must show it
  stopped within `stop_s` before the job may be retried anywhere.

`Watchdog` keeps one deadline per job and sleeps until the earliest: no polling. The decisions
taken at expiry are pure functions here, so they are tested without a printer.
"""

import asyncio
import heapq
import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

# Below this, a stage limit is a typo (seconds for minutes), not a policy.
_MIN_LIMIT_S: Final = 0.01


class Stage(StrEnum):
    """What the watchdog waits for on one job."""

    UPLOAD = "upload"
    CONFIRM = "confirm"
    PREPARE = "prepare"
    STOP = "stop"


@dataclass(frozen=True, slots=True)
class StageLimits:
    """How long each stage of a start may take (seconds)."""

    upload_min_s: float = 120.0
    upload_min_rate: float = 20_000.0  # bytes per second
    ack_s: float = 15.0  # project_file's acknowledgement
    confirm_s: float = 60.0
    prepare_s: float = 1800.0
    stop_s: float = 60.0

    def __post_init__(self) -> None:
        for name in ("upload_min_s", "upload_min_rate", "ack_s", "confirm_s", "prepare_s"):
            value = getattr(self, name)
            if (
                not (isinstance(value, int | float) and math.isfinite(value))
                or value < _MIN_LIMIT_S
            ):
                raise ValueError(f"{name} must be a number of at least {_MIN_LIMIT_S}, not {value}")
        if not math.isfinite(self.stop_s) or self.stop_s < _MIN_LIMIT_S:
            raise ValueError(f"stop_s must be at least {_MIN_LIMIT_S}, not {self.stop_s}")

    def upload_limit(self, size: int) -> float:
        """Seconds an upload of `size` bytes may take."""
        return self.upload_min_s + max(0, size) / self.upload_min_rate

    def limit(self, stage: Stage, *, size: int = 0) -> float:
        """The limit of `stage` (the upload's depends on the file's size)."""
        match stage:
            case Stage.UPLOAD:
                return self.upload_limit(size)
            case Stage.CONFIRM:
                return self.confirm_s
            case Stage.PREPARE:
                return self.prepare_s
            case Stage.STOP:
                return self.stop_s


@dataclass(frozen=True, slots=True)
class Expiry:
    """A stage that ran out of time."""

    job_id: int
    attempt: int
    stage: Stage
    limit: float  # seconds it was given


class ConfirmVerdict(StrEnum):
    """What to do when a started job was not seen on its printer in time."""

    WAIT = "wait"  # the printer cannot be seen: it may be printing the job; wait for it
    FAIL = "fail"  # the printer is seen, and it is not running the job: it did not start


def confirm_verdict(*, online: bool, state_known: bool, reported_since: bool) -> ConfirmVerdict:
    """The decision at a `confirm` expiry (the job was not seen as the printer's own).

    Only a report received after the start was sent can show the printer did not take it:
    failing on an older one, or while the printer is out of sight, could retry a job the
    printer is printing.
    """
    fail = online and state_known and reported_since
    return ConfirmVerdict.FAIL if fail else ConfirmVerdict.WAIT


def upload_reason(printer: str, limit: float, sent: int, total: int) -> str:
    """Why an upload was given up."""
    return (
        f"the upload to {printer} did not finish within {_duration(limit)} "
        f"({_size(sent)} of {_size(total)} sent); check the printer's network and SD card"
    )


def confirm_reason(printer: str, limit: float, *, acknowledged: bool, shows: str) -> str:
    """Why a job whose start was sent is failed: the printer never showed it."""
    answer = "acknowledged the start" if acknowledged else "did not acknowledge the start"
    return (
        f"{printer} {answer} but did not begin the job within {_duration(limit)} "
        f"(it reports {shows}); the job was not started there"
    )


def prepare_reason(printer: str, limit: float, trays: str) -> str:
    """Why a job stuck in PREPARE is failed; `trays` says which tray each filament uses."""
    return (
        f"{printer} stayed in PREPARE for {_duration(limit)} without printing; firmware "
        f"waits there without an error when a filament's tray is empty or unloaded "
        f"({trays}); check those trays"
    )


def stop_reason(printer: str, limit: float) -> str:
    """Why a stopped job is not retried: the printer did not confirm the stop."""
    return (
        f"{printer} did not confirm the stop within {_duration(limit)}; not retried "
        "elsewhere so that it cannot print twice — check the printer"
    )


class Watchdog:
    """One deadline per job; `expired()` sleeps until the earliest passes."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        # job id -> (deadline, attempt, stage, limit, generation); the heap holds
        # (deadline, generation, job id) and entries of older generations are skipped.
        self._armed: dict[int, tuple[float, int, Stage, float, int]] = {}
        self._heap: list[tuple[float, int, int]] = []
        self._generation = 0
        self._changed = asyncio.Event()

    def __len__(self) -> int:
        return len(self._armed)

    def arm(self, job_id: int, attempt: int, stage: Stage, limit: float) -> None:
        """Give the job's `stage` `limit` seconds from now (replacing its current deadline)."""
        self._generation += 1
        deadline = self._clock() + limit
        self._armed[job_id] = (deadline, attempt, stage, limit, self._generation)
        heapq.heappush(self._heap, (deadline, self._generation, job_id))
        self._changed.set()

    def disarm(self, job_id: int) -> None:
        """Forget the job's deadline (its stage ended in time)."""
        self._armed.pop(job_id, None)

    def stage(self, job_id: int) -> Stage | None:
        """The stage the job is being watched in, if any."""
        entry = self._armed.get(job_id)
        return entry[2] if entry is not None else None

    def due(self) -> list[Expiry]:
        """Every deadline that has passed, now forgotten."""
        now = self._clock()
        out: list[Expiry] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, generation, job_id = heapq.heappop(heap)
            entry = self._armed.get(job_id)
            if entry is None or entry[4] != generation:
                continue  # disarmed or re-armed since
            del self._armed[job_id]
            out.append(Expiry(job_id, entry[1], entry[2], entry[3]))
        return out

    async def expired(self) -> list[Expiry]:
        """Wait until at least one deadline passes; return all that have."""
        while True:
            due = self.due()
            if due:
                return due
            self._changed.clear()
            wait = self._next_wait()
            try:
                async with asyncio.timeout(wait):
                    await self._changed.wait()
            except TimeoutError:
                continue

    def _next_wait(self) -> float | None:
        heap = self._heap
        while heap:
            deadline, generation, job_id = heap[0]
            entry = self._armed.get(job_id)
            if entry is not None and entry[4] == generation:
                return max(0.0, deadline - self._clock())
            heapq.heappop(heap)
        return None


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{round(seconds, 1):g} s"
    return f"{seconds / 60:.0f} min"


def _size(count: int) -> str:
    if count < 1_000_000:
        return f"{count / 1000:.0f} KB"
    return f"{count / 1_000_000:.1f} MB"
