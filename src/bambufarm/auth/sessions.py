"""Browser sessions: log in with a password, get a session token and a CSRF token.

Both tokens are 256 random bits, handed out once at login and stored only as SHA-256 digests,
so a copy of the database cannot be replayed as a cookie. The session token goes in an
HttpOnly cookie; the CSRF token is given to the page (double-submit) and must come back in a
header on every state-changing request, which a cross-site form cannot do.
"""

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final, NoReturn

from sqlalchemy.ext.asyncio import AsyncSession

from bambufarm.auth.errors import CsrfRejected, InvalidCredentials
from bambufarm.auth.passwords import Passwords
from bambufarm.auth.ratelimit import LoginLimiter
from bambufarm.auth.roles import Principal, Role
from bambufarm.storage.credentials import (
    add_session,
    delete_expired_sessions,
    delete_session,
    get_session,
)
from bambufarm.storage.errors import InvalidValue, UserNotFound
from bambufarm.storage.users import UserChanges, UserRecord, get_user, get_user_by_id, update_user

logger = logging.getLogger(__name__)

TOKEN_BYTES: Final = 32
# A working day and then some: an operator signs in once per shift.
SESSION_TTL: Final = timedelta(hours=12)
# Longer than any token we issue (43 characters): anything bigger is not ours, and is not
# worth hashing.
_MAX_TOKEN: Final = 128


@dataclass(frozen=True, slots=True)
class IssuedSession:
    """A new session: the tokens (shown this once), when it ends, and who it is for."""

    token: str = field(repr=False)
    csrf_token: str = field(repr=False)
    expires_at: datetime
    user: UserRecord


@dataclass(frozen=True, slots=True)
class SessionAuth:
    """A request's valid session: the principal, and what its CSRF token must hash to."""

    principal: Principal
    expires_at: datetime
    csrf_hash: str = field(repr=False)

    def check_csrf(self, presented: str | None) -> None:
        """Raise `CsrfRejected` unless `presented` is this session's CSRF token."""
        if not presented or len(presented) > _MAX_TOKEN:
            raise CsrfRejected("this request needs the session's CSRF token (X-CSRF-Token header)")
        if not hmac.compare_digest(self.csrf_hash, _digest(presented)):
            raise CsrfRejected("the CSRF token does not belong to this session; sign in again")


async def login(
    session: AsyncSession,
    passwords: Passwords,
    limiter: LoginLimiter,
    *,
    username: str,
    password: str,
    address: str,
    now: datetime | None = None,
    ttl: timedelta = SESSION_TTL,
) -> IssuedSession:
    """Check the password and open a session; `InvalidCredentials` or `RateLimited` if not."""
    limiter.check(username, address)
    try:
        user = await get_user(session, username)
    except (UserNotFound, InvalidValue):
        passwords.burn(password)
        _failed(limiter, username, address)
    if not passwords.verify(user.password_hash, password) or user.disabled:
        _failed(limiter, username, address)
    limiter.succeeded(username, address)
    at = now or datetime.now(UTC)
    if passwords.needs_rehash(user.password_hash):
        # Raised cost parameters take effect at each user's next login.
        user = await update_user(
            session, user.username, UserChanges(password_hash=passwords.hash(password)), now=at
        )
    token = secrets.token_urlsafe(TOKEN_BYTES)
    csrf_token = secrets.token_urlsafe(TOKEN_BYTES)
    expires_at = at + ttl
    await add_session(
        session,
        token_hash=_digest(token),
        user_id=user.id,
        csrf_hash=_digest(csrf_token),
        expires_at=expires_at,
        now=at,
    )
    logger.info("%s signed in from %s", user.username, address)
    return IssuedSession(token, csrf_token, expires_at, user)


async def authenticate_session(
    session: AsyncSession, token: str, *, now: datetime | None = None
) -> SessionAuth:
    """The session for a cookie token; `InvalidCredentials` if unknown, expired or disabled."""
    if not token or len(token) > _MAX_TOKEN:
        raise InvalidCredentials
    record = await get_session(session, _digest(token))
    if record is None or record.expires_at <= (now or datetime.now(UTC)):
        raise InvalidCredentials
    try:
        user = await get_user_by_id(session, record.user_id)
    except UserNotFound:
        raise InvalidCredentials from None
    if user.disabled:
        raise InvalidCredentials
    principal = Principal(
        user_id=user.id,
        username=user.username,
        role=Role(user.role),
        must_change_password=user.must_change_password,
    )
    return SessionAuth(principal, record.expires_at, record.csrf_hash)


async def logout(session: AsyncSession, token: str) -> bool:
    """End the session of this cookie token; True if there was one."""
    if not token or len(token) > _MAX_TOKEN:
        return False
    return await delete_session(session, _digest(token))


async def prune_sessions(session: AsyncSession, *, now: datetime | None = None) -> int:
    """Delete expired sessions (a periodic job); returns how many."""
    return await delete_expired_sessions(session, now or datetime.now(UTC))


def _failed(limiter: LoginLimiter, username: str, address: str) -> NoReturn:
    limiter.failed(username, address)
    # The name is logged (the operator wants to see guessing) but never the password.
    logger.warning("failed sign-in for %r from %s", username[:64], address)
    raise InvalidCredentials


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()
