"""Per-printer plate state: is the build plate clear for the next job, and does it clear itself.

After a print ends (finished or failed) the plate holds the part or the remains of a failed
print: the printer must not get another job until someone confirms the plate is clear (or the
printer has an ejection routine and is set to clear itself). That fact lives here, in the
database, so it survives a restart and every server process sees the same gate (design.md §8).

A printer without a row has never ended a print under our watch: its plate counts as clear.
Rows are keyed by serial, not a foreign key: like the history, the plate state is about a
physical printer and is harmless (and useful) if the printer is removed and added again.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Final

from sqlalchemy import CheckConstraint, String, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from bambufarm.storage.errors import InvalidValue
from bambufarm.storage.tables import Base, BigId

MAX_SERIAL: Final = 32
MAX_ACTOR: Final = 128
# How the last print on the plate ended; the gate closes after each of them.
PLATE_OUTCOMES: Final = ("finished", "failed")


class PlateRow(Base):
    """One printer's plate: clear or not, self-clearing or not, and what last ended on it."""

    __tablename__ = "printer_plates"
    __table_args__ = (CheckConstraint(f"last_outcome IN {PLATE_OUTCOMES!r}", name="last_outcome"),)

    serial: Mapped[str] = mapped_column(String(32), primary_key=True)
    cleared: Mapped[bool]
    auto_clear: Mapped[bool]
    last_job_id: Mapped[int | None] = mapped_column(BigId)  # None: a print not from the queue
    last_outcome: Mapped[str | None] = mapped_column(String(16))
    changed_by: Mapped[str | None] = mapped_column(String(128))  # who cleared it, or None
    updated_at: Mapped[datetime]


@dataclass(frozen=True, slots=True)
class PlateRecord:
    """A printer's plate state."""

    serial: str
    cleared: bool = True
    auto_clear: bool = False
    last_job_id: int | None = None
    last_outcome: str | None = None  # one of PLATE_OUTCOMES, or None before any print ended
    changed_by: str | None = None
    updated_at: datetime | None = None  # None: no row yet (never ended a print here)


async def get_plate(session: AsyncSession, serial: str) -> PlateRecord:
    """The plate state of one printer (clear, not self-clearing, when it has no row)."""
    key = _check_serial(serial)
    row = await session.get(PlateRow, key, populate_existing=True)
    return PlateRecord(key) if row is None else _record(row)


async def list_plates(session: AsyncSession) -> Mapping[str, PlateRecord]:
    """Every stored plate state by serial; printers missing from it are clear."""
    rows = await session.scalars(select(PlateRow).execution_options(populate_existing=True))
    return MappingProxyType({row.serial: _record(row) for row in rows})


async def mark_ended(
    session: AsyncSession,
    serial: str,
    *,
    outcome: str,
    job_id: int | None,
    now: datetime | None = None,
) -> PlateRecord:
    """A print ended on this printer: the plate is no longer clear (unless it clears itself).

    Auto-clear only follows a finished print: the ejection routine is for a finished part, and
    a failed print can leave anything on the plate, so a person looks first.
    """
    if outcome not in PLATE_OUTCOMES:
        raise InvalidValue(f"a print ends as {' or '.join(PLATE_OUTCOMES)}, not {outcome!r}")
    current = await get_plate(session, serial)
    cleared = current.auto_clear and outcome == "finished"
    return await _upsert(
        session,
        current.serial,
        cleared=cleared,
        auto_clear=current.auto_clear,
        last_job_id=job_id,
        last_outcome=outcome,
        changed_by="auto-clear" if cleared else None,
        now=now,
    )


async def mark_cleared(
    session: AsyncSession, serial: str, *, by: str, now: datetime | None = None
) -> PlateRecord:
    """Someone confirmed the plate is clear: the printer may take the next job."""
    current = await get_plate(session, serial)
    return await _upsert(
        session,
        current.serial,
        cleared=True,
        auto_clear=current.auto_clear,
        last_job_id=current.last_job_id,
        last_outcome=current.last_outcome,
        changed_by=_check_actor(by),
        now=now,
    )


async def set_auto_clear(
    session: AsyncSession, serial: str, enabled: bool, *, now: datetime | None = None
) -> PlateRecord:
    """Turn the printer's auto-clear (an ejection routine after each finished print) on or off."""
    current = await get_plate(session, serial)
    return await _upsert(
        session,
        current.serial,
        cleared=current.cleared,
        auto_clear=bool(enabled),
        last_job_id=current.last_job_id,
        last_outcome=current.last_outcome,
        changed_by=current.changed_by,
        now=now,
    )


async def _upsert(session: AsyncSession, serial: str, **values: Any) -> PlateRecord:
    """Insert or replace the row in one statement, so two processes cannot both insert."""
    at = values.pop("now", None) or datetime.now(UTC)
    values["updated_at"] = at
    if session.get_bind().dialect.name == "postgresql":
        pg = pg_insert(PlateRow).values(serial=serial, **values)
        await session.execute(pg.on_conflict_do_update(index_elements=["serial"], set_=values))
    else:
        lite = sqlite_insert(PlateRow).values(serial=serial, **values)
        await session.execute(lite.on_conflict_do_update(index_elements=["serial"], set_=values))
    return await get_plate(session, serial)


def _record(row: PlateRow) -> PlateRecord:
    return PlateRecord(
        serial=row.serial,
        cleared=row.cleared,
        auto_clear=row.auto_clear,
        last_job_id=row.last_job_id,
        last_outcome=row.last_outcome,
        changed_by=row.changed_by,
        updated_at=row.updated_at,
    )


def _check_serial(serial: str) -> str:
    value = serial.strip() if isinstance(serial, str) else ""
    if not (0 < len(value) <= MAX_SERIAL and value.isascii() and value.isalnum()):
        raise InvalidValue(
            f"serial {str(serial)[:40]!r} must be 1 to {MAX_SERIAL} letters and digits"
        )
    return value


def _check_actor(actor: str) -> str:
    value = actor.strip() if isinstance(actor, str) else ""
    if not 0 < len(value) <= MAX_ACTOR:
        raise InvalidValue(f"who cleared the plate must be 1 to {MAX_ACTOR} characters")
    return value
