"""The simulated printer's state machine and command handling, driven by a manual clock."""

import math
import random
from collections.abc import Callable, Mapping
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bambufarm.protocol.models import model_by_name
from bambufarm.simulator.clock import ManualClock, ScaledClock
from bambufarm.simulator.identity import (
    AmsKind,
    AmsUnitSpec,
    PrinterIdentity,
    TraySpec,
    default_identity,
    make_serial,
)
from bambufarm.simulator.printer import CANCELLED_ERROR, FILE_ERROR, SimPrinter
from bambufarm.simulator.quirks import Quirks
from tests.support.sim_view import apply_report
from tests.support.threemf_factory import FilamentSpec, PlateSpec, build_gcode_3mf

ACCESS_CODE = "12345678"
PREDICTION_S = 6000  # 100 minutes at standard speed
LAYERS = 120
JOB = "cube.gcode.3mf"


def job_3mf(*filaments: FilamentSpec, prediction_s: int = PREDICTION_S) -> bytes:
    """A one-plate sliced file with the given filaments."""
    plate = PlateSpec(
        prediction_s=prediction_s, layers=LAYERS, filaments=filaments or (FilamentSpec(),)
    )
    return build_gcode_3mf(plates=(plate,))


DEFAULT_JOB = job_3mf()


class Rig:
    """A printer, its clock and storage, and what a client subscribed to its reports sees."""

    def __init__(
        self,
        model: str = "P1S",
        *,
        quirks: Quirks | None = None,
        files: dict[str, bytes] | None = None,
        identity: PrinterIdentity | None = None,
    ) -> None:
        self.clock = ManualClock()
        self.files = {JOB: DEFAULT_JOB} if files is None else files
        self.reads: list[str] = []
        self.identity = identity or default_identity(
            model_by_name(model), 7, access_code=ACCESS_CODE
        )
        self.printer = SimPrinter(
            self.identity,
            quirks=quirks or Quirks(),
            read_file=self._read,
            clock=self.clock,
            rng=random.Random(42),
        )
        self.seen: dict[str, Any] = {}  # the client's merged view of `print`
        self.reports: list[dict[str, Any]] = []
        self.replies: list[dict[str, Any]] = []
        self._absorb([self.printer.full_report()])

    def _read(self, name: str) -> bytes | None:
        self.reads.append(name)
        return self.files.get(name)

    def _absorb(self, payloads: list[bytes]) -> list[dict[str, Any]]:
        decoded = [orjson.loads(p) for p in payloads]
        for message in decoded:
            body = message.get("print", {})
            if body.get("command") == "push_status":
                self.reports.append(body)
                self.seen = apply_report(self.seen, body)
            else:
                self.replies.append(message)
        return decoded

    def send(self, section: str, command: str, **fields: Any) -> list[dict[str, Any]]:
        """Publish one command; return every decoded payload the printer answered with."""
        payload = {section: {"command": command, "sequence_id": "20001", **fields}}
        return self._absorb(self.printer.handle_request(orjson.dumps(payload)))

    def reply(self, section: str, command: str, **fields: Any) -> dict[str, Any]:
        """Publish one command and return its acknowledgement's section object."""
        answers = [m[section] for m in self.send(section, command, **fields) if section in m]
        acks = [a for a in answers if a.get("command") == command]
        assert len(acks) == 1, answers
        return acks[0]

    def run(self, seconds: float, step: float = 1.0) -> None:
        """Advance the clock `seconds` in steps, ticking after each like the fleet does."""
        remaining = seconds
        while remaining > 0:
            dt = min(step, remaining)
            self.clock.advance(dt)
            remaining -= dt
            self._absorb(self.printer.tick())

    def run_until(self, predicate: Callable[[Mapping[str, Any]], bool], limit: float) -> float:
        """Tick one second at a time until the client's view satisfies `predicate`."""
        waited = 0.0
        while not predicate(self.seen):
            assert waited < limit, f"condition not reached in {limit} s; view: {self.seen}"
            self.run(1.0)
            waited += 1.0
        return waited

    def start(self, **fields: Any) -> dict[str, Any]:
        """Send a typical project_file for the default job and return its ack."""
        request = {
            "param": "Metadata/plate_1.gcode",
            "url": f"file:///sdcard/{JOB}",
            "subtask_name": "cube",
            "bed_leveling": True,
            "ams_mapping": [0],
            **fields,
        }
        return self.reply("print", "project_file", **request)

    def tray(self, unit: int, slot: int) -> dict[str, Any]:
        """The client's view of one AMS tray."""
        units = {u["id"]: u for u in self.seen["ams"]["ams"]}
        trays = {t["id"]: t for t in units[str(unit)]["tray"]}
        result: dict[str, Any] = trays[str(slot)]
        return result


def running(view: Mapping[str, Any]) -> bool:
    return view["gcode_state"] == "RUNNING"


# ------------------------------------------------------------------------ the print lifecycle


def test_a_job_goes_prepare_running_finish_and_stays_finished() -> None:
    rig = Rig()
    ack = rig.start()
    assert ack["result"] == "success"
    assert rig.reads == [JOB]
    assert rig.seen["gcode_state"] == "PREPARE"
    assert rig.seen["subtask_name"] == "cube"
    assert rig.seen["gcode_file"] == JOB  # P1 reports the 3MF name (protocol.md §1.5.1)
    assert rig.seen["mc_remaining_time"] == PREDICTION_S // 60

    percents: list[str] = []
    stages: list[int] = []
    while rig.seen["gcode_state"] == "PREPARE":
        rig.run(1)
        percents.append(rig.seen["gcode_file_prepare_percent"])
        if not stages or stages[-1] != rig.seen["stg_cur"]:
            stages.append(rig.seen["stg_cur"])
        assert len(percents) < 1000
    assert [int(p) for p in percents] == sorted(int(p) for p in percents)
    assert percents[0] != "100"
    assert percents[-1] == "100"
    assert stages == [255, 2, 1, 14, 0]  # idle, heat bed, levelling, nozzle clean, printing
    assert rig.seen["stg"] == [2, 1, 14]
    assert rig.seen["mc_print_stage"] == "2"

    rig.run(PREDICTION_S / 2, step=10)
    assert rig.seen["gcode_state"] == "RUNNING"
    assert 45 <= rig.seen["mc_percent"] <= 55
    assert LAYERS * 0.45 <= rig.seen["layer_num"] <= LAYERS * 0.55 + 1
    assert rig.seen["total_layer_num"] == LAYERS
    assert 45 <= rig.seen["mc_remaining_time"] <= 55  # minutes, not seconds

    rig.run(PREDICTION_S / 2 + 10, step=10)
    assert rig.seen["gcode_state"] == "FINISH"
    assert (rig.seen["mc_percent"], rig.seen["mc_remaining_time"]) == (100, 0)
    assert rig.seen["layer_num"] == LAYERS
    assert rig.seen["subtask_name"] == "cube"  # slicers release the job on this (§1.10)
    assert rig.seen["nozzle_target_temper"] == 0.0

    rig.run(3600, step=60)
    assert rig.seen["gcode_state"] == "FINISH"
    assert rig.printer.status().gcode_state == "FINISH"


def test_time_compression_finishes_a_long_print_in_few_real_seconds() -> None:
    real = [0.0]
    clock = ScaledClock(600.0, wall=lambda: 1_700_000_000.0, monotonic=lambda: real[0])
    identity = default_identity(model_by_name("A1"), 1, access_code=ACCESS_CODE)
    printer = SimPrinter(
        identity,
        quirks=Quirks(),
        read_file={JOB: job_3mf()}.get,
        clock=clock,
        rng=random.Random(1),
    )
    request = {"print": {"command": "project_file", "sequence_id": 1, "url": f"ftp://{JOB}"}}
    printer.handle_request(orjson.dumps(request))
    ticks = 0
    while printer.gcode_state != "FINISH":
        real[0] += 1.0  # one real second per fleet tick
        ticks += 1
        assert len(printer.tick()) == 1  # at most one report per tick, even compressed
        assert ticks < 60
    # 100 minutes of printing plus about two of preparation at 600x: 11 ticks.
    assert ticks == 11


def test_scaled_clock_runs_scale_times_faster_from_the_wall_clock() -> None:
    real = [50.0]
    clock = ScaledClock(10.0, wall=lambda: 1_000.0, monotonic=lambda: real[0])
    assert clock.now() == 1_000.0
    real[0] = 52.5
    assert clock.now() == 1_025.0
    assert clock.real_seconds(100.0) == 10.0
    with pytest.raises(ValueError, match="positive"):
        ScaledClock(0)
    manual = ManualClock(5.0)
    assert manual.advance(2.5) == 7.5
    with pytest.raises(ValueError, match="backwards"):
        manual.advance(-1)


def test_pause_freezes_progress_and_resume_continues() -> None:
    rig = Rig()
    rig.start()
    rig.run_until(running, 300)
    rig.run(600, step=10)
    assert rig.reply("print", "pause", param="")["result"] == "success"
    assert (rig.seen["gcode_state"], rig.seen["stg_cur"]) == ("PAUSE", 16)
    frozen = rig.seen["mc_percent"], rig.seen["mc_remaining_time"]
    rig.run(1200, step=10)
    assert (rig.seen["mc_percent"], rig.seen["mc_remaining_time"]) == frozen
    assert rig.reply("print", "pause")["result"] == "failed"  # already paused

    assert rig.reply("print", "resume")["result"] == "success"
    assert (rig.seen["gcode_state"], rig.seen["stg_cur"]) == ("RUNNING", 0)
    rig.run(600, step=10)
    assert rig.seen["mc_percent"] > frozen[0]


def test_stop_fails_the_job_with_cancelled_error_for_a_few_seconds() -> None:
    rig = Rig()
    rig.start()
    rig.run_until(running, 300)
    assert rig.reply("print", "stop", param="")["result"] == "success"
    assert rig.seen["gcode_state"] == "FAILED"
    assert rig.seen["print_error"] == CANCELLED_ERROR == 0x0300400C
    rig.run(10)
    assert rig.seen["print_error"] == 0
    assert rig.seen["gcode_state"] == "FAILED"
    # A stopped printer takes the next job.
    assert rig.start()["result"] == "success"
    assert rig.seen["gcode_state"] == "PREPARE"


@pytest.mark.parametrize(("level", "percent"), [("1", 50), ("3", 124), (4, 166)])
def test_speed_level_rescales_remaining_time_and_pace(level: str | int, percent: int) -> None:
    rig = Rig()
    rig.start()
    rig.run_until(running, 300)
    standard = rig.seen["mc_remaining_time"]
    assert rig.reply("print", "print_speed", param=level)["result"] == "success"
    assert (rig.seen["spd_lvl"], rig.seen["spd_mag"]) == (int(level), percent)
    assert rig.seen["mc_remaining_time"] == pytest.approx(standard * 100 / percent, abs=1)

    before = rig.seen["mc_percent"]
    rig.run(600, step=10)  # 10 minutes at this speed
    gained = rig.seen["mc_percent"] - before
    assert gained == pytest.approx(10 * percent / 100, abs=1)


def test_bad_speed_level_is_refused() -> None:
    assert Rig().reply("print", "print_speed", param="9")["result"] == "failed"


# ------------------------------------------------------------------------ temperatures and fans


def test_gcode_line_sets_targets_and_fans_and_temperatures_ramp() -> None:
    rig = Rig()
    ack = rig.reply(
        "print", "gcode_line", param="M104 S220\nM140 S60\nM106 P1 S255\nM106 P3 S128\n"
    )
    assert (ack["result"], ack["err_code"], ack["param"]) == (
        "SUCCESS",
        0,
        "M104 S220\nM140 S60\nM106 P1 S255\nM106 P3 S128\n",
    )
    # The immediate report after the command carries the new targets and fans.
    assert rig.seen["nozzle_target_temper"] == 220.0
    assert rig.seen["bed_target_temper"] == 60.0
    assert rig.seen["cooling_fan_speed"] == "15"
    assert rig.seen["big_fan2_speed"] == "8"
    rig.run(10)
    assert 25.0 < rig.seen["bed_temper"] < 60.0
    assert 25.0 < rig.seen["nozzle_temper"] < 220.0
    rig.run(120)
    assert rig.seen["nozzle_temper"] == pytest.approx(220.0, abs=0.3)
    assert rig.seen["bed_temper"] == pytest.approx(60.0, abs=0.3)
    assert rig.seen["heatbreak_fan_speed"] == "15"

    rig.reply("print", "gcode_line", param="M104 S0\nM140 S0\nM107\n")
    rig.run(900, step=5)
    assert (rig.seen["nozzle_temper"], rig.seen["bed_temper"]) == (25.0, 25.0)
    assert rig.seen["cooling_fan_speed"] == "0"


def test_gcode_line_for_a_missing_nozzle_fails() -> None:
    rig = Rig("P1S")
    assert rig.reply("print", "gcode_line", param="M104 T1 S200\n")["result"] == "failed"
    assert rig.reply("print", "gcode_line", param=5)["result"] == "failed"


def test_dual_nozzle_temperatures_are_packed_in_device_block() -> None:
    rig = Rig("H2D")
    rig.reply("print", "gcode_line", param="M104 T1 S250\nM140 S70\n")
    rig.run(120)
    left = rig.seen["device"]["extruder"]["info"][1]["temp"]
    assert left >> 16 == 250
    assert abs((left & 0xFFFF) - 250) <= 1
    assert rig.seen["device"]["bed"]["info"]["temp"] >> 16 == 70


# ------------------------------------------------------------------------ AMS and filament


def test_mapped_rfid_tray_remain_falls_with_progress() -> None:
    # Tray 0 is a 1000 g Bambu spool at 82 %; the plate uses 100 g of filament 1 from it.
    rig = Rig(files={JOB: job_3mf(FilamentSpec(slot=1, used_g=100.0))})
    rig.start(ams_mapping=[0])
    assert rig.tray(0, 0)["remain"] == 82
    rig.run_until(running, 300)
    rig.run(PREDICTION_S / 2, step=30)
    assert rig.tray(0, 0)["remain"] == 77
    rig.run(PREDICTION_S, step=30)
    assert rig.seen["gcode_state"] == "FINISH"
    assert rig.tray(0, 0)["remain"] == 72
    assert rig.tray(0, 1)["remain"] == 100  # unmapped tray untouched


def test_non_rfid_tray_keeps_unknown_remain() -> None:
    rig = Rig(files={JOB: job_3mf(FilamentSpec(slot=1, type="PETG", used_g=50.0))})
    rig.start(ams_mapping=[2])
    rig.run(PREDICTION_S + 300, step=60)
    assert rig.seen["gcode_state"] == "FINISH"
    assert rig.tray(0, 2)["remain"] == -1


def test_ams_mapping_is_reported_once_at_job_start() -> None:
    rig = Rig()
    rig.start(ams_mapping=[1])
    with_mapping = [r for r in rig.reports if "ams_mapping" in r]
    assert len(with_mapping) == 1
    assert with_mapping[0]["ams_mapping"] == [1]
    rig.run(30)
    assert all("ams_mapping" not in r for r in rig.reports[-30:])
    assert "ams_mapping" not in orjson.loads(rig.printer.full_report())["print"]


def test_mapping_to_an_empty_tray_hangs_in_prepare_without_error() -> None:
    rig = Rig()
    assert rig.start(ams_mapping=[3])["result"] == "success"  # slot 3 is empty
    rig.run(5 * 3600, step=60)
    assert rig.seen["gcode_state"] == "PREPARE"
    assert rig.seen["print_error"] == 0
    assert rig.seen["hms"] == []


def test_filament_setting_fills_a_slot_so_it_can_be_used() -> None:
    rig = Rig()
    ack = rig.reply(
        "print", "ams_filament_setting", ams_id=0, tray_id=3, slot_id=3,
        tray_info_idx="GFL99", tray_type="PLA", tray_color="FF0000FF",
        nozzle_temp_min=190, nozzle_temp_max=240,
    )  # fmt: skip
    assert ack["result"] == "success"
    tray = rig.tray(0, 3)
    assert (tray["tray_type"], tray["tray_color"], tray["nozzle_temp_max"]) == (
        "PLA",
        "FF0000FF",
        "240",
    )
    rig.start(ams_mapping=[3])
    rig.run_until(running, 300)


def test_filament_setting_clears_a_slot() -> None:
    rig = Rig()
    rig.reply("print", "ams_filament_setting", ams_id=0, tray_id=0, tray_type="", tray_color="")
    assert (rig.tray(0, 0)["tray_type"], rig.tray(0, 0)["tray_color"]) == ("", "00000000")


def test_change_filament_loads_and_unloads() -> None:
    rig = Rig()
    assert rig.reply("print", "ams_change_filament", ams_id=0, slot_id=1, target=1)["result"] == (
        "success"
    )
    assert rig.seen["ams"]["tray_now"] == "1"
    assert rig.reply("print", "ams_change_filament", target=3)["result"] == "failed"  # empty
    assert rig.reply("print", "ams_change_filament", target=255)["result"] == "success"
    assert (rig.seen["ams"]["tray_now"], rig.seen["ams"]["tray_pre"]) == ("255", "1")


def test_filament_runout_pauses_with_stage_6_and_ams_hms() -> None:
    rig = Rig()
    rig.start()
    rig.run_until(running, 300)
    rig.printer.filament_runout(0)
    rig.run(1)
    assert (rig.seen["gcode_state"], rig.seen["stg_cur"]) == ("PAUSE", 6)
    assert {"attr": 0x07002000, "code": 0x00020001} in rig.seen["hms"]  # 0700_2000_0002_0001
    rig.reply("print", "resume")
    assert rig.seen["gcode_state"] == "RUNNING"
    assert rig.seen["hms"] == []


def test_runout_of_a_second_unit_slot_names_that_unit_and_slot() -> None:
    identity = default_identity(model_by_name("X1C"), 1, access_code=ACCESS_CODE)
    trays = (TraySpec("PLA", remain=50, weight_g=1000, bambu=True),) * 4
    two_units = (*identity.ams, AmsUnitSpec(1, AmsKind.AMS, trays))
    rig = Rig(identity=PrinterIdentity(**{**_fields(identity), "ams": two_units}))
    rig.printer.filament_runout(7)  # unit 1, slot 3 ("AMS B Slot 4")
    rig.run(1)
    assert {"attr": 0x07012300, "code": 0x00020001} in rig.seen["hms"]
    assert rig.seen["gcode_state"] == "IDLE"  # nothing to pause


def _fields(identity: PrinterIdentity) -> dict[str, Any]:
    return {name: getattr(identity, name) for name in identity.__dataclass_fields__}


# ------------------------------------------------------------------------ job failures, refusals


def test_missing_file_is_acked_then_fails_with_card_error() -> None:
    rig = Rig(files={})
    assert rig.start()["result"] == "success"
    assert rig.seen["gcode_state"] == "FAILED"
    assert rig.seen["print_error"] == FILE_ERROR == 0x0500C010


def test_unreadable_file_fails_like_a_missing_one() -> None:
    rig = Rig(files={JOB: b"PK\x03\x04 not really a zip"})
    rig.start()
    assert (rig.seen["gcode_state"], rig.seen["print_error"]) == ("FAILED", FILE_ERROR)
    assert rig.reply("print", "clean_print_error", print_error=FILE_ERROR)["result"] == "success"
    assert rig.seen["print_error"] == 0


def test_project_file_is_refused_while_busy() -> None:
    rig = Rig()
    rig.start()
    ack = rig.start()
    assert ack["result"] == "failed"
    assert "busy" in ack["reason"]


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"url": f"ftp:///{JOB}"}, JOB),
        ({"url": f"ftp://{JOB}"}, JOB),
        ({"url": f"file:///sdcard/{JOB}"}, JOB),
        ({"url": f"file:///sdcard/cache/{JOB}"}, f"cache/{JOB}"),
        ({"url": "", "file": f"/{JOB}"}, JOB),
        ({"file": JOB}, JOB),
    ],
)
def test_project_file_accepts_every_url_spelling(fields: dict[str, str], expected: str) -> None:
    rig = Rig(files={expected: job_3mf()})
    ack = rig.reply("print", "project_file", param="Metadata/plate_1.gcode", **fields)
    assert ack["result"] == "success"
    assert rig.reads == [expected]
    assert rig.seen["gcode_state"] == "PREPARE"


def test_project_file_variants_from_third_party_clients() -> None:
    rig = Rig()
    payload = {
        "print": {
            "command": "project_file",
            "sequence_id": 20021,
            "param": "Metadata/plate_1.gcode",
            "url": f"file:///sdcard/{JOB}",
            "ams_mapping": "",
            "bed_levelling": True,
            "use_ams": False,
        },
        "user_id": {"extra": "keys beside print are tolerated"},
    }
    answers = [orjson.loads(p) for p in rig.printer.handle_request(orjson.dumps(payload))]
    acks = [a["print"] for a in answers if a.get("print", {}).get("command") == "project_file"]
    assert acks[0]["sequence_id"] == 20021
    assert acks[0]["result"] == "success"
    assert rig.printer.report.data["stg"] == [2, 1, 14]  # bed_levelling spelling honoured


def test_project_file_without_a_file_name_is_refused() -> None:
    ack = Rig().reply("print", "project_file", url="https://example.invalid/x.3mf")
    assert ack["result"] == "failed"


# ------------------------------------------------------------------------ envelope rules


def test_secured_printer_refuses_unsigned_print_commands() -> None:
    rig = Rig(quirks=Quirks(secured=True))
    ack = rig.reply("print", "pause", param="")
    assert ack["result"] == "failed"
    assert ack["reason"] == "mqtt message verify failed"
    assert ack["err_code"] == 84033543
    assert ack["sequence_id"] == "20001"
    assert rig.start()["err_code"] == 84033543
    assert rig.seen["gcode_state"] == "IDLE"
    # Monitoring and the light stay available (protocol.md §9.2).
    assert rig.reply("system", "ledctrl", led_node="chamber_light", led_mode="off")["result"] == (
        "success"
    )
    assert int(rig.seen["fun"], 16) & (1 << 29)
    signed = {"header": {"sign_ver": "v1.0", "sign_string": "c2ln"}, "print": {
        "command": "project_file", "sequence_id": "9", "url": f"ftp:///{JOB}"}}  # fmt: skip
    answers = [orjson.loads(p) for p in rig.printer.handle_request(orjson.dumps(signed))]
    assert answers[0]["print"]["result"] == "success"


def test_unknown_commands_and_sections_are_answered_failed() -> None:
    rig = Rig()
    ack = rig.reply("print", "frobnicate", param="x")
    assert (ack["result"], ack["sequence_id"]) == ("failed", "20001")
    other = rig.reply("mystery", "whatever")
    assert other["result"] == "failed"


def test_int_sequence_id_is_echoed_as_int() -> None:
    rig = Rig()
    payload = {"system": {"command": "get_access_code", "sequence_id": 31337}}
    (answer,) = [orjson.loads(p) for p in rig.printer.handle_request(orjson.dumps(payload))]
    assert answer == {
        "system": {
            "command": "get_access_code",
            "sequence_id": 31337,
            "result": "success",
            "reason": "",
            "access_code": ACCESS_CODE,
        }
    }


def test_every_section_of_a_multi_section_payload_is_handled() -> None:
    rig = Rig()
    # One client's connect handshake: queries without sequence ids are still answered.
    payload = (
        b'{"pushing":{"command":"pushall"},"info":{"command":"get_version"},'
        b'"upgrade":{"command":"get_history","sequence_id":"2"}}\x00\n'
    )
    answers = [orjson.loads(p) for p in rig.printer.handle_request(payload)]
    assert len(answers) == 3
    assert answers[0]["print"]["msg"] == 0  # pushall → full report, no pushing ack
    assert "sequence_id" not in answers[1]["info"]
    assert answers[1]["info"]["module"][0]["name"] == "ota"
    assert answers[2]["upgrade"] == {
        "command": "get_history", "sequence_id": "2", "result": "success", "reason": "",
        "firmware": [],
    }  # fmt: skip


@pytest.mark.parametrize("payload", [b"", b"not json", b"[1, 2]", b'"text"', b"\xff\xfe", b"{"])
def test_garbage_requests_are_ignored(payload: bytes) -> None:
    assert Rig().printer.handle_request(payload) == []


def test_request_without_sequence_id_acts_but_is_not_answered() -> None:
    rig = Rig()
    rig.reply("print", "gcode_line", param="M140 S50\n")  # warm something so deltas flow
    out = rig.printer.handle_request(b'{"system":{"command":"ledctrl","led_node":"chamber_light",'
                                     b'"led_mode":"off","led_on_time":500}}')  # fmt: skip
    decoded = [orjson.loads(p) for p in out]
    assert all("system" not in d for d in decoded)
    assert decoded[-1]["print"]["lights_report"] == [{"node": "chamber_light", "mode": "off"}]


def test_ledctrl_rejects_unknown_nodes_and_modes() -> None:
    rig = Rig("X1C")
    assert rig.reply("system", "ledctrl", led_node="work_light", led_mode="on")["result"] == (
        "success"
    )
    assert {"node": "work_light", "mode": "on"} in rig.seen["lights_report"]
    assert rig.reply("system", "ledctrl", led_node="disco", led_mode="on")["result"] == "failed"
    assert rig.reply("system", "ledctrl", led_node="work_light", led_mode="x")["result"] == (
        "failed"
    )


def test_skip_objects_accumulates_in_s_obj() -> None:
    rig = Rig()
    rig.reply("print", "skip_objects", obj_list=[206, 398])
    rig.reply("print", "skip_objects", obj_list=[398, 7])
    assert rig.seen["s_obj"] == [206, 398, 7]
    assert rig.reply("print", "skip_objects", obj_list="206")["result"] == "failed"


def test_camera_and_xcam_settings_change_their_report_objects() -> None:
    rig = Rig("X1C")
    assert rig.reply("camera", "ipcam_record_set", control="disable")["result"] == "success"
    assert rig.reply("camera", "ipcam_resolution_set", resolution="720p")["result"] == "success"
    assert rig.reply("camera", "ipcam_timelapse", control="on")["result"] == "failed"
    ack = rig.reply("xcam", "xcam_control_set", module_name="spaghetti_detector", control=False)
    assert ack["result"] == "success"
    rig.run(1)
    assert (rig.seen["ipcam"]["ipcam_record"], rig.seen["ipcam"]["resolution"]) == (
        "disable",
        "720p",
    )
    assert rig.seen["xcam"]["spaghetti_detector"] is False
    assert rig.reply("xcam", "xcam_control_set", module_name="nope", control=True)["result"] == (
        "failed"
    )


# ------------------------------------------------------------------------ version, faults, pushes


@pytest.mark.parametrize(
    ("model", "ams_modules"),
    [
        ("P1S", ["ams/0"]),
        ("X1C", ["ams/0"]),
        ("A1", ["ams_f1/0"]),
        ("A1 mini", ["ams_f1/0"]),
        ("H2D", ["n3f/0", "n3s/128"]),
    ],
)
def test_get_version_matches_model_and_ams(model: str, ams_modules: list[str]) -> None:
    rig = Rig(model)
    modules = rig.reply("info", "get_version")["module"]
    ota = next(m for m in modules if m["name"] == "ota")
    assert ota["sw_ver"] == rig.identity.firmware
    assert ota["product_name"] == model_by_name(model).product_name
    assert ota["sn"] == rig.identity.serial
    names = [m["name"] for m in modules]
    assert [n for n in names if "/" in n] == ams_modules
    for module in modules:
        assert {"name", "product_name", "sw_ver", "sw_new_ver", "sn", "hw_ver", "flag"} <= set(
            module
        )


def test_injected_faults_appear_in_reports() -> None:
    rig = Rig()
    rig.printer.inject_hms(0x03000100, 0x00010007)
    rig.printer.set_print_error(117473286)
    rig.run(1)
    assert rig.seen["hms"] == [{"attr": 0x03000100, "code": 0x00010007}]
    assert rig.seen["print_error"] == 117473286
    rig.printer.clear_hms()
    rig.printer.set_print_error(0)
    rig.run(1)
    assert (rig.seen["hms"], rig.seen["print_error"]) == ([], 0)


def test_initial_faults_come_from_quirks() -> None:
    quirks = Quirks.from_dict({"hms": ["0300_0100_0001_0007"], "print_error": "0300400C"})
    full = orjson.loads(Rig(quirks=quirks).printer.full_report())["print"]
    assert full["hms"] == [{"attr": 0x03000100, "code": 0x00010007}]
    assert full["print_error"] == 0x0300400C


def test_stale_printer_publishes_and_answers_nothing() -> None:
    rig = Rig(quirks=Quirks(stale=True))
    assert rig.printer.handle_request(b'{"pushing":{"command":"pushall","sequence_id":"1"}}') == []
    rig.clock.advance(10)
    assert rig.printer.tick() == []
    rig.printer.set_stale(False)
    rig.clock.advance(10)
    assert len(rig.printer.tick()) == 1


def test_pushing_stop_silences_ticks_until_start() -> None:
    rig = Rig("X1C")
    rig.send("pushing", "stop")
    rig.clock.advance(5)
    assert rig.printer.tick() == []
    rig.send("pushing", "start")
    rig.clock.advance(1)
    assert len(rig.printer.tick()) == 1


def test_storage_report_feeds_the_slicer_storage_gate() -> None:
    rig = Rig()
    rig.printer.storage_report(free=1_000_000_000, total=32_000_000_000)
    full = orjson.loads(rig.printer.full_report())["print"]
    assert full["sdcard"] is True
    assert (full["home_flag"] >> 8) & 0b11 == 1  # SD state "normal" (protocol.md §1.10)
    assert full["storage"] == {"free": 1_000_000_000, "total": 32_000_000_000}
    with pytest.raises(ValueError, match="between"):
        rig.printer.storage_report(free=5, total=1)


def test_status_snapshot_follows_the_job() -> None:
    rig = Rig()
    rig.start()
    rig.run_until(running, 300)
    rig.run(600, step=10)
    status = rig.printer.status()
    assert (status.name, status.gcode_state, status.subtask_name) == (
        rig.identity.name,
        "RUNNING",
        "cube",
    )
    assert status.progress == rig.seen["mc_percent"] > 0
    assert (status.layer_num, status.total_layer_num) == (rig.seen["layer_num"], LAYERS)
    assert status.remaining_minutes == rig.seen["mc_remaining_time"]
    left = PREDICTION_S / 60 * (1 - status.progress / 100)
    assert left - 1 <= status.remaining_minutes <= math.ceil(left)


def test_serials_carry_the_model_prefix() -> None:
    model = model_by_name("A1 mini")
    serial = make_serial(model, 123)
    assert serial == "03000A000000123"
    assert len(serial) == 15


# ------------------------------------------------------------------------ robustness

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12,
)  # fmt: skip
_KNOWN = sorted({("print", c) for c in (
    "project_file", "pause", "resume", "stop", "print_speed", "gcode_line", "skip_objects",
    "ams_change_filament", "ams_filament_setting", "ams_control", "clean_print_error",
    "set_bed_temp", "set_nozzle_temp", "set_ctt")} | {("system", "ledctrl"),
    ("camera", "ipcam_resolution_set"), ("xcam", "xcam_control_set"), ("pushing", "pushall"),
    ("info", "get_version")})  # fmt: skip
_FIELDS = st.sampled_from(
    ["param", "url", "file", "ams_mapping", "ams_mapping2", "target", "ams_id", "tray_id",
     "slot_id", "tray_type", "tray_color", "obj_list", "temp", "target_temp", "extruder_index",
     "ctt_val", "led_node", "led_mode", "resolution", "module_name", "control", "sequence_id",
     "nozzle_temp_min", "subtask_name", "task_id", "bed_leveling"]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    command=st.sampled_from(_KNOWN),
    fields=st.dictionaries(_FIELDS, _JSON, max_size=6),
    model=st.sampled_from(["P1S", "H2D", "X1C"]),
)
def test_any_field_values_get_an_answer_never_an_exception(
    command: tuple[str, str], fields: dict[str, Any], model: str
) -> None:
    rig = Rig(model)
    section, name = command
    if name == "project_file":
        fields.setdefault("url", f"ftp:///{JOB}")  # reach the job start with odd other fields
    payload = orjson.dumps({section: {**fields, "command": name, "sequence_id": "5"}})
    for message in rig._absorb(rig.printer.handle_request(payload)):
        assert all(isinstance(v, dict) for v in message.values())
    rig.run(30, step=3)  # whatever the command did, the machine keeps running


@settings(max_examples=200, deadline=None)
@given(message=st.dictionaries(st.sampled_from(["print", "system", "info", "pushing", "header",
                                                "x"]), _JSON, max_size=3))  # fmt: skip
def test_any_payload_shape_is_survived(message: dict[str, Any]) -> None:
    rig = Rig("H2D")
    for reply in rig._absorb(rig.printer.handle_request(orjson.dumps(message))):
        assert all(isinstance(v, dict) for v in reply.values())
