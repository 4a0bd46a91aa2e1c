"""Auth services on SQLite and PostgreSQL: first admin, login, sessions, API keys, resets."""

import asyncio
import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from bambufarm.auth.accounts import change_password, create_user, set_disabled
from bambufarm.auth.api_keys import authenticate_api_key, create_api_key, keys_of, revoke
from bambufarm.auth.bootstrap import ensure_admin, reset_password
from bambufarm.auth.errors import InvalidCredentials, InvalidScopes, RateLimited, WeakPassword
from bambufarm.auth.passwords import HashParams, Passwords
from bambufarm.auth.ratelimit import LoginLimiter
from bambufarm.auth.roles import Action, Role, Scope
from bambufarm.auth.sessions import authenticate_session, login, logout, prune_sessions
from bambufarm.storage.audit import list_actions
from bambufarm.storage.credentials import get_api_key
from bambufarm.storage.db import Database, open_database
from bambufarm.storage.errors import InvalidValue, UserNotFound
from bambufarm.storage.users import UserRecord, get_user

pytest_plugins = ["tests.support.postgres"]

T0 = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)
CHEAP = HashParams(time_cost=1, memory_kib=64, parallelism=1)
PASSWORD = "correct horse battery"


class FakeClock:
    """Monotonic seconds for the limiter, moved by the test."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def passwords() -> Passwords:
    return Passwords(CHEAP)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def limiter(clock: FakeClock) -> LoginLimiter:
    return LoginLimiter(clock=clock)


async def make_user(db: Database, passwords: Passwords, name: str, role: Role) -> UserRecord:
    async with db.session() as s:
        return await create_user(
            s, passwords, name, PASSWORD, role, must_change_password=False, now=T0
        )


# --- first start and getting back in ---------------------------------------------------------


async def test_first_start_creates_admin_once(
    db: Database, passwords: Passwords, limiter: LoginLimiter
) -> None:
    async with db.session() as s:
        password = await ensure_admin(s, passwords, now=T0)
    async with db.session() as s:
        assert await ensure_admin(s, passwords) is None
    assert password is not None
    async with db.session() as s:
        issued = await login(
            s, passwords, limiter, username="admin", password=password, address="127.0.0.1", now=T0
        )
        auth = await authenticate_session(s, issued.token, now=T0)
        audit = await list_actions(s, action="user.create")
    assert issued.user.role == Role.ADMIN
    assert auth.principal.must_change_password
    assert auth.principal.can(Action.MANAGE_USERS)
    assert [(e.actor, e.details["username"]) for e in audit.items] == [("system", "admin")]


async def test_two_processes_starting_together_make_one_admin(
    database_url: str, passwords: Passwords
) -> None:
    databases = [await open_database(database_url) for _ in range(2)]
    try:

        async def start(db: Database) -> str | None:
            async with db.session() as s:
                return await ensure_admin(s, passwords)

        results = await asyncio.gather(*(start(db) for db in databases))
    finally:
        for db in databases:
            await db.aclose()
    assert sum(r is not None for r in results) == 1


async def test_reset_password_ends_sessions_and_is_audited(
    db: Database, passwords: Passwords, limiter: LoginLimiter
) -> None:
    await make_user(db, passwords, "alice", Role.OPERATOR)
    async with db.session() as s:
        issued = await login(
            s, passwords, limiter, username="alice", password=PASSWORD, address="a", now=T0
        )
        # Disabled behind the services' back, so the session is still there for the reset.
        await s.execute(text("UPDATE users SET disabled = true WHERE username = 'alice'"))
    async with db.session() as s:
        new_password = await reset_password(s, passwords, "Alice", actor="admin", now=T0)
    async with db.session() as s:
        with pytest.raises(InvalidCredentials):
            await authenticate_session(s, issued.token, now=T0)
        user = await get_user(s, "alice")
        again = await login(
            s, passwords, limiter, username="alice", password=new_password, address="a", now=T0
        )
        audit = await list_actions(s, action="user.reset_password")
    assert user.must_change_password
    assert not user.disabled  # a reset is how a locked-out user gets back in
    assert again.user.username == "alice"
    entry = audit.items[0]
    assert (entry.actor, entry.details["username"], entry.details["sessions_ended"]) == (
        "admin",
        "alice",
        1,
    )
    assert new_password not in str(entry.details)
    async with db.session() as s:
        with pytest.raises(UserNotFound):
            await reset_password(s, passwords, "nobody")


# --- login and sessions -----------------------------------------------------------------------


async def test_wrong_password_and_unknown_user_look_the_same(
    db: Database, passwords: Passwords, limiter: LoginLimiter
) -> None:
    await make_user(db, passwords, "alice", Role.VIEWER)
    async with db.session() as s:
        with pytest.raises(InvalidCredentials) as wrong:
            await login(s, passwords, limiter, username="alice", password="nope" * 3, address="a")
        with pytest.raises(InvalidCredentials) as unknown:
            await login(s, passwords, limiter, username="mallory", password="nope" * 3, address="a")
        with pytest.raises(InvalidCredentials) as malformed:
            await login(s, passwords, limiter, username="bad name!", password="x", address="a")
    assert str(wrong.value) == str(unknown.value) == str(malformed.value) == "invalid credentials"


async def test_repeated_failures_are_rate_limited_then_forgiven(
    db: Database, passwords: Passwords, limiter: LoginLimiter, clock: FakeClock
) -> None:
    await make_user(db, passwords, "alice", Role.VIEWER)
    async with db.session() as s:
        for _ in range(5):
            with pytest.raises(InvalidCredentials):
                await login(
                    s, passwords, limiter, username="alice", password="guess" * 3, address="x"
                )
        # Even the right password is refused while locked: the lock is not an oracle.
        with pytest.raises(RateLimited):
            await login(s, passwords, limiter, username="alice", password=PASSWORD, address="x")
        await login(s, passwords, limiter, username="alice", password=PASSWORD, address="y")
        clock.now += 15 * 60
        await login(s, passwords, limiter, username="alice", password=PASSWORD, address="x")


async def test_disabled_user_cannot_sign_in_or_use_a_session(
    db: Database, passwords: Passwords, limiter: LoginLimiter
) -> None:
    await make_user(db, passwords, "bob", Role.OPERATOR)
    async with db.session() as s:
        issued = await login(s, passwords, limiter, username="bob", password=PASSWORD, address="a")
        await set_disabled(s, "bob", True)
        with pytest.raises(InvalidCredentials):
            await authenticate_session(s, issued.token)
        with pytest.raises(InvalidCredentials):
            await login(s, passwords, limiter, username="bob", password=PASSWORD, address="a")


async def test_session_tokens_are_stored_hashed_and_expire(
    db: Database, passwords: Passwords, limiter: LoginLimiter
) -> None:
    await make_user(db, passwords, "carol", Role.OPERATOR)
    async with db.session() as s:
        issued = await login(
            s,
            passwords,
            limiter,
            username="carol",
            password=PASSWORD,
            address="a",
            now=T0,
            ttl=timedelta(hours=1),
        )
        stored = (await s.execute(text("SELECT token_hash, csrf_hash FROM sessions"))).one()
    assert issued.token not in stored
    assert issued.csrf_token not in stored
    assert stored[0] == hashlib.sha256(issued.token.encode()).hexdigest()
    assert issued.token not in repr(issued)
    async with db.session() as s:
        auth = await authenticate_session(s, issued.token, now=T0 + timedelta(minutes=59))
        auth.check_csrf(issued.csrf_token)
        assert auth.principal.can(Action.CONTROL)
        with pytest.raises(InvalidCredentials):
            await authenticate_session(s, issued.token, now=T0 + timedelta(hours=1))
        with pytest.raises(InvalidCredentials):
            await authenticate_session(s, "forged-token")
        assert await prune_sessions(s, now=T0 + timedelta(hours=2)) == 1


async def test_logout_ends_the_session(
    db: Database, passwords: Passwords, limiter: LoginLimiter
) -> None:
    await make_user(db, passwords, "dave", Role.VIEWER)
    async with db.session() as s:
        issued = await login(s, passwords, limiter, username="dave", password=PASSWORD, address="a")
        assert await logout(s, issued.token)
        assert not await logout(s, issued.token)
        with pytest.raises(InvalidCredentials):
            await authenticate_session(s, issued.token)


async def test_login_upgrades_hashes_made_with_older_parameters(
    db: Database, limiter: LoginLimiter
) -> None:
    old = Passwords(CHEAP)
    await make_user(db, old, "erin", Role.VIEWER)
    stronger = Passwords(HashParams(time_cost=2, memory_kib=128, parallelism=1))
    async with db.session() as s:
        await login(s, stronger, limiter, username="erin", password=PASSWORD, address="a")
        user = await get_user(s, "erin")
    assert not stronger.needs_rehash(user.password_hash)
    assert stronger.verify(user.password_hash, PASSWORD)


async def test_change_password(db: Database, passwords: Passwords, limiter: LoginLimiter) -> None:
    await make_user(db, passwords, "fay", Role.VIEWER)
    async with db.session() as s:
        issued = await login(s, passwords, limiter, username="fay", password=PASSWORD, address="a")
        with pytest.raises(InvalidCredentials, match="current password is wrong"):
            await change_password(s, passwords, "fay", "wrong" * 3, "a new passphrase")
        with pytest.raises(WeakPassword, match="at least 10"):
            await change_password(s, passwords, "fay", PASSWORD, "short")
        with pytest.raises(WeakPassword, match="must differ"):
            await change_password(s, passwords, "fay", PASSWORD, PASSWORD)
        changed = await change_password(s, passwords, "fay", PASSWORD, "a new passphrase")
        with pytest.raises(InvalidCredentials):
            await authenticate_session(s, issued.token)
        await login(s, passwords, limiter, username="fay", password="a new passphrase", address="a")
    assert not changed.must_change_password


# --- API keys ---------------------------------------------------------------------------------


async def test_api_key_is_shown_once_stored_hashed_and_authenticates(
    db: Database, passwords: Passwords
) -> None:
    owner = await make_user(db, passwords, "mes", Role.OPERATOR)
    async with db.session() as s:
        issued = await create_api_key(s, owner, "ERP line 1", ["read", "control"], now=T0)
        raw = (await s.execute(text("SELECT secret_hash FROM api_keys"))).scalar_one()
    prefix, key_id, secret = issued.token.split("_", 2)
    assert (prefix, key_id) == ("bf", issued.record.id)
    assert secret not in raw
    assert issued.token not in repr(issued)
    async with db.session() as s:
        principal = await authenticate_api_key(s, issued.token, now=T0)
    assert principal.api_key_id == key_id
    assert principal.scopes == {Scope.READ, Scope.CONTROL}
    assert principal.can(Action.CONTROL)
    assert not principal.can(Action.QUEUE)
    assert principal.actor == f"mes (key {key_id})"


async def test_api_key_use_is_recorded_at_most_once_a_minute(
    db: Database, passwords: Passwords
) -> None:
    owner = await make_user(db, passwords, "ha", Role.VIEWER)
    async with db.session() as s:
        issued = await create_api_key(s, owner, "home assistant", ["read"], now=T0)
    for seconds in (0, 30, 61):
        async with db.session() as s:
            await authenticate_api_key(s, issued.token, now=T0 + timedelta(seconds=seconds))
    async with db.session(readonly=True) as s:
        stored = await get_api_key(s, issued.record.id)
    assert stored.last_used_at == T0 + timedelta(seconds=61)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),  # wrong secret
        lambda t: "bf_" + "0" * 16 + "_" + t.split("_", 2)[2],  # unknown id
        lambda t: t.replace("bf_", "xx_", 1),
        lambda t: "bf_short_secret",
        lambda t: "",
        lambda t: t + "x" * 100,
    ],
)
async def test_bad_api_keys_are_refused(db: Database, passwords: Passwords, mangle: object) -> None:
    owner = await make_user(db, passwords, "bot", Role.ADMIN)
    async with db.session() as s:
        issued = await create_api_key(s, owner, "bot", ["admin"])
        with pytest.raises(InvalidCredentials):
            await authenticate_api_key(s, mangle(issued.token))  # type: ignore[operator]


async def test_revoked_keys_and_keys_of_disabled_owners_stop_working(
    db: Database, passwords: Passwords
) -> None:
    owner = await make_user(db, passwords, "ops", Role.OPERATOR)
    async with db.session() as s:
        first = await create_api_key(s, owner, "first", ["read"])
        second = await create_api_key(s, owner, "second", ["queue"])
        await revoke(s, first.record.id)
        assert [k.id for k in await keys_of(s, owner)] == [second.record.id]
        with pytest.raises(InvalidCredentials):
            await authenticate_api_key(s, first.token)
        await authenticate_api_key(s, second.token)
        await set_disabled(s, "ops", True)
        with pytest.raises(InvalidCredentials):
            await authenticate_api_key(s, second.token)


async def test_demoting_the_owner_narrows_the_key(db: Database, passwords: Passwords) -> None:
    owner = await make_user(db, passwords, "lead", Role.OPERATOR)
    async with db.session() as s:
        issued = await create_api_key(s, owner, "line", ["control"])
        await s.execute(text("UPDATE users SET role = 'viewer' WHERE username = 'lead'"))
        principal = await authenticate_api_key(s, issued.token)
    assert principal.role is Role.VIEWER
    assert not principal.can(Action.CONTROL)
    assert principal.can(Action.VIEW)


async def test_key_scopes_and_names_are_checked(db: Database, passwords: Passwords) -> None:
    viewer = await make_user(db, passwords, "guest", Role.VIEWER)
    async with db.session() as s:
        with pytest.raises(InvalidScopes, match="a viewer cannot create keys with scope"):
            await create_api_key(s, viewer, "too much", ["control"])
        with pytest.raises(InvalidValue, match="needs a name"):
            await create_api_key(s, viewer, "  ", ["read"])
