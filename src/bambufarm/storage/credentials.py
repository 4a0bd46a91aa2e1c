"""Rows behind machine and browser credentials: API keys and login sessions.

Only hashes are stored: an API key's secret and a session's cookie and CSRF tokens are shown
to their owner once and kept here as SHA-256 digests (`bambufarm.auth` makes and checks them).
"""

from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bambufarm.storage.errors import ApiKeyNotFound
from bambufarm.storage.tables import ApiKeyRow, SessionRow


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    """A stored API key: public id, owner, label, scopes and its life (used, revoked)."""

    id: str
    owner_id: int
    name: str
    scopes: frozenset[str]
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    secret_hash: str = field(repr=False)

    @property
    def revoked(self) -> bool:
        """True once the key has been revoked; a revoked key never works again."""
        return self.revoked_at is not None


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """A stored login session, found by the hash of its cookie token."""

    user_id: int
    created_at: datetime
    expires_at: datetime
    token_hash: str = field(repr=False)
    csrf_hash: str = field(repr=False)


async def add_api_key(
    session: AsyncSession,
    *,
    key_id: str,
    owner_id: int,
    name: str,
    secret_hash: str,
    scopes: frozenset[str],
    now: datetime | None = None,
) -> ApiKeyRecord:
    """Store a new API key."""
    row = ApiKeyRow(
        id=key_id,
        owner_id=owner_id,
        name=name,
        secret_hash=secret_hash,
        scopes=sorted(scopes),
        created_at=now or datetime.now(UTC),
        last_used_at=None,
        revoked_at=None,
    )
    session.add(row)
    await session.flush()
    return _key_record(row)


async def get_api_key(session: AsyncSession, key_id: str) -> ApiKeyRecord:
    """The API key with this id; `ApiKeyNotFound` if there is none."""
    row = await session.get(ApiKeyRow, key_id)
    if row is None:
        raise ApiKeyNotFound(f"no API key with id {key_id[:32]!r}")
    return _key_record(row)


async def list_api_keys(
    session: AsyncSession, *, owner_id: int | None = None, include_revoked: bool = False
) -> tuple[ApiKeyRecord, ...]:
    """API keys, oldest first, of one owner or of everybody."""
    query = select(ApiKeyRow).order_by(ApiKeyRow.created_at, ApiKeyRow.id)
    if owner_id is not None:
        query = query.where(ApiKeyRow.owner_id == owner_id)
    if not include_revoked:
        query = query.where(ApiKeyRow.revoked_at.is_(None))
    return tuple(_key_record(r) for r in await session.scalars(query))


async def touch_api_key(session: AsyncSession, key_id: str, at: datetime) -> None:
    """Record that the key was used at `at`."""
    await session.execute(update(ApiKeyRow).where(ApiKeyRow.id == key_id).values(last_used_at=at))


async def revoke_api_key(
    session: AsyncSession, key_id: str, *, now: datetime | None = None
) -> ApiKeyRecord:
    """Revoke the key (keeping its row for the record); revoking twice keeps the first time."""
    row = await session.get(ApiKeyRow, key_id)
    if row is None:
        raise ApiKeyNotFound(f"no API key with id {key_id[:32]!r}")
    if row.revoked_at is None:
        row.revoked_at = now or datetime.now(UTC)
        await session.flush()
    return _key_record(row)


async def add_session(
    session: AsyncSession,
    *,
    token_hash: str,
    user_id: int,
    csrf_hash: str,
    expires_at: datetime,
    now: datetime | None = None,
) -> SessionRecord:
    """Store a new login session."""
    row = SessionRow(
        token_hash=token_hash,
        user_id=user_id,
        csrf_hash=csrf_hash,
        created_at=now or datetime.now(UTC),
        expires_at=expires_at,
    )
    session.add(row)
    await session.flush()
    return _session_record(row)


async def get_session(session: AsyncSession, token_hash: str) -> SessionRecord | None:
    """The session stored under this token hash, or None."""
    row = await session.get(SessionRow, token_hash)
    return None if row is None else _session_record(row)


async def delete_session(session: AsyncSession, token_hash: str) -> bool:
    """Delete one session; True if it existed."""
    result = await session.execute(delete(SessionRow).where(SessionRow.token_hash == token_hash))
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def delete_user_sessions(session: AsyncSession, user_id: int) -> int:
    """Delete every session of a user (after a password reset or when disabling them)."""
    result = await session.execute(delete(SessionRow).where(SessionRow.user_id == user_id))
    return int(result.rowcount)  # type: ignore[attr-defined]


async def delete_expired_sessions(session: AsyncSession, now: datetime) -> int:
    """Delete sessions that expired before `now`; returns how many."""
    result = await session.execute(delete(SessionRow).where(SessionRow.expires_at <= now))
    return int(result.rowcount)  # type: ignore[attr-defined]


def _key_record(row: ApiKeyRow) -> ApiKeyRecord:
    return ApiKeyRecord(
        id=row.id,
        owner_id=row.owner_id,
        name=row.name,
        scopes=frozenset(row.scopes),
        created_at=row.created_at,
        last_used_at=row.last_used_at,
        revoked_at=row.revoked_at,
        secret_hash=row.secret_hash,
    )


def _session_record(row: SessionRow) -> SessionRecord:
    return SessionRecord(
        user_id=row.user_id,
        created_at=row.created_at,
        expires_at=row.expires_at,
        token_hash=row.token_hash,
        csrf_hash=row.csrf_hash,
    )
