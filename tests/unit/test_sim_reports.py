"""What the simulated printer publishes: report content per model, full vs delta, merge rules."""

import random
from dataclasses import replace
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bambufarm.protocol.models import MODELS, PrinterModel, ReportMode, model_by_name
from bambufarm.protocol.report import parse_report
from bambufarm.protocol.state import empty_state, merge
from bambufarm.simulator.clock import ManualClock
from bambufarm.simulator.identity import PrinterIdentity, TraySpec, default_identity, make_serial
from bambufarm.simulator.printer import HEARTBEAT_S, SimPrinter
from bambufarm.simulator.quirks import HmsEntry, Quirks, ScenarioError
from bambufarm.simulator.report_builder import ById
from bambufarm.simulator.report_state import ReportState
from tests.support.sim_view import apply_report
from tests.support.threemf_factory import FilamentSpec, PlateSpec, build_gcode_3mf

JOB = "part.gcode.3mf"
ENVELOPE = {"command", "msg", "sequence_id"}
_FILES = {
    JOB: build_gcode_3mf(
        plates=(
            PlateSpec(
                prediction_s=1200,
                layers=40,
                filaments=(FilamentSpec(slot=1, used_g=80.0), FilamentSpec(slot=2, used_g=20.0)),
            ),
        )
    )
}


def make(
    model: str | PrinterModel = "P1S",
    *,
    quirks: Quirks | None = None,
    ip: str = "127.0.0.1",
    seed: int = 3,
) -> tuple[SimPrinter, ManualClock]:
    resolved = model if isinstance(model, PrinterModel) else model_by_name(model)
    clock = ManualClock()
    identity = default_identity(resolved, 2, access_code="abcdefgh", ip=ip)
    printer = SimPrinter(
        identity,
        quirks=quirks or Quirks(),
        read_file=_FILES.get,
        clock=clock,
        rng=random.Random(seed),
    )
    return printer, clock


def decode(payload: bytes) -> dict[str, Any]:
    """A payload as a client sees it, checked against protocol.md §12.7 on the way."""
    message = orjson.loads(payload)
    assert isinstance(message, dict)
    assert message
    assert all(isinstance(value, dict) for value in message.values()), message
    parse_report(payload)  # the manager's parser takes every payload
    return message


def full_of(printer: SimPrinter) -> dict[str, Any]:
    body: dict[str, Any] = decode(printer.full_report())["print"]
    return body


def request(printer: SimPrinter, section: str, command: str, **fields: Any) -> list[bytes]:
    payload = {section: {"command": command, "sequence_id": "1", **fields}}
    return printer.handle_request(orjson.dumps(payload))


# ------------------------------------------------------------------------ per-model content


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.name)
def test_full_report_is_complete_and_typed_as_on_the_wire(model: PrinterModel) -> None:
    printer, _ = make(model)
    full = full_of(printer)
    assert (full["command"], full["msg"]) == ("push_status", 0)
    assert isinstance(full["sequence_id"], str)
    for key in ("mc_print_stage", "gcode_file_prepare_percent", "cooling_fan_speed",
                "wifi_signal", "nozzle_diameter", "fun"):  # fmt: skip
        assert isinstance(full[key], str), key  # strings where the wire uses strings
    for key in ("mc_percent", "mc_remaining_time", "layer_num", "print_error", "home_flag"):
        assert type(full[key]) is int, key
    assert isinstance(full["nozzle_temper"], float)
    assert full["gcode_state"] == "IDLE"
    assert full["sdcard"] is True
    assert (full["home_flag"] >> 8) & 0b11 == 1
    fun = int(full["fun"], 16)
    assert not fun & (1 << 29)  # Developer Mode: unsigned commands accepted
    assert not fun & (1 << 31)  # no port-6000 file tunnel: slicers use FTPS
    assert "ams_mapping" not in full
    units = full["ams"]["ams"]
    assert [u["id"] for u in units] == [str(u.unit_id) for u in printer.identity.ams]
    if model.dual_nozzle:
        assert [slot["id"] for slot in full["vir_slot"]] == ["254", "255"]
        assert len(full["device"]["extruder"]["info"]) == 2
        assert "vt_tray" not in full
    else:
        assert full["vt_tray"]["id"] == "254"


def test_x1c_reports_rtsp_chamber_sensor_and_work_light() -> None:
    full = full_of(make("X1C", ip="10.10.10.81")[0])
    assert full["ipcam"]["rtsp_url"] == "rtsps://10.10.10.81/streaming/live/1"
    assert full["chamber_temper"] == 25.0
    assert {"node": "work_light", "mode": "off"} in full["lights_report"]
    assert full["stg_cur"] == -1
    assert full["net"]["info"][0] == {"ip": 1359612426, "mask": 16777215}  # little-endian


def test_p1s_reports_like_the_protocol_example() -> None:
    full = full_of(make("P1S")[0])
    assert full["chamber_temper"] == 5  # placeholder: no chamber sensor
    assert "rtsp_url" not in full["ipcam"]
    assert full["stg_cur"] == 255
    assert full["lights_report"] == [{"node": "chamber_light", "mode": "on"}]
    tray = full["ams"]["ams"][0]["tray"][0]
    assert (tray["tray_type"], tray["tray_color"], tray["remain"]) == ("PLA", "FFFFFFFF", 82)
    assert (tray["tray_weight"], tray["nozzle_temp_min"]) == ("1000", "190")
    assert tray["tag_uid"] != "0" * 16
    assert full["ams"]["ams"][0]["tray"][3] == {"id": "3"}  # empty slot, legacy form
    assert full["ams"]["tray_exist_bits"] == "7"
    assert full["ams"]["tray_is_bbl_bits"] == "3"


def test_h2d_packs_temperatures_and_lists_external_holders() -> None:
    printer, clock = make("H2D")
    request(printer, "print", "gcode_line", param="M104 S200\nM104 T1 S180\nM140 S60\n")
    clock.advance(600)
    full = full_of(printer)
    right, left = full["device"]["extruder"]["info"]
    assert (right["temp"] >> 16, left["temp"] >> 16) == (200, 180)
    assert abs((right["temp"] & 0xFFFF) - 200) <= 1
    assert full["device"]["bed"]["info"]["temp"] >> 16 == 60
    assert full["nozzle_target_temper"] == 200.0
    assert full["ams"]["ams"][1]["id"] == "128"  # AMS HT
    assert full["ams"]["ams_exist_bits"] == "11"  # unit 0 and AMS HT bit 4 (inferred layout)
    assert full["ams"]["ams"][0]["tray"][3] == {"id": "3", "state": 8}  # extended empty slot
    assert full["percent"] == full["mc_percent"] == 0


def test_secured_quirk_sets_fun_bit_29() -> None:
    full = full_of(make("P1S", quirks=Quirks(secured=True))[0])
    assert int(full["fun"], 16) & (1 << 29)


# ------------------------------------------------------------------------ full vs delta


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.name)
def test_full_every_tick_for_x1_family_deltas_for_others(model: PrinterModel) -> None:
    printer, clock = make(model)
    request(printer, "print", "gcode_line", param="M140 S60\n")
    messages = []
    for _ in range(5):
        clock.advance(1)
        messages += [decode(p)["print"] for p in printer.tick()]
    assert len(messages) == 5  # 1 Hz while something changes
    expected = 0 if model.report_mode is ReportMode.FULL else 1
    assert {m["msg"] for m in messages} == {expected}
    if expected == 1:
        assert all("ams" not in m and "gcode_state" not in m for m in messages)


def test_idle_delta_printer_only_sends_a_heartbeat() -> None:
    printer, clock = make("A1")
    printer.full_report()
    sent = []
    for _ in range(20):
        clock.advance(1)
        sent += [decode(p)["print"] for p in printer.tick()]
    assert len(sent) == int(20 // HEARTBEAT_S)
    assert all(set(m) <= ENVELOPE | {"wifi_signal"} for m in sent)


def test_running_delta_printer_reports_every_second() -> None:
    printer, clock = make("P1S")
    request(printer, "print", "project_file", url=f"ftp:///{JOB}", ams_mapping=[0, 1])
    count = 0
    for _ in range(30):
        clock.advance(1)
        count += len(printer.tick())
    assert count == 30


def test_a_delta_contains_only_changed_keys() -> None:
    printer, clock = make("P1S")
    clock.advance(1)
    printer.tick()
    before = full_of(printer)
    clock.advance(1)
    assert printer.tick() == []  # nothing changed, heartbeat not due
    (ack, delta_payload) = request(printer, "system", "ledctrl", led_node="chamber_light",
                                   led_mode="off")  # fmt: skip
    assert decode(ack)["system"]["result"] == "success"
    delta = decode(delta_payload)["print"]
    after = full_of(printer)
    changed = {k for k in after if k not in ENVELOPE and after[k] != before.get(k)}
    assert set(delta) - ENVELOPE == changed == {"lights_report"}


def test_tray_deltas_name_units_and_trays_by_id() -> None:
    state = ReportState({"ams": {"ams": [{"id": "0", "tray": [{"id": "0", "remain": 5},
                                                             {"id": "1", "remain": 9}]}],
                                 "tray_now": "255"}, "x": 1})  # fmt: skip
    path = ("ams", "ams", ById("0"), "tray", ById("1"), "remain")
    assert state.set(path, 8)
    assert not state.set(path, 8)  # unchanged: not recorded again
    state.set(("ams", "tray_now"), "1")
    delta = orjson.loads(state.delta(7))["print"]
    assert delta["ams"] == {"ams": [{"id": "0", "tray": [{"id": "1", "remain": 8}]}],
                            "tray_now": "1"}  # fmt: skip
    assert not state.dirty
    assert orjson.loads(state.delta(8))["print"] == {
        "command": "push_status", "msg": 1, "sequence_id": "8"
    }  # fmt: skip


def test_full_report_is_cached_until_something_changes() -> None:
    state = ReportState({"a": 1})
    assert orjson.loads(state.full(1)) == {
        "print": {"command": "push_status", "msg": 0, "sequence_id": "1", "a": 1}
    }
    state.put("a", 2)
    assert orjson.loads(state.full(2))["print"]["a"] == 2
    assert orjson.loads(state.full(3))["print"]["sequence_id"] == "3"
    with pytest.raises(LookupError, match="id '9'"):
        ReportState({"l": [{"id": "1"}]}).set(("l", ById("9"), "x"), 1)


# ------------------------------------------------------------------------ everything parses


@pytest.mark.parametrize("model", ["X1C", "P1S", "A1", "H2D"])
def test_every_payload_of_a_whole_job_is_an_object_of_objects(model: str) -> None:
    printer, clock = make(model)
    payloads = [printer.full_report()]
    payloads += printer.handle_request(
        b'{"pushing":{"command":"pushall"},"info":{"command":"get_version","sequence_id":"1"}}'
    )
    payloads += request(printer, "print", "project_file", url=f"ftp:///{JOB}",
                        ams_mapping=[0, 1], bed_leveling=True)  # fmt: skip
    for step in range(400):
        clock.advance(5)
        payloads += printer.tick()
        if step == 50:
            payloads += request(printer, "print", "pause")
            payloads += request(printer, "print", "resume")
            payloads += request(printer, "print", "print_speed", param="4")
            payloads += request(printer, "print", "bogus")
    assert printer.gcode_state == "FINISH"
    for payload in payloads:
        decode(payload)


# ------------------------------------------------------------------------ the manager's merge


Action = tuple[str, int]
ACTIONS = st.lists(
    st.tuples(
        st.sampled_from(
            ["wait", "wait", "heat", "light", "pause", "resume", "speed", "runout",
             "hms", "clear", "stop", "start", "filament", "pushall"]
        ),
        st.integers(0, 400),
    ),
    max_size=25,
)  # fmt: skip


def _act(printer: SimPrinter, clock: ManualClock, action: Action) -> list[bytes]:
    kind, n = action
    if kind == "wait":
        out: list[bytes] = []
        for _ in range(n % 40 + 1):
            clock.advance(1 + n % 7)
            out += printer.tick()
        return out
    commands: dict[str, tuple[str, str, dict[str, Any]]] = {
        "heat": ("print", "gcode_line", {"param": f"M104 S{n % 260}\nM140 S{n % 100}\n"}),
        "light": ("system", "ledctrl", {"led_node": "chamber_light",
                                        "led_mode": "on" if n % 2 else "off"}),
        "pause": ("print", "pause", {}),
        "resume": ("print", "resume", {}),
        "speed": ("print", "print_speed", {"param": str(n % 4 + 1)}),
        "stop": ("print", "stop", {}),
        "start": ("print", "project_file", {"url": f"ftp:///{JOB}", "ams_mapping": [n % 3, 1]}),
        "filament": ("print", "ams_filament_setting", {"ams_id": 0, "tray_id": n % 4,
                                                       "tray_type": "PETG" if n % 2 else "",
                                                       "tray_color": "00FF00FF"}),
        "pushall": ("pushing", "pushall", {}),
    }  # fmt: skip
    if kind in commands:
        section, command, fields = commands[kind]
        return request(printer, section, command, **fields)
    if kind == "runout":
        printer.filament_runout(n % 4)
    elif kind == "hms":
        printer.inject_hms(0x0300_0100 + n, 0x0001_0007)
    elif kind == "clear":
        printer.clear_hms()
    return []


def _comparable(raw: Any) -> dict[str, Any]:
    return {k: v for k, v in raw.items() if k not in ENVELOPE | {"ams_mapping"}}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    model=st.sampled_from(["P1S", "A1", "H2D", "P2S", "X1C"]),
    actions=ACTIONS,
    seed=st.integers(0, 1000),
)
def test_merging_deltas_equals_the_next_full_report(
    model: str, actions: list[Action], seed: int
) -> None:
    printer, clock = make(model, seed=seed)
    view = orjson.loads(printer.full_report())["print"]
    # A final tick publishes what faults injected without a command changed.
    for action in [*actions, ("wait", 0)]:
        for payload in _act(printer, clock, action):
            body = decode(payload).get("print")
            if body is not None and body.get("command") == "push_status":
                view = apply_report(view, body)
    expected = orjson.loads(printer.full_report())["print"]
    assert _comparable(view) == _comparable(expected)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    model=st.sampled_from(["P1S", "A1", "H2D", "P2S", "X1C"]),
    actions=ACTIONS,
    seed=st.integers(0, 1000),
)
def test_manager_merge_of_deltas_equals_merging_the_next_full_report(
    model: str, actions: list[Action], seed: int
) -> None:
    printer, clock = make(model, seed=seed)
    state = merge(empty_state(printer.identity.serial), parse_report(printer.full_report()))
    for action in [*actions, ("wait", 0)]:
        for payload in _act(printer, clock, action):
            state = merge(state, parse_report(payload))
    fresh = parse_report(printer.full_report())
    resynced = merge(state, fresh)
    assert _comparable(state.raw) == _comparable(fresh.sections["print"])
    # The typed view agrees too; the job may keep the ams_mapping it saw at job start.
    for part in ("temperatures", "fans", "speed", "lights", "ams", "hms", "storage", "camera"):
        assert getattr(state, part) == getattr(resynced, part), part
    assert replace(state.job, ams_mapping=None) == replace(resynced.job, ams_mapping=None)


# ------------------------------------------------------------------------ identity and quirks


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.name)
def test_serials_use_each_models_prefix(model: PrinterModel) -> None:
    serial = make_serial(model, 42)
    assert serial[:3] == model.serial_prefix
    assert len(serial) == 15
    assert serial.isalnum()


def test_identity_refuses_inconsistent_values() -> None:
    p1s = model_by_name("P1S")
    good = {"serial": make_serial(p1s, 1), "model": p1s, "name": "x", "access_code": "12345678"}
    assert PrinterIdentity(**good).firmware == "01.08.00.00"
    assert "12345678" not in repr(PrinterIdentity(**good))
    bad_values: list[dict[str, Any]] = [
        {"serial": make_serial(model_by_name("X1C"), 1)},
        {"serial": "01P"},
        {"access_code": "short"},
        {"firmware": "1.2.3"},
        {"ip": "printer.local"},
        {"external": (TraySpec(), TraySpec())},
    ]
    for bad in bad_values:
        with pytest.raises(ScenarioError):
            PrinterIdentity(**{**good, **bad})
    with pytest.raises(ScenarioError, match="colour"):
        TraySpec("PLA", "red")
    assert TraySpec("PLA", "#12ab34").colour == "12AB34FF"


def test_quirks_from_a_scenario_mapping() -> None:
    quirks = Quirks.from_dict(
        {
            "secured": True,
            "max_mqtt_clients": 4,
            "hms": ["HMS_0700_2000_0002_0001", {"attr": 1, "code": 2}],
            "print_error": "0300_400C",
            "time_scale": 60,
        }
    )
    assert quirks.hms == (HmsEntry(0x07002000, 0x00020001), HmsEntry(1, 2))
    assert quirks.hms[0].text == "0700_2000_0002_0001"
    assert quirks.print_error == 0x0300400C
    assert quirks.session_reuse_for(model_by_name("P1S")) is True
    assert quirks.session_reuse_for(model_by_name("H2D")) is False
    assert Quirks(ftps_require_session_reuse=False).session_reuse_for(model_by_name("X1C")) is False


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"secure": True}, "unknown quirk"),
        ({"secured": "yes"}, "true or false"),
        ({"max_mqtt_clients": 0}, "positive integer"),
        ({"ftps_write_rate": 1.5}, "positive integer"),
        ({"hms": "0700_2000_0002_0001"}, "must be a list"),
        ({"hms": ["nonsense"]}, "four groups"),
        ({"hms": [{"attr": -1, "code": 0}]}, "unsigned"),
        ({"print_error": "zz"}, "hex digits"),
        ({"time_scale": 0}, "positive number"),
    ],
)
def test_bad_quirks_are_refused_with_a_clear_message(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ScenarioError, match=message):
        Quirks.from_dict(data)
