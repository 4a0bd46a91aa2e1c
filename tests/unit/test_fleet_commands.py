"""Command guards and ack → result mapping (fleet.commands), on fixtures and built states."""

import dataclasses

import pytest

from bambufarm.fleet.commands import (
    BUSY_REASON,
    READ_ONLY_REASON,
    CommandResult,
    CommandStatus,
    from_ack,
    guard,
)
from bambufarm.fleet.connection import Connection, ConnectionState
from bambufarm.fleet.errors import (
    CommandRefused,
    CommandTimeout,
    PrinterBusy,
    PrinterOffline,
    ReadOnlyPrinter,
)
from bambufarm.protocol import commands
from bambufarm.protocol.acks import Ack, AckResult, acks_in
from bambufarm.protocol.models import model_by_name
from bambufarm.protocol.report import parse_report
from bambufarm.protocol.state import GcodeState, Job, PrinterState, empty_state, merge
from tests.support.reports import load_report

SERIAL = "01P00A000000001"
ONLINE = Connection(ConnectionState.ONLINE, "connected", 0.0)


def state(
    *, developer_mode: bool | None = True, gcode_state: GcodeState = GcodeState.IDLE
) -> PrinterState:
    return dataclasses.replace(
        empty_state(SERIAL), developer_mode=developer_mode, job=Job(gcode_state=gcode_state)
    )


def project_file() -> commands.Command:
    return commands.project_file(
        "20001", model=model_by_name("P1S"), file_name="a.gcode.3mf", ams_mapping=[0], task_id=1
    )


def ack_from(fixture: str) -> Ack:
    (ack,) = acks_in(parse_report(load_report(fixture)).sections)
    return ack


# ----------------------------------------------------------------------------- guards


def test_a_developer_mode_printer_takes_any_command_when_idle() -> None:
    for command in (
        commands.pause("1"),
        project_file(),
        commands.ledctrl("2", "chamber_light", "on"),
    ):
        assert guard(command, state(), ONLINE) is None


@pytest.mark.parametrize("link", [ConnectionState.OFFLINE, ConnectionState.CONNECTING,
                                  ConnectionState.AUTH_FAILED, ConnectionState.TLS_FAILED,
                                  ConnectionState.DISABLED])  # fmt: skip
def test_nothing_goes_out_without_a_connection(link: ConnectionState) -> None:
    result = guard(commands.pushall("1"), state(), Connection(link, "why not", 0.0))
    assert result is not None
    assert result.status is CommandStatus.OFFLINE
    assert "why not" in result.reason
    assert not result.sent


def test_a_stale_link_still_carries_commands() -> None:
    stale = Connection(ConnectionState.STALE, "quiet", 0.0)
    assert guard(commands.pause("1"), state(), stale) is None


def test_read_only_printer_refuses_control_but_allows_light_and_status() -> None:
    read_only = state(developer_mode=False)
    for refused in (commands.pause("1"), commands.gcode_line("2", "G28"), project_file()):
        result = guard(refused, read_only, ONLINE)
        assert result is not None
        assert result.status is CommandStatus.REJECTED
        assert result.reason == READ_ONLY_REASON
    allowed = (
        commands.ledctrl("3", "chamber_light", "off"),
        commands.pushall("4"),
        commands.get_version("5"),
        commands.start_pushing("6"),
    )
    for command in allowed:
        assert guard(command, read_only, ONLINE) is None


def test_unknown_developer_mode_does_not_block() -> None:
    assert guard(commands.pause("1"), state(developer_mode=None), ONLINE) is None


@pytest.mark.parametrize("busy", [GcodeState.PREPARE, GcodeState.RUNNING, GcodeState.PAUSE])
def test_no_job_start_while_a_job_runs(busy: GcodeState) -> None:
    current = state(gcode_state=busy)
    for start in (project_file(), commands.gcode_file("2", "/sdcard/a.gcode")):
        result = guard(start, current, ONLINE)
        assert result is not None
        assert result.reason == BUSY_REASON
    assert guard(commands.stop("3"), current, ONLINE) is None  # stopping it is fine


@pytest.mark.parametrize("ended", [GcodeState.IDLE, GcodeState.FINISH, GcodeState.FAILED])
def test_a_job_may_start_once_the_last_one_ended(ended: GcodeState) -> None:
    assert guard(project_file(), state(gcode_state=ended), ONLINE) is None


# ----------------------------------------------------------------------------- acks


def test_success_ack_is_ok() -> None:
    result = from_ack(ack_from("ack_gcode_line"))
    assert result.status is CommandStatus.OK
    assert result.sent
    assert result.ack is not None
    result.raise_for_status(SERIAL)


def test_signature_refusal_says_developer_mode_and_maps_to_read_only() -> None:
    result = from_ack(ack_from("ack_project_file_secured"))
    assert result.status is CommandStatus.REJECTED
    assert "signed commands" in result.reason
    assert "84033543" in result.reason
    assert READ_ONLY_REASON in result.reason
    with pytest.raises(ReadOnlyPrinter, match=SERIAL):
        result.raise_for_status(SERIAL)


def test_other_refusals_carry_the_printer_reason_and_code() -> None:
    ack = Ack("print", "calibration", "7", AckResult.FAILED, "invalid nozzle_diameter", -2)
    result = from_ack(ack)
    assert result.status is CommandStatus.REJECTED
    assert "invalid nozzle_diameter" in result.reason
    assert "-2" in result.reason
    with pytest.raises(CommandRefused) as caught:
        result.raise_for_status(SERIAL)
    assert type(caught.value) is CommandRefused


def test_an_ack_without_a_verdict_counts_as_ok() -> None:
    result = from_ack(Ack("camera", "ipcam_record_set", "8", AckResult.UNKNOWN))
    assert result.ok
    assert "without a result" in result.reason


@pytest.mark.parametrize(
    ("result", "error"),
    [
        (CommandResult(CommandStatus.OFFLINE, "the printer is offline: x"), PrinterOffline),
        (CommandResult(CommandStatus.TIMEOUT, "no acknowledgement within 10 s"), CommandTimeout),
        (CommandResult(CommandStatus.REJECTED, BUSY_REASON), PrinterBusy),
        (CommandResult(CommandStatus.REJECTED, READ_ONLY_REASON), ReadOnlyPrinter),
    ],
)
def test_failed_results_raise_the_matching_fleet_error(
    result: CommandResult, error: type[Exception]
) -> None:
    with pytest.raises(error) as caught:
        result.raise_for_status(SERIAL)
    assert type(caught.value) is error
    assert result.reason in str(caught.value)


@pytest.mark.parametrize(
    ("fixture", "pause_refusal", "job_refusal"),
    [
        ("p1s_full", None, BUSY_REASON),  # no `fun` at all: mode unknown, mid-print
        ("x1c_full", None, BUSY_REASON),  # Developer Mode on, mid-print
        ("a1_ams_lite_full", READ_ONLY_REASON, READ_ONLY_REASON),  # bit 29 set, finished
    ],
)
def test_guards_on_states_merged_from_real_shaped_reports(
    fixture: str, pause_refusal: str | None, job_refusal: str
) -> None:
    merged = merge(empty_state(SERIAL), parse_report(load_report(fixture)))
    paused = guard(commands.pause("1"), merged, ONLINE)
    assert (paused and paused.reason) == pause_refusal
    started = guard(project_file(), merged, ONLINE)
    assert started is not None
    assert started.reason == job_refusal
