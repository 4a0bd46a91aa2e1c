"""Auth without a database: the role table, scopes, principals, passwords, the login limiter."""

import hashlib
from datetime import UTC, datetime

import pytest

from bambufarm.auth.api_keys import looks_like_api_key
from bambufarm.auth.errors import CsrfRejected, Forbidden, InvalidScopes, RateLimited, WeakPassword
from bambufarm.auth.passwords import (
    MAX_PASSWORD_LENGTH,
    HashParams,
    Passwords,
    check_policy,
    generate_password,
)
from bambufarm.auth.ratelimit import LoginLimiter
from bambufarm.auth.roles import (
    GRANTABLE,
    MIN_ROLE,
    SCOPE_FOR,
    Action,
    Principal,
    Role,
    Scope,
    can,
    parse_scopes,
    scopes_allow,
)
from bambufarm.auth.sessions import SessionAuth

# Cheap parameters: the tests check behaviour, not cost.
CHEAP = HashParams(time_cost=1, memory_kib=64, parallelism=1)


class FakeClock:
    """Monotonic seconds that only move when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- roles and scopes -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "allowed"),
    [
        (Role.VIEWER, {Action.VIEW, Action.MANAGE_OWN_KEYS}),
        (Role.OPERATOR, {Action.VIEW, Action.MANAGE_OWN_KEYS, Action.CONTROL, Action.QUEUE}),
        (Role.ADMIN, set(Action)),
    ],
)
def test_each_role_can_exactly_its_actions(role: Role, allowed: set[Action]) -> None:
    assert {action for action in Action if can(role, action)} == allowed


def test_every_action_is_in_both_tables() -> None:
    assert set(MIN_ROLE) == set(Action)
    assert set(SCOPE_FOR) == set(Action)


def test_roles_are_ordered() -> None:
    assert Role.VIEWER.rank < Role.OPERATOR.rank < Role.ADMIN.rank


@pytest.mark.parametrize(
    ("scopes", "action", "allowed"),
    [
        ({Scope.READ}, Action.VIEW, True),
        ({Scope.READ}, Action.CONTROL, False),
        ({Scope.CONTROL}, Action.VIEW, True),  # every scope implies read
        ({Scope.CONTROL}, Action.CONTROL, True),
        ({Scope.CONTROL}, Action.QUEUE, False),
        ({Scope.QUEUE}, Action.QUEUE, True),
        ({Scope.QUEUE}, Action.MANAGE_OWN_KEYS, False),  # keys do not mint keys
        ({Scope.ADMIN}, Action.MANAGE_USERS, True),
        (set(), Action.VIEW, False),
    ],
)
def test_scopes_allow(scopes: set[Scope], action: Action, allowed: bool) -> None:
    assert scopes_allow(frozenset(scopes), action) is allowed


def test_scope_names_are_parsed_and_limited_by_role() -> None:
    assert parse_scopes([" READ", "control"], Role.OPERATOR) == {Scope.READ, Scope.CONTROL}
    assert parse_scopes(["admin"], Role.ADMIN) == {Scope.ADMIN}
    with pytest.raises(InvalidScopes, match="unknown scope"):
        parse_scopes(["read", "root"], Role.ADMIN)
    with pytest.raises(InvalidScopes, match="an operator cannot create keys with scope"):
        parse_scopes(["admin"], Role.OPERATOR)
    with pytest.raises(InvalidScopes, match="a viewer cannot"):
        parse_scopes(["control"], Role.VIEWER)
    with pytest.raises(InvalidScopes, match="at least one scope"):
        parse_scopes([], Role.ADMIN)


def test_grantable_scopes_never_exceed_the_role() -> None:
    for role, scopes in GRANTABLE.items():
        for action in Action:
            if scopes_allow(scopes, action) and not can(role, action):
                # A key can carry the scope, but the role check still stops it.
                assert not Principal(1, "u", role, scopes=scopes).can(action)


def test_key_principal_is_limited_by_role_and_scopes() -> None:
    # An admin's read-only key cannot control; a demoted owner's control key cannot either.
    read_key = Principal(1, "alice", Role.ADMIN, scopes=frozenset({Scope.READ}), api_key_id="k1")
    assert read_key.can(Action.VIEW)
    assert not read_key.can(Action.CONTROL)
    with pytest.raises(
        Forbidden, match="needs an API key with the control scope; this key has read"
    ):
        read_key.require(Action.CONTROL)
    demoted = Principal(2, "bob", Role.VIEWER, scopes=frozenset({Scope.CONTROL}), api_key_id="k2")
    assert not demoted.can(Action.CONTROL)
    with pytest.raises(Forbidden, match="control needs the operator role; bob is a viewer"):
        demoted.require(Action.CONTROL)
    assert read_key.actor == "alice (key k1)"
    browser = Principal(3, "carol", Role.OPERATOR)
    assert browser.actor == "carol"
    browser.require(Action.CONTROL)
    assert not browser.can(Action.MANAGE_PRINTERS)


# --- passwords --------------------------------------------------------------------------------


def test_hash_and_verify() -> None:
    passwords = Passwords(CHEAP)
    stored = passwords.hash("correct horse battery")
    assert stored.startswith("$argon2id$")
    assert "correct horse" not in stored
    assert passwords.verify(stored, "correct horse battery")
    assert not passwords.verify(stored, "correct horse batterY")
    assert not passwords.verify("not a hash", "correct horse battery")
    assert not passwords.verify(stored, "x" * (MAX_PASSWORD_LENGTH + 1))
    passwords.burn("anything at all")


def test_hashes_made_with_other_parameters_need_rehash() -> None:
    old = Passwords(CHEAP).hash("correct horse battery")
    current = Passwords(HashParams(time_cost=2, memory_kib=128, parallelism=1))
    assert current.verify(old, "correct horse battery")
    assert current.needs_rehash(old)
    assert not current.needs_rehash(current.hash("correct horse battery"))
    assert current.needs_rehash("garbage")


def test_default_parameters_are_owasps_minimum() -> None:
    assert HashParams() == HashParams(time_cost=2, memory_kib=19456, parallelism=1)


@pytest.mark.parametrize(
    ("password", "message"),
    [
        ("short", "at least 10"),
        (" " * 12, "only spaces"),
        ("x" * (MAX_PASSWORD_LENGTH + 1), "at most"),
    ],
)
def test_password_policy(password: str, message: str) -> None:
    with pytest.raises(WeakPassword, match=message):
        check_policy(password)
    with pytest.raises(WeakPassword, match=message):
        Passwords(CHEAP).hash(password)


def test_generated_passwords_are_long_random_and_pass_the_policy() -> None:
    made = {generate_password() for _ in range(50)}
    assert len(made) == 50
    for password in made:
        assert len(password) == 24
        check_policy(password)


# --- login rate limiting ----------------------------------------------------------------------


def test_five_failures_lock_the_pair_until_the_window_passes() -> None:
    clock = FakeClock()
    limiter = LoginLimiter(clock=clock)
    for _ in range(5):
        limiter.check("alice", "10.0.0.1")
        limiter.failed("Alice", "10.0.0.1")
        clock.now += 10
    with pytest.raises(RateLimited) as caught:
        limiter.check("ALICE", "10.0.0.1")
    # The first failure was 50 s ago: it ages out of the 900 s window in 850 s.
    assert caught.value.retry_after == 850
    assert "try again in 850 s" in str(caught.value)
    limiter.check("alice", "10.0.0.2")  # another address is not locked out
    limiter.check("bob", "10.0.0.1")  # nor another account
    clock.now += 850
    limiter.check("alice", "10.0.0.1")


def test_success_clears_the_failures() -> None:
    clock = FakeClock()
    limiter = LoginLimiter(clock=clock)
    for _ in range(4):
        limiter.failed("alice", "a")
    limiter.succeeded("alice", "a")
    assert limiter.tracked() == 0
    limiter.failed("alice", "a")
    limiter.check("alice", "a")


def test_spraying_usernames_cannot_grow_memory_without_bound() -> None:
    clock = FakeClock()
    limiter = LoginLimiter(max_tracked=100, clock=clock)
    for i in range(1000):
        limiter.failed(f"user{i}", "10.0.0.9")
    assert limiter.tracked() <= 100


def test_old_failures_are_evicted_first() -> None:
    clock = FakeClock()
    limiter = LoginLimiter(max_tracked=3, window_s=60, clock=clock)
    limiter.failed("old", "a")
    clock.now += 120
    for name in ("b", "c", "d"):
        limiter.failed(name, "a")
    assert limiter.tracked() == 3
    limiter.failed("e", "a")
    assert limiter.tracked() == 3


# --- small parts of keys and sessions ---------------------------------------------------------


def test_api_key_shape() -> None:
    assert looks_like_api_key("bf_0123456789abcdef_secret")
    assert not looks_like_api_key("Bearer something")


def test_csrf_check() -> None:
    token = "csrf-token-value"
    auth = SessionAuth(
        Principal(1, "alice", Role.OPERATOR),
        expires_at=datetime(2025, 3, 1, tzinfo=UTC),
        csrf_hash=hashlib.sha256(token.encode()).hexdigest(),
    )
    auth.check_csrf(token)
    with pytest.raises(CsrfRejected, match="needs the session's CSRF token"):
        auth.check_csrf(None)
    with pytest.raises(CsrfRejected, match="does not belong to this session"):
        auth.check_csrf("another-token")
    with pytest.raises(CsrfRejected):
        auth.check_csrf("x" * 10_000)
    assert token not in repr(auth)
