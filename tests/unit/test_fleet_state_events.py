"""Events derived from one merge step (fleet.state_events), on the P1S fixture sequence."""

import dataclasses

import pytest

from bambufarm.fleet.events import (
    Event,
    HmsCleared,
    HmsRaised,
    LayerChanged,
    PrintFailed,
    PrintFinished,
    PrintPaused,
    PrintResumed,
    PrintStarted,
    StateChanged,
)
from bambufarm.fleet.state_events import changed_fields, state_events
from bambufarm.protocol.report import parse_report
from bambufarm.protocol.state import GcodeState, Job, PrinterState, empty_state, merge
from tests.support.reports import P1S_DELTAS, load_report

SERIAL = "01P00A000000001"


def merged(*names: str) -> PrinterState:
    state = empty_state(SERIAL)
    for name in names:
        state = merge(state, parse_report(load_report(name)))
    return state


def step(
    old: PrinterState, new: PrinterState, changed: frozenset[str] | None = None
) -> list[Event]:
    """The events of one step; `changed` stands in for merge's own when a test built `new`."""
    touched = changed_fields(old, new) if changed is None else changed
    return state_events(old, new, touched, 1.5)


JOB = frozenset({"job"})


def with_job(state: PrinterState, **changes: object) -> PrinterState:
    return dataclasses.replace(state, job=dataclasses.replace(state.job, **changes))


def test_a_report_that_changes_nothing_changes_no_field() -> None:
    state = merged("p1s_full")
    same = merge(state, parse_report(load_report("ack_gcode_line")))
    assert same is state
    assert changed_fields(state, same) == frozenset()
    assert step(state, same) == []


def test_changed_fields_are_what_the_merge_touched() -> None:
    state = merged("p1s_full")
    new = merge(state, parse_report(load_report("p1s_delta_02_temps")))
    assert changed_fields(state, new) == new.changed
    assert "temperatures" in new.changed
    assert not {"sequence", "report_count", "raw"} & new.changed


def test_each_p1s_delta_names_the_parts_it_changed() -> None:
    state = merged("p1s_full")
    seen: list[frozenset[str]] = []
    for name in P1S_DELTAS:
        new = merge(state, parse_report(load_report(name)))
        changed = changed_fields(state, new)
        events = step(state, new)
        if changed:
            assert isinstance(events[0], StateChanged)
            assert events[0].changed == changed
            assert events[0].serial == SERIAL
            assert events[0].at == 1.5
        seen.append(changed)
        state = new
    progress, temps, tray, cleared, hms, hms_gone = seen
    assert "job" in progress
    assert "temperatures" in temps
    assert "ams" in tray
    assert "ams" in cleared
    assert "hms" in hms
    assert "hms" in hms_gone


def test_hms_raised_then_cleared_with_code_and_severity() -> None:
    before = merged("p1s_full", *P1S_DELTAS[:4])
    raised_state = merge(before, parse_report(load_report("p1s_delta_05_hms")))
    raised = [e for e in step(before, raised_state) if isinstance(e, HmsRaised)]
    assert raised
    new_pairs = set(raised_state.hms) - set(before.hms)
    assert len(raised) == len(new_pairs)
    for event in raised:
        assert len(event.code) == 19  # 0700_2000_0002_0001
        assert event.severity in {"fatal", "serious", "common", "info", "unknown"}
    cleared_state = merge(raised_state, parse_report(load_report("p1s_delta_06_hms_cleared")))
    cleared = [e for e in step(raised_state, cleared_state) if isinstance(e, HmsCleared)]
    gone = set(raised_state.hms) - set(cleared_state.hms)
    assert len(cleared) == len(gone) > 0


def test_hms_values_outside_uint32_are_skipped_not_fatal() -> None:
    state = merged("p1s_full")
    odd = dataclasses.replace(state, hms=((-1, 5), (0x0700_0100, 0x0003_0001)))
    events = step(state, odd, frozenset({"hms"}))
    assert [e.code for e in events if isinstance(e, HmsRaised)] == ["0700_0100_0003_0001"]


@pytest.mark.parametrize(
    ("was", "now", "kind"),
    [
        (GcodeState.IDLE, GcodeState.PREPARE, PrintStarted),
        (GcodeState.FINISH, GcodeState.RUNNING, PrintStarted),
        (GcodeState.FAILED, GcodeState.PREPARE, PrintStarted),
        (GcodeState.RUNNING, GcodeState.PAUSE, PrintPaused),
        (GcodeState.PREPARE, GcodeState.PAUSE, PrintPaused),
        (GcodeState.PAUSE, GcodeState.RUNNING, PrintResumed),
        (GcodeState.RUNNING, GcodeState.FINISH, PrintFinished),
        (GcodeState.RUNNING, GcodeState.FAILED, PrintFailed),
        (GcodeState.PAUSE, GcodeState.FAILED, PrintFailed),
        (GcodeState.PREPARE, GcodeState.IDLE, PrintFailed),
    ],
)
def test_gcode_state_transitions_raise_print_events(
    was: GcodeState, now: GcodeState, kind: type[Event]
) -> None:
    base = dataclasses.replace(empty_state(SERIAL), job=Job(gcode_state=was, subtask_name="cube"))
    after = with_job(base, gcode_state=now, print_error=0x0300400C)
    events = [e for e in step(base, after, JOB) if not isinstance(e, StateChanged)]
    assert [type(e) for e in events] == [kind]
    body = events[0].to_dict()
    assert (body["job"], body["print_error"]) == ("cube", 0x0300400C)


@pytest.mark.parametrize(
    ("was", "now"),
    [
        (GcodeState.UNKNOWN, GcodeState.RUNNING),  # first sight of a printer mid-print
        (GcodeState.PREPARE, GcodeState.RUNNING),  # warm-up over: not a second start
        (GcodeState.IDLE, GcodeState.FINISH),
        (GcodeState.FINISH, GcodeState.IDLE),
    ],
)
def test_transitions_that_are_not_print_events(was: GcodeState, now: GcodeState) -> None:
    base = dataclasses.replace(empty_state(SERIAL), job=Job(gcode_state=was))
    events = step(base, with_job(base, gcode_state=now), JOB)
    assert [type(e) for e in events] == [StateChanged]


def test_layer_changes_while_printing_only() -> None:
    printing = dataclasses.replace(
        empty_state(SERIAL), job=Job(gcode_state=GcodeState.RUNNING, layer=3, total_layers=240)
    )
    events = step(printing, with_job(printing, layer=4), JOB)
    layers = [e for e in events if isinstance(e, LayerChanged)]
    assert [(e.layer, e.total) for e in layers] == [(4, 240)]
    restarted = with_job(printing, gcode_state=GcodeState.PREPARE, layer=0)
    assert not [e for e in step(printing, restarted, JOB) if isinstance(e, LayerChanged)]
    idle = with_job(printing, gcode_state=GcodeState.IDLE)
    assert not [e for e in step(idle, with_job(idle, layer=5), JOB) if isinstance(e, LayerChanged)]


def test_the_p1s_fixture_job_start_delta_starts_a_print() -> None:
    idle = with_job(merged("p1s_full"), gcode_state=GcodeState.IDLE)
    started = merge(idle, parse_report(load_report("p1s_delta_job_start")))
    assert started.job.gcode_state is GcodeState.PREPARE
    events = step(idle, started)
    assert [type(e) for e in events] == [StateChanged, PrintStarted]
    assert events[1].to_dict()["job"] == "bracket"
