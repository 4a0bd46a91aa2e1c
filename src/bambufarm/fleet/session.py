"""`PrinterSession`: the one MQTT connection to one printer, its live state and its commands.

`run()` connects (TCP, TLS checked by `fleet.tls`, MQTT login), subscribes to the report
topic, asks for `get_version` and a full report (`pushall`), then merges every report into an
immutable `PrinterState` until the link ends. It then raises a typed error for the supervisor:

* `AuthFailed` — the printer refused the access code (CONNACK 5): do not retry;
* `TlsVerificationFailed` — the certificate is not the one we trust;
* `PrinterOffline` — anything else: refused, reset, dropped, silent for too long.

`stop()` makes `run()` return normally. State survives reconnects: the next `run()` keeps the
last known state and refreshes it with a `pushall`.

Stale detection (issue 4, item 2): no message for `stale_after` (60 s) → state STALE and a
`pushall`; still nothing after `stale_grace` (10 s) more → the link is dropped. A watchdog
sleeps until the next deadline instead of polling, so 1,000 quiet sessions cost no wake-ups
while reports flow. Delta-reporting printers (P1/A1/P2S/H2) also get a `pushall` when no full
report has come for `pushall_every` (≥ 5 min: protocol.md §1.4 warns against more often).

The per-report path (`on_message`) parses, merges, matches acks and derives events; nothing
in it awaits. A malformed report is counted and logged once per change of error, never fatal.
"""

import asyncio
import logging
import random
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bambufarm.fleet.commands import CommandResult, CommandStatus, from_ack, guard
from bambufarm.fleet.connection import Connection, ConnectionState
from bambufarm.fleet.errors import AuthFailed, PrinterOffline, TlsVerificationFailed
from bambufarm.fleet.events import CommandAcked, CommandSent, ConnectionChanged, EventBus
from bambufarm.fleet.health import Step, Timing, next_step
from bambufarm.fleet.state_events import changed_fields, state_events
from bambufarm.fleet.tls import PinStore, TlsPolicy, check_peer, client_context, handshake_failure
from bambufarm.protocol import commands
from bambufarm.protocol.acks import Ack, PendingCommands, acks_in
from bambufarm.protocol.envelope import Command, SequenceCounter
from bambufarm.protocol.errors import AckError, ReportError
from bambufarm.protocol.mqtt import (
    MqttClient,
    MqttConnectError,
    MqttError,
    MqttSubscribeError,
    MqttTlsError,
    connect,
)
from bambufarm.protocol.report import parse_report
from bambufarm.protocol.state import PrinterState, empty_state, merge

logger = logging.getLogger(__name__)

MQTT_PORT = 8883
USERNAME = "bblp"  # every printer's LAN login (protocol.md §1.1)
# protocol.md §1.4: pushall a P1P at most every ~5 minutes.
MIN_PUSHALL_INTERVAL = 300.0
AUTH_FAILED_REASON = "wrong access code (the printer refused it)"
STOPPED_REASON = "stopped"


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """How to reach one printer and how patient to be with it."""

    serial: str
    host: str
    access_code: str = field(repr=False)
    name: str = ""
    port: int = MQTT_PORT
    stale_after: float = 60.0  # no message this long → pushall, state STALE
    stale_grace: float = 10.0  # then this much longer → drop the link
    ack_timeout: float = 10.0  # default wait for a command's acknowledgement
    connect_timeout: float = 10.0  # TCP + TLS + CONNACK + SUBACK
    keepalive: int = 30  # MQTT keepalive (PINGREQ) in seconds
    # Full-report refresh for delta printers; None turns it off.
    pushall_every: float | None = MIN_PUSHALL_INTERVAL

    def __post_init__(self) -> None:
        if not self.serial or not self.host:
            raise ValueError("a printer session needs a serial and a host")
        for name in ("stale_after", "stale_grace", "ack_timeout", "connect_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")
        if self.pushall_every is not None and self.pushall_every < MIN_PUSHALL_INTERVAL:
            raise ValueError(
                f"pushall_every must be at least {MIN_PUSHALL_INTERVAL:g} s (printers are "
                f"asked not to be pushed more often), got {self.pushall_every!r}"
            )

    @property
    def label(self) -> str:
        """How logs name the printer: its name and serial."""
        return f"{self.name} ({self.serial})" if self.name else self.serial


class PrinterSession:
    """One printer's MQTT session: live state, connection health, commands with acks."""

    def __init__(
        self,
        config: SessionConfig,
        *,
        bus: EventBus,
        tls_policy: TlsPolicy,
        ssl_context: ssl.SSLContext | None = None,
        pins: PinStore | None = None,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        """A session for `config`; share `ssl_context` (built from `tls_policy`) across sessions."""
        self.config = config
        self._bus = bus
        self._policy = tls_policy
        self._context = ssl_context or client_context(tls_policy)
        self._pins = pins
        self._clock = clock
        self._rng = rng or random.Random()  # noqa: S311 - client ids, not secrets
        self._sequence = SequenceCounter(rng=self._rng)
        self._pending = PendingCommands(clock=clock)
        # Commands awaiting their ack; None as the result means the link went first.
        self._waiters: dict[tuple[str, str, str], asyncio.Future[Ack | None]] = {}
        self._state = empty_state(config.serial)
        self._connection = Connection(ConnectionState.OFFLINE, "not connected yet", clock())
        self._client: MqttClient | None = None
        self._stopping = False
        self._report_topic = f"device/{config.serial}/report"
        self._request_topic = f"device/{config.serial}/request"
        self._last_message_at = 0.0
        self._last_full_at = 0.0
        self._last_pushall_at = 0.0
        self._stale_pushall_sent = False
        self._running = False
        self.malformed_reports = 0  # reports that could not be read, since creation
        self._malformed_logged: str | None = None
        self._logged_problem: tuple[ConnectionState, str] | None = None
        self._logged_online = False

    # ------------------------------------------------------------------ public state

    @property
    def serial(self) -> str:
        """The printer's serial."""
        return self.config.serial

    @property
    def state(self) -> PrinterState:
        """The latest merged state (kept across reconnects)."""
        return self._state

    @property
    def connection(self) -> Connection:
        """The link's state and why."""
        return self._connection

    def next_sequence_id(self) -> str:
        """A fresh sequence_id for a command built by the caller (`protocol.commands`)."""
        return self._sequence.next()

    # ------------------------------------------------------------------ lifecycle

    async def run(self) -> None:
        """Connect and follow the printer until `stop()` (returns) or the link ends (raises)."""
        if self._running:
            raise RuntimeError(f"printer {self.config.serial}: the session is already running")
        self._running = True
        self._stopping = False
        try:
            await self._run()
        finally:
            self._running = False

    async def _run(self) -> None:
        config = self.config
        self._set_connection(
            ConnectionState.CONNECTING, f"connecting to {config.host}:{config.port}"
        )
        client = await self._connect()
        self._client = client
        try:
            await self._start(client)
            await self._watch(client)
        except MqttSubscribeError as err:
            raise self._offline(str(err)) from err
        except MqttError as err:
            raise self._offline(f"connection lost: {err}") from err
        finally:
            self._client = None
            self._fail_waiters()
            await client.close()
            if self._stopping:
                self._set_connection(ConnectionState.OFFLINE, STOPPED_REASON)

    async def stop(self) -> None:
        """End `run()` normally, closing the connection politely."""
        self._stopping = True
        if self._client is not None:
            await self._client.close()

    async def _connect(self) -> MqttClient:
        config = self.config
        try:
            return await connect(
                config.host,
                config.port,
                ssl_context=self._context,
                server_hostname=config.serial,
                username=USERNAME,
                password=config.access_code,
                client_id=f"bambufarm-{self._rng.getrandbits(48):012x}",
                keepalive=config.keepalive,
                timeout=config.connect_timeout,
                verify_peer=self._verify_peer,
            )
        except MqttConnectError as err:
            if err.not_authorised:
                self._set_connection(ConnectionState.AUTH_FAILED, AUTH_FAILED_REASON)
                raise AuthFailed(
                    f"printer {config.serial}: {AUTH_FAILED_REASON}; check the access code on "
                    "the printer's screen (it changes when LAN mode is toggled)",
                    serial=config.serial,
                ) from err
            raise self._offline(str(err)) from err
        except MqttTlsError as err:
            cause = err.__cause__
            if isinstance(cause, ssl.SSLError | ssl.CertificateError):
                failure = handshake_failure(config.serial, cause, self._policy)
            else:
                failure = TlsVerificationFailed(str(err), serial=config.serial)
            self._set_connection(ConnectionState.TLS_FAILED, _first_clause(str(failure)))
            raise failure from err
        except TlsVerificationFailed as err:
            self._set_connection(ConnectionState.TLS_FAILED, _first_clause(str(err)))
            raise
        except MqttError as err:
            raise self._offline(str(err)) from err

    def _verify_peer(self, ssl_object: ssl.SSLObject) -> None:
        check_peer(self.config.serial, ssl_object, self._policy, self._pins)

    async def _start(self, client: MqttClient) -> None:
        """Subscribe, then ask for the firmware version and a full report (protocol.md §1.4)."""
        client.sink = self
        await client.subscribe(self._report_topic, timeout=self.config.connect_timeout)
        now = self._clock()
        self._last_message_at = now
        self._stale_pushall_sent = False
        await client.publish(
            self._request_topic, commands.get_version(self._sequence.next()).payload
        )
        await self._pushall(client)
        self._set_connection(ConnectionState.ONLINE, "connected")

    async def _pushall(self, client: MqttClient) -> None:
        self._last_pushall_at = self._clock()
        await client.publish(self._request_topic, commands.pushall(self._sequence.next()).payload)

    async def _watch(self, client: MqttClient) -> None:
        """Sleep until the next deadline (stale, drop, refresh) or the end of the link."""
        config = self.config
        timing = Timing(config.stale_after, config.stale_grace, config.pushall_every)
        closed = client.closed
        while not self._stopping:
            now = self._clock()
            plan = next_step(
                timing,
                now,
                last_message=self._last_message_at,
                last_full=self._last_full_at,
                last_pushall=self._last_pushall_at,
                stale_asked=self._stale_pushall_sent,
            )
            silent = now - self._last_message_at
            if plan.step is Step.DROP:
                raise self._offline(f"no report for {silent:.0f} s")
            if plan.step is Step.STALE:
                self._stale_pushall_sent = True
                self._set_connection(
                    ConnectionState.STALE, f"no report for {silent:.0f} s; asked for a full report"
                )
                await self._pushall(client)
                continue
            if plan.step is Step.REFRESH:
                logger.debug("%s: periodic full-report refresh", config.label)
                await self._pushall(client)
                continue
            try:
                # Reports move the deadlines without waking this task: it wakes at the old
                # deadline, finds the printer talking, and sleeps again (once a minute).
                async with asyncio.timeout(max(plan.until - now, 0.0)):
                    reason = await asyncio.shield(closed)
            except TimeoutError:
                continue
            if self._stopping or reason is None:
                return
            raise self._offline(f"connection lost: {reason}")

    def _offline(self, reason: str) -> PrinterOffline:
        """Record OFFLINE with `reason` and return the error for run() to raise."""
        self._set_connection(ConnectionState.OFFLINE, reason)
        return PrinterOffline(f"printer {self.config.serial}: {reason}", serial=self.config.serial)

    def _set_connection(self, state: ConnectionState, reason: str) -> None:
        current = self._connection
        if current.state is state and current.reason == reason:
            return
        now = self._clock()
        self._connection = Connection(state, reason, now)
        self._log_connection(state, reason)
        self._bus.publish(ConnectionChanged(self.config.serial, now, state.value, reason))

    def _log_connection(self, state: ConnectionState, reason: str) -> None:
        """Log a broken link once per change, not once per retry (design.md §4.8)."""
        label = self.config.label
        if state is ConnectionState.CONNECTING or reason == STOPPED_REASON:
            logger.debug("%s: %s", label, reason)
        elif state is ConnectionState.ONLINE:
            if self._logged_problem is not None:
                logger.info("%s: online again", label)
            elif not self._logged_online:
                logger.info("%s: online", label)
            self._logged_problem = None
            self._logged_online = True
        elif (state, reason) != self._logged_problem:
            # A dead printer retried every few seconds fails the same way each time: once.
            self._logged_problem = (state, reason)
            logger.warning("%s: %s: %s", label, state.value, reason)

    # ------------------------------------------------------------------ the per-report path

    def on_message(self, topic: str, payload: bytes) -> None:
        """Merge one report from the printer (MessageSink); never raises for bad input."""
        now = self._clock()
        self._last_message_at = now
        if self._connection.state is not ConnectionState.ONLINE:
            self._stale_pushall_sent = False
            if self._client is not None:
                self._set_connection(ConnectionState.ONLINE, "connected")
        try:
            report = parse_report(payload)
        except ReportError as err:
            self._malformed(str(err))
            return
        self._malformed_logged = None
        sections = report.sections
        body = sections.get("print")
        if body is None or len(sections) > 1 or body.get("command") != "push_status":
            self._match_acks(sections)
        elif report.is_full:
            self._last_full_at = now
        old = self._state
        new = merge(old, report)
        if new is old:
            return
        self._state = new
        changed = changed_fields(old, new)
        if changed:
            self._bus.publish_many(state_events(old, new, changed, now))

    def _malformed(self, error: str) -> None:
        self.malformed_reports += 1
        if error != self._malformed_logged:
            self._malformed_logged = error
            logger.warning("%s: ignored a malformed report: %s", self.config.label, error)

    def _match_acks(self, sections: Mapping[str, Mapping[str, Any]]) -> None:
        try:
            acks = acks_in(sections)
        except AckError as err:
            self._malformed(str(err))
            return
        for ack in acks:
            command = self._pending.match(ack)
            if command is None:
                continue
            waiter = self._waiters.pop(command.key, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(ack)

    # ------------------------------------------------------------------ commands

    async def send(
        self,
        command: Command,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - an ack wait; the result says timeout
    ) -> CommandResult:
        """Send `command` and wait for its acknowledgement (`timeout`, else the config's)."""
        config = self.config
        client = self._client
        refused = guard(command, self._state, self._connection)
        if refused is None and client is None:
            refused = CommandResult(CommandStatus.OFFLINE, "the printer is offline: not connected")
        if refused is not None or client is None:
            reason = refused.reason if refused is not None else "not connected"
            logger.info(
                "%s: %s.%s not sent: %s", config.label, command.section, command.command, reason
            )
            return refused or CommandResult(CommandStatus.OFFLINE, reason)
        waiter: asyncio.Future[Ack | None] | None = None
        if command.expects_ack:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters[command.key] = waiter
            self._pending.add(command)
        try:
            try:
                await client.publish(self._request_topic, command.payload)
            except MqttError as err:
                return CommandResult(CommandStatus.OFFLINE, f"the printer is offline: {err}")
            self._bus.publish(
                CommandSent(
                    config.serial,
                    self._clock(),
                    command.section,
                    command.command,
                    command.sequence_id,
                )
            )
            if waiter is None:
                return CommandResult(
                    CommandStatus.OK, "sent (no acknowledgement expected)", sent=True
                )
            limit = config.ack_timeout if timeout is None else timeout
            try:
                async with asyncio.timeout(limit):
                    ack = await waiter
            except TimeoutError:
                return CommandResult(
                    CommandStatus.TIMEOUT, f"no acknowledgement within {limit:g} s", sent=True
                )
        finally:
            self._pending.remove(command.key)
            if waiter is not None and self._waiters.get(command.key) is waiter:
                del self._waiters[command.key]
        if ack is None:
            return CommandResult(
                CommandStatus.OFFLINE, "the link broke before the acknowledgement came", sent=True
            )
        result = from_ack(ack)
        self._bus.publish(
            CommandAcked(
                config.serial, self._clock(), command.section, command.command,
                command.sequence_id, result.status.value, result.reason,
            )
        )  # fmt: skip
        return result

    def _fail_waiters(self) -> None:
        """The link is gone: every command still waiting ends as offline."""
        for waiter in self._waiters.values():
            if not waiter.done():
                waiter.set_result(None)

    async def pause(self) -> CommandResult:
        """Pause the running print."""
        return await self.send(commands.pause(self.next_sequence_id()))

    async def resume(self) -> CommandResult:
        """Resume a paused print."""
        return await self.send(commands.resume(self.next_sequence_id()))

    async def stop_print(self) -> CommandResult:
        """Cancel the running print."""
        return await self.send(commands.stop(self.next_sequence_id()))


def _first_clause(message: str) -> str:
    """A connection reason from an error message: drop the 'printer <serial>: ' prefix."""
    head, sep, rest = message.partition(": ")
    return rest if sep and head.startswith("printer ") else message
