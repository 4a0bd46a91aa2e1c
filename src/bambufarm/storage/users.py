"""User accounts: add, get, list, update, remove.

Storage keeps what `bambufarm.auth` decides: an argon2 hash (never a password), a role name
from `tables.ROLES`, and the flags. Usernames are case-insensitive: stored in lower case.
"""

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from bambufarm.storage.errors import DuplicateUser, InvalidValue, UserNotFound
from bambufarm.storage.paging import DEFAULT_LIMIT, Page, check_window
from bambufarm.storage.tables import ROLES, UserRow
from bambufarm.storage.unset import UNSET, Unset

MAX_USERNAME: Final = 64
_USERNAME: Final = re.compile(r"[a-z0-9][a-z0-9._@-]*")


@dataclass(frozen=True, slots=True)
class UserRecord:
    """A stored user; `password_hash` is for `auth.passwords` only and is never shown."""

    id: int
    username: str
    role: str
    must_change_password: bool
    disabled: bool
    created_at: datetime
    updated_at: datetime
    password_hash: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class UserChanges:
    """The fields to change on a user; UNSET leaves a field as it is."""

    role: str | Unset = UNSET
    password_hash: str | Unset = field(default=UNSET, repr=False)
    must_change_password: bool | Unset = UNSET
    disabled: bool | Unset = UNSET


def normalize_username(username: str) -> str:
    """The stored form of a username (trimmed, lower case); `InvalidValue` if it cannot be one."""
    value = username.strip().lower()
    if len(value) > MAX_USERNAME or not _USERNAME.fullmatch(value):
        raise InvalidValue(
            f"username {username[:MAX_USERNAME]!r} must be 1 to {MAX_USERNAME} letters, digits "
            "and . _ @ - , starting with a letter or digit"
        )
    return value


async def add_user(
    session: AsyncSession,
    username: str,
    password_hash: str,
    role: str,
    *,
    must_change_password: bool = False,
    now: datetime | None = None,
) -> UserRecord:
    """Store a new user; `DuplicateUser` if the name is taken."""
    name = normalize_username(username)
    at = now or datetime.now(UTC)
    row = UserRow(
        username=name,
        password_hash=_check_hash(password_hash),
        role=_check_role(role),
        must_change_password=must_change_password,
        disabled=False,
        created_at=at,
        updated_at=at,
    )
    if await session.scalar(select(UserRow.id).where(UserRow.username == name)) is not None:
        raise DuplicateUser(f"a user named {name!r} already exists")
    try:
        # A savepoint: a concurrent insert of the same name leaves the caller's transaction usable.
        async with session.begin_nested():
            session.add(row)
    except IntegrityError:
        raise DuplicateUser(f"a user named {name!r} already exists") from None
    return _record(row)


async def get_user(session: AsyncSession, username: str) -> UserRecord:
    """The user with this name (any case); `UserNotFound` if there is none."""
    return _record(await _row(session, username))


async def get_user_by_id(session: AsyncSession, user_id: int) -> UserRecord:
    """The user with this id; `UserNotFound` if there is none."""
    row = await session.get(UserRow, user_id)
    if row is None:
        raise UserNotFound(f"no user with id {user_id}")
    return _record(row)


async def count_users(session: AsyncSession) -> int:
    """How many users exist (disabled ones included)."""
    return await session.scalar(select(func.count()).select_from(UserRow)) or 0


async def list_users(
    session: AsyncSession, *, offset: int = 0, limit: int = DEFAULT_LIMIT
) -> Page[UserRecord]:
    """Users by name."""
    check_window(offset, limit)
    total = await count_users(session)
    rows = await session.scalars(
        select(UserRow).order_by(UserRow.username).offset(offset).limit(limit)
    )
    return Page(tuple(_record(r) for r in rows), total, offset, limit)


async def update_user(
    session: AsyncSession, username: str, changes: UserChanges, *, now: datetime | None = None
) -> UserRecord:
    """Apply `changes` to the user with this name and return it as stored."""
    row = await _row(session, username)
    if not isinstance(changes.role, Unset):
        row.role = _check_role(changes.role)
    if not isinstance(changes.password_hash, Unset):
        row.password_hash = _check_hash(changes.password_hash)
    if not isinstance(changes.must_change_password, Unset):
        row.must_change_password = changes.must_change_password
    if not isinstance(changes.disabled, Unset):
        row.disabled = changes.disabled
    row.updated_at = now or datetime.now(UTC)
    await session.flush()
    return _record(row)


async def remove_user(session: AsyncSession, username: str) -> None:
    """Delete the user (their API keys and sessions go with them); `UserNotFound` if absent."""
    await session.delete(await _row(session, username))
    await session.flush()


async def _row(session: AsyncSession, username: str) -> UserRow:
    name = username.strip().lower()
    row = await session.scalar(select(UserRow).where(UserRow.username == name))
    if row is None:
        raise UserNotFound(f"no user named {name[:MAX_USERNAME]!r}")
    return row


def _record(row: UserRow) -> UserRecord:
    return UserRecord(
        id=row.id,
        username=row.username,
        role=row.role,
        must_change_password=row.must_change_password,
        disabled=row.disabled,
        created_at=row.created_at,
        updated_at=row.updated_at,
        password_hash=row.password_hash,
    )


def _check_role(role: str) -> str:
    if role not in ROLES:
        raise InvalidValue(f"role {role!r} is not one of {', '.join(ROLES)}")
    return str(role)


def _check_hash(password_hash: str) -> str:
    # A PHC string ("$argon2id$v=19$..."); a bare password stored here by mistake would be a
    # secret in the clear, so anything that does not look like a hash is refused.
    if not password_hash.startswith("$") or not 0 < len(password_hash) <= 255:
        raise InvalidValue("password_hash must be a PHC hash string ($argon2id$...)")
    return password_hash
