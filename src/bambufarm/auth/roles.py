"""Who may do what: roles for people, scopes for API keys, and one table joining them.

Roles are ordered viewer < operator < admin; each action needs a minimum role. An API key
acts for its owner with at most the owner's current role, narrowed further by its scopes:
`read` views, `control` commands printers, `queue` manages jobs, `admin` allows everything.
Every scope implies `read` (a key that may pause a printer may see whether it is paused).
"""

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Final

from bambufarm.auth.errors import Forbidden, InvalidScopes


class Role(StrEnum):
    """A person's role; compare with `rank`."""

    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        """0 for viewer, 1 for operator, 2 for admin."""
        return _RANKS[self]


class Scope(StrEnum):
    """What an API key may be used for."""

    READ = "read"
    CONTROL = "control"
    QUEUE = "queue"
    ADMIN = "admin"


class Action(StrEnum):
    """Something a request wants to do; the API names one per route."""

    VIEW = "view"  # printers, status, HMS, files list, history, camera
    CONTROL = "control"  # pause, resume, stop, light, speed, temperatures, gcode, AMS, SD delete
    QUEUE = "queue"  # print jobs, library uploads, queue order
    MANAGE_PRINTERS = "manage_printers"  # add, edit, remove, enable/disable printers
    MANAGE_OWN_KEYS = "manage_own_keys"  # create and revoke one's own API keys
    VIEW_AUDIT = "view_audit"
    MANAGE_USERS = "manage_users"  # users, roles, password resets, everyone's keys


_RANKS: Final = MappingProxyType({Role.VIEWER: 0, Role.OPERATOR: 1, Role.ADMIN: 2})

# The table of the module docstring: the least role for each action, and the scope a key needs.
MIN_ROLE: Final = MappingProxyType(
    {
        Action.VIEW: Role.VIEWER,
        Action.CONTROL: Role.OPERATOR,
        Action.QUEUE: Role.OPERATOR,
        Action.MANAGE_PRINTERS: Role.ADMIN,
        Action.MANAGE_OWN_KEYS: Role.VIEWER,
        Action.VIEW_AUDIT: Role.ADMIN,
        Action.MANAGE_USERS: Role.ADMIN,
    }
)
SCOPE_FOR: Final = MappingProxyType(
    {
        Action.VIEW: Scope.READ,
        Action.CONTROL: Scope.CONTROL,
        Action.QUEUE: Scope.QUEUE,
        # A key must not mint keys (or do other account work) unless it is an admin key.
        Action.MANAGE_PRINTERS: Scope.ADMIN,
        Action.MANAGE_OWN_KEYS: Scope.ADMIN,
        Action.VIEW_AUDIT: Scope.ADMIN,
        Action.MANAGE_USERS: Scope.ADMIN,
    }
)
# The scopes a role can put on its keys: never more than the role itself could do.
GRANTABLE: Final = MappingProxyType(
    {
        Role.VIEWER: frozenset({Scope.READ}),
        Role.OPERATOR: frozenset({Scope.READ, Scope.CONTROL, Scope.QUEUE}),
        Role.ADMIN: frozenset(Scope),
    }
)


def can(role: Role, action: Action) -> bool:
    """True if a person with `role` may perform `action`."""
    return role.rank >= MIN_ROLE[action].rank


def scopes_allow(scopes: frozenset[Scope], action: Action) -> bool:
    """True if an API key with `scopes` may be used for `action`."""
    needed = SCOPE_FOR[action]
    if Scope.ADMIN in scopes or needed in scopes:
        return True
    return needed is Scope.READ and bool(scopes)


def parse_scopes(names: Iterable[str], role: Role) -> frozenset[Scope]:
    """Scope names as `Scope`s that `role` may grant; `InvalidScopes` otherwise."""
    wanted = {name.strip().lower() for name in names}
    unknown = sorted(wanted - {s.value for s in Scope})
    if unknown:
        raise InvalidScopes(
            f"unknown scope(s) {', '.join(unknown)}; known: {', '.join(s.value for s in Scope)}"
        )
    if not wanted:
        raise InvalidScopes("an API key needs at least one scope (read, control, queue, admin)")
    scopes = frozenset(Scope(name) for name in wanted)
    beyond = sorted(scopes - GRANTABLE[role])
    if beyond:
        raise InvalidScopes(
            f"{_a(role)} cannot create keys with scope(s) {', '.join(beyond)}; "
            f"allowed: {', '.join(sorted(GRANTABLE[role]))}"
        )
    return scopes


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is making a request: a user through a browser session or one of their API keys."""

    user_id: int
    username: str
    role: Role
    # None for a browser session (the role alone decides); a key's scopes otherwise.
    scopes: frozenset[Scope] | None = None
    api_key_id: str | None = None
    must_change_password: bool = False

    @property
    def actor(self) -> str:
        """How the audit log names this principal, e.g. "alice" or "alice (key 3f2a...)"."""
        return (
            self.username if self.api_key_id is None else f"{self.username} (key {self.api_key_id})"
        )

    def can(self, action: Action) -> bool:
        """True if the role allows `action` and, for a key, its scopes do too."""
        if not can(self.role, action):
            return False
        return self.scopes is None or scopes_allow(self.scopes, action)

    def require(self, action: Action) -> None:
        """Raise `Forbidden` (saying what is missing) unless `can(action)`."""
        if not can(self.role, action):
            raise Forbidden(
                f"{action} needs the {MIN_ROLE[action]} role; {self.username} is {_a(self.role)}"
            )
        if self.scopes is not None and not scopes_allow(self.scopes, action):
            raise Forbidden(
                f"{action} needs an API key with the {SCOPE_FOR[action]} scope; this key has "
                f"{', '.join(sorted(self.scopes))}"
            )


def _a(role: Role) -> str:
    return f"an {role}" if role[0] in "aeiou" else f"a {role}"
