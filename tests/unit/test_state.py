"""PrinterState from the report fixtures: full reports, the P1S delta sequence, merge rules."""

import dataclasses
from typing import Any

import orjson
import pytest

from bambufarm.protocol.report import Report, parse_report
from bambufarm.protocol.state import (
    GcodeState,
    PrinterState,
    SdState,
    empty_state,
    merge,
)
from tests.support.reports import P1S_DELTAS, load_report

P1S = "01P00A123456789"


def state_of(*names: str, start: PrinterState | None = None) -> PrinterState:
    """Merge the named fixtures, in order, into `start` (or an empty P1S state)."""
    state = start if start is not None else empty_state(P1S)
    for name in names:
        state = merge(state, parse_report(load_report(name)))
    return state


def push(state: PrinterState, fields: dict[str, Any], msg: int = 1) -> PrinterState:
    """Merge a push_status built from `fields`."""
    body = {"command": "push_status", "msg": msg, "sequence_id": "1", **fields}
    return merge(state, parse_report(orjson.dumps({"print": body})))


def fixture_body(name: str) -> dict[str, Any]:
    """The `print` object of a fixture, as a fresh dict to modify."""
    body: dict[str, Any] = orjson.loads(load_report(name))["print"]
    return body


# --- empty state -------------------------------------------------------------------------


def test_empty_state_knows_nothing() -> None:
    state = empty_state(P1S)
    assert state.serial == P1S
    assert state.job.gcode_state is GcodeState.UNKNOWN
    assert state.job.progress is None
    assert state.temperatures.nozzle is None
    assert state.ams.units == ()
    assert state.hms == ()
    assert state.lights == {}
    assert state.storage.sd_state is SdState.UNKNOWN
    assert state.developer_mode is None
    assert state.firmware.version is None
    assert state.sequence is None
    assert state.report_count == 0
    assert state.raw == {}


def test_state_is_immutable() -> None:
    state = state_of("p1s_full")
    with pytest.raises(dataclasses.FrozenInstanceError):
        state.serial = "x"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        state.job.progress = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        state.lights["chamber_light"] = "off"  # type: ignore[index]


# --- P1S full report (protocol.md §1.5.7) ----------------------------------------------------


def test_p1s_full_job() -> None:
    job = state_of("p1s_full").job
    assert job.gcode_state is GcodeState.RUNNING
    assert job.busy
    assert job.file == "benchy.gcode.3mf"
    assert job.gcode_file == "benchy.gcode.3mf"
    assert job.subtask_name == "benchy"
    assert job.progress == 37
    assert job.remaining_minutes == 83
    assert (job.layer, job.total_layers) == (52, 140)
    assert job.print_stage == 2
    assert job.stage == 0
    assert job.stages == (2, 14, 1)
    assert job.print_type == "local"
    assert (job.task_id, job.subtask_id, job.project_id, job.profile_id) == ("0", "0", "0", "0")
    assert job.gcode_start_time == 1716200000
    assert job.prepare_percent == 100
    assert job.print_error == 0
    assert job.skipped_objects == ()
    assert job.ams_mapping is None


def test_p1s_full_temperatures_fans_speed_lights() -> None:
    state = state_of("p1s_full")
    temps = state.temperatures
    assert (temps.nozzle, temps.nozzle_target) == (219.8, 220.0)
    assert (temps.bed, temps.bed_target) == (60.1, 60.0)
    assert temps.chamber == 5.0
    assert temps.extruders == ()
    # 0-15 wire scale as percent: 15 -> 100, 10 -> 67.
    assert (state.fans.part, state.fans.aux, state.fans.chamber, state.fans.heatbreak) == (
        100,
        0,
        67,
        100,
    )
    assert (state.speed.level, state.speed.magnitude) == (2, 100)
    assert state.lights == {"chamber_light": "on"}


def test_p1s_full_ams() -> None:
    ams = state_of("p1s_full").ams
    assert [unit.id for unit in ams.units] == [0]
    unit = ams.units[0]
    assert unit.humidity == 4
    assert unit.humidity_level == 2  # wire index 4 is the screen's level 2 (6 - 4)
    assert unit.humidity_raw is None
    assert unit.temp == 24.1
    assert not unit.is_ams_ht
    assert [tray.id for tray in unit.trays] == [0, 1, 2, 3]
    pla = unit.trays[0]
    assert pla.type == "PLA"
    assert pla.sub_brand == "PLA Basic"
    assert pla.info_idx == "GFA00"
    assert pla.id_name == "A00-W1"
    assert pla.color == "FFFFFFFF"
    assert pla.weight_g == 1000
    assert pla.diameter == 1.75
    assert pla.remain == 82
    assert pla.tag_uid == "DE6CF07300000100"
    assert pla.tray_uuid == "5F3D8925633343C29FB9A97FA9125971"
    assert pla.spool_uuid == "5F3D8925633343C29FB9A97FA9125971"
    assert (pla.nozzle_temp_min, pla.nozzle_temp_max) == (190, 230)
    assert pla.k == 0.02
    assert pla.cali_idx == -1
    assert pla.loaded
    assert pla.has_rfid
    petg = unit.trays[1]
    assert petg.type == "PETG"
    assert petg.remain == -1
    assert petg.weight_g == 0
    assert petg.diameter == 0.0
    assert not petg.has_rfid
    assert petg.spool_uuid is None
    empty = unit.trays[2]
    assert not empty.loaded
    assert (empty.type, empty.color, empty.remain, empty.weight_g) == ("", "", -1, None)
    assert (ams.tray_now, ams.tray_pre, ams.tray_tar) == (0, 0, 0)
    assert ams.ams_exist_bits == 0b1
    assert ams.tray_exist_bits == 0b11
    assert ams.tray_is_bbl_bits == 0b1
    assert ams.tray_read_done_bits == 0b11
    assert ams.status == 0
    assert ams.version == 89
    assert ams.active_tray is pla
    assert ams.tray(1) is petg
    assert ams.tray(9) is None
    [external] = ams.external
    assert external.id == 254
    assert external.color == "00000000"
    assert not external.loaded
    assert ams.tray(254) is external
    assert ams.tray(255) is external  # one holder answers to either external id


def test_p1s_full_storage_network_and_identity() -> None:
    state = state_of("p1s_full")
    assert state.storage.sdcard is True
    assert state.storage.sd_state is SdState.NORMAL  # home_flag 224478464, bits 8-9 = 1
    assert (state.storage.free, state.storage.total) == (None, None)
    assert state.network.wifi_dbm == -53
    assert state.network.ip == "10.10.10.81"  # 1359612426 little-endian
    assert state.nozzle.diameter == 0.4
    assert state.nozzle.type == "hardened_steel"
    assert state.camera.rtsp_url is None
    assert state.camera.recording is True
    assert state.camera.timelapse is False
    assert state.fun is None
    assert state.developer_mode is None
    assert state.hms == ()
    assert state.print_error == 0
    assert state.sequence == 58357
    assert state.report_count == 1
    assert state.raw["lifecycle"] == "product"  # untyped fields stay reachable


# --- the P1S delta sequence ----------------------------------------------------------------


def test_progress_delta_changes_only_the_job() -> None:
    before = state_of("p1s_full")
    after = state_of("p1s_delta_01_progress", start=before)
    assert (after.job.progress, after.job.remaining_minutes, after.job.layer) == (38, 81, 54)
    assert after.job.total_layers == 140
    assert after.job.subtask_name == "benchy"
    assert after.sequence == 58358
    assert after.report_count == 2
    # Parts the delta did not touch are the very same objects (copy-on-write).
    assert after.temperatures is before.temperatures
    assert after.ams is before.ams
    assert after.raw["ams"] is before.raw["ams"]
    assert before.job.progress == 37


def test_temperature_delta_with_numbers_as_strings() -> None:
    state = state_of("p1s_full", "p1s_delta_01_progress", "p1s_delta_02_temps")
    assert state.temperatures.nozzle == 220.4
    assert state.temperatures.bed == 59.9  # sent as "59.9"
    assert state.temperatures.nozzle_target == 220.0
    assert state.fans.part == 80  # "12" of 15
    assert state.fans.chamber == 0
    assert state.fans.heatbreak == 100
    assert state.network.wifi_dbm == -61
    assert state.network.ip == "10.10.10.81"
    assert (state.speed.level, state.speed.magnitude) == (3, 124)


def test_tray_change_delta_merges_trays_by_id() -> None:
    before = state_of("p1s_full", *P1S_DELTAS[:2])
    state = state_of("p1s_delta_03_tray_change", start=before)
    unit = state.ams.units[0]
    assert (unit.humidity, unit.humidity_level) == (3, 3)
    assert unit.temp == 24.1
    pla = unit.trays[0]
    assert pla.remain == 79
    assert pla.type == "PLA"  # the delta only sent remain: the rest is kept
    assert pla.tray_uuid == "5F3D8925633343C29FB9A97FA9125971"
    abs_tray = unit.trays[2]
    assert abs_tray.type == "ABS"
    assert abs_tray.info_idx == "GFB99"
    assert abs_tray.color == "D32F2FFF"
    assert (abs_tray.nozzle_temp_min, abs_tray.nozzle_temp_max) == (240, 270)
    assert abs_tray.k == 0.025
    assert unit.trays[1] is before.ams.units[0].trays[1]  # untouched tray not rebuilt
    assert unit.trays[3] is before.ams.units[0].trays[3]
    assert (state.ams.tray_now, state.ams.tray_pre, state.ams.tray_tar) == (2, 0, 2)
    assert state.ams.active_tray is abs_tray
    assert state.ams.tray_exist_bits == 0b111
    assert state.ams.status == 256
    assert state.ams.version == 90
    assert state.ams.external == before.ams.external


def test_tray_holding_only_its_id_clears_the_metadata() -> None:
    state = state_of("p1s_full", *P1S_DELTAS[:4])
    cleared = state.ams.units[0].trays[2]
    assert cleared.id == 2
    assert not cleared.loaded
    assert (cleared.type, cleared.color, cleared.tray_uuid) == ("", "", "")
    assert cleared.remain == -1
    assert cleared.k is None
    assert state.raw["ams"]["ams"][0]["tray"][2] == {"id": "2"}
    assert state.ams.units[0].trays[0].remain == 79
    assert (state.ams.tray_now, state.ams.tray_pre) == (0, 2)
    assert state.ams.tray_exist_bits == 0b11


def test_id_and_state_only_tray_is_also_a_clear() -> None:
    state = push(
        state_of("p1s_full"), {"ams": {"ams": [{"id": "0", "tray": [{"id": "0", "state": 8}]}]}}
    )
    tray = state.ams.units[0].trays[0]
    assert tray.state == 8
    assert tray.type == ""
    assert tray.remain == -1


def test_hms_appears_and_clears() -> None:
    paused = state_of("p1s_full", *P1S_DELTAS[:5])
    assert paused.job.gcode_state is GcodeState.PAUSE
    assert paused.job.stage == 6
    assert paused.print_error == 50364437
    assert paused.hms == ((117448704, 131073), (201327360, 196612))
    resumed = state_of("p1s_delta_06_hms_cleared", start=paused)
    assert resumed.job.gcode_state is GcodeState.RUNNING
    assert resumed.hms == ()
    assert resumed.print_error == 0
    assert resumed.lights == {"chamber_light": "off"}
    assert resumed.sequence == 58363
    assert resumed.report_count == 7


def test_nul_and_latin1_deltas_merge() -> None:
    state = state_of("p1s_full", "p1s_trailing_nul", "p1s_latin1")
    assert state.job.progress == 41
    assert state.job.remaining_minutes == 76
    assert state.job.subtask_name == "pièce_démo_über"
    assert state.sequence == 58365


def test_delta_before_any_full_report() -> None:
    state = state_of("p1s_delta_05_hms")
    assert state.job.gcode_state is GcodeState.PAUSE
    assert state.hms == ((117448704, 131073), (201327360, 196612))
    assert state.temperatures.nozzle is None


# --- other models ---------------------------------------------------------------------------


def test_x1c_full_report() -> None:
    state = state_of("x1c_full", start=empty_state("00M09A123456789"))
    assert state.job.file == "enclosure_lid.gcode.3mf"
    assert state.job.gcode_file == "/data/Metadata/plate_1.gcode"
    assert state.job.skipped_objects == (412, 518)
    assert state.temperatures.chamber == 41.5
    assert state.lights == {"chamber_light": "on", "work_light": "flashing"}
    assert state.camera.rtsp_url == "rtsps://192.168.1.50:322/streaming/live/1"
    assert state.camera.resolution == "1080p"
    assert state.camera.timelapse is True
    assert state.fun == "3EC18FFF9CFF"
    assert state.developer_mode is True  # bit 29 clear
    assert state.storage.sd_state is SdState.NORMAL  # from a negative (int32) home_flag
    assert (state.storage.free, state.storage.total) == (25312, 29818)
    assert state.network.ip == "192.168.1.50"
    assert state.network.wifi_dbm == -48
    assert state.fans.part == 40  # "6" of 15
    [external] = state.ams.external
    assert external.id == 255
    assert external.type == "PLA"
    assert external.info_idx == "GFL99"


def test_a1_with_ams_lite_and_developer_mode_off() -> None:
    state = state_of("a1_ams_lite_full", start=empty_state("039000123456789"))
    assert state.job.gcode_state is GcodeState.FINISH
    assert not state.job.busy
    assert state.job.progress == 100
    assert state.job.stage == 255
    assert state.temperatures.bed == 35.0  # "35.0"
    assert state.temperatures.bed_target == 0.0
    assert state.fans.heatbreak == 47  # "7" of 15, rounded
    assert (state.speed.level, state.speed.magnitude) == (1, 50)
    assert state.developer_mode is False  # fun 3EC1AFFF9CFF has bit 29 set
    assert state.fun == "3EC1AFFF9CFF"
    assert state.network.ip == "10.0.0.23"
    trays = state.ams.units[0].trays
    assert [tray.type for tray in trays] == ["PLA", "PLA", "PLA", ""]
    assert state.ams.tray_now == 255
    assert state.ams.active_tray is None
    external = state.ams.tray(254)
    assert external is not None
    assert external.type == "PETG"
    assert external.color == "FFFFFF80"
    assert external.k == 0.04


def test_x1c_with_two_ams_and_an_ams_ht() -> None:
    state = state_of("x1c_multi_ams_full", start=empty_state("00M09A123456789"))
    ams = state.ams
    assert [unit.id for unit in ams.units] == [0, 1, 128]
    assert [unit.is_ams_ht for unit in ams.units] == [False, False, True]
    assert ams.units[0].humidity_raw is None  # sent as "" by units without an RH sensor
    assert ams.units[1].humidity_level == 4
    ht = ams.units[2]
    assert (ht.humidity, ht.humidity_level, ht.humidity_raw) == (5, 1, 14)
    assert ht.temp == 55.2
    assert ht.dry_time == 180
    assert len(ht.trays) == 1
    assert ht.trays[0].state == 11
    assert ht.global_tray_id(0) == 128
    assert ams.units[1].global_tray_id(1) == 5
    assert ams.ams_exist_bits == 0x13
    assert ams.tray_exist_bits == 0x100FF
    green = ams.tray(5)
    assert green is not None
    assert (green.type, green.color) == ("PLA", "00AE42FF")
    pa = ams.tray(128)
    assert pa is not None
    assert pa.type == "PA6-CF"
    carbon = ams.tray(7)
    assert carbon is not None
    assert carbon.type == "PLA-CF"
    assert ams.unit(1) is ams.units[1]
    assert ams.unit(2) is None
    assert ams.active_tray is None
    assert state.job.gcode_state is GcodeState.IDLE
    assert state.job.stage == -1
    assert state.developer_mode is None


def test_h2d_dual_nozzle_packed_temperatures_and_vir_slot() -> None:
    state = state_of("h2d_full", start=empty_state("094000123456789"))
    temps = state.temperatures
    right, left = temps.extruders
    assert (right.id, right.temp, right.target, right.loaded) == (0, 218, 220, (0, 1))
    assert (left.id, left.temp, left.target, left.loaded) == (1, 35, 0, None)
    assert temps.active_extruder == 0
    assert (temps.nozzle, temps.nozzle_target) == (218.0, 220.0)  # from the active extruder
    assert (temps.bed, temps.bed_target) == (58.0, 60.0)  # device.bed packed
    assert (temps.chamber, temps.chamber_target) == (28.0, 0.0)
    assert state.job.progress == 21  # `percent` alias
    assert state.job.remaining_minutes == 195  # `remain_time` alias
    assert state.nozzle.type == "HS01"
    assert (state.storage.free, state.storage.total) == (51200, 61440)
    assert state.storage.sd_state is SdState.UNKNOWN  # no home_flag on this firmware
    assert state.hms == ((50331904, 65543),)
    assert len(state.lights) == 4
    assert state.lights["heatbed_light"] == "off"
    assert [(s.id, s.type) for s in state.ams.external] == [(255, "PETG"), (254, "")]
    assert state.ams.tray(255) is state.ams.external[0]
    unit = state.ams.units[0]
    assert (unit.humidity_level, unit.humidity_raw) == (4, 31)
    assert [tray.state for tray in unit.trays] == [11, 11, 8, 8]
    assert state.ams.active_tray is unit.trays[1]


def test_h2d_extruder_delta_merges_by_id() -> None:
    state = state_of("h2d_full", start=empty_state("094000123456789"))
    after = push(state, {"device": {"extruder": {"info": [{"id": 1, "temp": (230 << 16) | 120}]}}})
    right, left = after.temperatures.extruders
    assert (left.temp, left.target) == (120, 230)
    assert right == state.temperatures.extruders[0]
    assert after.raw["device"]["bed"] is state.raw["device"]["bed"]


# --- get_version, acks and other sections ---------------------------------------------------


def test_get_version_sets_firmware_and_product() -> None:
    before = state_of("p1s_full")
    state = state_of("get_version_p1s", start=before)
    assert state.firmware.version == "01.08.00.00"
    assert state.firmware.product_name == "Bambu Lab P1S"
    assert [m.name for m in state.firmware.modules] == ["ota", "esp32", "mc", "th", "ams/0"]
    ams_module = state.firmware.modules[4]
    assert (ams_module.sw_ver, ams_module.hw_ver, ams_module.product_name) == (
        "00.00.06.49",
        "AMS08",
        "AMS (1)",
    )
    assert state.job == before.job
    assert state.report_count == before.report_count  # not a push
    # The firmware survives later pushes, full or delta.
    later = state_of("p1s_full", "p1s_delta_01_progress", start=state)
    assert later.firmware == state.firmware


def test_product_name_from_another_module_when_ota_has_none() -> None:
    reply = {
        "info": {
            "command": "get_version",
            "module": [
                {"name": "ams/0", "product_name": "AMS (1)", "sw_ver": "00.00.06.49"},
                {"name": "ota", "sw_ver": "01.02.03.04"},
                {"name": "rv1126", "product_name": "Bambu Lab X1-Carbon", "sw_ver": "00.01"},
            ],
        }
    }
    state = merge(empty_state(P1S), parse_report(orjson.dumps(reply)))
    assert state.firmware.version == "01.02.03.04"
    assert state.firmware.product_name == "Bambu Lab X1-Carbon"


def test_get_version_without_modules_changes_nothing() -> None:
    state = state_of("p1s_full")
    for body in ({"command": "get_version"}, {"command": "get_version", "module": "x"}):
        assert merge(state, Report({"info": body})) is state


@pytest.mark.parametrize("name", ["ack_gcode_line", "ack_project_file", "ack_project_file_secured"])
def test_command_acks_leave_the_state_unchanged(name: str) -> None:
    state = state_of("p1s_full")
    assert merge(state, parse_report(load_report(name))) is state


@pytest.mark.parametrize(
    "payload",
    [
        b'{"mc_print":{"command":"push_info","param":"[AMS] temp:18.4","sequence_id":"83"}}',
        b'{"system":{"command":"ledctrl","led_node":"chamber_light","result":"success"}}',
        b'{"pushing":{"command":"pushall"}}',
        b'{"info":{"command":"get_history"}}',
    ],
)
def test_other_sections_leave_the_state_unchanged(payload: bytes) -> None:
    state = state_of("p1s_full")
    assert merge(state, parse_report(payload)) is state


def test_push_and_get_version_in_one_payload() -> None:
    payload = {
        "print": {"command": "push_status", "msg": 1, "sequence_id": "9", "mc_percent": 90},
        "info": orjson.loads(load_report("get_version_p1s"))["info"],
    }
    state = merge(state_of("p1s_full"), parse_report(orjson.dumps(payload)))
    assert state.job.progress == 90
    assert state.firmware.version == "01.08.00.00"


# --- full reports replace, deltas merge ------------------------------------------------------


def test_full_report_replaces_what_a_delta_added() -> None:
    state = push(state_of("p1s_full"), {"fun": "3EC18FFF9CFF", "xcam": {"print_halt": False}})
    assert state.developer_mode is True
    assert state.raw["xcam"]["print_halt"] is False
    assert state.raw["xcam"]["spaghetti_detector"] is True  # nested objects deep-merge
    replaced = state_of("p1s_full", start=state)
    assert replaced.developer_mode is None
    assert replaced.fun is None
    assert replaced.raw["xcam"]["print_halt"] is True


def test_snapshot_lists_are_replaced_not_merged() -> None:
    state = state_of("x1c_full")
    state = push(state, {"lights_report": [{"node": "chamber_light", "mode": "off"}]})
    assert state.lights == {"chamber_light": "off"}
    state = push(state, {"stg": [1], "s_obj": [7]})
    assert state.job.stages == (1,)
    assert state.job.skipped_objects == (7,)


def test_delta_can_add_an_ams_unit() -> None:
    new_unit = {"id": "1", "humidity": "5", "temp": "20.0", "tray": [{"id": "0"}]}
    state = push(state_of("p1s_full"), {"ams": {"ams": [new_unit], "ams_exist_bits": "3"}})
    assert [unit.id for unit in state.ams.units] == [0, 1]
    assert state.ams.units[0].trays[0].type == "PLA"
    assert state.ams.ams_exist_bits == 0b11


def test_tray_ids_match_whether_sent_as_strings_or_ints() -> None:
    state = push(
        state_of("p1s_full"), {"ams": {"ams": [{"id": 0, "tray": [{"id": 0, "remain": 5}]}]}}
    )
    unit = state.ams.units[0]
    assert len(unit.trays) == 4
    assert unit.trays[0].remain == 5
    assert unit.trays[0].type == "PLA"


def test_a_non_push_print_without_command_merges_as_a_delta() -> None:
    state = merge(state_of("p1s_full"), Report({"print": {"mc_percent": 55}}))
    assert state.job.progress == 55
    assert state.sequence == 58357  # a push without sequence_id keeps the last one


def test_very_deep_nesting_merges_without_recursion_errors() -> None:
    # 600 levels: within orjson's 1024 limit, beyond Python's default recursion limit of 1000
    # if the merge recursed once per level twice over.
    deep = b'{"n":' * 600 + b"1" + b"}" * 600
    head = b'{"print":{"command":"push_status","msg":%d,"extra":'
    state = merge(empty_state(P1S), parse_report(head % 0 + deep + b"}}"))
    state = merge(state, parse_report(head % 1 + deep + b"}}"))
    assert state.report_count == 2
    assert "n" in state.raw["extra"]


# --- ams_mapping lives for one job -------------------------------------------------------------


def test_ams_mapping_is_kept_for_the_rest_of_the_job() -> None:
    finished = push(state_of("p1s_full"), {"gcode_state": "FINISH", "mc_percent": 100})
    started = state_of("p1s_delta_job_start", start=finished)
    assert started.job.gcode_state is GcodeState.PREPARE
    assert started.job.subtask_name == "bracket"
    assert started.job.ams_mapping == (1, 0)
    running = push(started, {"gcode_state": "RUNNING", "mc_percent": 3})
    assert running.job.ams_mapping == (1, 0)
    # A full report never carries ams_mapping; the job is the same, so the mapping stays.
    full = fixture_body("p1s_full")
    full.update(subtask_name="bracket", gcode_file="bracket.gcode.3mf", mc_percent=50)
    refreshed = push(running, full, msg=0)
    assert refreshed.job.progress == 50
    assert refreshed.job.ams_mapping == (1, 0)
    done = push(refreshed, {"gcode_state": "FINISH", "mc_percent": 100})
    assert done.job.ams_mapping == (1, 0)  # still there for filament accounting


def test_ams_mapping_is_dropped_when_the_next_job_starts() -> None:
    started = state_of("p1s_delta_job_start", start=state_of("p1s_full"))
    done = push(started, {"gcode_state": "FINISH"})
    reprint = push(done, {"gcode_state": "PREPARE"})  # same file again, no mapping sent
    assert reprint.job.ams_mapping is None
    other = push(started, {"subtask_name": "other", "gcode_file": "other.gcode.3mf"})
    assert other.job.ams_mapping is None


def test_empty_string_ams_mapping_means_no_mapping() -> None:
    state = push(state_of("p1s_full"), {"ams_mapping": ""})
    assert state.job.ams_mapping == ()


# --- tolerant conversion ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "read", "expected"),
    [
        ({"mc_percent": "42"}, lambda s: s.job.progress, 42),
        ({"mc_percent": "42.0"}, lambda s: s.job.progress, 42),
        ({"layer_num": 60.0}, lambda s: s.job.layer, 60),
        ({"mc_percent": "abc"}, lambda s: s.job.progress, 37),
        ({"mc_percent": {"x": 1}}, lambda s: s.job.progress, 37),
        ({"mc_percent": True}, lambda s: s.job.progress, 37),
        ({"mc_percent": 12.5}, lambda s: s.job.progress, 37),
        ({"mc_percent": None}, lambda s: s.job.progress, None),
        ({"nozzle_temper": "hot"}, lambda s: s.temperatures.nozzle, 219.8),
        ({"nozzle_temper": 221}, lambda s: s.temperatures.nozzle, 221.0),
        ({"bed_temper": [1]}, lambda s: s.temperatures.bed, 60.1),
        ({"wifi_signal": "n/a"}, lambda s: s.network.wifi_dbm, -53),
        ({"wifi_signal": -70}, lambda s: s.network.wifi_dbm, -70),
        ({"cooling_fan_speed": "16"}, lambda s: s.fans.part, 100),
        ({"cooling_fan_speed": 3}, lambda s: s.fans.part, 20),
        ({"gcode_state": "WEIRD"}, lambda s: s.job.gcode_state, GcodeState.UNKNOWN),
        ({"gcode_state": "pause"}, lambda s: s.job.gcode_state, GcodeState.PAUSE),
        ({"gcode_state": 5}, lambda s: s.job.gcode_state, GcodeState.RUNNING),
        ({"task_id": 123456789}, lambda s: s.job.task_id, "123456789"),
        ({"subtask_name": ["x"]}, lambda s: s.job.subtask_name, "benchy"),
        ({"stg": [1, "x"]}, lambda s: s.job.stages, (2, 14, 1)),
        ({"stg": ["4", 5]}, lambda s: s.job.stages, (4, 5)),
        ({"print_error": "50348044"}, lambda s: s.print_error, 50348044),
        ({"sdcard": "false"}, lambda s: s.storage.sdcard, False),
        ({"sdcard": "maybe"}, lambda s: s.storage.sdcard, True),
        ({"home_flag": "x"}, lambda s: s.storage.sd_state, SdState.NORMAL),
        ({"home_flag": 0x300}, lambda s: s.storage.sd_state, SdState.READ_ONLY),
        ({"home_flag": 0x200}, lambda s: s.storage.sd_state, SdState.ABNORMAL),
        ({"home_flag": 0}, lambda s: s.storage.sd_state, SdState.NONE),
        ({"net": {"info": [{"ip": "x"}]}}, lambda s: s.network.ip, "10.10.10.81"),
        ({"net": {"info": [{"ip": 0}]}}, lambda s: s.network.ip, None),
        ({"net": {"info": [{"ip": -1073633088}]}}, lambda s: s.network.ip, "192.168.1.192"),
        ({"net": "down"}, lambda s: s.network.ip, "10.10.10.81"),
        ({"fun": "zz"}, lambda s: s.developer_mode, None),
        ({"fun": "20000000"}, lambda s: s.developer_mode, False),
        ({"fun": 0}, lambda s: s.developer_mode, True),
        ({"hms": [{"attr": "50331904", "code": 65543}]}, lambda s: s.hms, ((50331904, 65543),)),
        ({"hms": [{"attr": 1}]}, lambda s: s.hms, ()),
        ({"hms": "none"}, lambda s: s.hms, ()),
        ({"lights_report": [{"node": 1}]}, lambda s: s.lights, {"chamber_light": "on"}),
        ({"spd_lvl": "4"}, lambda s: s.speed.level, 4),
        ({"sequence_id": "abc"}, lambda s: s.sequence, 58357),
        ({"ipcam": {"rtsp_url": "disable"}}, lambda s: s.camera.rtsp_url, None),
        ({"ipcam": 7}, lambda s: s.camera.recording, True),
    ],
)
def test_odd_values_convert_or_keep_the_previous_value(
    fields: dict[str, Any], read: Any, expected: object
) -> None:
    state = state_of("p1s_full")
    body = {"command": "push_status", "msg": 1, **fields}
    body.setdefault("sequence_id", "58357")
    after = merge(state, parse_report(orjson.dumps({"print": body})))
    assert read(after) == expected


@pytest.mark.parametrize(
    ("tray", "read", "expected"),
    [
        ({"tray_color": "abcdef80"}, lambda t: t.color, "ABCDEF80"),
        ({"remain": 150}, lambda t: t.remain, 82),
        ({"remain": "75"}, lambda t: t.remain, 75),
        ({"tray_weight": "heavy"}, lambda t: t.weight_g, 1000),
        ({"tray_diameter": 2.85}, lambda t: t.diameter, 2.85),
        ({"k": "0.03"}, lambda t: t.k, 0.03),
        ({"nozzle_temp_max": 250}, lambda t: t.nozzle_temp_max, 250),
        ({"tray_type": None}, lambda t: t.type, ""),
        ({"tray_type": {}}, lambda t: t.type, "PLA"),
    ],
)
def test_odd_tray_values(tray: dict[str, Any], read: Any, expected: object) -> None:
    state = state_of("p1s_full")
    after = push(state, {"ams": {"ams": [{"id": "0", "tray": [{"id": "0", **tray}]}]}})
    assert read(after.ams.units[0].trays[0]) == expected


def test_unreadable_hms_list_keeps_the_active_entries() -> None:
    paused = state_of("p1s_full", *P1S_DELTAS[:5])
    assert push(paused, {"hms": [{"attr": 1}]}).hms == paused.hms
    assert push(paused, {"hms": "none"}).hms == paused.hms
    assert push(paused, {"hms": []}).hms == ()


def test_odd_ams_blocks_keep_the_ams() -> None:
    state = state_of("p1s_full")
    assert push(state, {"ams": "broken"}).ams.units == state.ams.units
    assert push(state, {"ams": {"ams": "x"}}).ams.units == state.ams.units
    bad_unit = push(state, {"ams": {"ams": [{"id": "zero"}, {"id": "0", "humidity": "9"}]}})
    assert [unit.id for unit in bad_unit.ams.units] == [0]
    assert bad_unit.ams.units[0].humidity == 4  # 9 is not an index 1-5
    assert push(state, {"vt_tray": "gone"}).ams.external == state.ams.external
