"""PrinterSession against simulated printers over loopback TLS: state, commands, faults."""

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from bambufarm.fleet.commands import BUSY_REASON, READ_ONLY_REASON, CommandStatus
from bambufarm.fleet.connection import ConnectionState
from bambufarm.fleet.errors import (
    AuthFailed,
    PrinterOffline,
    ReadOnlyPrinter,
    TlsVerificationFailed,
)
from bambufarm.fleet.events import (
    CommandAcked,
    CommandSent,
    ConnectionChanged,
    Event,
    EventBus,
    PrintPaused,
    PrintResumed,
    PrintStarted,
    StateChanged,
    Subscription,
)
from bambufarm.fleet.session import AUTH_FAILED_REASON, PrinterSession, SessionConfig
from bambufarm.fleet.tls import TlsMode, TlsPolicy
from bambufarm.protocol import commands
from bambufarm.protocol.models import model_by_name
from bambufarm.protocol.state import GcodeState
from bambufarm.simulator.demo import demo_job, start_job
from bambufarm.simulator.fleet import SimFleet
from bambufarm.simulator.manifest import Manifest
from bambufarm.simulator.report_builder import fun_hex
from tests.support.sim import running_fleet

WAIT = 10.0  # generous upper bound for anything that should happen within a tick or two
# Jobs: 100x simulated time gets through PREPARE (~130 simulated s) in about a second of
# 0.1 s ticks, and a one-hour job then lasts ~36 s, longer than any test here.
FAST = {"time_scale": 100.0, "tick_interval": 0.1}


def session_for(
    manifest: Manifest,
    bus: EventBus,
    index: int = 0,
    *,
    policy: TlsPolicy | None = None,
    **overrides: Any,
) -> PrinterSession:
    """A session for printer `index` of the manifest (fields of SessionConfig overridable)."""
    printer = manifest.printers[index]
    fields: dict[str, Any] = {
        "serial": printer.serial,
        "name": printer.name,
        "host": printer.host,
        "port": printer.ports.mqtt,
        "access_code": printer.access_code,
        "connect_timeout": 5.0,
        "ack_timeout": 5.0,
    }
    fields.update(overrides)
    if policy is None:
        policy = TlsPolicy(TlsMode.VERIFY, ca_file=Path(manifest.ca_cert))
    return PrinterSession(SessionConfig(**fields), bus=bus, tls_policy=policy)


@asynccontextmanager
async def running(session: PrinterSession) -> AsyncIterator["asyncio.Task[None]"]:
    """Run the session in a task; stop it and collect the task on exit."""
    task = asyncio.create_task(session.run())
    try:
        yield task
    finally:
        await session.stop()
        done, _ = await asyncio.wait([task], timeout=WAIT)
        assert task in done, "the session did not stop"
        if not task.cancelled():
            task.exception()  # retrieved: a test that expects it has already checked it


async def next_event(
    sub: Subscription, matches: Callable[[Event], bool], seconds: float = WAIT
) -> Event:
    """The first event from `sub` that `matches` (earlier ones are skipped)."""
    async with asyncio.timeout(seconds):
        async for event in sub:
            if matches(event):
                return event
    raise AssertionError("subscription closed before the event came")


def connection_is(state: ConnectionState) -> Callable[[Event], bool]:
    return lambda event: isinstance(event, ConnectionChanged) and event.state == state.value


async def online(session: PrinterSession, sub: Subscription) -> None:
    """Wait until the session is online and has merged a full report."""
    await next_event(sub, connection_is(ConnectionState.ONLINE))
    if session.state.job.gcode_state is GcodeState.UNKNOWN:
        await next_event(sub, lambda _e: session.state.job.gcode_state is not GcodeState.UNKNOWN)


def start_print(fleet: SimFleet, index: int = 0) -> None:
    node = fleet.nodes[index]
    data = demo_job(node.spec.identity.model, 1.0)
    start_job(node, "cube.gcode.3mf", data, task_id=4242)


# ----------------------------------------------------------------------------- state


async def test_connects_and_merges_the_full_state_and_firmware(tmp_path: Path) -> None:
    bus = EventBus()
    async with running_fleet(tmp_path, models=("P1S",)) as (fleet, manifest):
        session = session_for(manifest, bus)
        sub = bus.subscribe(serials=frozenset({session.serial}))
        assert session.connection.state is ConnectionState.OFFLINE
        async with running(session):
            await next_event(sub, connection_is(ConnectionState.CONNECTING))
            await online(session, sub)
            await next_event(sub, lambda _e: session.state.firmware.version is not None)
            state = session.state
            assert session.connection.state is ConnectionState.ONLINE
            assert session.connection.reason == "connected"
            assert state.serial == session.serial
            assert state.job.gcode_state is GcodeState.IDLE
            assert state.temperatures.bed is not None
            assert state.developer_mode is True  # the simulator is in Developer Mode by default
            assert state.firmware.version == fleet.nodes[0].spec.identity.firmware
            assert session.malformed_reports == 0
        assert session.connection.state is ConnectionState.OFFLINE
        assert session.connection.reason == "stopped"


async def test_deltas_of_a_started_print_merge_and_raise_print_events(tmp_path: Path) -> None:
    bus = EventBus()
    async with running_fleet(tmp_path, models=("P1S",), **FAST) as (fleet, manifest):
        session = session_for(manifest, bus)
        sub = bus.subscribe(serials=frozenset({session.serial}))
        async with running(session):
            await online(session, sub)
            count = session.state.report_count
            start_print(fleet)
            started = await next_event(sub, lambda e: isinstance(e, PrintStarted))
            assert isinstance(started, PrintStarted)
            assert started.job  # the subtask or file name
            changed = await next_event(
                sub, lambda e: isinstance(e, StateChanged) and "temperatures" in e.changed
            )
            assert isinstance(changed, StateChanged)
            await next_event(sub, lambda _e: session.state.job.gcode_state is GcodeState.RUNNING)
            assert session.state.report_count > count
            assert session.state.job.progress is not None


# ----------------------------------------------------------------------------- commands


async def test_pause_and_resume_a_running_print_are_acknowledged(tmp_path: Path) -> None:
    bus = EventBus()
    async with running_fleet(tmp_path, models=("P1S",), **FAST) as (fleet, manifest):
        session = session_for(manifest, bus)
        sub = bus.subscribe(serials=frozenset({session.serial}))
        async with running(session):
            await online(session, sub)
            start_print(fleet)
            await next_event(sub, lambda _e: session.state.job.gcode_state is GcodeState.RUNNING)

            paused = await session.pause()
            assert paused.status is CommandStatus.OK, paused.reason
            assert paused.sent
            assert paused.ack is not None
            assert paused.ack.command == "pause"
            await next_event(sub, lambda e: isinstance(e, PrintPaused))
            assert session.state.job.gcode_state is GcodeState.PAUSE

            resumed = await session.resume()
            assert resumed.ok, resumed.reason
            await next_event(sub, lambda e: isinstance(e, PrintResumed))
            paused.raise_for_status(session.serial)  # ok: raises nothing


def _drain(sub: Subscription) -> list[Event]:
    events = []
    while (event := sub.get_nowait()) is not None:
        events.append(event)
    return events


async def test_command_events_carry_the_sequence_id_and_the_result(tmp_path: Path) -> None:
    bus = EventBus()
    async with running_fleet(tmp_path, models=("P1S",)) as (_fleet, manifest):
        session = session_for(manifest, bus)
        sub = bus.subscribe(
            serials=frozenset({session.serial}), kinds=frozenset({CommandSent, CommandAcked})
        )
        status = bus.subscribe(serials=frozenset({session.serial}))
        async with running(session):
            await online(session, status)
            command = commands.ledctrl(session.next_sequence_id(), "chamber_light", "on")
            result = await session.send(command)
            assert result.ok, result.reason
            sent = await next_event(sub, lambda e: isinstance(e, CommandSent))
            acked = await next_event(sub, lambda e: isinstance(e, CommandAcked))
        assert isinstance(sent, CommandSent)
        assert isinstance(acked, CommandAcked)
        assert (sent.section, sent.command, sent.sequence_id) == (
            "system",
            "ledctrl",
            command.sequence_id,
        )
        assert acked.sequence_id == command.sequence_id
        assert acked.result == "ok"


async def test_secured_printer_is_read_only_except_for_the_light(tmp_path: Path) -> None:
    bus = EventBus()
    quirks = {"secured": True}
    async with running_fleet(tmp_path, models=("P1S",), quirks=quirks) as (fleet, manifest):
        session = session_for(manifest, bus)
        sub = bus.subscribe(serials=frozenset({session.serial}))
        async with running(session):
            await online(session, sub)
            assert session.state.developer_mode is False
            before = fleet.nodes[0].printer.report.changes

            refused = await session.pause()
            assert refused.status is CommandStatus.REJECTED
            assert refused.reason == READ_ONLY_REASON
            assert not refused.sent
            with pytest.raises(ReadOnlyPrinter, match="Developer Mode"):
                refused.raise_for_status(session.serial)

            light = await session.send(
                commands.ledctrl(session.next_sequence_id(), "chamber_light", "off")
            )
            assert light.ok, light.reason
            assert fleet.nodes[0].printer.report.changes != before  # the light did change


async def test_printer_refusal_for_want_of_a_signature_is_rejected_with_the_reason(
    tmp_path: Path,
) -> None:
    bus = EventBus()
    quirks = {"secured": True}
    async with running_fleet(tmp_path, models=("P1S",), quirks=quirks, **FAST) as (fleet, m):
        node = fleet.nodes[0]
        # The printer claims Developer Mode (bit 29 clear) yet checks signatures: the guard
        # lets the command through and the printer's own refusal must come back readable.
        node.printer.report.put("fun", fun_hex(False))
        session = session_for(m, bus)
        sub = bus.subscribe(serials=frozenset({session.serial}))
        async with running(session):
            await online(session, sub)
            assert session.state.developer_mode is True
            result = await session.pause()
        assert result.status is CommandStatus.REJECTED
        assert result.sent
        assert result.ack is not None
        assert result.ack.signature_required
        assert "signed commands" in result.reason
        assert "Developer Mode" in result.reason
        with pytest.raises(ReadOnlyPrinter):
            result.raise_for_status(session.serial)


async def test_no_new_job_while_one_is_running(tmp_path: Path) -> None:
    bus = EventBus()
    async with running_fleet(tmp_path, models=("P1S",), **FAST) as (fleet, manifest):
        session = session_for(manifest, bus)
        sub = bus.subscribe(serials=frozenset({session.serial}))
        async with running(session):
            await online(session, sub)
            start_print(fleet)
            await next_event(sub, lambda _e: session.state.job.busy)
            job = commands.project_file(
                session.next_sequence_id(),
                model=model_by_name("P1S"),
                file_name="other.gcode.3mf",
                ams_mapping=[0],
                task_id=4343,
            )
            result = await session.send(job)
        assert result.status is CommandStatus.REJECTED
        assert result.reason == BUSY_REASON
        assert not result.sent


async def test_commands_while_not_connected_are_offline(tmp_path: Path) -> None:
    async with running_fleet(tmp_path, models=("P1S",)) as (_fleet, manifest):
        session = session_for(manifest, EventBus())
        result = await session.pause()
    assert result.status is CommandStatus.OFFLINE
    assert "offline" in result.reason
    assert not result.sent


async def test_a_command_the_printer_never_answers_times_out(tmp_path: Path) -> None:
    bus = EventBus()
    async with running_fleet(tmp_path, models=("P1S",)) as (fleet, manifest):
        session = session_for(manifest, bus)
        sub = bus.subscribe(serials=frozenset({session.serial}))
        async with running(session):
            await online(session, sub)
            fleet.nodes[0].printer.set_stale(True)  # a hung printer neither acts nor answers
            result = await session.send(
                commands.ledctrl(session.next_sequence_id(), "chamber_light", "on"), timeout=0.3
            )
        assert result.status is CommandStatus.TIMEOUT
        assert result.sent
        assert "0.3 s" in result.reason


# ----------------------------------------------------------------------------- faults


async def test_wrong_access_code_fails_once_with_a_reason_and_no_retry(tmp_path: Path) -> None:
    bus = EventBus()
    async with running_fleet(tmp_path, models=("P1S",)) as (_fleet, manifest):
        session = session_for(manifest, bus, access_code="Zz9Zz9Zz")
        sub = bus.subscribe(
            serials=frozenset({session.serial}), kinds=frozenset({ConnectionChanged})
        )
        with pytest.raises(AuthFailed) as caught:
            await asyncio.wait_for(session.run(), WAIT)
    assert caught.value.serial == session.serial
    assert "access code" in str(caught.value)
    assert "Zz9Zz9Zz" not in str(caught.value)
    assert session.connection.state is ConnectionState.AUTH_FAILED
    assert session.connection.reason == AUTH_FAILED_REASON
    assert session.connection.needs_attention
    states = [e.state for e in _drain(sub) if isinstance(e, ConnectionChanged)]
    assert states == ["connecting", "auth_failed"]  # one attempt, no retry inside run()


async def test_certificate_of_another_printer_fails_tls(tmp_path: Path) -> None:
    bus = EventBus()
    async with running_fleet(tmp_path, models=("P1S", "P1S")) as (_fleet, manifest):
        other = manifest.printers[1]
        # Printer A's address and port, printer B's serial and code: A's certificate names A.
        session = session_for(manifest, bus, serial=other.serial, access_code=other.access_code)
        with pytest.raises(TlsVerificationFailed) as caught:
            await asyncio.wait_for(session.run(), WAIT)
    assert other.serial in str(caught.value)
    assert session.connection.state is ConnectionState.TLS_FAILED
    assert manifest.printers[0].serial in session.connection.reason
    assert session.connection.needs_attention


async def test_untrusted_ca_fails_tls(tmp_path: Path) -> None:
    async with (
        running_fleet(tmp_path / "a", models=("P1S",)) as (_fleet, manifest),
        running_fleet(tmp_path / "b", models=("P1S",)) as (_other, other_manifest),
    ):
        policy = TlsPolicy(TlsMode.VERIFY, ca_file=Path(other_manifest.ca_cert))
        session = session_for(manifest, EventBus(), policy=policy)
        with pytest.raises(TlsVerificationFailed, match="not trusted"):
            await asyncio.wait_for(session.run(), WAIT)
    assert session.connection.state is ConnectionState.TLS_FAILED


async def test_silent_printer_goes_stale_then_offline(tmp_path: Path) -> None:
    bus = EventBus()
    async with running_fleet(tmp_path, models=("P1S",)) as (fleet, manifest):
        session = session_for(manifest, bus, stale_after=0.4, stale_grace=0.4)
        sub = bus.subscribe(serials=frozenset({session.serial}))
        async with running(session) as task:
            await online(session, sub)
            fleet.nodes[0].printer.set_stale(True)
            stale = await next_event(sub, connection_is(ConnectionState.STALE))
            assert isinstance(stale, ConnectionChanged)
            assert "no report for" in stale.reason
            assert "full report" in stale.reason
            with pytest.raises(PrinterOffline, match="no report for"):
                await asyncio.wait_for(task, WAIT)
        assert session.connection.state is ConnectionState.OFFLINE
        assert "no report for" in session.connection.reason


async def test_a_quiet_printer_that_answers_the_pushall_comes_back_online(
    tmp_path: Path,
) -> None:
    bus = EventBus()
    async with running_fleet(tmp_path, models=("P1S",)) as (fleet, manifest):
        node = fleet.nodes[0]
        session = session_for(manifest, bus, stale_after=0.4, stale_grace=WAIT)
        sub = bus.subscribe(serials=frozenset({session.serial}))
        async with running(session):
            await online(session, sub)
            node.printer.pushing = False  # stops periodic pushes but still answers pushall
            await next_event(sub, connection_is(ConnectionState.STALE))
            await next_event(sub, connection_is(ConnectionState.ONLINE))
            assert session.connection.reason == "connected"


async def test_garbage_from_the_printer_is_counted_logged_once_and_survived(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bus = EventBus()
    async with running_fleet(tmp_path, models=("P1S",), tick_interval=0.1) as (fleet, m):
        node = fleet.nodes[0]
        session = session_for(m, bus)
        sub = bus.subscribe(serials=frozenset({session.serial}))
        async with running(session):
            await online(session, sub)
            with caplog.at_level(logging.WARNING, logger="bambufarm.fleet.session"):
                for payload in (b"\xff\xfe not json", b"\xff\xfe not json", b"[1, 2]"):
                    node.broker.publish(node.report_topic, payload)
                count = session.state.report_count
                node.printer.inject_hms(0x0700_0100, 0x0003_0001)
                await next_event(sub, lambda _e: session.state.report_count > count)
            assert session.connection.state is ConnectionState.ONLINE
        assert session.malformed_reports == 3
        warnings = [r for r in caplog.records if "malformed report" in r.getMessage()]
        assert len(warnings) == 2  # the repeated error is logged once
        assert (0x0700_0100, 0x0003_0001) in session.state.hms


async def test_dropped_connection_ends_run_with_a_network_error_and_keeps_state(
    tmp_path: Path,
) -> None:
    bus = EventBus()
    async with running_fleet(tmp_path, models=("P1S",)) as (fleet, manifest):
        session = session_for(manifest, bus)
        sub = bus.subscribe(serials=frozenset({session.serial}))
        async with running(session) as task:
            await online(session, sub)
            known = session.state
            fleet.nodes[0].drop_connections()
            with pytest.raises(PrinterOffline, match="connection lost"):
                await asyncio.wait_for(task, WAIT)
        assert session.connection.state is ConnectionState.OFFLINE
        assert session.state is known  # nothing forgotten while offline

        async with running(session):  # what the supervisor does next
            await online(session, sub)
            await next_event(sub, lambda _e: session.state.report_count > known.report_count)
            assert session.connection.state is ConnectionState.ONLINE


async def test_refused_connection_is_offline_with_the_address(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    async with running_fleet(tmp_path, models=("P1S",)) as (_fleet, manifest):
        session = session_for(manifest, EventBus(), port=closed_port)
        with pytest.raises(PrinterOffline, match="cannot connect"):
            await asyncio.wait_for(session.run(), WAIT)
    assert session.connection.state is ConnectionState.OFFLINE
    assert f"127.0.0.1:{closed_port}" in session.connection.reason


def test_config_keeps_the_access_code_out_of_its_repr_and_checks_values() -> None:
    config = SessionConfig(serial="01P00A000000001", host="127.0.0.1", access_code="12345678")
    assert "12345678" not in repr(config)
    with pytest.raises(ValueError, match="pushall_every"):
        SessionConfig(serial="s", host="h", access_code="c", pushall_every=10)
    with pytest.raises(ValueError, match="stale_after"):
        SessionConfig(serial="s", host="h", access_code="c", stale_after=0)


async def test_a_session_runs_once_at_a_time(tmp_path: Path) -> None:
    bus = EventBus()
    async with running_fleet(tmp_path, models=("P1S",)) as (_fleet, manifest):
        session = session_for(manifest, bus)
        sub = bus.subscribe(serials=frozenset({session.serial}))
        async with running(session):
            await online(session, sub)
            with pytest.raises(RuntimeError, match="already running"):
                await session.run()
            assert session.connection.state is ConnectionState.ONLINE


async def test_a_dead_printer_is_logged_once_however_often_it_is_retried(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    config = SessionConfig(
        serial="01P00A000000001", host="127.0.0.1", port=closed_port, access_code="12345678"
    )
    bus = EventBus()
    sub = bus.subscribe(kinds=frozenset({ConnectionChanged}))
    session = PrinterSession(config, bus=bus, tls_policy=TlsPolicy(TlsMode.INSECURE))
    with caplog.at_level(logging.DEBUG, logger="bambufarm.fleet.session"):
        for _ in range(3):  # what the supervisor's retries look like from here
            with pytest.raises(PrinterOffline):
                await session.run()
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert "cannot connect" in warnings[0].getMessage()
    states = [e.state for e in _drain(sub) if isinstance(e, ConnectionChanged)]
    assert states == ["connecting", "offline"] * 3  # every change is still an event
