"""The job queue's rows: create, read, list, reorder, duplicate, lock for dispatch, change state.

One row per copy. "Print 3 copies" makes three jobs sharing a `batch`: each copy can run on
a different printer at the same time, fail and be retried on its own, and has its own attempt
counter and history, which a single row with a copies counter would have to re-invent per copy.

State changes are compare-and-set: `change_state` is one UPDATE that applies only while the
job's state is one of the change's `allowed_from` states (and, when given, its attempt is the
caller's), so two processes, or the dispatcher and the watchdog, can never both move a job
from the same state. Which states may follow which is `bambufarm.jobs.model`'s knowledge
(storage must not import it): it builds the `StateChange`s, this module applies them.

Dispatch across several server processes: `lock_jobs` reads dispatchable jobs in queue order
with `SELECT … FOR UPDATE SKIP LOCKED` on PostgreSQL, so each process gets jobs no other
process holds until its transaction ends. SQLite has a single writer and every write
transaction starts with BEGIN IMMEDIATE (`storage.db`), so a dispatch transaction there already
excludes every other writer; no row locks are needed or available.
"""

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal
from uuid import uuid4

from sqlalchemy import ColumnElement, Select, func, literal, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bambufarm.protocol.errors import ModelError
from bambufarm.protocol.models import model_by_code
from bambufarm.storage.errors import InvalidValue, NotFound, PrinterNotFound, StorageError
from bambufarm.storage.job_tables import JOB_STATES, JobRow
from bambufarm.storage.library import check_file_name, check_sha256, get_blob
from bambufarm.storage.paging import DEFAULT_LIMIT, Page, check_window
from bambufarm.storage.tables import PrinterRow, UtcDateTime
from bambufarm.storage.unset import UNSET, Unset

# A farm of 1,000 printers queues a few hundred copies of one part at most.
MAX_COPIES: Final = 1000
MAX_PRIORITY: Final = 1_000_000
MAX_REASON: Final = 2000
MAX_SERIAL: Final = 32
MAX_ACTOR: Final = 128
# Gap between neighbours' positions: 10 moves between the same two jobs halve it to 1
# before one UPDATE re-spaces the queue behind the anchor.
POSITION_STEP: Final = 1024

JobOrder = Literal["queue", "newest"]


class JobNotFound(NotFound):
    """No job with this id."""


class JobStateConflict(StorageError):  # noqa: N818 - named for what happened
    """The job is not in a state (or attempt) the change may start from: nothing was changed."""


@dataclass(frozen=True, slots=True)
class NewJob:
    """What to print: a stored file's plate, how many copies, how urgent, on which printers.

    `target_serial` and `target_models` are exclusive; neither means any compatible printer.
    """

    file_sha256: str
    name: str
    plate: int = 1
    copies: int = 1
    priority: int = 0  # higher first
    due_at: datetime | None = None
    target_serial: str | None = None
    target_models: tuple[str, ...] = ()
    created_by: str | None = None


@dataclass(frozen=True, slots=True)
class JobRecord:
    """A stored job; `state` is one of `JOB_STATES`."""

    id: int
    batch: str
    copy_index: int  # 1-based, of `copies` in the batch
    copies: int
    name: str
    file_sha256: str | None  # None once the file was deleted (finished jobs only)
    plate: int
    priority: int
    position: int  # queue order among equal priority and due time
    due_at: datetime | None
    target_serial: str | None
    target_models: tuple[str, ...]
    state: str
    reason: str | None
    printer_serial: str | None
    attempt: int  # 0 until first claimed; +1 per claim
    progress: int | None  # percent
    layer: int | None
    remaining_s: int | None
    created_by: str | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None  # printing began (this attempt)
    finished_at: datetime | None


@dataclass(frozen=True, slots=True)
class StateChange:
    """Move a job to `to`, only from one of `allowed_from`; built by `jobs.model`.

    `new_attempt` counts a claim (attempt + 1); `reset` clears the printer, progress and
    timestamps of the previous attempt; `stamp_started` sets `started_at` unless already set
    this attempt; `stamp_finished` sets `finished_at`.
    """

    to: str
    allowed_from: frozenset[str]
    reason: str | Unset | None = UNSET
    printer_serial: str | Unset | None = UNSET
    new_attempt: bool = False
    reset: bool = False
    stamp_started: bool = False
    stamp_finished: bool = False


async def add_jobs(
    session: AsyncSession, new: NewJob, *, now: datetime | None = None
) -> tuple[JobRecord, ...]:
    """Queue `new.copies` jobs (one batch) after checking the file, plate and target."""
    at = now or datetime.now(UTC)
    sha = check_sha256(new.file_sha256)
    blob = await get_blob(session, sha)
    if new.plate not in {p.index for p in blob.metadata.plates}:
        there = ", ".join(str(p.index) for p in blob.metadata.plates)
        raise InvalidValue(f"the file has no plate {new.plate}; its plates are: {there}")
    if not 1 <= new.copies <= MAX_COPIES:
        raise InvalidValue(f"copies must be between 1 and {MAX_COPIES}, not {new.copies}")
    serial, models = await _check_target(session, new, blob.printer_model)
    position = await _next_position(session)
    batch = uuid4().hex
    rows = [
        JobRow(
            batch=batch,
            copy_index=index,
            copies=new.copies,
            name=check_file_name(new.name),
            file_sha256=sha,
            plate=new.plate,
            priority=_check_priority(new.priority),
            position=position + (index - 1) * POSITION_STEP,
            due_at=_check_time("due_at", new.due_at),
            target_serial=serial,
            target_models=list(models),
            state="queued",
            reason=None,
            printer_serial=None,
            attempt=0,
            progress=None,
            layer=None,
            remaining_s=None,
            created_by=_check_actor(new.created_by),
            created_at=at,
            updated_at=at,
            started_at=None,
            finished_at=None,
        )
        for index in range(1, new.copies + 1)
    ]
    session.add_all(rows)
    await session.flush()
    return tuple(_record(r) for r in rows)


async def get_job(session: AsyncSession, job_id: int) -> JobRecord:
    """The job with this id; `JobNotFound` if there is none."""
    return _record(await _row(session, job_id))


async def list_jobs(
    session: AsyncSession,
    *,
    states: Collection[str] | None = None,
    printer_serial: str | None = None,
    batch: str | None = None,
    file_sha256: str | None = None,
    order: JobOrder = "queue",
    offset: int = 0,
    limit: int = DEFAULT_LIMIT,
) -> Page[JobRecord]:
    """Jobs in queue order (or newest first), filtered by state, printer, batch and file."""
    check_window(offset, limit)
    query = select(JobRow)
    if states is not None:
        query = query.where(JobRow.state.in_(sorted(_check_states(states))))
    if printer_serial is not None:
        query = query.where(JobRow.printer_serial == printer_serial)
    if batch is not None:
        query = query.where(JobRow.batch == batch)
    if file_sha256 is not None:
        query = query.where(JobRow.file_sha256 == check_sha256(file_sha256))
    total = await session.scalar(select(func.count()).select_from(query.subquery()))
    ordered = _queue_order(query) if order == "queue" else query.order_by(JobRow.id.desc())
    rows = await session.scalars(ordered.offset(offset).limit(limit))
    return Page(tuple(_record(r) for r in rows), total or 0, offset, limit)


async def lock_jobs(
    session: AsyncSession, *, states: Collection[str], limit: int = DEFAULT_LIMIT
) -> tuple[JobRecord, ...]:
    """Jobs in `states`, in queue order, locked for this transaction; others' locks skipped.

    PostgreSQL: `FOR UPDATE SKIP LOCKED`, so concurrent dispatchers in other processes get
    disjoint sets. SQLite: this transaction already holds the only write lock.
    """
    if limit < 1:
        raise InvalidValue(f"limit must be 1 or more, not {limit}")
    query = select(JobRow).where(JobRow.state.in_(sorted(_check_states(states))))
    locked = _queue_order(query).limit(limit).with_for_update(skip_locked=True)
    rows = await session.scalars(locked.execution_options(populate_existing=True))
    return tuple(_record(r) for r in rows)


async def change_state(
    session: AsyncSession,
    job_id: int,
    change: StateChange,
    *,
    attempt: int | None = None,
    now: datetime | None = None,
) -> JobRecord:
    """Apply `change` atomically; `JobStateConflict` (and no change) if the job moved on."""
    at = now or datetime.now(UTC)
    to = _check_state(change.to)
    allowed = _check_states(change.allowed_from)
    values: dict[str, Any] = {"state": to, "updated_at": at}
    if change.reset:
        values.update(
            printer_serial=None,
            progress=None,
            layer=None,
            remaining_s=None,
            started_at=None,
            finished_at=None,
        )
    if change.new_attempt:
        values["attempt"] = JobRow.attempt + 1
    if not isinstance(change.reason, Unset):
        values["reason"] = _check_reason(change.reason)
    if not isinstance(change.printer_serial, Unset):
        values["printer_serial"] = _check_serial(change.printer_serial)
    if change.stamp_started:
        values["started_at"] = func.coalesce(JobRow.started_at, literal(at, UtcDateTime()))
    if change.stamp_finished:
        values["finished_at"] = at
    conditions = [JobRow.id == job_id, JobRow.state.in_(sorted(allowed))]
    if attempt is not None:
        conditions.append(JobRow.attempt == attempt)
    await _compare_and_set(
        session, job_id, conditions, values,
        action=f"become {to}", allowed=allowed, attempt=attempt,
    )  # fmt: skip
    return await get_job(session, job_id)


async def update_progress(
    session: AsyncSession,
    job_id: int,
    *,
    attempt: int,
    states: Collection[str],
    progress: int | None,
    layer: int | None = None,
    remaining_s: int | None = None,
    now: datetime | None = None,
) -> JobRecord:
    """Record progress of this attempt while the job is in `states`; `JobStateConflict` if not.

    Live progress comes from the printer's reports in memory; write here when the whole
    percentage changes (100 writes per print), not per report (one per second per printer).
    """
    if progress is not None and not 0 <= progress <= 100:
        raise InvalidValue(f"progress must be 0 to 100 percent, not {progress}")
    for name, value in (("layer", layer), ("remaining_s", remaining_s)):
        if value is not None and value < 0:
            raise InvalidValue(f"{name} must be 0 or more, not {value}")
    values = {
        "progress": progress,
        "layer": layer,
        "remaining_s": remaining_s,
        "updated_at": now or datetime.now(UTC),
    }
    current = _check_states(states)
    conditions = [JobRow.id == job_id, JobRow.state.in_(sorted(current)), JobRow.attempt == attempt]
    await _compare_and_set(
        session, job_id, conditions, values,
        action="record progress", allowed=current, attempt=attempt,
    )  # fmt: skip
    return await get_job(session, job_id)


async def reorder_job(
    session: AsyncSession,
    job_id: int,
    *,
    priority: int | Unset = UNSET,
    before: int | Unset | None = UNSET,
    now: datetime | None = None,
) -> JobRecord:
    """Change a job's priority and/or move it just before job `before` (None: to the end).

    Moving before a job also takes that job's priority unless one is given, so that the
    job lands where it was dropped in a list ordered by priority then position.
    """
    row = await _row(session, job_id)
    if not isinstance(priority, Unset):
        row.priority = _check_priority(priority)
    if before is None:
        row.position = await _next_position(session)
    elif not isinstance(before, Unset):
        if before == job_id:
            raise InvalidValue(f"job {job_id} cannot be moved before itself")
        anchor = await _row(session, before)
        if isinstance(priority, Unset):
            row.priority = anchor.priority
        row.position = await _position_before(session, job_id, anchor.position)
    row.updated_at = now or datetime.now(UTC)
    await session.flush()
    return _record(row)


async def duplicate_job(
    session: AsyncSession,
    job_id: int,
    *,
    copies: int = 1,
    created_by: str | None = None,
    now: datetime | None = None,
) -> tuple[JobRecord, ...]:
    """Queue `copies` new jobs (a new batch) printing what job `job_id` prints."""
    source = await _row(session, job_id)
    if source.file_sha256 is None:
        raise InvalidValue(
            f"job {job_id}'s file was deleted from the library; add the file again and queue it"
        )
    new = NewJob(
        file_sha256=source.file_sha256,
        name=source.name,
        plate=source.plate,
        copies=copies,
        priority=source.priority,
        due_at=source.due_at,
        target_serial=source.target_serial,
        target_models=tuple(source.target_models),
        created_by=created_by,
    )
    return await add_jobs(session, new, now=now)


async def _compare_and_set(
    session: AsyncSession,
    job_id: int,
    conditions: list[ColumnElement[bool]],
    values: dict[str, Any],
    *,
    action: str,
    allowed: frozenset[str],
    attempt: int | None,
) -> None:
    """One conditional UPDATE; when it matches no row, the error says which condition failed."""
    statement = update(JobRow).where(*conditions).values(**values)
    result = await session.execute(statement.execution_options(synchronize_session=False))
    if int(result.rowcount) == 1:  # type: ignore[attr-defined]
        return
    current = await _row(session, job_id)
    if current.state not in allowed:
        named = ", ".join(s for s in JOB_STATES if s in allowed) or "nothing"
        raise JobStateConflict(
            f"job {job_id} is {current.state}, so it cannot {action} (only from: {named})"
        )
    raise JobStateConflict(
        f"job {job_id} is on attempt {current.attempt}, not {attempt}: it was claimed or "
        "retried since; this change belongs to an older attempt and was not applied"
    )


def _queue_order(query: Select[JobRow]) -> Select[JobRow]:
    # The dispatcher's order (jobs.dispatch): priority, due time (none last), position, id.
    return query.order_by(
        JobRow.priority.desc(), JobRow.due_at.asc().nulls_last(), JobRow.position, JobRow.id
    )


async def _next_position(session: AsyncSession) -> int:
    highest = await session.scalar(select(func.max(JobRow.position)))
    return (highest or 0) + POSITION_STEP


async def _position_before(session: AsyncSession, job_id: int, anchor: int) -> int:
    lower = await session.scalar(
        select(func.max(JobRow.position)).where(JobRow.position < anchor, JobRow.id != job_id)
    )
    if lower is None:
        return anchor - POSITION_STEP
    if anchor - lower < 2:
        # No integer left between the two: shift the anchor and everything after it.
        await session.execute(
            update(JobRow)
            .where(JobRow.position >= anchor, JobRow.id != job_id)
            .values(position=JobRow.position + POSITION_STEP)
            .execution_options(synchronize_session=False)
        )
        anchor += POSITION_STEP
    return lower + (anchor - lower) // 2


async def _check_target(
    session: AsyncSession, new: NewJob, file_model: str
) -> tuple[str | None, tuple[str, ...]]:
    model_name = _model_name(file_model)
    if new.target_serial is not None and new.target_models:
        raise InvalidValue("a job targets one printer or some models, not both")
    if new.target_serial is not None:
        serial = _check_serial(new.target_serial)
        printer = await session.scalar(select(PrinterRow).where(PrinterRow.serial == serial))
        if printer is None:
            raise PrinterNotFound(f"no printer with serial {serial!r} to print on")
        if printer.model_code != file_model:
            raise InvalidValue(
                f"the file is sliced for {model_name}, but printer {printer.name} ({serial}) "
                f"is a {_model_name(printer.model_code)}; slice it for that printer"
            )
        return serial, ()
    codes = []
    for code in new.target_models:
        try:
            codes.append(model_by_code(code).code)
        except ModelError as err:
            raise InvalidValue(str(err)) from None
    if codes and file_model not in codes:
        named = ", ".join(sorted(_model_name(c) for c in set(codes)))
        raise InvalidValue(
            f"the file is sliced for {model_name}, so it can never print on {named}; "
            "target its model or slice it again"
        )
    return None, tuple(sorted(set(codes)))


def _model_name(code: str) -> str:
    try:
        return model_by_code(code).name
    except ModelError:
        return code


async def _row(session: AsyncSession, job_id: int) -> JobRow:
    row = await session.scalar(
        select(JobRow).where(JobRow.id == job_id).execution_options(populate_existing=True)
    )
    if row is None:
        raise JobNotFound(f"no job with id {job_id}")
    return row


def _check_state(state: str) -> str:
    if state not in JOB_STATES:
        raise InvalidValue(f"unknown job state {state!r}; states are: {', '.join(JOB_STATES)}")
    return str(state)


def _check_states(states: Iterable[str]) -> frozenset[str]:
    return frozenset(_check_state(s) for s in states)


def _check_priority(priority: int) -> int:
    if not -MAX_PRIORITY <= priority <= MAX_PRIORITY:
        raise InvalidValue(f"priority must be between -{MAX_PRIORITY} and {MAX_PRIORITY}")
    return priority


def _check_time(name: str, value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise InvalidValue(f"{name} {value.isoformat()} has no time zone; give UTC")
    return value


def _check_reason(reason: str | None) -> str | None:
    if reason is None:
        return None
    value = reason.strip()
    # Truncated rather than refused: a reason often quotes a printer's message, and losing
    # its tail is better than losing the state change.
    return value[: MAX_REASON - 1] + "…" if len(value) > MAX_REASON else value or None


def _check_serial(serial: str | None) -> str | None:
    if serial is None:
        return None
    value = serial.strip()
    if not (0 < len(value) <= MAX_SERIAL and value.isascii() and value.isalnum()):
        raise InvalidValue(f"serial {serial[:40]!r} must be 1 to {MAX_SERIAL} letters and digits")
    return value


def _check_actor(actor: str | None) -> str | None:
    if actor is not None and not 0 < len(actor) <= MAX_ACTOR:
        raise InvalidValue(f"created_by must be 1 to {MAX_ACTOR} characters")
    return actor


def _record(row: JobRow) -> JobRecord:
    return JobRecord(
        id=row.id,
        batch=row.batch,
        copy_index=row.copy_index,
        copies=row.copies,
        name=row.name,
        file_sha256=row.file_sha256,
        plate=row.plate,
        priority=row.priority,
        position=row.position,
        due_at=row.due_at,
        target_serial=row.target_serial,
        target_models=tuple(row.target_models),
        state=row.state,
        reason=row.reason,
        printer_serial=row.printer_serial,
        attempt=row.attempt,
        progress=row.progress,
        layer=row.layer,
        remaining_s=row.remaining_s,
        created_by=row.created_by,
        created_at=row.created_at,
        updated_at=row.updated_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
    )
