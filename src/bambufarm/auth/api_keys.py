"""API keys for machines (ERP/MES, Home Assistant, scripts): `bf_<id>_<secret>`.

The id (16 hex characters) is public and finds the row; the secret (256 random bits) is
shown once at creation and stored only as its SHA-256. A fast hash is right here, unlike for
passwords: the secret is random, so there is nothing to guess offline, and checking a key on
every request must not cost argon2's ~40 ms.
"""

import hashlib
import hmac
import logging
import secrets
import string
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final

from sqlalchemy.ext.asyncio import AsyncSession

from bambufarm.auth.errors import InvalidCredentials
from bambufarm.auth.roles import Principal, Role, Scope, parse_scopes
from bambufarm.storage.credentials import (
    ApiKeyRecord,
    add_api_key,
    get_api_key,
    list_api_keys,
    revoke_api_key,
    touch_api_key,
)
from bambufarm.storage.errors import ApiKeyNotFound, InvalidValue, UserNotFound
from bambufarm.storage.users import UserRecord, get_user_by_id

logger = logging.getLogger(__name__)

PREFIX: Final = "bf"
ID_BYTES: Final = 8  # 16 hex characters
SECRET_BYTES: Final = 32  # 43 URL-safe characters
MAX_NAME: Final = 64
# Recording every use would make every API request a write; once a minute is enough to say
# "last used" and keeps read-only requests read-only most of the time.
TOUCH_INTERVAL: Final = timedelta(seconds=60)
_HEX: Final = frozenset(string.hexdigits.lower())


@dataclass(frozen=True, slots=True)
class IssuedApiKey:
    """A new key: the stored record and the full token, which is shown this once."""

    record: ApiKeyRecord
    token: str = field(repr=False)


async def create_api_key(
    session: AsyncSession,
    owner: UserRecord,
    name: str,
    scopes: Iterable[str],
    *,
    now: datetime | None = None,
) -> IssuedApiKey:
    """Make a key for `owner` with scopes their role may grant (`InvalidScopes` if not)."""
    label = name.strip()
    if not 0 < len(label) <= MAX_NAME:
        raise InvalidValue(f"an API key needs a name of 1 to {MAX_NAME} characters")
    granted = parse_scopes(scopes, Role(owner.role))
    key_id = secrets.token_hex(ID_BYTES)
    secret = secrets.token_urlsafe(SECRET_BYTES)
    record = await add_api_key(
        session,
        key_id=key_id,
        owner_id=owner.id,
        name=label,
        secret_hash=_digest(secret),
        scopes=frozenset(s.value for s in granted),
        now=now,
    )
    logger.info("API key %s (%s) created for %s", key_id, label, owner.username)
    return IssuedApiKey(record, f"{PREFIX}_{key_id}_{secret}")


async def authenticate_api_key(
    session: AsyncSession, token: str, *, now: datetime | None = None
) -> Principal:
    """The principal a key acts as; `InvalidCredentials` for any unusable key."""
    key_id, secret = _split(token)
    try:
        record = await get_api_key(session, key_id)
        owner = await get_user_by_id(session, record.owner_id)
    except (ApiKeyNotFound, UserNotFound):
        raise InvalidCredentials from None
    if (
        record.revoked
        or owner.disabled
        or not hmac.compare_digest(record.secret_hash, _digest(secret))
    ):
        raise InvalidCredentials
    at = now or datetime.now(UTC)
    if record.last_used_at is None or at - record.last_used_at >= TOUCH_INTERVAL:
        await touch_api_key(session, key_id, at)
    return Principal(
        user_id=owner.id,
        username=owner.username,
        role=Role(owner.role),
        scopes=frozenset(Scope(s) for s in record.scopes),
        api_key_id=key_id,
    )


async def revoke(
    session: AsyncSession, key_id: str, *, now: datetime | None = None
) -> ApiKeyRecord:
    """Revoke a key for good (`ApiKeyNotFound` if there is no such key)."""
    record = await revoke_api_key(session, key_id, now=now)
    logger.info("API key %s revoked", key_id)
    return record


async def keys_of(session: AsyncSession, owner: UserRecord) -> tuple[ApiKeyRecord, ...]:
    """The owner's keys that still work, oldest first."""
    return await list_api_keys(session, owner_id=owner.id)


def looks_like_api_key(token: str) -> bool:
    """True if `token` has the `bf_<id>_<secret>` shape (cheap, for picking an auth scheme)."""
    return token.startswith(f"{PREFIX}_")


def _split(token: str) -> tuple[str, str]:
    parts = token.strip().split("_", 2)
    if (
        len(parts) != 3
        or parts[0] != PREFIX
        or len(parts[1]) != ID_BYTES * 2
        or not set(parts[1]) <= _HEX
        or not parts[2]
        or len(parts[2]) > SECRET_BYTES * 2
    ):
        raise InvalidCredentials
    return parts[1], parts[2]


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()
