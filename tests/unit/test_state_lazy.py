"""PrinterState's typed parts are built on first read: same values whenever (and whether) they are
read, untouched parts shared between states, `changed`, and no chain of old states kept alive."""

import copy
import dataclasses
import gc
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bambufarm.protocol.report import Report, ReportError, parse_report
from bambufarm.protocol.state import PrinterState, empty_state, merge
from tests.support.reports import P1S_DELTAS, load_report
from tests.unit.test_state_properties import _delta_body, _deltas, _odd_bodies

P1S = "01P00A123456789"
# Every attribute a merge can change, typed parts and plain values alike.
ATTRIBUTES = (*(f.name for f in dataclasses.fields(PrinterState)), "print_error")
PARTS = (
    "job",
    "temperatures",
    "fans",
    "speed",
    "lights",
    "ams",
    "hms",
    "storage",
    "network",
    "nozzle",
    "camera",
)


def push(state: PrinterState, fields: dict[str, Any], msg: int = 1, seq: int = 1) -> PrinterState:
    """Merge a push_status built from `fields`."""
    body = {"command": "push_status", "msg": msg, "sequence_id": str(seq), **fields}
    return merge(state, parse_report(orjson.dumps({"print": body})))


def fixtures(*names: str, start: PrinterState | None = None) -> list[PrinterState]:
    """The state after each named fixture, merged in order, none of them read."""
    state = start if start is not None else empty_state(P1S)
    states = []
    for name in names:
        state = merge(state, parse_report(load_report(name)))
        states.append(state)
    return states


def view(state: PrinterState) -> dict[str, Any]:
    """Every attribute of a state, reading (and so building) all of its parts."""
    return {name: getattr(state, name) for name in ATTRIBUTES}


# --- values do not depend on when parts are read ------------------------------------------


def test_parts_are_the_same_whether_read_after_each_report_or_only_at_the_end() -> None:
    names = ("p1s_full", *P1S_DELTAS, "p1s_delta_job_start", "p1s_trailing_nul", "p1s_latin1")
    eager = []
    state = empty_state(P1S)
    for name in names:
        state = merge(state, parse_report(load_report(name)))
        eager.append(view(state))
    lazy = fixtures(*names)
    # Newest first: reading a late state before the earlier ones must not change anything.
    for index in reversed(range(len(names))):
        assert view(lazy[index]) == eager[index]


def test_parts_from_deltas_equal_parts_from_the_equivalent_full_report() -> None:
    after_deltas = fixtures("p1s_full", "p1s_delta_01_progress", "p1s_delta_02_temps")[-1]
    body: dict[str, Any] = orjson.loads(load_report("p1s_full"))["print"]
    for name in ("p1s_delta_01_progress", "p1s_delta_02_temps"):
        body.update(orjson.loads(load_report(name))["print"])
    from_full = push(empty_state(P1S), body, msg=0, seq=58359)
    for part in PARTS:
        assert getattr(after_deltas, part) == getattr(from_full, part), part
    assert dataclasses.replace(after_deltas, report_count=1) == from_full


@settings(max_examples=200, deadline=None)
@given(st.lists(_odd_bodies, min_size=1, max_size=6), st.randoms(use_true_random=False))
def test_any_reports_read_in_any_order_give_the_values_of_reading_each_at_once(
    bodies: list[dict[str, Any]], rng: Any
) -> None:
    """Odd values keep the previous value even when that previous value was never read."""
    start = merge(empty_state(P1S), parse_report(load_report("p1s_full")))
    eager, lazy = [], []
    eager_state = lazy_state = start
    for body in bodies:
        try:
            report = parse_report(orjson.dumps({"print": body}))
        except ReportError:
            continue  # e.g. an integer orjson cannot write
        eager_state = merge(eager_state, report)
        eager.append(view(eager_state))
        lazy_state = merge(lazy_state, report)
        lazy.append(lazy_state)
    order = list(range(len(lazy)))
    rng.shuffle(order)
    for index in order:
        assert view(lazy[index]) == eager[index]


@settings(max_examples=100, deadline=None)
@given(_deltas)
def test_well_formed_deltas_read_late_equal_deltas_read_at_once(deltas: list[Any]) -> None:
    start = merge(empty_state(P1S), parse_report(load_report("p1s_full")))
    lazy = eager = start
    for seq, changes in enumerate(deltas, start=1):
        lazy = push(lazy, _delta_body(changes), seq=seq)
        eager = push(eager, _delta_body(changes), seq=seq)
        view(eager)
    assert view(lazy) == view(eager)


def test_an_odd_value_keeps_a_previous_value_nobody_read() -> None:
    state = fixtures("p1s_full")[0]
    state = push(state, {"mc_percent": 40, "nozzle_temper": 200.5})
    state = push(state, {"mc_percent": 41})
    state = push(state, {"mc_percent": "abc", "nozzle_temper": "hot"})
    assert state.job.progress == 41
    assert state.temperatures.nozzle == 200.5
    tray = {"ams": {"ams": [{"id": "0", "tray": [{"id": "0", "remain": 50}]}]}}
    state = push(state, tray)
    tray["ams"]["ams"][0]["tray"][0]["remain"] = 150  # out of range: keeps 50
    state = push(state, tray)
    assert state.ams.units[0].trays[0].remain == 50
    assert state.ams.units[0].trays[0].type == "PLA"


def test_ams_mapping_lifetime_does_not_depend_on_reads() -> None:
    finished = push(fixtures("p1s_full")[0], {"gcode_state": "FINISH", "mc_percent": 100})
    started = fixtures("p1s_delta_job_start", start=finished)[0]
    running = push(started, {"gcode_state": "RUNNING"})
    done = push(running, {"gcode_state": "FINISH"})
    reprint = push(done, {"gcode_state": "PREPARE"})  # nothing read along the way
    assert running.job.ams_mapping == (1, 0)
    assert done.job.ams_mapping == (1, 0)
    assert reprint.job.ams_mapping is None


# --- untouched parts are shared -------------------------------------------------------------


@pytest.mark.parametrize("newest_first", [True, False])
def test_an_untouched_part_is_the_same_object_in_both_states(newest_first: bool) -> None:
    before, after = fixtures("p1s_full", "p1s_delta_01_progress")
    if newest_first:
        parts_after = [getattr(after, part) for part in PARTS]
        parts_before = [getattr(before, part) for part in PARTS]
    else:
        parts_before = [getattr(before, part) for part in PARTS]
        parts_after = [getattr(after, part) for part in PARTS]
    for part, old, new in zip(PARTS, parts_before, parts_after, strict=True):
        if part == "job":
            assert new is not old
            assert (old.progress, new.progress) == (37, 38)
        else:
            assert new is old, part


def test_a_part_read_twice_is_built_once() -> None:
    state = fixtures("p1s_full", "p1s_delta_03_tray_change")[-1]
    assert state.ams is state.ams
    assert state.job is state.job


def test_parts_stay_shared_across_a_get_version_reply() -> None:
    pushed = fixtures("p1s_full", "p1s_delta_01_progress")[-1]
    versioned = fixtures("get_version_p1s", start=pushed)[0]
    assert versioned.job is pushed.job
    assert pushed.ams is versioned.ams
    assert versioned.firmware.version == "01.08.00.00"
    assert pushed.firmware.version is None


def test_state_stays_frozen_before_and_after_a_part_is_built() -> None:
    state = fixtures("p1s_full", "p1s_delta_01_progress")[-1]
    with pytest.raises(dataclasses.FrozenInstanceError):
        state.job = state.job  # type: ignore[misc]
    job = state.job
    with pytest.raises(dataclasses.FrozenInstanceError):
        state.job = job  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        del state.ams  # type: ignore[misc]
    assert state.job is job


def test_replace_and_copy_keep_the_typed_view() -> None:
    state = fixtures("p1s_full", "p1s_delta_03_tray_change")[-1]
    copied = copy.copy(state)
    replaced = dataclasses.replace(state, sequence=1)
    assert copied == state
    assert replaced.ams == state.ams
    assert replaced.sequence == 1
    assert replaced.changed == state.changed


# --- changed ----------------------------------------------------------------------------------


def test_changed_names_the_parts_a_delta_touched() -> None:
    full, progress, temps, trays = fixtures("p1s_full", *P1S_DELTAS[:3])
    assert "job" in full.changed
    assert "ams" in full.changed
    assert progress.changed == {"job"}
    assert temps.changed == {"temperatures", "fans", "network", "speed"}
    assert trays.changed == {"ams"}
    assert empty_state(P1S).changed == frozenset()


def test_changed_for_untyped_keys_fun_and_hms() -> None:
    state = fixtures("p1s_full")[0]
    assert push(state, {"xcam": {"print_halt": False}}).changed == frozenset()
    assert push(state, {"fun": "3EC18FFF9CFF"}).changed == {"fun", "developer_mode"}
    assert push(state, {"hms": [], "mc_percent": 1}).changed == {"hms", "job"}


def test_changed_for_a_full_report_lists_only_parts_that_differ() -> None:
    body: dict[str, Any] = orjson.loads(load_report("p1s_full"))["print"]
    state = push(empty_state(P1S), body, msg=0)
    assert push(state, body, msg=0, seq=2).changed == frozenset()
    body["bed_temper"] = 61.0
    body["ams"]["ams"][0]["humidity"] = "2"
    assert push(state, body, msg=0, seq=3).changed == {"temperatures", "ams"}


def test_changed_for_get_version_and_for_both_sections_at_once() -> None:
    state = fixtures("p1s_full")[0]
    reply = orjson.loads(load_report("get_version_p1s"))
    assert merge(state, Report(reply)).changed == {"firmware"}
    both = {"print": {"command": "push_status", "msg": 1, "mc_percent": 90}, **reply}
    assert merge(state, parse_report(orjson.dumps(both))).changed == {"job", "firmware"}


def test_a_report_that_changes_nothing_returns_the_state_itself() -> None:
    state = fixtures("p1s_full", "p1s_delta_01_progress")[-1]
    assert merge(state, parse_report(load_report("ack_gcode_line"))) is state
    assert state.changed == {"job"}  # still the push before: callers test identity first


# --- nothing old stays referenced ---------------------------------------------------------------


def _sequences_reachable(state: PrinterState) -> set[str]:
    """`sequence_id`s of every wire object reachable from `state` (a chain would show many)."""
    seen: set[int] = set()
    todo: list[object] = [state]
    found: set[str] = set()
    while todo:
        item = todo.pop()
        if id(item) in seen or isinstance(item, type):
            continue
        seen.add(id(item))
        if type(item) is dict and isinstance(item.get("sequence_id"), str):
            found.add(item["sequence_id"])
        todo.extend(gc.get_referents(item))
    return found


def test_unread_states_do_not_keep_older_reports_alive() -> None:
    state = fixtures("p1s_full")[0]
    for seq in range(1, 51):
        tray = {"id": "0", "remain": seq}
        state = push(
            state, {"mc_percent": seq, "ams": {"ams": [{"id": "0", "tray": [tray]}]}}, seq=seq
        )
    # This report and the one before (an input of the parts this one touched), nothing older.
    assert _sequences_reachable(state) <= {"49", "50"}
    assert state.job.progress == 50
    assert state.ams.units[0].trays[0].remain == 50
    assert _sequences_reachable(state) == {"50"}  # once built, the previous report is let go
