"""`Fleet`: every printer's session, supervised in one TaskGroup (design.md §4.2).

One task per printer runs its `PrinterSession` and, when the link ends, decides what next:

* network trouble or a silent printer (`PrinterOffline`) → retry after a jittered exponential
  backoff (full jitter: a switch reboot that drops 1,000 printers does not bring 1,000
  reconnects in the same instant); the backoff starts over once a link stayed up `healthy_after`;
* a refused access code (`AuthFailed`, CONNACK 5) → state `auth_failed`, no retry until the
  printer is edited (`update`) or re-enabled: hammering a printer with a wrong code helps nobody;
* a certificate we do not trust (`TlsVerificationFailed`) → `tls_failed`, retried slowly
  (a pin or CA fix on our side, or a printer coming back with its real certificate).

A backing-off printer is a task asleep in `asyncio.sleep`: no polling, no CPU. At most
`connect_concurrency` connection attempts run at once, so a cold start of 1,000 printers does
not queue 1,000 TLS handshakes (and overflow the printers' listen backlogs) at once.

The fleet owns the `ConnectionChanged` events: a session reports every attempt (`connecting`,
then `offline` again), the fleet publishes a change of *state* only, so a printer that is
switched off for a week costs one event, not two per retry (design.md §4.8).
"""

import asyncio
import logging
import random
import ssl
import time
from collections.abc import Callable, Iterable
from enum import Enum
from types import TracebackType
from typing import Self

from bambufarm.fleet.backoff import Backoff, Jitter
from bambufarm.fleet.config import (
    PrinterConfig,
    PrinterSnapshot,
    SessionOptions,
    SupervisionOptions,
)
from bambufarm.fleet.connection import Connection, ConnectionState
from bambufarm.fleet.errors import (
    AuthFailed,
    FleetError,
    TlsVerificationFailed,
    UnknownPrinter,
)
from bambufarm.fleet.events import (
    ConnectionChanged,
    Event,
    EventBus,
    PrinterAdded,
    PrinterRemoved,
)
from bambufarm.fleet.handle import PrinterHandle
from bambufarm.fleet.session import PrinterSession
from bambufarm.fleet.tls import PinStore, TlsMode, TlsPolicy, check_peer, client_context
from bambufarm.fleet.uploads import Uploader, UploadTarget
from bambufarm.protocol.errors import ProtocolError

__all__ = [
    "Fleet",
    "PrinterConfig",
    "PrinterSnapshot",
    "SessionOptions",
    "SupervisionOptions",
]

logger = logging.getLogger(__name__)

DISABLED_REASON = "disabled for maintenance"
AUTH_HOLD = "not retried until the access code is edited or the printer is re-enabled"


class _Phase(Enum):
    """Where a printer's task is; decides how to stop it."""

    IDLE = "idle"  # no task: disabled, auth failed, or the fleet not entered yet
    WAITING = "waiting"  # asleep in backoff or waiting for a connect slot: cancel at once
    RUNNING = "running"  # inside session.run(): ask it to stop, then wait


class _SessionBus(EventBus):
    """The bus a session publishes on: events pass, connection changes go via the fleet."""

    def __init__(self, bus: EventBus, on_connection: Callable[[ConnectionChanged], None]) -> None:
        super().__init__()
        self._target = bus
        self._on_connection = on_connection

    def publish(self, event: Event) -> None:
        """Forward `event`; a ConnectionChanged goes through the fleet's bookkeeping instead."""
        if type(event) is ConnectionChanged:
            self._on_connection(event)
        else:
            self._target.publish(event)

    def publish_many(self, events: Iterable[Event]) -> None:
        """Forward several events in order (the per-report path: StateChanged and friends)."""
        for event in events:
            self.publish(event)


class _Printer:
    """The fleet's bookkeeping for one printer."""

    __slots__ = (
        "backoff",
        "config",
        "connection",
        "enabled",
        "holds_slot",
        "online_since",
        "phase",
        "retrying",
        "session",
        "stopping",
        "task",
        "tls_backoff",
    )

    def __init__(
        self, config: PrinterConfig, now: float, backoff: Backoff, tls_backoff: Backoff
    ) -> None:
        self.config = config
        self.connection = Connection(ConnectionState.OFFLINE, "not connected yet", now)
        self.enabled = True
        self.task: asyncio.Task[None] | None = None
        self.phase = _Phase.IDLE
        self.stopping = False  # we asked the session to end: its "stopped" is not news
        self.holds_slot = False
        self.retrying = False  # after a failure: further `connecting` attempts are not news
        self.online_since: float | None = None
        self.backoff = backoff
        self.tls_backoff = tls_backoff
        self.session: PrinterSession  # set right after: the session reports back to this


class Fleet:
    """Every printer's session in one TaskGroup; use as `async with Fleet(...) as fleet:`."""

    def __init__(
        self,
        *,
        bus: EventBus,
        tls: TlsPolicy,
        uploader: Uploader | None = None,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        session_options: SessionOptions | None = None,
        supervision: SupervisionOptions | None = None,
    ) -> None:
        self.bus = bus
        self.tls = tls
        self.uploader = uploader
        self._clock = clock
        self._rng = rng or random.Random()  # noqa: S311 - jitter and client ids, not secrets
        self.session_options = session_options or SessionOptions()
        self.supervision = supervision or SupervisionOptions()
        # One SSLContext for every session: each context holds its own copy of the CA store.
        self._ssl_context = client_context(tls)
        # FTPS separately, capped at TLS 1.2: printers resume the control connection's session
        # on data connections only under 1.2 (protocol.md §2.1).
        self._ftps_context = client_context(tls)
        self._ftps_context.maximum_version = ssl.TLSVersion.TLSv1_2
        self._pins = (
            PinStore(tls.pin_store)
            if tls.mode is TlsMode.TOFU and tls.pin_store is not None
            else None
        )
        if tls.mode is TlsMode.INSECURE:
            logger.warning("printer TLS certificates are NOT verified (TLS mode 'insecure')")
        self._printers: dict[str, _Printer] = {}
        self._slots = asyncio.Semaphore(self.supervision.connect_concurrency)
        self._group: asyncio.TaskGroup | None = None
        self._closing = False

    # ------------------------------------------------------------------ context manager

    async def __aenter__(self) -> Self:
        if self._group is not None or self._closing:
            raise RuntimeError("a Fleet is entered once")
        group = asyncio.TaskGroup()
        await group.__aenter__()
        self._group = group
        for printer in self._printers.values():
            if printer.enabled:
                self._start(printer)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
        group, self._group = self._group, None
        if group is None:
            return
        if exc_type is not None and not issubclass(exc_type, asyncio.CancelledError):
            # Every task has ended in aclose(); the body's own error propagates unwrapped
            # instead of inside the TaskGroup's ExceptionGroup.
            await group.__aexit__(None, None, None)
        else:
            await group.__aexit__(exc_type, exc, tb)

    async def aclose(self) -> None:
        """Close every session, each within `close_timeout`; then the fleet takes no new work."""
        self._closing = True
        await asyncio.gather(*(self._stop(p) for p in list(self._printers.values())))

    # ------------------------------------------------------------------ membership

    def add(self, config: PrinterConfig, *, enabled: bool = True) -> PrinterHandle:
        """Add a printer and start its session (or keep it `disabled`)."""
        if self._closing:
            raise RuntimeError("the fleet is closing")
        if config.serial in self._printers:
            raise FleetError(
                f"printer {config.serial} is already in the fleet; use update() to change it",
                serial=config.serial,
            )
        printer = self._new_printer(config)
        self._printers[config.serial] = printer
        self.bus.publish(PrinterAdded(config.serial, self._clock()))
        logger.info("%s: added (%s:%d)", config.label, config.host, config.mqtt_port)
        if enabled:
            self._start(printer)
        else:
            printer.enabled = False
            self._set_connection(printer, ConnectionState.DISABLED, DISABLED_REASON)
        return PrinterHandle(self, config.serial)

    async def update(self, config: PrinterConfig) -> None:
        """Replace a printer's configuration and reconnect it (the way out of `auth_failed`)."""
        printer = self._printer(config.serial)
        await self._stop(printer)
        printer.config = config
        printer.session = self._new_session(printer)
        logger.info("%s: configuration changed", config.label)
        if printer.enabled:
            self._start(printer)

    async def remove(self, serial: str) -> None:
        """Close a printer's session and forget the printer."""
        printer = self._printer(serial)
        await self._stop(printer)
        del self._printers[serial]
        self.bus.publish(PrinterRemoved(serial, self._clock()))
        logger.info("%s: removed", printer.config.label)

    async def disable(self, serial: str) -> None:
        """Maintenance: close the session and keep the printer, in state `disabled`."""
        printer = self._printer(serial)
        printer.enabled = False
        await self._stop(printer)
        self._set_connection(printer, ConnectionState.DISABLED, DISABLED_REASON)
        logger.info("%s: disabled", printer.config.label)

    async def enable(self, serial: str) -> None:
        """Connect a disabled printer, or retry now one that failed (auth, TLS, backoff)."""
        printer = self._printer(serial)
        if printer.phase is _Phase.RUNNING and printer.enabled:
            return  # connecting or connected already
        await self._stop(printer)
        was_enabled, printer.enabled = printer.enabled, True
        logger.info("%s: %s", printer.config.label, "retrying now" if was_enabled else "enabled")
        self._start(printer)

    # ------------------------------------------------------------------ reading

    def __len__(self) -> int:
        return len(self._printers)

    def __contains__(self, serial: object) -> bool:
        return serial in self._printers

    def printers(self) -> list[PrinterSnapshot]:
        """A snapshot of every printer, in the order they were added."""
        return [self._snapshot(p) for p in self._printers.values()]

    def get(self, serial: str) -> PrinterHandle:
        """The handle of one printer (commands, uploads, snapshot); UnknownPrinter if absent."""
        self._printer(serial)
        return PrinterHandle(self, serial)

    def snapshot(self, serial: str) -> PrinterSnapshot:
        """One printer's configuration, link and last known state."""
        return self._snapshot(self._printer(serial))

    def upload_target(self, serial: str) -> UploadTarget:
        """Where the printer's FTPS server is, with this fleet's TLS trust (for `Uploader`)."""
        config = self._printer(serial).config
        policy, pins = self.tls, self._pins

        def verify_peer(sock: ssl.SSLSocket) -> None:
            check_peer(serial, sock, policy, pins)

        return UploadTarget(
            serial=serial,
            host=config.host,
            port=config.ftps_port,
            access_code=config.access_code,
            ssl_context=self._ftps_context,
            verify_peer=verify_peer,
        )

    def session(self, serial: str) -> PrinterSession:
        """The printer's current session (replaced when the printer is updated)."""
        return self._printer(serial).session

    # ------------------------------------------------------------------ internals

    def _printer(self, serial: str) -> _Printer:
        try:
            return self._printers[serial]
        except KeyError:
            raise UnknownPrinter(f"no printer {serial!r} in the fleet", serial=serial) from None

    @staticmethod
    def _snapshot(printer: _Printer) -> PrinterSnapshot:
        return PrinterSnapshot(
            printer.config, printer.connection, printer.session.state, printer.enabled
        )

    def _new_printer(self, config: PrinterConfig) -> _Printer:
        options = self.supervision
        printer = _Printer(
            config,
            self._clock(),
            Backoff(
                base=options.backoff_base,
                cap=options.backoff_cap,
                jitter=Jitter.FULL,
                rng=self._rng.random,
            ),
            # Equal jitter: never less than half the ceiling; a certificate problem is slow.
            Backoff(
                base=options.tls_backoff_base,
                cap=options.tls_backoff_cap,
                jitter=Jitter.EQUAL,
                rng=self._rng.random,
            ),
        )
        printer.session = self._new_session(printer)
        return printer

    def _new_session(self, printer: _Printer) -> PrinterSession:
        def on_connection(event: ConnectionChanged) -> None:
            self._session_connection(printer, event)

        return PrinterSession(
            self.session_options.session_config(printer.config),
            bus=_SessionBus(self.bus, on_connection),
            tls_policy=self.tls,
            ssl_context=self._ssl_context,
            pins=self._pins,
            clock=self._clock,
            rng=self._rng,
        )

    def _start(self, printer: _Printer) -> None:
        """Start the printer's task with a fresh backoff (not before the fleet is entered)."""
        if self._group is None or self._closing:
            return
        printer.backoff.reset()
        printer.tls_backoff.reset()
        printer.retrying = False
        printer.stopping = False
        printer.phase = _Phase.WAITING
        printer.task = self._group.create_task(
            self._supervise(printer), name=f"printer-{printer.config.serial}"
        )

    async def _stop(self, printer: _Printer) -> None:
        """End the printer's task: politely when it runs a session, at once when asleep."""
        task, printer.task = printer.task, None
        if task is not None and not task.done():
            printer.stopping = True
            if printer.phase is _Phase.RUNNING:
                await printer.session.stop()
                done, _ = await asyncio.wait([task], timeout=self.supervision.close_timeout)
                if task not in done:
                    logger.warning(
                        "%s: session did not close within %g s; cancelling it",
                        printer.config.label,
                        self.supervision.close_timeout,
                    )
            if not task.done():
                task.cancel()
                await asyncio.wait([task])
        printer.phase = _Phase.IDLE
        self._release_slot(printer)

    async def _supervise(self, printer: _Printer) -> None:
        """One printer's life: run its session, back off after failures, until told to stop."""
        label = printer.config.label
        try:
            while True:
                delay = await self._attempt(printer)
                if delay is None:
                    return
                printer.phase = _Phase.WAITING
                logger.debug("%s: next attempt in %.1f s", label, delay)
                # Asleep, not polling: a printer that is away costs nothing until then.
                await asyncio.sleep(delay)
        finally:
            printer.phase = _Phase.IDLE
            self._release_slot(printer)

    async def _attempt(self, printer: _Printer) -> float | None:
        """Run the session once; the delay before the next attempt, or None for no retry."""
        await self._slots.acquire()
        printer.holds_slot = True
        printer.phase = _Phase.RUNNING
        try:
            await printer.session.run()
        except Exception as err:  # noqa: BLE001 - the task boundary: sorted and logged below
            return None if printer.stopping else self._after_failure(printer, err)
        finally:
            self._release_slot(printer)
            printer.retrying = True
        return None  # stop() ended it

    def _after_failure(self, printer: _Printer, err: Exception) -> float | None:
        """Fold a failed run into the printer's link; the delay before the next attempt."""
        link = printer.session.connection
        if isinstance(err, AuthFailed):
            self._set_connection(printer, ConnectionState.AUTH_FAILED, link.reason)
            logger.warning("%s: %s; %s", printer.config.label, err, AUTH_HOLD)
            return None
        self._settle(printer)
        if isinstance(err, TlsVerificationFailed):
            self._set_connection(printer, ConnectionState.TLS_FAILED, link.reason)
            return printer.tls_backoff.next_delay()
        if isinstance(err, FleetError | ProtocolError | OSError):
            # PrinterOffline from the session; anything else is a lower-level error the
            # session let through, which is still only this printer's trouble.
            reason = link.reason if link.state is ConnectionState.OFFLINE else str(err)
        else:
            # A bug in one session must not end the fleet's TaskGroup: log it, retry.
            logger.error("%s: session failed unexpectedly", printer.config.label, exc_info=err)
            reason = f"internal error: {err!r}"
        self._set_connection(printer, ConnectionState.OFFLINE, reason)
        return printer.backoff.next_delay()

    def _settle(self, printer: _Printer) -> None:
        """After a failure: a link that had proved itself starts the backoff over."""
        since, printer.online_since = printer.online_since, None
        if since is not None and self._clock() - since >= self.supervision.healthy_after:
            printer.backoff.reset()
            printer.tls_backoff.reset()

    def _release_slot(self, printer: _Printer) -> None:
        if printer.holds_slot:
            printer.holds_slot = False
            self._slots.release()

    def _session_connection(self, printer: _Printer, event: ConnectionChanged) -> None:
        """A session's link moved; fold it into the fleet's view of the printer."""
        state = ConnectionState(event.state)
        if state is not ConnectionState.CONNECTING:
            self._release_slot(printer)  # the handshake is over, one way or the other
        if printer.stopping:
            return  # its "stopped": disable/remove/update say what happened instead
        if state is ConnectionState.ONLINE:
            if printer.online_since is None:
                printer.online_since = self._clock()
            printer.retrying = False
        elif state is ConnectionState.CONNECTING and printer.retrying:
            return  # one more attempt after a failure: the failure stays the news
        self._set_connection(printer, state, event.reason)

    def _set_connection(self, printer: _Printer, state: ConnectionState, reason: str) -> None:
        """Record the printer's link; publish ConnectionChanged only when the state changes."""
        current = printer.connection
        if current.state is state:
            if current.reason != reason:
                printer.connection = Connection(state, reason, current.since)
            return
        now = self._clock()
        printer.connection = Connection(state, reason, now)
        self.bus.publish(ConnectionChanged(printer.config.serial, now, state.value, reason))
