"""The first admin, and getting back in: `ensure_admin()` at start, `reset_password()` from the CLI.

Both return a random password exactly once; the caller prints it and nothing stores it in the
clear. The account must change it at first sign-in (`must_change_password`).
"""

import logging
from datetime import UTC, datetime
from typing import Final

from sqlalchemy.ext.asyncio import AsyncSession

from bambufarm.auth.passwords import Passwords, generate_password
from bambufarm.auth.roles import Role
from bambufarm.storage.audit import record_action
from bambufarm.storage.credentials import delete_user_sessions
from bambufarm.storage.errors import DuplicateUser
from bambufarm.storage.users import UserChanges, add_user, count_users, update_user

logger = logging.getLogger(__name__)

ADMIN_USERNAME: Final = "admin"
SYSTEM_ACTOR: Final = "system"


async def ensure_admin(
    session: AsyncSession, passwords: Passwords, *, now: datetime | None = None
) -> str | None:
    """Create `admin` with a random password if there are no users; return it, else None."""
    if await count_users(session) > 0:
        return None
    password = generate_password()
    at = now or datetime.now(UTC)
    try:
        await add_user(
            session,
            ADMIN_USERNAME,
            passwords.hash(password),
            Role.ADMIN,
            must_change_password=True,
            now=at,
        )
    except DuplicateUser:
        # Another server process on the same database created it first; its log has the password.
        logger.info("the first admin was created by another process")
        return None
    await record_action(
        session, SYSTEM_ACTOR, "user.create", details={"username": ADMIN_USERNAME}, at=at
    )
    logger.info("created the first user %r (admin); its password is shown once", ADMIN_USERNAME)
    return password


async def reset_password(
    session: AsyncSession,
    passwords: Passwords,
    username: str,
    *,
    actor: str = SYSTEM_ACTOR,
    now: datetime | None = None,
) -> str:
    """Give `username` a new random password (returned once), re-enable it, end its sessions."""
    password = generate_password()
    at = now or datetime.now(UTC)
    user = await update_user(
        session,
        username,
        UserChanges(
            password_hash=passwords.hash(password), must_change_password=True, disabled=False
        ),
        now=at,
    )
    ended = await delete_user_sessions(session, user.id)
    await record_action(
        session,
        actor,
        "user.reset_password",
        details={"username": user.username, "sessions_ended": ended},
        at=at,
    )
    logger.info("password of %r reset by %s; %d session(s) ended", user.username, actor, ended)
    return password
