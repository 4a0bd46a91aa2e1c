"""Pagination for repository lists: offset pages for small tables, cursors for history.

Printers and users are counted in thousands at most, so `Page` carries a total and an offset.
Events and the audit log grow without bound: counting them per page, or skipping N rows with
OFFSET, gets slower every day, so they are read newest first after a `Cursor` (the time and
id of the last row seen), which an index serves directly however deep the page.
"""

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Generic, TypeVar

from sqlalchemy import ColumnElement, Select, and_, or_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from bambufarm.storage.errors import InvalidValue

DEFAULT_LIMIT: Final = 100
MAX_LIMIT: Final = 1000

T = TypeVar("T")
S = TypeVar("S")


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a list: `items`, the `total` matching, and where this page starts."""

    items: tuple[T, ...]
    total: int
    offset: int
    limit: int


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where the next page of a history starts: strictly older than (at, id)."""

    at: datetime
    id: int

    def encode(self) -> str:
        """An opaque URL-safe token for API clients."""
        raw = f"{self.at.astimezone(UTC).isoformat()}|{self.id}".encode()
        return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")

    @classmethod
    def decode(cls, token: str) -> "Cursor":
        """The cursor in a token made by `encode`; `InvalidValue` for anything else."""
        try:
            padded = token + "=" * (-len(token) % 4)
            at_text, id_text = base64.urlsafe_b64decode(padded).decode("ascii").split("|")
            at = datetime.fromisoformat(at_text)
            row_id = int(id_text)
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise InvalidValue(f"cursor {token[:64]!r} is not one this server issued") from None
        if at.tzinfo is None:
            raise InvalidValue(f"cursor {token[:64]!r} is not one this server issued")
        return cls(at, row_id)


@dataclass(frozen=True, slots=True)
class HistoryPage(Generic[T]):
    """Newest-first rows and the cursor for the next (older) page, None at the end."""

    items: tuple[T, ...]
    next_cursor: Cursor | None


def check_window(offset: int, limit: int) -> None:
    """Refuse a negative offset or a limit outside 1..MAX_LIMIT."""
    if offset < 0:
        raise InvalidValue(f"offset must be 0 or more, not {offset}")
    check_limit(limit)


def check_limit(limit: int) -> None:
    """Refuse a limit outside 1..MAX_LIMIT (a page of a million rows is not a page)."""
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidValue(f"limit must be between 1 and {MAX_LIMIT}, not {limit}")


def older_than(
    at_column: InstrumentedAttribute[datetime],
    id_column: InstrumentedAttribute[int],
    cursor: Cursor,
) -> ColumnElement[bool]:
    """Rows strictly after `cursor` in newest-first order: older, or as old with a smaller id."""
    return or_(at_column < cursor.at, and_(at_column == cursor.at, id_column < cursor.id))


def time_window(
    query: Select[S],
    at_column: InstrumentedAttribute[datetime],
    since: datetime | None,
    until: datetime | None,
) -> Select[S]:
    """`query` limited to since <= at < until (either bound may be None)."""
    for bound in (since, until):
        if bound is not None and bound.tzinfo is None:
            raise InvalidValue(f"time bound {bound.isoformat()} has no time zone; give UTC")
    if since is not None:
        query = query.where(at_column >= since)
    if until is not None:
        query = query.where(at_column < until)
    return query


async def newest_first(
    session: AsyncSession,
    query: Select[S],
    at_column: InstrumentedAttribute[datetime],
    id_column: InstrumentedAttribute[int],
    to_item: Callable[[S], T],
    *,
    since: datetime | None,
    until: datetime | None,
    after: Cursor | None,
    limit: int,
) -> HistoryPage[T]:
    """One page of `query`'s rows, newest first after `after`, within since..until."""
    check_limit(limit)
    query = time_window(query, at_column, since, until)
    if after is not None:
        query = query.where(older_than(at_column, id_column, after))
    # One row past the page says whether another page follows, without a COUNT.
    ordered = query.order_by(at_column.desc(), id_column.desc()).limit(limit + 1)
    rows = list(await session.scalars(ordered))
    if len(rows) <= limit:
        return HistoryPage(tuple(to_item(r) for r in rows), None)
    last = rows[limit - 1]
    cursor = Cursor(getattr(last, at_column.key), getattr(last, id_column.key))
    return HistoryPage(tuple(to_item(r) for r in rows[:limit]), cursor)
