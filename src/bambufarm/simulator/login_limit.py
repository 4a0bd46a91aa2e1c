"""The brute-force brake on a simulated printer's logins: too many failures lock an address out.

Both printer-side servers guard their access code with it: the MQTT broker (a wrong code gets
CONNACK 5) and the FTPS server (530, then 421 once locked). An address that fails
`max_failures` times within `window` seconds is locked out; a right login forgets its
failures. How long a lock-out lasts is the one thing the two servers choose differently:

* with a `cooldown` (the broker), that many seconds from the failure that locked it, after
  which counting starts afresh;
* without one (the FTPS server), for as long as the last `window` seconds still hold
  `max_failures` failures: the lock lifts when the oldest of them ages out, and the next
  failure locks again.

Time comes from an injected clock, so tests move it instead of sleeping.
"""

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class LoginLimit:
    """Brute-force brake: `failures` wrong codes in `window` s lock an address out."""

    failures: int = 5
    window: float = 60.0
    cooldown: float = 60.0


class _Record:
    """One address: its latest failure times (oldest first) and when its lock-out ends."""

    __slots__ = ("failures", "locked_until")

    def __init__(self) -> None:
        self.failures: list[float] = []
        self.locked_until: float | None = None


class LoginGuard:
    """Counts failed logins per client address and locks the address out after too many."""

    __slots__ = ("_clock", "_cooldown", "_max_addresses", "_max_failures", "_records", "_window")

    def __init__(
        self,
        clock: Callable[[], float],
        *,
        max_failures: int = 10,
        window: float = 60.0,
        cooldown: float | None = None,
        max_addresses: int = 4096,
    ) -> None:
        """Lock out after `max_failures` failures in `window` s of `clock` (monotonic seconds).

        With `cooldown` a lock-out lasts that long; without, while the window holds enough
        failures. At most `max_addresses` addresses are remembered, so a spray of source
        addresses cannot grow the table without bound.
        """
        self._clock = clock
        self._max_failures = max_failures
        self._window = window
        self._cooldown = cooldown
        self._max_addresses = max_addresses
        # In order of each address's latest failure: the first is the one to forget first.
        self._records: dict[str, _Record] = {}

    def locked(self, address: str) -> bool:
        """Whether `address` is locked out now."""
        record = self._records.get(address)
        if record is None or record.locked_until is None:
            return False
        if self._clock() < record.locked_until:
            return True
        record.locked_until = None
        if not record.failures:
            del self._records[address]
        return False

    def record_failure(self, address: str) -> None:
        """Count one failed login from `address`; enough of them lock it out."""
        now = self._clock()
        record = self._records.pop(address, None)
        if record is None:
            self._make_room(now)
            record = _Record()
        failures = [t for t in record.failures if now - t < self._window]
        failures.append(now)
        if len(failures) >= self._max_failures:
            if self._cooldown is not None:
                record.locked_until = now + self._cooldown
                failures.clear()
            else:
                # Locked while `max_failures` failures are younger than `window`: until the
                # oldest of the latest `max_failures` ages out.
                record.locked_until = failures[-self._max_failures] + self._window
        # Older failures can never count again: only the latest `max_failures` are kept.
        record.failures = failures[-self._max_failures :]
        self._records[address] = record

    def record_success(self, address: str) -> None:
        """A right login from `address` forgets its failures."""
        self._records.pop(address, None)

    def _make_room(self, now: float) -> None:
        """Before a new address is added at capacity: forget stale ones, else the oldest."""
        if len(self._records) < self._max_addresses:
            return
        for address, record in list(self._records.items()):
            lock_over = record.locked_until is None or record.locked_until <= now
            if lock_over and (not record.failures or now - record.failures[-1] >= self._window):
                del self._records[address]
        if len(self._records) >= self._max_addresses:
            del self._records[next(iter(self._records))]
