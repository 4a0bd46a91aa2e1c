"""A supervised `Fleet` against the simulator, plus the watchers the fleet tests share.

`supervised(manifest)` builds a Fleet trusting the simulator's CA, with quick backoffs and
short timeouts so faults play out in a fraction of a second; `EventLog` records every event of
the bus and lets a test wait for a condition over them instead of sleeping; `LoginCounter`
wraps a simulated printer's broker behaviour to count logins and the sessions open at each.
"""

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from bambufarm.fleet.connection import ConnectionState
from bambufarm.fleet.events import ConnectionChanged, Event, EventBus
from bambufarm.fleet.supervisor import (
    Fleet,
    PrinterConfig,
    SessionOptions,
    SupervisionOptions,
)
from bambufarm.fleet.tls import TlsMode, TlsPolicy
from bambufarm.simulator.manifest import Manifest, ManifestPrinter
from bambufarm.simulator.node import PrinterNode

WAIT = 10.0  # an upper bound for what should happen within a tick or two on a loaded machine
# Retries within 50-400 ms: a fault and its recovery fit in well under a second.
QUICK = SupervisionOptions(
    backoff_base=0.05, backoff_cap=0.4, tls_backoff_base=0.2, tls_backoff_cap=1.0,
    healthy_after=0.5, close_timeout=2.0,
)  # fmt: skip
SHORT = SessionOptions(connect_timeout=5.0, ack_timeout=5.0)


def printer_config(printer: ManifestPrinter, **overrides: Any) -> PrinterConfig:
    """The fleet configuration of a simulated printer (fields overridable)."""
    fields: dict[str, Any] = {
        "serial": printer.serial,
        "host": printer.host,
        "access_code": printer.access_code,
        "name": printer.name,
        "model": printer.model,
        "mqtt_port": printer.ports.mqtt,
        "ftps_port": printer.ports.ftps,
    }
    fields.update(overrides)
    return PrinterConfig(**fields)


def verify_policy(manifest: Manifest) -> TlsPolicy:
    """Verify printers against the simulator's CA (CN == serial)."""
    return TlsPolicy(TlsMode.VERIFY, ca_file=Path(manifest.ca_cert))


class EventLog:
    """Every event published on a bus since creation, with waiting on conditions over them."""

    def __init__(self, bus: EventBus) -> None:
        self.events: list[Event] = []
        self._subscription = bus.subscribe(maxsize=100_000)
        self._changed = asyncio.Event()
        self._task = asyncio.create_task(self._collect())

    async def _collect(self) -> None:
        async for event in self._subscription:
            self.events.append(event)
            self._changed.set()

    async def until(
        self, condition: Callable[[list[Event]], bool], what: str, within: float = WAIT
    ) -> None:
        """Wait until `condition(events)` holds; fail naming `what` after `within` seconds."""
        try:
            async with asyncio.timeout(within):
                while not condition(self.events):
                    self._changed.clear()
                    # Woken by the next event, or after 20 ms: conditions may also read
                    # state that changes without an event (a broker's client count).
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(0.02):
                            await self._changed.wait()
        except TimeoutError:
            raise AssertionError(f"timed out after {within} s waiting for {what}") from None

    def states(self, serial: str) -> list[str]:
        """The connection states published for `serial`, in order."""
        return [
            e.state for e in self.events if isinstance(e, ConnectionChanged) and e.serial == serial
        ]

    def last_state(self, serial: str) -> str | None:
        """The latest connection state published for `serial`."""
        states = self.states(serial)
        return states[-1] if states else None

    async def until_state(
        self, serials: Iterable[str], state: ConnectionState, within: float = WAIT
    ) -> None:
        """Wait until every serial's latest published connection state is `state`."""
        wanted = list(serials)
        await self.until(
            lambda _events: all(self.last_state(s) == state.value for s in wanted),
            f"{len(wanted)} printer(s) {state.value}",
            within,
        )

    async def close(self) -> None:
        """Stop recording."""
        self._subscription.close()
        await self._task


class LoginCounter:
    """Wraps a simulated printer's broker behaviour: counts CONNECTs and open sessions."""

    def __init__(self, node: PrinterNode) -> None:
        self._node = node
        self.logins = 0
        self.times: list[float] = []  # time.monotonic() of each CONNECT
        # Sessions the broker held when each CONNECT arrived: 0 means the old one was gone.
        self.open_at_login: list[int] = []
        node.broker.behaviour = self

    def check_credentials(self, username: str | None, password: bytes | None) -> bool:
        """Count the login, then let the printer decide."""
        self.logins += 1
        self.times.append(time.monotonic())
        self.open_at_login.append(self._node.broker.client_count)
        return self._node.check_credentials(username, password)

    def allow_subscribe(self, topic_filter: str) -> bool:
        """As the printer decides."""
        return self._node.allow_subscribe(topic_filter)

    def on_publish(self, topic: str, payload: bytes) -> None:
        """As the printer does."""
        self._node.on_publish(topic, payload)

    def on_subscribed(self, topic_filter: str) -> None:
        """As the printer does."""
        self._node.on_subscribed(topic_filter)


@asynccontextmanager
async def supervised(
    manifest: Manifest,
    *,
    printers: Iterable[ManifestPrinter] | None = None,
    session_options: SessionOptions = SHORT,
    supervision: SupervisionOptions = QUICK,
    seed: int = 4,
    **fleet_kwargs: Any,
) -> AsyncIterator[tuple[Fleet, EventLog]]:
    """A running Fleet with the manifest's printers added, and a log of its events."""
    bus = EventBus()
    log = EventLog(bus)
    fleet = Fleet(
        bus=bus,
        tls=fleet_kwargs.pop("tls", None) or verify_policy(manifest),
        rng=random.Random(seed),
        session_options=session_options,
        supervision=supervision,
        **fleet_kwargs,
    )
    try:
        async with fleet:
            for printer in manifest.printers if printers is None else printers:
                fleet.add(printer_config(printer))
            yield fleet, log
    finally:
        await log.close()
