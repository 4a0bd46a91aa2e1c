"""The Fleet supervisor against simulated printers: membership, snapshots, handles, shutdown."""

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bambufarm.fleet.commands import CommandStatus
from bambufarm.fleet.connection import ConnectionState
from bambufarm.fleet.errors import FleetError, UnknownPrinter, UploadFailed
from bambufarm.fleet.events import (
    CommandAcked,
    ConnectionChanged,
    EventBus,
    PrinterAdded,
    PrinterRemoved,
    PrintPaused,
    PrintResumed,
    PrintStarted,
)
from bambufarm.fleet.supervisor import Fleet, PrinterConfig, SupervisionOptions
from bambufarm.fleet.uploads import Uploader
from bambufarm.protocol import commands
from bambufarm.protocol.state import GcodeState
from bambufarm.simulator.demo import demo_job
from tests.support.fleet_harness import (
    QUICK,
    SHORT,
    EventLog,
    LoginCounter,
    printer_config,
    supervised,
    verify_policy,
)
from tests.support.printer_clients import eventually
from tests.support.sim import running_fleet

ONLINE = ConnectionState.ONLINE
# 100x simulated time with 0.1 s ticks: PREPARE (~130 simulated s) passes in about a second.
FAST = {"time_scale": 100.0, "tick_interval": 0.1}


def serials_of(fleet: Fleet) -> list[str]:
    return [snapshot.serial for snapshot in fleet.printers()]


@pytest.fixture
async def refusing_port() -> AsyncIterator[tuple[int, list[int]]]:
    """A loopback port whose server closes every connection at once; counts the attempts."""
    attempts: list[int] = []

    def on_connect(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        attempts.append(1)
        writer.transport.abort()

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], attempts
    finally:
        server.close()
        await server.wait_closed()


# ----------------------------------------------------------------------------- membership


async def test_added_printers_come_online_with_their_state(tmp_path: Path) -> None:
    async with (
        running_fleet(tmp_path, models=("P1S", "X1C", "A1")) as (sim, manifest),
        supervised(manifest) as (fleet, log),
    ):
        serials = [p.serial for p in manifest.printers]
        await log.until_state(serials, ONLINE)
        await log.until(
            lambda _e: all(
                s.state.job.gcode_state is not GcodeState.UNKNOWN for s in fleet.printers()
            ),
            "every printer's first full report",
        )
        assert serials_of(fleet) == serials
        added = [e.serial for e in log.events if isinstance(e, PrinterAdded)]
        assert added == serials
        for serial in serials:
            # connecting, then online: nothing else for a healthy printer.
            assert log.states(serial) == ["connecting", "online"]
            snapshot = fleet.snapshot(serial)
            assert snapshot.connection.state is ONLINE
            assert snapshot.state.serial == serial
            assert snapshot.state.report_count >= 1
            assert snapshot.enabled
            assert sim.node(serial).broker.client_count == 1
        assert len(fleet) == 3
        assert serials[0] in fleet


async def test_adding_a_serial_twice_is_refused_and_unknown_serials_are_named(
    tmp_path: Path,
) -> None:
    async with (
        running_fleet(tmp_path) as (_sim, manifest),
        supervised(manifest) as (fleet, _log),
    ):
        printer = manifest.printers[0]
        with pytest.raises(FleetError, match="already in the fleet"):
            fleet.add(printer_config(printer))
        with pytest.raises(UnknownPrinter, match="NOSUCHSERIAL"):
            fleet.get("NOSUCHSERIAL")
        with pytest.raises(UnknownPrinter):
            await fleet.remove("NOSUCHSERIAL")


async def test_printers_added_before_entering_start_on_enter(tmp_path: Path) -> None:
    async with running_fleet(tmp_path) as (_sim, manifest):
        bus = EventBus()
        log = EventLog(bus)
        fleet = Fleet(bus=bus, tls=verify_policy(manifest), session_options=SHORT)
        serial = manifest.printers[0].serial
        fleet.add(printer_config(manifest.printers[0]))
        await asyncio.sleep(0.2)  # gives a wrongly started session time to connect
        assert fleet.snapshot(serial).connection.state is ConnectionState.OFFLINE
        async with fleet:
            await log.until_state([serial], ONLINE)
        await log.close()


async def test_remove_closes_the_session_and_forgets_the_printer(tmp_path: Path) -> None:
    async with (
        running_fleet(tmp_path, count=2) as (sim, manifest),
        supervised(manifest) as (fleet, log),
    ):
        gone, kept = (p.serial for p in manifest.printers)
        await log.until_state([gone, kept], ONLINE)
        handle = fleet.get(gone)
        await fleet.remove(gone)
        assert serials_of(fleet) == [kept]
        await log.until(
            lambda ev: any(isinstance(e, PrinterRemoved) and e.serial == gone for e in ev),
            "PrinterRemoved",
        )
        await eventually(lambda: sim.node(gone).broker.client_count == 0, "the close")
        with pytest.raises(UnknownPrinter):
            handle.snapshot()
        # Removing does not disturb the others, and no stray state event follows the removal.
        assert fleet.snapshot(kept).connection.state is ONLINE
        assert log.states(gone) == ["connecting", "online"]


async def test_disable_keeps_the_printer_offline_until_enabled(tmp_path: Path) -> None:
    async with (
        running_fleet(tmp_path) as (sim, manifest),
        supervised(manifest) as (fleet, log),
    ):
        serial = manifest.printers[0].serial
        broker = sim.node(serial).broker
        await log.until_state([serial], ONLINE)
        await fleet.disable(serial)
        snapshot = fleet.snapshot(serial)
        assert snapshot.connection.state is ConnectionState.DISABLED
        assert not snapshot.enabled
        await eventually(lambda: broker.client_count == 0, "the broker to see the close")
        result = await fleet.get(serial).set_light(on=True)
        assert result.status is CommandStatus.OFFLINE
        assert not result.sent
        assert "disabled" in result.reason
        await asyncio.sleep(0.3)  # several backoff periods: a disabled printer must not retry
        assert broker.client_count == 0
        await fleet.enable(serial)
        await log.until_state([serial], ONLINE)
        assert log.states(serial) == ["connecting", "online", "disabled", "connecting", "online"]
        assert broker.client_count == 1


async def test_a_printer_added_disabled_stays_disconnected(tmp_path: Path) -> None:
    async with (
        running_fleet(tmp_path) as (sim, manifest),
        supervised(manifest, printers=()) as (fleet, log),
    ):
        printer = manifest.printers[0]
        fleet.add(printer_config(printer), enabled=False)
        assert log.states(printer.serial) == []
        await log.until(lambda _e: log.states(printer.serial) == ["disabled"], "disabled event")
        await asyncio.sleep(0.2)  # a session wrongly started would log in by now
        assert sim.node(printer.serial).broker.client_count == 0
        await fleet.enable(printer.serial)
        await log.until_state([printer.serial], ONLINE)


async def test_update_reconnects_with_the_new_configuration(tmp_path: Path) -> None:
    async with running_fleet(tmp_path) as (sim, manifest):
        printer = manifest.printers[0]
        counter = LoginCounter(sim.node(printer.serial))
        async with supervised(manifest) as (fleet, log):
            await log.until_state([printer.serial], ONLINE)
            await fleet.update(printer_config(printer, name="Renamed"))
            await log.until(
                lambda _e: log.states(printer.serial) == ["connecting", "online"] * 2,
                "the new session online",
            )
            assert fleet.snapshot(printer.serial).config.name == "Renamed"
            # The old session was closed before the new one logged in: one connection, ever.
            assert counter.open_at_login == [0, 0]
            assert sim.node(printer.serial).broker.client_count == 1


# ----------------------------------------------------------------------------- handle


async def test_handle_commands_reach_the_printer_and_return_typed_results(
    tmp_path: Path,
) -> None:
    async with (
        running_fleet(tmp_path, **FAST) as (sim, manifest),
        supervised(manifest) as (fleet, log),
    ):
        printer = manifest.printers[0]
        node = sim.node(printer.serial)
        handle = fleet.get(printer.serial)
        await log.until_state([printer.serial], ONLINE)
        await log.until(
            lambda _e: handle.state.job.gcode_state is not GcodeState.UNKNOWN, "a full report"
        )
        assert handle.model().name == "P1S"
        for result in [
            await handle.set_light(on=False),
            await handle.set_speed(commands.SpeedLevel.SPORT),
            await handle.set_bed_temp(55),
            await handle.set_nozzle_temp(200),
            await handle.set_fan(commands.Fan.PART, 50),
            await handle.gcode_line("G28"),
        ]:
            assert result.status is CommandStatus.OK, result.reason
            assert result.sent
        pushed = await handle.pushall()  # answered by a report, never by an ack
        assert pushed.ok
        assert pushed.sent
        acked = [e for e in log.events if isinstance(e, CommandAcked)]
        assert {e.command for e in acked} >= {"ledctrl", "print_speed", "gcode_line"}
        await log.until(lambda _e: handle.state.lights.get("chamber_light") == "off", "light off")

        # A job: uploaded behind the fleet's back, started through the handle.
        node.storage.write_file("cube.gcode.3mf", demo_job(node.spec.identity.model, 1.0))
        started = await handle.start_print("cube.gcode.3mf", ams_mapping=[0])
        assert started.ok, started.reason
        await log.until(
            lambda events: any(isinstance(e, PrintStarted) for e in events), "PrintStarted"
        )
        await log.until(
            lambda _e: handle.state.job.gcode_state is GcodeState.RUNNING, "the job running"
        )
        again = await handle.start_print("cube.gcode.3mf", ams_mapping=[0])
        assert again.status is CommandStatus.REJECTED
        assert not again.sent  # the guard: a second project_file could kill the running job
        assert (await handle.pause()).ok
        await log.until(lambda ev: any(isinstance(e, PrintPaused) for e in ev), "PrintPaused")
        assert (await handle.resume()).ok
        await log.until(lambda ev: any(isinstance(e, PrintResumed) for e in ev), "PrintResumed")
        assert (await handle.stop()).ok
        await log.until(
            lambda _e: handle.state.job.gcode_state is GcodeState.FAILED, "the job stopped"
        )


async def test_upload_then_start_print_through_the_handle(tmp_path: Path) -> None:
    async with (
        running_fleet(tmp_path, **FAST) as (sim, manifest),
        Uploader(max_concurrent=2) as uploader,
        supervised(manifest, uploader=uploader) as (fleet, log),
    ):
        printer = manifest.printers[0]
        node = sim.node(printer.serial)
        handle = fleet.get(printer.serial)
        data = demo_job(node.spec.identity.model, 1.0)
        seen: list[tuple[int, int]] = []
        result = await handle.upload(
            data, "job.gcode.3mf", lambda sent, total: seen.append((sent, total))
        )
        assert result.bytes == len(data)
        assert result.throughput > 0
        assert node.storage.exists("job.gcode.3mf")
        await log.until(lambda _e: bool(seen) and seen[-1] == (len(data), len(data)), "progress")
        await log.until_state([printer.serial], ONLINE)
        started = await handle.start_print("job.gcode.3mf", ams_mapping=[0])
        assert started.ok, started.reason
        await log.until(
            lambda _e: handle.state.job.gcode_state is GcodeState.RUNNING, "the job running"
        )


async def test_upload_without_an_uploader_says_so(tmp_path: Path) -> None:
    async with (
        running_fleet(tmp_path) as (_sim, manifest),
        supervised(manifest) as (fleet, _log),
    ):
        with pytest.raises(UploadFailed, match="not set up"):
            await fleet.get(manifest.printers[0].serial).upload(b"x", "a.gcode.3mf")


async def test_bad_command_values_raise_before_anything_is_sent(tmp_path: Path) -> None:
    async with (
        running_fleet(tmp_path) as (_sim, manifest),
        supervised(manifest) as (fleet, log),
    ):
        handle = fleet.get(manifest.printers[0].serial)
        await log.until_state([handle.serial], ONLINE)
        with pytest.raises(ValueError, match="bed temperature"):
            await handle.set_bed_temp(500)
        with pytest.raises(ValueError, match="file_name"):
            await handle.start_print("../escape.3mf")


async def test_an_unreachable_printer_publishes_one_change_not_one_per_retry(
    tmp_path: Path, refusing_port: tuple[int, list[int]]
) -> None:
    port, attempts = refusing_port
    async with (
        running_fleet(tmp_path) as (_sim, manifest),
        supervised(manifest, printers=()) as (fleet, log),
    ):
        printer = manifest.printers[0]
        fleet.add(printer_config(printer, mqtt_port=port))
        await eventually(lambda: len(attempts) >= 4, "four connection attempts")
        assert log.states(printer.serial) == ["connecting", "offline"]
        snapshot = fleet.snapshot(printer.serial)
        assert snapshot.connection.state is ConnectionState.OFFLINE
        assert f"127.0.0.1:{port}" in snapshot.connection.reason


async def test_a_printer_backing_off_sleeps_between_attempts(
    tmp_path: Path, refusing_port: tuple[int, list[int]]
) -> None:
    port, attempts = refusing_port
    slow = SupervisionOptions(backoff_base=0.2, backoff_cap=0.4, close_timeout=2.0)
    async with (
        running_fleet(tmp_path) as (_sim, manifest),
        supervised(manifest, printers=(), supervision=slow) as (fleet, _log),
    ):
        fleet.add(printer_config(manifest.printers[0], mqtt_port=port))
        cpu_before = time.process_time()
        await asyncio.sleep(1.5)  # a window of backoff sleeps to count attempts in
        cpu = time.process_time() - cpu_before
        # Delays are drawn from [0, 0.2], then [0, 0.4]: ~5-8 attempts in 1.5 s, never a spin.
        assert 2 <= len(attempts) <= 40
        assert cpu < 0.5, f"backing off burned {cpu:.2f} s of CPU in 1.5 s"


async def test_a_bug_in_one_session_is_logged_and_retried_without_ending_the_fleet(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with running_fleet(tmp_path, count=2) as (_sim, manifest):
        sick, healthy = (p.serial for p in manifest.printers)
        async with supervised(manifest, printers=()) as (fleet, log):
            fleet.add(printer_config(manifest.printers[1]))
            fleet.add(printer_config(manifest.printers[0]), enabled=False)
            session = fleet.session(sick)
            real_run = session.run
            calls: list[int] = []

            async def broken_once() -> None:
                calls.append(1)
                if len(calls) == 1:
                    raise RuntimeError("a bug in the session")
                await real_run()

            # The session's public entry point, replaced on this one instance: the fleet
            # must treat whatever escapes it as this printer's trouble only.
            session.run = broken_once  # type: ignore[method-assign]
            await fleet.enable(sick)
            await log.until_state([sick, healthy], ONLINE)
            assert log.states(sick) == ["disabled", "offline", "online"]
            assert log.states(healthy) == ["connecting", "online"]
            assert "session failed unexpectedly" in caplog.text
            assert "a bug in the session" in caplog.text


async def test_connect_concurrency_of_one_still_brings_everyone_online(tmp_path: Path) -> None:
    one = SupervisionOptions(connect_concurrency=1, backoff_base=0.05, close_timeout=2.0)
    async with (
        running_fleet(tmp_path, count=6) as (_sim, manifest),
        supervised(manifest, supervision=one) as (_fleet, log),
    ):
        await log.until_state([p.serial for p in manifest.printers], ONLINE)


async def test_aclose_closes_every_session_within_the_bound(tmp_path: Path) -> None:
    async with running_fleet(tmp_path, count=20) as (sim, manifest):
        async with supervised(manifest) as (fleet, log):
            await log.until_state([p.serial for p in manifest.printers], ONLINE)
            started = time.monotonic()
            await fleet.aclose()
            took = time.monotonic() - started
            with pytest.raises(RuntimeError, match="closing"):
                fleet.add(printer_config(manifest.printers[0], serial="01P00A000000099"))
        assert took < QUICK.close_timeout
        await asyncio.sleep(0.1)  # the printers' side sees the FINs on its next loop turns
        assert all(node.broker.client_count == 0 for node in sim.nodes)
        # A closed session is not news: no offline events were published by the shutdown.
        offline = [
            e for e in log.events if isinstance(e, ConnectionChanged) and e.state != "online"
        ]
        assert all(e.state == "connecting" for e in offline)


async def test_config_refuses_missing_fields_and_keeps_the_code_out_of_its_repr() -> None:
    with pytest.raises(ValueError, match="access code"):
        PrinterConfig(serial="01P00A000000001", host="127.0.0.1", access_code="")
    with pytest.raises(ValueError, match="mqtt_port"):
        PrinterConfig(serial="01P00A000000001", host="h", access_code="12345678", mqtt_port=0)
    config = PrinterConfig(serial="01P00A000000001", host="h", access_code="12345678")
    assert "12345678" not in repr(config)
    assert config.label == "01P00A000000001"
