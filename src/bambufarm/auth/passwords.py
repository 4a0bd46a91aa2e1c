"""Password hashing with argon2id, the password policy, and random passwords.

Parameters are OWASP's Password Storage Cheat Sheet minimum for argon2id (19 MiB, 2 passes,
1 lane): one verification takes ~40 ms on this project's reference machine (2 cores), against
~280 ms for argon2-cffi's default (64 MiB, 3 passes, 4 lanes). Hashing runs on the event loop,
so that time is a stall for every printer session; login rate limiting bounds how often it
can be forced. Stored hashes carry their parameters, so raising them later only needs
`needs_rehash` at the next login.
"""

import logging
import secrets
from dataclasses import dataclass
from typing import Final

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from bambufarm.auth.errors import WeakPassword

logger = logging.getLogger(__name__)

MIN_PASSWORD_LENGTH: Final = 10
# argon2 accepts any length, but hashing a megabyte "password" per request is a cheap DoS.
MAX_PASSWORD_LENGTH: Final = 1024
# 18 random bytes: 24 URL-safe characters, 144 bits.
GENERATED_PASSWORD_BYTES: Final = 18


@dataclass(frozen=True, slots=True)
class HashParams:
    """argon2id cost parameters; tests pass cheap ones, production keeps the defaults."""

    time_cost: int = 2
    memory_kib: int = 19 * 1024
    parallelism: int = 1


class Passwords:
    """Hashes and verifies passwords with one set of argon2id parameters."""

    __slots__ = ("_dummy_hash", "_hasher")

    def __init__(self, params: HashParams | None = None) -> None:
        p = params or HashParams()
        self._hasher = PasswordHasher(
            time_cost=p.time_cost,
            memory_cost=p.memory_kib,
            parallelism=p.parallelism,
            type=Type.ID,
        )
        # Verified against when the user does not exist, so that "no such user" costs the
        # same time as "wrong password" and response times do not reveal usernames.
        self._dummy_hash = self._hasher.hash(secrets.token_urlsafe(16))

    def hash(self, password: str) -> str:
        """The PHC hash string of a password that passes the policy (`WeakPassword` if not)."""
        check_policy(password)
        return self._hasher.hash(password)

    def verify(self, password_hash: str, password: str) -> bool:
        """True if `password` matches the hash; False for a mismatch or an unreadable hash."""
        if len(password) > MAX_PASSWORD_LENGTH:
            return False
        try:
            return self._hasher.verify(password_hash, password)
        except VerifyMismatchError:
            return False
        except (InvalidHashError, VerificationError):
            logger.warning("a stored password hash cannot be read; the login is refused")
            return False

    def burn(self, password: str) -> None:
        """Spend the time of one verification (for logins with an unknown username)."""
        self.verify(self._dummy_hash, password)

    def needs_rehash(self, password_hash: str) -> bool:
        """True if the hash was made with other parameters than the current ones."""
        try:
            return self._hasher.check_needs_rehash(password_hash)
        except (InvalidHashError, ValueError):
            return True


def check_policy(password: str) -> None:
    """Refuse passwords that are too short, too long, or only whitespace."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise WeakPassword(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise WeakPassword(f"a password can have at most {MAX_PASSWORD_LENGTH} characters")
    if not password.strip():
        raise WeakPassword("a password cannot be only spaces")


def generate_password() -> str:
    """A random password for a new or reset account (shown once, then changed by its owner)."""
    return secrets.token_urlsafe(GENERATED_PASSWORD_BYTES)
