"""How an attempt ended, written down in one transaction: job state, history row, plate gate.

The three facts go together or not at all: a job `awaiting_clear` whose printer's gate is open
would let the next job start on a full plate; a history row without its job's outcome would
count a print twice on a retry. A job cancelled meanwhile keeps its `cancelled` state, and the
printer's facts (its history, its plate) are still recorded.

`queue_again` applies the retry policy: a failed start (upload, refused, hang) is queued again
as a new attempt up to `max_attempts`; a print that failed after it began only when the policy
says so, since the cause (a model that will not stick, a clog) is often for a person to fix.
"""

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType

from sqlalchemy.ext.asyncio import AsyncSession

from bambufarm.jobs.attempt import Attempt, Phase
from bambufarm.jobs.history import PrintOutcome, finish_print
from bambufarm.jobs.model import JobState, fail, retry, transition
from bambufarm.storage.jobs import JobStateConflict, change_state
from bambufarm.storage.plates import get_plate, mark_ended
from bambufarm.storage.unset import UNSET

logger = logging.getLogger(__name__)

_P, _Z, _A, _D = JobState.PRINTING, JobState.PAUSED, JobState.AWAITING_CLEAR, JobState.DONE
# The job states on the way from an attempt's phase to a target (the model allows no jumps).
PATHS: Mapping[tuple[Phase, JobState], tuple[JobState, ...]] = MappingProxyType(
    {
        (Phase.STARTING, _P): (_P,),
        (Phase.PAUSED, _P): (_P,),
        (Phase.STARTING, _Z): (_P, _Z),
        (Phase.PRINTING, _Z): (_Z,),
        (Phase.PAUSED, _A): (_P, _A),
        (Phase.PAUSED, _D): (_P, _D),
    }
)
_TARGETS: Mapping[PrintOutcome, JobState] = MappingProxyType(
    {PrintOutcome.FAILED: JobState.FAILED, PrintOutcome.CANCELLED: JobState.CANCELLED}
)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Which failed attempts are queued again, and how often."""

    max_attempts: int = 3
    # A print that failed after it began (spaghetti, a clog) is the operator's call by default;
    # a start that failed (upload, refused, hang) is retried.
    retry_print_failures: bool = False

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, not {self.max_attempts}")


@dataclass(frozen=True, slots=True)
class Ending:
    """How an attempt ended, as the printer (or the watchdog) told it."""

    outcome: PrintOutcome
    reason: str | None
    progress: int | None  # percent printed, when known
    plate_used: bool  # the printer ran the job: its plate must be cleared before the next
    move_job: bool = True  # False when the job's state was written before (a stop we sent)


async def close_attempt(
    session: AsyncSession, attempt: Attempt, ending: Ending, *, now: datetime
) -> bool:
    """Record the ending; True when the job took its state (False: it was cancelled first)."""
    moved = True
    if ending.move_job:
        moved = await _move_job(session, attempt, ending, now)
    if attempt.print_id is not None:
        outcome = ending.outcome
        if not moved and outcome is PrintOutcome.FAILED:
            outcome = PrintOutcome.CANCELLED  # the operator cancelled it before it failed
        await finish_print(
            session, attempt.print_id, outcome=outcome,
            progress=max(0, min(ending.progress or 0, 100)), ended_at=now, reason=ending.reason,
        )  # fmt: skip
    if ending.plate_used:
        ended = "finished" if ending.outcome is PrintOutcome.DONE else "failed"
        await mark_ended(session, attempt.serial, outcome=ended, job_id=attempt.job_id, now=now)
    return moved


async def _move_job(session: AsyncSession, attempt: Attempt, ending: Ending, now: datetime) -> bool:
    reason = ending.reason
    if ending.outcome is PrintOutcome.DONE:
        gate = await get_plate(session, attempt.serial)
        target = _D if gate.auto_clear else _A
        steps = PATHS.get((attempt.phase, target), (target,))
    else:
        steps = (_TARGETS[ending.outcome],)
    try:
        for step in steps:
            if step is JobState.FAILED:
                change = fail(reason or "failed")
            else:
                change = transition(step, reason=UNSET if reason is None else reason)
            await change_state(session, attempt.job_id, change, attempt=attempt.attempt, now=now)
    except JobStateConflict as err:
        logger.info("job %d: %s", attempt.job_id, err)
        return False
    return True


async def queue_again(
    session: AsyncSession, attempt: Attempt, reason: str, policy: RetryPolicy, *, now: datetime
) -> bool:
    """Queue a failed job again as a new attempt, if the policy allows one more."""
    if attempt.attempt >= policy.max_attempts:
        logger.info("job %d: not retried after %d attempts", attempt.job_id, attempt.attempt)
        return False
    text = f"{reason}; queued again (attempt {attempt.attempt + 1} of {policy.max_attempts})"
    try:
        await change_state(session, attempt.job_id, retry(text), attempt=attempt.attempt, now=now)
    except JobStateConflict as err:
        logger.info("job %d not retried: %s", attempt.job_id, err)
        return False
    return True
