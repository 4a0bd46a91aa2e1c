"""Print history and statistics: one row per print attempt, and what the farm made of them.

`start_print` records a print when it starts on a printer: which job and attempt (None for a
print started outside the queue, e.g. from the printer's screen), printer, file, plate, and the
filament per slot the slicer planned (from the 3MF). `finish_print` records the outcome: the
end time, the duration, the last progress, and the filament used per slot: all of the plan for
a finished print, the plan scaled by progress for a failed or cancelled one (a print stopped at
40 % has used about 40 % of its filament; the slicer's per-layer figures are not in the 3MF).

A (job, attempt) pair starts at most one print: the table has a unique constraint on it, the
last line of defence behind the job's compare-and-set state changes.

Statistics (`printer_statistics`, `fleet_statistics`) count prints started in a time window.
Success rate is done / (done + failed): a cancel is the operator's decision, not a failure of
the printer, so it counts in neither. Print hours add the durations of ended prints.
"""

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Final

from sqlalchemy import ColumnElement, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from bambufarm.protocol.threemf import PlateFilament
from bambufarm.storage.errors import AlreadyExists, InvalidValue, NotFound, StorageError
from bambufarm.storage.job_tables import PrintFilamentRow, PrintRow
from bambufarm.storage.library import check_file_name
from bambufarm.storage.paging import (
    DEFAULT_LIMIT,
    Cursor,
    HistoryPage,
    check_limit,
    older_than,
    time_window,
)

MAX_SERIAL: Final = 32
MAX_REASON: Final = 2000
# Materials as the slicer names them ("PLA", "PETG-CF"); a print with no type is "unknown".
UNKNOWN_MATERIAL: Final = "unknown"


class PrintOutcome(StrEnum):
    """How a print attempt ended."""

    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


class PrintNotFound(NotFound):
    """No print with this id."""


class DuplicatePrint(AlreadyExists):
    """This job's attempt has already started a print."""


class PrintAlreadyEnded(StorageError):  # noqa: N818 - named for what happened
    """The print has an outcome already; it cannot end twice."""


@dataclass(frozen=True, slots=True)
class FilamentUse:
    """Filament of one slot of one print: planned by the slicer, used by the outcome."""

    slot: int
    material: str | None
    color: str | None
    planned_g: float | None
    used_g: float | None  # None while running


@dataclass(frozen=True, slots=True)
class PrintRecord:
    """One print attempt."""

    id: int
    job_id: int | None
    attempt: int | None
    printer_serial: str
    file_sha256: str | None
    file_name: str
    plate: int
    started_at: datetime
    ended_at: datetime | None
    duration_s: int | None
    outcome: PrintOutcome
    progress: int
    reason: str | None
    filament: tuple[FilamentUse, ...]


@dataclass(frozen=True, slots=True)
class PrintStats:
    """Counts, success rate, hours and grams of material over some prints."""

    prints: int
    done: int
    failed: int
    cancelled: int
    running: int
    print_hours: float
    filament_g: Mapping[str, float]  # material -> grams used

    @property
    def success_rate(self) -> float | None:
        """done / (done + failed), None before any print has done either."""
        decided = self.done + self.failed
        return self.done / decided if decided else None


@dataclass(frozen=True, slots=True)
class PrinterStats:
    """One printer's statistics."""

    serial: str
    stats: PrintStats


def used_grams(planned_g: float | None, outcome: PrintOutcome, progress: int) -> float | None:
    """Grams used by a print that planned `planned_g`: all when done, else scaled by progress."""
    if planned_g is None or outcome is PrintOutcome.RUNNING:
        return None
    if outcome is PrintOutcome.DONE:
        return planned_g
    return round(planned_g * max(0, min(progress, 100)) / 100, 3)


async def start_print(
    session: AsyncSession,
    *,
    printer_serial: str,
    file_name: str,
    plate: int,
    filaments: Sequence[PlateFilament],
    started_at: datetime,
    file_sha256: str | None = None,
    job_id: int | None = None,
    attempt: int | None = None,
) -> PrintRecord:
    """Record a print that started; `DuplicatePrint` if this job's attempt already has one."""
    if (job_id is None) != (attempt is None):
        raise InvalidValue("a print of a job needs both job_id and attempt; others need neither")
    if started_at.tzinfo is None:
        raise InvalidValue(f"started_at {started_at.isoformat()} has no time zone; give UTC")
    if plate < 1:
        raise InvalidValue(f"plate must be 1 or more, not {plate}")
    slots = [f.slot for f in filaments]
    if len(set(slots)) != len(slots):
        raise InvalidValue(f"filament slots must be distinct, got {slots}")
    row = PrintRow(
        job_id=job_id,
        attempt=attempt,
        printer_serial=_check_serial(printer_serial),
        file_sha256=file_sha256,
        file_name=check_file_name(file_name),
        plate=plate,
        started_at=started_at,
        ended_at=None,
        duration_s=None,
        outcome=PrintOutcome.RUNNING.value,
        progress=0,
        reason=None,
    )
    try:
        # A savepoint: a duplicate leaves the caller's transaction usable.
        async with session.begin_nested():
            session.add(row)
            await session.flush()
    except IntegrityError:
        raise DuplicatePrint(
            f"job {job_id} attempt {attempt} has already started a print; a job's attempt "
            "never starts twice"
        ) from None
    if filaments:
        await session.execute(
            insert(PrintFilamentRow),
            [
                {
                    "print_id": row.id,
                    "slot": f.slot,
                    "material": f.type,
                    "color": f.color,
                    "planned_g": f.used_g,
                    "used_g": None,
                }
                for f in filaments
            ],
        )
    return await get_print(session, row.id)


async def finish_print(
    session: AsyncSession,
    print_id: int,
    *,
    outcome: PrintOutcome,
    progress: int,
    ended_at: datetime,
    reason: str | None = None,
) -> PrintRecord:
    """Record how a running print ended; `PrintAlreadyEnded` if it has an outcome already."""
    if outcome is PrintOutcome.RUNNING:
        raise InvalidValue("a print ends as done, failed or cancelled, not running")
    if not 0 <= progress <= 100:
        raise InvalidValue(f"progress must be 0 to 100 percent, not {progress}")
    if ended_at.tzinfo is None:
        raise InvalidValue(f"ended_at {ended_at.isoformat()} has no time zone; give UTC")
    current = await get_print(session, print_id)
    final_progress = 100 if outcome is PrintOutcome.DONE else progress
    duration = max(0, round((ended_at - current.started_at).total_seconds()))
    result = await session.execute(
        update(PrintRow)
        .where(PrintRow.id == print_id, PrintRow.outcome == PrintOutcome.RUNNING.value)
        .values(
            outcome=outcome.value,
            progress=final_progress,
            ended_at=ended_at,
            duration_s=duration,
            reason=_check_reason(reason),
        )
        .execution_options(synchronize_session=False)
    )
    if int(result.rowcount) != 1:  # type: ignore[attr-defined]
        ended = await get_print(session, print_id)
        raise PrintAlreadyEnded(f"print {print_id} already ended as {ended.outcome}")
    for use in current.filament:
        grams = used_grams(use.planned_g, outcome, final_progress)
        await session.execute(
            update(PrintFilamentRow)
            .where(PrintFilamentRow.print_id == print_id, PrintFilamentRow.slot == use.slot)
            .values(used_g=grams)
            .execution_options(synchronize_session=False)
        )
    return await get_print(session, print_id)


async def get_print(session: AsyncSession, print_id: int) -> PrintRecord:
    """The print with this id; `PrintNotFound` if there is none."""
    row = await session.scalar(
        select(PrintRow).where(PrintRow.id == print_id).execution_options(populate_existing=True)
    )
    if row is None:
        raise PrintNotFound(f"no print with id {print_id}")
    return (await _records(session, [row]))[0]


async def print_for_attempt(session: AsyncSession, job_id: int, attempt: int) -> PrintRecord | None:
    """The print this job's attempt started, or None (e.g. it never got past uploading)."""
    row = await session.scalar(
        select(PrintRow).where(PrintRow.job_id == job_id, PrintRow.attempt == attempt)
    )
    return (await _records(session, [row]))[0] if row is not None else None


async def print_history(
    session: AsyncSession,
    *,
    serial: str | None = None,
    job_id: int | None = None,
    outcomes: Collection[PrintOutcome] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    after: Cursor | None = None,
    limit: int = DEFAULT_LIMIT,
) -> HistoryPage[PrintRecord]:
    """Prints newest first (by start); pass `next_cursor` as `after` for the next page."""
    check_limit(limit)
    query = select(PrintRow)
    for condition in _filters(serial, job_id, outcomes):
        query = query.where(condition)
    query = time_window(query, PrintRow.started_at, since, until)
    if after is not None:
        query = query.where(older_than(PrintRow.started_at, PrintRow.id, after))
    ordered = query.order_by(PrintRow.started_at.desc(), PrintRow.id.desc()).limit(limit + 1)
    rows = list(await session.scalars(ordered))
    items = await _records(session, rows[:limit])
    more = len(rows) > limit
    return HistoryPage(items, Cursor(items[-1].started_at, items[-1].id) if more else None)


async def printer_statistics(
    session: AsyncSession,
    *,
    serials: Collection[str] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> tuple[PrinterStats, ...]:
    """Per printer (by serial) statistics of the prints started in [since, until)."""
    counts = select(
        PrintRow.printer_serial,
        PrintRow.outcome,
        func.count(),
        func.coalesce(func.sum(PrintRow.duration_s), 0),
    ).group_by(PrintRow.printer_serial, PrintRow.outcome)
    grams = (
        select(
            PrintRow.printer_serial,
            PrintFilamentRow.material,
            func.coalesce(func.sum(PrintFilamentRow.used_g), 0.0),
        )
        .join(PrintFilamentRow, PrintFilamentRow.print_id == PrintRow.id)
        .where(PrintFilamentRow.used_g.is_not(None))
        .group_by(PrintRow.printer_serial, PrintFilamentRow.material)
    )
    conditions = _window(since, until)
    if serials is not None:
        conditions.append(PrintRow.printer_serial.in_(sorted(serials)))
    counts = counts.where(*conditions)
    grams = grams.where(*conditions)
    by_printer: dict[str, dict[str, tuple[int, int]]] = {}
    for serial, outcome, count, seconds in await session.execute(counts):
        by_printer.setdefault(serial, {})[outcome] = (int(count), int(seconds or 0))
    materials: dict[str, dict[str, float]] = {}
    for serial, material, used in await session.execute(grams):
        per = materials.setdefault(serial, {})
        key = material or UNKNOWN_MATERIAL
        per[key] = per.get(key, 0.0) + float(used or 0.0)
    return tuple(
        PrinterStats(serial, _stats(by_printer[serial], materials.get(serial, {})))
        for serial in sorted(by_printer)
    )


async def fleet_statistics(
    session: AsyncSession, *, since: datetime | None = None, until: datetime | None = None
) -> PrintStats:
    """The whole farm's statistics of the prints started in [since, until)."""
    return combine(p.stats for p in await printer_statistics(session, since=since, until=until))


def combine(parts: Iterable[PrintStats]) -> PrintStats:
    """The statistics of several printers (or periods) together."""
    prints = done = failed = cancelled = running = 0
    hours = 0.0
    grams: dict[str, float] = {}
    for part in parts:
        prints += part.prints
        done += part.done
        failed += part.failed
        cancelled += part.cancelled
        running += part.running
        hours += part.print_hours
        for material, used in part.filament_g.items():
            grams[material] = grams.get(material, 0.0) + used
    return PrintStats(prints, done, failed, cancelled, running, round(hours, 3), _grams_view(grams))


def _stats(outcomes: Mapping[str, tuple[int, int]], grams: Mapping[str, float]) -> PrintStats:
    def count(outcome: PrintOutcome) -> int:
        return outcomes.get(outcome.value, (0, 0))[0]

    seconds = sum(s for outcome, (_, s) in outcomes.items() if outcome != PrintOutcome.RUNNING)
    return PrintStats(
        prints=sum(n for n, _ in outcomes.values()),
        done=count(PrintOutcome.DONE),
        failed=count(PrintOutcome.FAILED),
        cancelled=count(PrintOutcome.CANCELLED),
        running=count(PrintOutcome.RUNNING),
        print_hours=round(seconds / 3600, 3),
        filament_g=_grams_view(grams),
    )


def _grams_view(grams: Mapping[str, float]) -> Mapping[str, float]:
    return MappingProxyType({k: round(v, 3) for k, v in sorted(grams.items())})


def _window(since: datetime | None, until: datetime | None) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    for name, bound in (("since", since), ("until", until)):
        if bound is not None and bound.tzinfo is None:
            raise InvalidValue(f"{name} {bound.isoformat()} has no time zone; give UTC")
    if since is not None:
        conditions.append(PrintRow.started_at >= since)
    if until is not None:
        conditions.append(PrintRow.started_at < until)
    return conditions


def _filters(
    serial: str | None, job_id: int | None, outcomes: Collection[PrintOutcome] | None
) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if serial is not None:
        conditions.append(PrintRow.printer_serial == serial)
    if job_id is not None:
        conditions.append(PrintRow.job_id == job_id)
    if outcomes is not None:
        conditions.append(PrintRow.outcome.in_(sorted(PrintOutcome(o).value for o in outcomes)))
    return conditions


async def _records(session: AsyncSession, rows: Sequence[PrintRow]) -> tuple[PrintRecord, ...]:
    if not rows:
        return ()
    uses: dict[int, list[FilamentUse]] = {}
    filament_rows = await session.scalars(
        select(PrintFilamentRow)
        .where(PrintFilamentRow.print_id.in_([r.id for r in rows]))
        .order_by(PrintFilamentRow.print_id, PrintFilamentRow.slot)
        .execution_options(populate_existing=True)
    )
    for f in filament_rows:
        uses.setdefault(f.print_id, []).append(
            FilamentUse(f.slot, f.material, f.color, f.planned_g, f.used_g)
        )
    return tuple(
        PrintRecord(
            id=r.id,
            job_id=r.job_id,
            attempt=r.attempt,
            printer_serial=r.printer_serial,
            file_sha256=r.file_sha256,
            file_name=r.file_name,
            plate=r.plate,
            started_at=r.started_at,
            ended_at=r.ended_at,
            duration_s=r.duration_s,
            outcome=PrintOutcome(r.outcome),
            progress=r.progress,
            reason=r.reason,
            filament=tuple(uses.get(r.id, ())),
        )
        for r in rows
    )


def _check_serial(serial: str) -> str:
    value = serial.strip()
    if not (0 < len(value) <= MAX_SERIAL and value.isascii() and value.isalnum()):
        raise InvalidValue(f"serial {serial[:40]!r} must be 1 to {MAX_SERIAL} letters and digits")
    return value


def _check_reason(reason: str | None) -> str | None:
    if reason is None:
        return None
    value = reason.strip()
    return value[: MAX_REASON - 1] + "…" if len(value) > MAX_REASON else value or None
