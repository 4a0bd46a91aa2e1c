"""A print job's life: its states, the moves between them, and the typed Job and JobSpec.

    queued, waiting  ──claim──▶ uploading ──▶ starting ──▶ printing ⇄ paused
    printing ──▶ awaiting_clear ──plate cleared──▶ done   (auto-clear: printing ──▶ done)
    unfinished ──▶ cancelled;  uploading … paused ──▶ failed;  failed, cancelled ──retry──▶ queued

* `queued`: never looked at; `waiting`: the dispatcher looked and no printer fits (`reason`
  sums up why; the per-printer reasons live with the dispatcher, they change every round).
* A claim (`claim`) moves a dispatchable job to `uploading` on one printer and starts a new
  attempt. `uploading → queued` gives the job back when nothing reached the printer yet.
* `starting` is written *before* `project_file` is sent (write-ahead): once a job has left
  `uploading` it is never requeued, only failed and retried as a new attempt, so a crash
  after `project_file` can never make a second copy start. Every change after a claim is
  guarded by the attempt number as well as the state (compare-and-set in
  `bambufarm.storage.jobs`), and the history allows one print per (job, attempt).
* `awaiting_clear`: the print finished and the plate must be confirmed clear; `done` then.

The changes are `StateChange`s built here and applied atomically by the storage layer.
"""

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Final

from bambufarm.jobs.dispatch import ANY_PRINTER, Target
from bambufarm.storage.jobs import JobRecord, NewJob, StateChange
from bambufarm.storage.unset import UNSET, Unset


class JobState(StrEnum):
    """Where a job is in its life."""

    QUEUED = "queued"
    WAITING = "waiting"
    UPLOADING = "uploading"
    STARTING = "starting"
    PRINTING = "printing"
    PAUSED = "paused"
    AWAITING_CLEAR = "awaiting_clear"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        """True for done, failed and cancelled: no printer works on the job."""
        return self in FINISHED


_Q, _W, _U, _S = JobState.QUEUED, JobState.WAITING, JobState.UPLOADING, JobState.STARTING
_P, _Z, _A = JobState.PRINTING, JobState.PAUSED, JobState.AWAITING_CLEAR
_D, _F, _C = JobState.DONE, JobState.FAILED, JobState.CANCELLED

# state -> the states it may move to
TRANSITIONS: Final = MappingProxyType(
    {
        _Q: frozenset({_W, _U, _C}),
        _W: frozenset({_W, _Q, _U, _C}),  # waiting -> waiting: the reason changed
        _U: frozenset({_S, _Q, _F, _C}),
        # The printer may finish before we see it print (a short job, or a restart between).
        _S: frozenset({_P, _A, _D, _F, _C}),
        _P: frozenset({_Z, _A, _D, _F, _C}),  # -> done directly on printers that auto-clear
        _Z: frozenset({_P, _F, _C}),
        _A: frozenset({_D}),
        _D: frozenset(),
        _F: frozenset({_Q}),
        _C: frozenset({_Q}),
    }
)
FINISHED: Final = frozenset({_D, _F, _C})
UNFINISHED: Final = frozenset(JobState) - FINISHED
# What the dispatcher may claim.
DISPATCHABLE: Final = frozenset({_Q, _W})
# Where a printer holds the job (its serial is set).
ON_PRINTER: Final = frozenset({_U, _S, _P, _Z, _A})
# Where progress (upload or print) is recorded.
PROGRESS_STATES: Final = frozenset({_U, _P, _Z})


class IllegalTransition(ValueError):  # noqa: N818 - named for what it is
    """A move the job state machine does not allow (e.g. done -> printing)."""


def allowed_from(to: JobState) -> frozenset[JobState]:
    """The states a job may move to `to` from."""
    return frozenset(s for s, targets in TRANSITIONS.items() if to in targets)


def can_transition(current: JobState, to: JobState) -> bool:
    """True when a job in `current` may move to `to`."""
    return to in TRANSITIONS[current]


def check_transition(current: JobState, to: JobState) -> None:
    """`IllegalTransition` naming what `current` may become, unless it may become `to`."""
    if not can_transition(current, to):
        options = ", ".join(sorted(TRANSITIONS[current])) or "nothing (it is final)"
        raise IllegalTransition(f"a {current} job cannot become {to}; it can become: {options}")


def transition(to: JobState, *, reason: str | Unset | None = UNSET) -> StateChange:
    """The change to `to` from any state allowed to precede it, with the stamps `to` implies.

    Use `claim` to start an attempt and `retry` to queue a finished job again.
    """
    if to is _U:
        raise IllegalTransition("a job becomes uploading by a claim: use claim(printer)")
    resets = to is _Q
    return StateChange(
        to=to.value,
        allowed_from=frozenset(s.value for s in allowed_from(to)),
        reason=None if resets and isinstance(reason, Unset) else reason,
        reset=resets,
        stamp_started=to is _P,
        stamp_finished=to in FINISHED,
    )


def claim(printer_serial: str) -> StateChange:
    """A dispatchable job goes to `printer_serial`: a new attempt, uploading."""
    return StateChange(
        to=_U.value,
        allowed_from=frozenset(s.value for s in DISPATCHABLE),
        reason=None,
        printer_serial=printer_serial,
        new_attempt=True,
        reset=True,
    )


def retry(reason: str | None = None) -> StateChange:
    """A failed or cancelled job goes back to the queue (its next claim is a new attempt)."""
    return StateChange(
        to=_Q.value,
        allowed_from=frozenset({_F.value, _C.value}),
        reason=reason,
        reset=True,
    )


def cancel(reason: str) -> StateChange:
    """Cancel an unfinished job (the caller stops the printer if it holds the job)."""
    return transition(_C, reason=reason)


def fail(reason: str) -> StateChange:
    """Fail a job with a concrete reason (stage timeout, printer error, upload refused)."""
    return transition(_F, reason=reason)


@dataclass(frozen=True, slots=True)
class JobSpec:
    """What the operator asks for: `copies` of one plate of a library file, on `target`."""

    file_sha256: str
    name: str
    plate: int = 1
    copies: int = 1
    priority: int = 0  # higher first
    due: datetime | None = None
    target: Target = ANY_PRINTER
    created_by: str | None = None

    def to_new_job(self) -> NewJob:
        """The storage row values for this spec."""
        return NewJob(
            file_sha256=self.file_sha256,
            name=self.name,
            plate=self.plate,
            copies=self.copies,
            priority=self.priority,
            due_at=self.due,
            target_serial=self.target.serial,
            target_models=tuple(sorted(self.target.models)),
            created_by=self.created_by,
        )


@dataclass(frozen=True, slots=True)
class Job:
    """One copy of a plate to print, and where it is in its life."""

    id: int
    batch: str  # shared by the copies queued together
    copy_index: int  # 1-based, of `copies`
    copies: int
    name: str
    file_sha256: str | None  # None once deleted from the library (finished jobs only)
    plate: int
    priority: int
    position: int
    due: datetime | None
    target: Target
    state: JobState
    reason: str | None
    printer: str | None  # serial of the printer holding it
    attempt: int  # 0 until first claimed
    progress: int | None  # percent
    layer: int | None
    remaining_s: int | None
    created_by: str | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def from_record(cls, record: JobRecord) -> "Job":
        """The typed job for a stored row."""
        if record.target_serial is not None:
            target = Target.printer(record.target_serial)
        elif record.target_models:
            target = Target.of_models(*record.target_models)
        else:
            target = ANY_PRINTER
        return cls(
            id=record.id,
            batch=record.batch,
            copy_index=record.copy_index,
            copies=record.copies,
            name=record.name,
            file_sha256=record.file_sha256,
            plate=record.plate,
            priority=record.priority,
            position=record.position,
            due=record.due_at,
            target=target,
            state=JobState(record.state),
            reason=record.reason,
            printer=record.printer_serial,
            attempt=record.attempt,
            progress=record.progress,
            layer=record.layer,
            remaining_s=record.remaining_s,
            created_by=record.created_by,
            created_at=record.created_at,
            updated_at=record.updated_at,
            started_at=record.started_at,
            finished_at=record.finished_at,
        )

    @property
    def finished(self) -> bool:
        """True once done, failed or cancelled."""
        return self.state.finished
