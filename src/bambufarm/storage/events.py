"""Event history: fleet events kept per printer (serial, kind, JSON body, time).

The fleet's events are published live on the bus; the ones worth keeping are appended here,
in batches (`append_events` is one INSERT for many rows: at 1,000 printers a row-per-commit
writer would spend its time on fsyncs). Reading is newest first by cursor, per printer or for
the whole farm, optionally by kind and time window; `prune_events` enforces retention.
"""

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Any, Final

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from bambufarm.storage.errors import InvalidValue
from bambufarm.storage.paging import DEFAULT_LIMIT, Cursor, HistoryPage, newest_first
from bambufarm.storage.tables import EventRow

MAX_SERIAL: Final = 32
MAX_KIND: Final = 64


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event to keep: which printer, what kind, its JSON body, and when it happened."""

    serial: str
    kind: str
    body: Mapping[str, Any]
    at: datetime


@dataclass(frozen=True, slots=True)
class EventRecord:
    """A stored event; `body` is a read-only view of its JSON object."""

    id: int
    serial: str
    kind: str
    body: Mapping[str, Any]
    at: datetime


async def append_events(session: AsyncSession, events: Iterable[NewEvent]) -> int:
    """Store a batch of events in one statement; returns how many."""
    rows = [_row_values(event) for event in events]
    if rows:
        await session.execute(insert(EventRow), rows)
    return len(rows)


async def append_event(session: AsyncSession, event: NewEvent) -> EventRecord:
    """Store one event and return it with its id."""
    row = EventRow(**_row_values(event))
    session.add(row)
    await session.flush()
    return _record(row)


async def event_history(
    session: AsyncSession,
    *,
    serial: str | None = None,
    kinds: Collection[str] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    after: Cursor | None = None,
    limit: int = DEFAULT_LIMIT,
) -> HistoryPage[EventRecord]:
    """Events newest first; pass the returned `next_cursor` as `after` for the next page."""
    query = select(EventRow)
    if serial is not None:
        query = query.where(EventRow.serial == serial)
    if kinds is not None:
        query = query.where(EventRow.kind.in_(sorted(kinds)))
    return await newest_first(
        session,
        query,
        EventRow.at,
        EventRow.id,
        _record,
        since=since,
        until=until,
        after=after,
        limit=limit,
    )


async def prune_events(session: AsyncSession, before: datetime) -> int:
    """Delete every event older than `before`; returns how many."""
    if before.tzinfo is None:
        raise InvalidValue(f"prune bound {before.isoformat()} has no time zone; give UTC")
    result = await session.execute(delete(EventRow).where(EventRow.at < before))
    return int(result.rowcount)  # type: ignore[attr-defined]


def _row_values(event: NewEvent) -> dict[str, Any]:
    if not 0 < len(event.serial) <= MAX_SERIAL:
        raise InvalidValue(f"event serial must be 1 to {MAX_SERIAL} characters")
    if not 0 < len(event.kind) <= MAX_KIND:
        raise InvalidValue(f"event kind must be 1 to {MAX_KIND} characters")
    if event.at.tzinfo is None:
        raise InvalidValue(f"event time {event.at.isoformat()} has no time zone; give UTC")
    return {"serial": event.serial, "kind": event.kind, "body": dict(event.body), "at": event.at}


def _record(row: EventRow) -> EventRecord:
    return EventRecord(
        id=row.id,
        serial=row.serial,
        kind=row.kind,
        body=MappingProxyType(dict(row.body)),
        at=row.at,
    )
