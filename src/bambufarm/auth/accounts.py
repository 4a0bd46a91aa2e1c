"""Account changes that involve a password or a user's access: create, change password, disable.

Each one that takes access away also ends the user's sessions, in the same transaction.
"""

from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from bambufarm.auth.errors import InvalidCredentials, WeakPassword
from bambufarm.auth.passwords import Passwords
from bambufarm.auth.roles import Role
from bambufarm.storage.credentials import delete_user_sessions
from bambufarm.storage.users import UserChanges, UserRecord, add_user, get_user, update_user


async def create_user(
    session: AsyncSession,
    passwords: Passwords,
    username: str,
    password: str,
    role: Role,
    *,
    must_change_password: bool = True,
    now: datetime | None = None,
) -> UserRecord:
    """A new user with a policy-checked password (`WeakPassword`, `DuplicateUser`)."""
    return await add_user(
        session,
        username,
        passwords.hash(password),
        role,
        must_change_password=must_change_password,
        now=now,
    )


async def change_password(
    session: AsyncSession,
    passwords: Passwords,
    username: str,
    current: str,
    new: str,
    *,
    now: datetime | None = None,
) -> UserRecord:
    """Replace a password after checking the current one; every session ends (sign in again)."""
    user = await get_user(session, username)
    if not passwords.verify(user.password_hash, current):
        raise InvalidCredentials("the current password is wrong")
    if new == current:
        raise WeakPassword("the new password must differ from the current one")
    updated = await update_user(
        session,
        user.username,
        UserChanges(password_hash=passwords.hash(new), must_change_password=False),
        now=now or datetime.now(UTC),
    )
    await delete_user_sessions(session, user.id)
    return updated


async def set_disabled(
    session: AsyncSession, username: str, disabled: bool, *, now: datetime | None = None
) -> UserRecord:
    """Disable (ending every session; keys stop working) or re-enable a user."""
    user = await update_user(session, username, UserChanges(disabled=disabled), now=now)
    if disabled:
        await delete_user_sessions(session, user.id)
    return user
