"""The audit log: every control and admin action — who, what, which printer, when.

Write the entry in the same session (transaction) as the action it records, so a change and
its record commit or vanish together. Details must be JSON values and must not hold secrets:
log "access code changed", never the code.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bambufarm.storage.errors import InvalidValue
from bambufarm.storage.paging import DEFAULT_LIMIT, Cursor, HistoryPage, newest_first
from bambufarm.storage.tables import AuditRow

MAX_ACTOR: Final = 128
MAX_ACTION: Final = 64


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One recorded action; `details` is a read-only view of its JSON object."""

    id: int
    actor: str
    action: str
    printer_serial: str | None
    details: Mapping[str, Any]
    at: datetime


async def record_action(
    session: AsyncSession,
    actor: str,
    action: str,
    *,
    printer_serial: str | None = None,
    details: Mapping[str, Any] | None = None,
    at: datetime | None = None,
) -> AuditEntry:
    """Append an entry, e.g. `record_action(s, "alice", "printer.pause", printer_serial=...)`."""
    if not 0 < len(actor) <= MAX_ACTOR:
        raise InvalidValue(f"audit actor must be 1 to {MAX_ACTOR} characters")
    if not 0 < len(action) <= MAX_ACTION:
        raise InvalidValue(f"audit action must be 1 to {MAX_ACTION} characters")
    row = AuditRow(
        actor=actor,
        action=action,
        printer_serial=printer_serial,
        details=dict(details or {}),
        at=at or datetime.now(UTC),
    )
    session.add(row)
    await session.flush()
    return _entry(row)


async def list_actions(
    session: AsyncSession,
    *,
    actor: str | None = None,
    action: str | None = None,
    printer_serial: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    after: Cursor | None = None,
    limit: int = DEFAULT_LIMIT,
) -> HistoryPage[AuditEntry]:
    """Entries newest first, filtered; pass the returned `next_cursor` as `after` for more."""
    query = select(AuditRow)
    if actor is not None:
        query = query.where(AuditRow.actor == actor)
    if action is not None:
        query = query.where(AuditRow.action == action)
    if printer_serial is not None:
        query = query.where(AuditRow.printer_serial == printer_serial)
    return await newest_first(
        session,
        query,
        AuditRow.at,
        AuditRow.id,
        _entry,
        since=since,
        until=until,
        after=after,
        limit=limit,
    )


def _entry(row: AuditRow) -> AuditEntry:
    return AuditEntry(
        id=row.id,
        actor=row.actor,
        action=row.action,
        printer_serial=row.printer_serial,
        details=MappingProxyType(dict(row.details)),
        at=row.at,
    )
