"""Properties of merge: deltas add up to the full report, inputs are never modified, odd values
never break a merge."""

import copy
import dataclasses
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from bambufarm.protocol.report import ReportError, parse_report
from bambufarm.protocol.state import PrinterState, empty_state, merge
from tests.support.reports import load_report

P1S = "01P00A123456789"
_P1S_FULL: dict[str, Any] = orjson.loads(load_report("p1s_full"))["print"]

# A change is (path, value): the path walks the `print` object; ("tray", n, key) addresses
# AMS 0's tray n, ("tray_clear", n) empties it the way printers do ({"id": "n"}).
Change = tuple[tuple[Any, ...], Any]

_temps = st.floats(min_value=-20, max_value=400, allow_nan=False).map(lambda x: round(x, 1))
_fan = st.integers(0, 15).map(str)
_uint32 = st.integers(0, 2**32 - 1)
_light_nodes = st.sampled_from(["chamber_light", "work_light"])
_light_modes = st.sampled_from(["on", "off", "flashing"])
_top_level: dict[str, st.SearchStrategy[Any]] = {
    "mc_percent": st.integers(0, 100),
    "mc_remaining_time": st.integers(0, 5000),
    "layer_num": st.integers(0, 500),
    "total_layer_num": st.integers(0, 500),
    "gcode_state": st.sampled_from(["IDLE", "PREPARE", "RUNNING", "PAUSE", "FINISH", "X"]),
    "subtask_name": st.text(max_size=12),
    "gcode_file": st.text(max_size=12),
    "stg_cur": st.integers(-1, 255),
    "stg": st.lists(st.integers(0, 77), max_size=5),
    "mc_print_stage": st.sampled_from(["1", "2"]),
    "print_error": st.sampled_from([0, 50348044, 117473286]),
    "nozzle_temper": _temps,
    "nozzle_target_temper": _temps,
    "bed_temper": _temps.map(str),
    "bed_target_temper": _temps,
    "chamber_temper": _temps,
    "cooling_fan_speed": _fan,
    "big_fan1_speed": _fan,
    "big_fan2_speed": _fan,
    "heatbreak_fan_speed": _fan,
    "spd_lvl": st.integers(1, 4),
    "spd_mag": st.integers(50, 166),
    "wifi_signal": st.integers(-90, -20).map(lambda dbm: f"{dbm}dBm"),
    "sdcard": st.booleans(),
    "home_flag": st.integers(-(2**31), 2**31 - 1),
    "fun": st.sampled_from(["3EC1AFFF9CFF", "3EC18FFF9CFF"]),
    "s_obj": st.lists(st.integers(0, 2000), max_size=3),
    "nozzle_diameter": st.sampled_from(["0.2", "0.4", "0.6"]),
    "hms": st.lists(st.fixed_dictionaries({"attr": _uint32, "code": _uint32}), max_size=3),
    "lights_report": st.lists(
        st.fixed_dictionaries({"node": _light_nodes, "mode": _light_modes}),
        max_size=2,
        unique_by=lambda light: light["node"],
    ),
}
_tray_fields: dict[str, st.SearchStrategy[Any]] = {
    "remain": st.integers(-1, 100),
    "tray_type": st.sampled_from(["PLA", "PETG", "ABS", ""]),
    "tray_color": st.sampled_from(["FFFFFFFF", "161616FF", "D32F2FFF"]),
    "tray_weight": st.sampled_from(["0", "250", "1000"]),
    "nozzle_temp_min": st.integers(150, 300).map(str),
    "k": st.floats(0, 0.1, allow_nan=False),
    "state": st.sampled_from([3, 11]),
}
_ams_fields: dict[str, st.SearchStrategy[Any]] = {
    "tray_now": st.sampled_from(["0", "1", "2", "3", "254", "255"]),
    "tray_exist_bits": st.sampled_from(["0", "3", "f"]),
    "version": st.integers(0, 1000),
}


@st.composite
def _change(draw: st.DrawFn) -> Change:
    """One field of the P1S report set to a new, well-formed value."""
    kind = draw(st.sampled_from(["top", "top", "top", "tray", "tray_clear", "unit", "ams", "vt"]))
    if kind == "top":
        key = draw(st.sampled_from(sorted(_top_level)))
        return (key,), draw(_top_level[key])
    if kind == "tray":
        key = draw(st.sampled_from(sorted(_tray_fields)))
        return ("tray", draw(st.integers(0, 3)), key), draw(_tray_fields[key])
    if kind == "tray_clear":
        return ("tray_clear", draw(st.integers(0, 3))), None
    if kind == "unit":
        key = draw(st.sampled_from(["humidity", "temp"]))
        value = draw(st.integers(1, 5).map(str) if key == "humidity" else _temps.map(str))
        return ("unit", key), value
    if kind == "ams":
        key = draw(st.sampled_from(sorted(_ams_fields)))
        return ("ams", key), draw(_ams_fields[key])
    key = draw(st.sampled_from(["tray_type", "remain", "tray_color"]))
    return ("vt", key), draw(_tray_fields[key])


def _delta_body(changes: list[Change]) -> dict[str, Any]:
    """A delta `print` object carrying `changes`, nested the way printers nest them."""
    body: dict[str, Any] = {}
    trays: dict[str, dict[str, Any]] = {}
    unit: dict[str, Any] = {}
    for path, value in changes:
        if path[0] == "tray":
            trays.setdefault(str(path[1]), {"id": str(path[1])})[path[2]] = value
        elif path[0] == "tray_clear":
            trays[str(path[1])] = {"id": str(path[1])}
        elif path[0] == "unit":
            unit[path[1]] = value
        elif path[0] == "ams":
            body.setdefault("ams", {})[path[1]] = value
        elif path[0] == "vt":
            body.setdefault("vt_tray", {})[path[1]] = value
        else:
            body[path[0]] = value
    if trays or unit:
        ams_unit = {"id": "0", **unit}
        if trays:
            ams_unit["tray"] = list(trays.values())
        body.setdefault("ams", {})["ams"] = [ams_unit]
    return body


def _apply(truth: dict[str, Any], delta: dict[str, Any]) -> None:
    """What the printer's own full object looks like after `delta` (mutates `truth`).

    Written from the protocol's description of a delta, not from the merge code: keys replace,
    except that AMS unit 0, its trays and `vt_tray` are updated field by field, and a tray sent
    as only its id (and state) is the whole tray (protocol.md §1.4, §1.5.7).
    """
    for key, value in delta.items():
        if key == "vt_tray":
            truth["vt_tray"].update(value)
        elif key != "ams":
            truth[key] = value
    for key, value in delta.get("ams", {}).items():
        if key != "ams":
            truth["ams"][key] = value
            continue
        unit = truth["ams"]["ams"][0]
        for field, field_value in value[0].items():
            if field != "tray":
                unit[field] = field_value
        for tray in value[0].get("tray", []):
            slot = int(tray["id"])
            if set(tray) <= {"id", "state"}:
                unit["tray"][slot] = dict(tray)
            else:
                unit["tray"][slot].update(tray)


def _push(body: dict[str, Any], msg: int, sequence: int) -> bytes:
    return orjson.dumps(
        {"print": {**body, "command": "push_status", "msg": msg, "sequence_id": str(sequence)}}
    )


def _typed(state: PrinterState) -> PrinterState:
    """The state without its push counter, which differs by design (deltas are pushes too)."""
    return dataclasses.replace(state, report_count=0)


# A delta changes 1-6 fields; a run is up to 8 deltas.
_deltas = st.lists(st.lists(_change(), min_size=1, max_size=6), min_size=1, max_size=8)


@settings(max_examples=300, deadline=None)
@given(_deltas)
def test_full_then_deltas_equals_the_final_full_report(deltas: list[list[Change]]) -> None:
    truth = copy.deepcopy(_P1S_FULL)
    state = merge(empty_state(P1S), parse_report(_push(truth, 0, 100)))
    for sequence, changes in enumerate(deltas, start=101):
        delta = _delta_body(changes)
        state = merge(state, parse_report(_push(delta, 1, sequence)))
        _apply(truth, copy.deepcopy(delta))
    final = merge(empty_state(P1S), parse_report(_push(truth, 0, 100 + len(deltas))))
    assert _typed(state) == _typed(final)
    assert {**state.raw, "msg": 0} == final.raw


def _snapshot(state: PrinterState) -> tuple[Any, ...]:
    """Everything reachable from a state, deep-copied, to compare after a merge."""
    return (copy.deepcopy(dict(state.raw)), repr(state))


@settings(max_examples=200, deadline=None)
@given(_deltas)
def test_merge_never_modifies_its_input_state_or_report(deltas: list[list[Change]]) -> None:
    state = merge(empty_state(P1S), parse_report(_push(_P1S_FULL, 0, 1)))
    for changes in deltas:
        report = parse_report(_push(_delta_body(changes), 1, 2))
        before_state = _snapshot(state)
        before_report = copy.deepcopy(dict(report.sections))
        merged = merge(state, report)
        assert _snapshot(state) == before_state
        assert dict(report.sections) == before_report
        state = merged
    assert orjson.loads(load_report("p1s_full"))["print"] == _P1S_FULL


_json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6)
)
_json_values = st.recursive(
    _json_scalars,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=12,
)
# Known keys at every level that matters, plus a few unknown ones.
_keys = st.sampled_from(
    [
        *_top_level,
        "ams",
        "vt_tray",
        "vir_slot",
        "device",
        "net",
        "ipcam",
        "storage",
        "percent",
        "remain_time",
        "file",
        "ams_mapping",
        "ams_status",
        "msg",
        "command",
        "sequence_id",
        "x",
    ]
)
_odd_trays = st.lists(
    st.dictionaries(st.sampled_from(["id", *_tray_fields, "tray_uuid", "tag_uid"]), _json_values),
    max_size=3,
)
_odd_units = st.lists(
    st.fixed_dictionaries(
        {},
        optional={
            "id": st.sampled_from(["0", "1", 0, "x", None]),
            "humidity": _json_values,
            "temp": _json_values,
            "tray": _odd_trays | _json_values,
        },
    ),
    max_size=3,
)
_odd_ams = st.fixed_dictionaries(
    {}, optional={"ams": _odd_units | _json_values, **dict.fromkeys(_ams_fields, _json_values)}
)
_odd_bodies = st.dictionaries(
    _keys, _json_values | _odd_ams | st.lists(_json_values, max_size=3), max_size=6
)


@settings(max_examples=400, deadline=None)
@given(st.lists(_odd_bodies, min_size=1, max_size=4), st.sampled_from(["p1s_full", "h2d_full"]))
def test_any_json_in_any_field_never_breaks_a_merge(
    bodies: list[dict[str, Any]], start: str
) -> None:
    state = merge(empty_state(P1S), parse_report(load_report(start)))
    for body in bodies:
        try:
            report = parse_report(orjson.dumps({"print": body}))
        except ReportError:
            continue  # e.g. an integer orjson cannot write; not what this property is about
        before = _snapshot(state)
        merged = merge(state, report)
        assert _snapshot(state) == before
        assert isinstance(merged, PrinterState)
        state = merged


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(sorted(_top_level)), _json_values)
def test_an_odd_value_touches_only_its_own_part(key: str, value: object) -> None:
    state = merge(empty_state(P1S), parse_report(load_report("p1s_full")))
    body = {"command": "push_status", "msg": 1, key: value}
    merged = merge(state, parse_report(orjson.dumps({"print": body})))
    assert merged.ams is state.ams or key in ("ams", "vt_tray")
    unchanged = [
        name
        for name in ("temperatures", "fans", "speed", "storage", "network", "nozzle", "camera")
        if getattr(merged, name) is getattr(state, name)
    ]
    assert len(unchanged) >= 6  # one key feeds one part at most
