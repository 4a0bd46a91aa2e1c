"""The health of the link to one printer: a state plus a reason a person can act on."""

from dataclasses import dataclass
from enum import StrEnum


class ConnectionState(StrEnum):
    """Where the link to a printer stands."""

    CONNECTING = "connecting"  # opening TCP, TLS and MQTT
    ONLINE = "online"  # subscribed; reports arrive
    STALE = "stale"  # connected but silent; a full report was asked for
    OFFLINE = "offline"  # not connected; the supervisor retries with backoff
    AUTH_FAILED = "auth_failed"  # wrong access code: retrying cannot help
    TLS_FAILED = "tls_failed"  # the certificate is not the one we trust
    DISABLED = "disabled"  # the user turned this printer off


# States in which a command can be written to the printer.
CONNECTED_STATES = frozenset({ConnectionState.ONLINE, ConnectionState.STALE})
# States only a person can end: the supervisor does not retry them on its own.
NEEDS_ATTENTION = frozenset({ConnectionState.AUTH_FAILED, ConnectionState.TLS_FAILED})


@dataclass(frozen=True, slots=True)
class Connection:
    """The link's state, a reason a person can act on, and since when (session clock, s)."""

    state: ConnectionState
    reason: str
    since: float

    @property
    def connected(self) -> bool:
        """True while commands can be written (online or stale)."""
        return self.state in CONNECTED_STATES

    @property
    def needs_attention(self) -> bool:
        """True for failures retrying cannot fix (access code, certificate)."""
        return self.state in NEEDS_ATTENTION
