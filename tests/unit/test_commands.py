"""Command builders: golden payloads, validation messages, the sequence counter."""

import itertools
import random
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bambufarm.protocol import commands
from bambufarm.protocol.commands import (
    EXTERNAL_LEFT,
    EXTERNAL_SPOOL,
    INT32_MAX,
    BedType,
    Calibration,
    Command,
    Fan,
    LightMode,
    LightNode,
    PrintOption,
    SequenceCounter,
    SpeedLevel,
)
from bambufarm.protocol.envelope import check_choice, check_text
from bambufarm.protocol.errors import CommandError, ProtocolError
from bambufarm.protocol.models import model_by_name

P1S = model_by_name("P1S")
H2D = model_by_name("H2D")


def body(command: Command) -> dict[str, Any]:
    """The one section of the payload, after checking the envelope around it."""
    decoded = orjson.loads(command.payload)
    assert list(decoded) == [command.section]
    section: dict[str, Any] = decoded[command.section]
    assert section["command"] == command.command
    assert section["sequence_id"] == command.sequence_id
    assert isinstance(section["sequence_id"], str)
    return section


def start(**overrides: Any) -> Command:
    """A project_file with sensible defaults for the fields a test does not care about."""
    kwargs: dict[str, Any] = {
        "model": P1S,
        "file_name": "benchy.gcode.3mf",
        "ams_mapping": [1, 0],
        "task_id": 123456789,
    }
    kwargs.update(overrides)
    return commands.project_file("20021", **kwargs)


# --- sequence counter ------------------------------------------------------------------------


def test_counter_counts_up_from_the_start_as_decimal_strings() -> None:
    counter = SequenceCounter(20000)
    assert [counter.next() for _ in range(3)] == ["20000", "20001", "20002"]


def test_counter_start_is_random_in_the_studio_range() -> None:
    starts = {int(SequenceCounter(rng=random.Random(seed)).next()) for seed in range(200)}
    assert all(20000 <= value <= 29000 for value in starts)
    assert len(starts) > 150  # random, not a constant


def test_counter_with_the_same_rng_seed_is_reproducible() -> None:
    first = SequenceCounter(rng=random.Random(7)).next()
    assert SequenceCounter(rng=random.Random(7)).next() == first


def test_counter_never_exceeds_int32_and_wraps_to_20000() -> None:
    counter = SequenceCounter(INT32_MAX - 1)
    assert [counter.next() for _ in range(3)] == [str(INT32_MAX - 1), str(INT32_MAX), "20000"]


@pytest.mark.parametrize("bad", [-1, INT32_MAX + 1, True, "20000"])
def test_counter_refuses_a_start_outside_int32(bad: Any) -> None:
    with pytest.raises(CommandError, match="sequence start must be a whole number from 0"):
        SequenceCounter(bad)


@given(st.integers(0, INT32_MAX), st.integers(1, 50))
def test_counter_is_monotonic_until_the_wrap(begin: int, steps: int) -> None:
    counter = SequenceCounter(begin)
    values = [int(counter.next()) for _ in range(steps)]
    for before, after in itertools.pairwise(values):
        assert after == before + 1 or (before == INT32_MAX and after == 20000)
    assert all(value <= INT32_MAX for value in values)


# --- envelope ------------------------------------------------------------------------------


@pytest.mark.parametrize("seq", ["", "abc", "-1", "2147483648", "٣", " 1", "007", 20001, None])
def test_builders_refuse_a_sequence_id_that_is_not_a_decimal_int32_string(seq: Any) -> None:
    with pytest.raises(CommandError, match="sequence_id must be a decimal string"):
        commands.pause(seq)


def test_command_key_and_ack_expectation() -> None:
    command = commands.pause("20010")
    assert command.key == ("print", "pause", "20010")
    assert command.expects_ack
    assert not commands.pushall("1").expects_ack
    assert not commands.start_pushing("2").expects_ack


def test_build_command_refuses_to_override_the_envelope() -> None:
    with pytest.raises(CommandError, match="must not override"):
        commands.build_command("print", "x", "1", {"command": "y"})


# --- job control ---------------------------------------------------------------------------


@pytest.mark.parametrize("builder", [commands.pause, commands.resume, commands.stop])
def test_pause_resume_stop(builder: Any) -> None:
    command = builder("20010")
    assert command.section == "print"
    assert command.command == builder.__name__
    assert body(command) == {"sequence_id": "20010", "command": builder.__name__, "param": ""}


def test_project_file_golden_for_a_p1s_with_ams() -> None:
    sent = body(start(md5="0123456789ABCDEF0123456789abcdef"))
    assert sent == {
        "sequence_id": "20021",
        "command": "project_file",
        "param": "Metadata/plate_1.gcode",
        "url": "file:///sdcard/benchy.gcode.3mf",
        "file": "benchy.gcode.3mf",
        "md5": "0123456789abcdef0123456789abcdef",
        "subtask_name": "benchy",
        "project_id": "0",
        "profile_id": "0",
        "task_id": "123456789",
        "subtask_id": "123456789",
        "bed_type": "auto",
        "timelapse": False,
        "bed_leveling": True,
        "bed_levelling": True,
        "flow_cali": False,
        "vibration_cali": True,
        "layer_inspect": False,
        "use_ams": True,
        "ams_mapping": [1, 0],
        "ams_mapping2": [{"ams_id": 0, "slot_id": 1}, {"ams_id": 0, "slot_id": 0}],
        "cfg": "0",
    }


def test_project_file_uses_ftp_urls_on_h2_and_newer() -> None:
    sent = body(start(model=H2D, file_name="part.3mf", plate=3))
    assert sent["url"] == "ftp:///part.3mf"
    assert sent["param"] == "Metadata/plate_3.gcode"
    assert sent["subtask_name"] == "part"


def test_project_file_maps_second_ams_and_ams_ht() -> None:
    sent = body(start(ams_mapping=[7, 128, 135]))
    assert sent["ams_mapping"] == [7, 128, 135]
    assert sent["ams_mapping2"] == [
        {"ams_id": 1, "slot_id": 3},
        {"ams_id": 128, "slot_id": 0},
        {"ams_id": 135, "slot_id": 0},
    ]
    assert sent["use_ams"] is True


def test_project_file_external_spool_is_minus_one_in_the_flat_array() -> None:
    sent = body(start(ams_mapping=[EXTERNAL_SPOOL]))
    assert sent["ams_mapping"] == [-1]
    assert sent["ams_mapping2"] == [{"ams_id": 255, "slot_id": 0}]
    assert sent["use_ams"] is False


def test_project_file_single_nozzle_reads_legacy_254_as_the_one_external_spool() -> None:
    sent = body(start(ams_mapping=[254]))
    assert sent["ams_mapping2"] == [{"ams_id": 255, "slot_id": 0}]


def test_project_file_dual_nozzle_externals_left_and_right() -> None:
    sent = body(start(model=H2D, ams_mapping=[EXTERNAL_SPOOL, EXTERNAL_LEFT, 2]))
    assert sent["ams_mapping"] == [-1, -1, 2]
    assert sent["ams_mapping2"] == [
        {"ams_id": 255, "slot_id": 0},
        {"ams_id": 254, "slot_id": 0},
        {"ams_id": 0, "slot_id": 2},
    ]
    assert sent["use_ams"] is True


def test_project_file_unmapped_filament() -> None:
    sent = body(start(ams_mapping=[-1, 3]))
    assert sent["ams_mapping"] == [-1, 3]
    assert sent["ams_mapping2"] == [{"ams_id": 255, "slot_id": 255}, {"ams_id": 0, "slot_id": 3}]


def test_project_file_without_mapping_sends_none_and_does_not_use_ams() -> None:
    sent = body(start(ams_mapping=None))
    assert "ams_mapping" not in sent
    assert "ams_mapping2" not in sent
    assert sent["use_ams"] is False
    assert body(start(ams_mapping=None, use_ams=True))["use_ams"] is True


def test_project_file_options_are_sent_as_bools_and_strings() -> None:
    sent = body(
        start(
            bed_type=BedType.TEXTURED_PLATE,
            timelapse=True,
            bed_leveling=False,
            flow_cali=True,
            vibration_cali=False,
            layer_inspect=True,
            subtask_name="Bracket v2 (PETG)",
            task_id=INT32_MAX,
        )
    )
    assert sent["bed_type"] == "textured_plate"
    assert sent["timelapse"] is True
    assert sent["bed_leveling"] is False
    assert sent["bed_levelling"] is False
    assert (sent["flow_cali"], sent["vibration_cali"], sent["layer_inspect"]) == (True, False, True)
    assert sent["subtask_name"] == "Bracket v2 (PETG)"
    assert sent["task_id"] == sent["subtask_id"] == "2147483647"
    assert body(start(bed_type="eng_plate"))["bed_type"] == "eng_plate"


def test_project_file_keeps_unicode_file_names() -> None:
    sent = body(start(file_name="Würfel 20mm.gcode.3mf"))
    assert sent["file"] == "Würfel 20mm.gcode.3mf"
    assert sent["subtask_name"] == "Würfel 20mm"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"file_name": "../etc/passwd.3mf"}, "bare file name without '/'"),
        ({"file_name": "cache/a.3mf"}, "bare file name without '/'"),
        ({"file_name": "a.gcode"}, "must end with '.3mf'"),
        ({"file_name": ".3mf"}, "must end with '.3mf'"),
        ({"file_name": "a\x00.3mf"}, "control characters"),
        ({"file_name": "a\n.3mf"}, "control characters"),
        ({"file_name": ""}, "must not be empty"),
        ({"file_name": "é" * 200 + ".3mf"}, "at most 255 bytes"),
        ({"plate": 0}, "plate must be a whole number from 1 to 999"),
        ({"task_id": INT32_MAX + 1}, "task_id must be a whole number from 0 to 2147483647"),
        ({"task_id": -1}, "task_id must be a whole number"),
        ({"bed_type": "glass"}, "bed_type must be one of 'auto', 'cool_plate'"),
        ({"timelapse": 1}, "timelapse must be true or false"),
        ({"md5": "xyz"}, "md5 must be empty or 32 hex digits"),
        ({"ams_mapping": [4, 136]}, r"ams_mapping\[1\] must be 0-127 .* or -1 \(unmapped\)"),
        ({"ams_mapping": [True]}, r"ams_mapping\[0\] must be"),
        ({"ams_mapping": "0,1"}, "ams_mapping must be a list"),
        ({"ams_mapping": [0] * 65}, "at most 64 filaments"),
        ({"ams_mapping": range(2**63)}, "at most 64 filaments"),  # len() would overflow
        ({"ams_mapping": [0], "use_ams": False}, "use_ams=False contradicts .* it maps AMS"),
        ({"ams_mapping": [255], "use_ams": True}, "use_ams=True contradicts .* no AMS tray"),
    ],
)
def test_project_file_refuses_bad_values_saying_what_is_allowed(
    overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(CommandError, match=message):
        start(**overrides)


def test_gcode_file_takes_an_absolute_path() -> None:
    assert body(commands.gcode_file("5", "/sdcard/cube.gcode"))["param"] == "/sdcard/cube.gcode"
    with pytest.raises(CommandError, match="absolute"):
        commands.gcode_file("5", "cube.gcode")
    with pytest.raises(CommandError, match=r"absolute without '\.\.'"):
        commands.gcode_file("5", "/sdcard/../etc/x.gcode")


def test_skip_objects_deduplicates_ids_in_order() -> None:
    sent = body(commands.skip_objects("7", [206, 398, 206], 1716200000))
    assert sent["obj_list"] == [206, 398]
    assert sent["timestamp"] == 1716200000
    with pytest.raises(CommandError, match="non-empty list"):
        commands.skip_objects("7", [], 1)
    with pytest.raises(CommandError, match=r"ids\[1\] must be a whole number"):
        commands.skip_objects("7", [1, -2], 1)
    with pytest.raises(CommandError, match="at most 1024 objects"):
        commands.skip_objects("7", range(2**63), 1)


def test_clean_print_error() -> None:
    sent = body(commands.clean_print_error("8", subtask_id=123456789, print_error=50348044))
    assert sent["subtask_id"] == "123456789"
    assert sent["print_error"] == 50348044
    assert body(commands.clean_print_error("8", subtask_id="0", print_error=1))["subtask_id"] == "0"
    with pytest.raises(CommandError, match="subtask_id must be a decimal id"):
        commands.clean_print_error("8", subtask_id="abc", print_error=1)
    with pytest.raises(CommandError, match="print_error must be a whole number"):
        commands.clean_print_error("8", subtask_id="1", print_error=2**32)


# --- G-code ----------------------------------------------------------------------------------


def test_gcode_line_adds_the_trailing_newline_once() -> None:
    assert body(commands.gcode_line("20023", "M104 S215\nM140 S60"))["param"] == (
        "M104 S215\nM140 S60\n"
    )
    assert body(commands.gcode_line("20023", "G28\n"))["param"] == "G28\n"


@pytest.mark.parametrize(
    ("gcode", "message"),
    [
        ("", "non-empty string"),
        ("  \n", "non-empty string"),
        ("M117 héllo", "must be ASCII"),
        ("G28\x00", "control characters other than tab and newline"),
        ("G28\x1b", "control characters"),
        ("G1 X1\n" * 1000, "at most 4096 characters"),
    ],
)
def test_gcode_line_refuses(gcode: str, message: str) -> None:
    with pytest.raises(CommandError, match=message):
        commands.gcode_line("1", gcode)


@pytest.mark.parametrize(
    ("command", "param"),
    [
        (commands.set_nozzle_temp("1", 215), "M104 S215\n"),
        (commands.set_nozzle_temp("1", 0, extruder=1), "M104 T1 S0\n"),
        (commands.set_nozzle_temp("1", 320, extruder=0), "M104 T0 S320\n"),
        (commands.set_bed_temp("1", 60), "M140 S60\n"),
        (commands.set_chamber_temp("1", 45), "M141 S45\n"),
        (commands.set_fan("1", Fan.PART, 100), "M106 P1 S255\n"),
        (commands.set_fan("1", Fan.AUX, 50), "M106 P2 S128\n"),
        (commands.set_fan("1", Fan.CHAMBER, 0), "M106 P3 S0\n"),
        (commands.set_fan("1", 10, 33.3), "M106 P10 S85\n"),
        (commands.home("1"), "G28\n"),
    ],
)
def test_temperatures_and_fans_are_gcode_lines(command: Command, param: str) -> None:
    assert command.key == ("print", "gcode_line", "1")
    assert body(command)["param"] == param


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: commands.set_nozzle_temp("1", 321), "nozzle temperature must be .* 0 to 320 °C"),
        (lambda: commands.set_nozzle_temp("1", 200.5), "whole number"),
        (lambda: commands.set_nozzle_temp("1", 200, extruder=2), "extruder must be .* 0 to 1"),
        (lambda: commands.set_bed_temp("1", 121), "bed temperature must be .* 0 to 120 °C"),
        (lambda: commands.set_bed_temp("1", -5), "bed temperature"),
        (lambda: commands.set_chamber_temp("1", 66), "chamber temperature .* 0 to 65 °C"),
        (lambda: commands.set_fan("1", Fan.PART, 101), "fan speed must be a number from 0 to 100"),
        (lambda: commands.set_fan("1", Fan.PART, float("nan")), "fan speed"),
        (lambda: commands.set_fan("1", 4, 50), "fan must be one of 1, 2, 3, 10"),
    ],
)
def test_temperature_and_fan_ranges(call: Any, message: str) -> None:
    with pytest.raises(CommandError, match=message):
        call()


def test_print_speed_is_a_string_param() -> None:
    assert body(commands.print_speed("20024", SpeedLevel.STANDARD))["param"] == "2"
    assert body(commands.print_speed("20024", 4))["param"] == "4"
    with pytest.raises(CommandError, match="speed level must be one of 1, 2, 3, 4"):
        commands.print_speed("1", 5)
    with pytest.raises(CommandError, match="speed level"):
        commands.print_speed("1", True)


def test_print_option_and_calibration() -> None:
    assert (
        body(commands.print_option("1", PrintOption.AUTO_RECOVERY, True))["auto_recovery"] is True
    )
    assert body(commands.print_option("1", "sound_enable", False))["sound_enable"] is False
    bits = Calibration.BED_LEVELING | Calibration.VIBRATION
    assert body(commands.calibration("1", bits))["option"] == 6
    with pytest.raises(CommandError, match=r"calibration options must be .* 1 to 127"):
        commands.calibration("1", 0)
    with pytest.raises(CommandError, match="print option must be one of"):
        commands.print_option("1", "self_destruct", True)


# --- system, info, pushing -------------------------------------------------------------------


def test_ledctrl_lives_in_system_with_timing_fields() -> None:
    command = commands.ledctrl("20050", LightNode.CHAMBER, LightMode.ON)
    assert command.section == "system"
    assert body(command) == {
        "sequence_id": "20050",
        "command": "ledctrl",
        "led_node": "chamber_light",
        "led_mode": "on",
        "led_on_time": 500,
        "led_off_time": 500,
        "loop_times": 0,
        "interval_time": 0,
    }
    flashing = body(commands.ledctrl("1", "work_light", "flashing", on_time_ms=100, loop_times=3))
    assert (flashing["led_mode"], flashing["led_on_time"], flashing["loop_times"]) == (
        "flashing",
        100,
        3,
    )
    with pytest.raises(CommandError, match="light must be one of 'chamber_light'"):
        commands.ledctrl("1", "disco_ball", "on")
    with pytest.raises(CommandError, match="on_time_ms must be a whole number from 0"):
        commands.ledctrl("1", LightNode.CHAMBER, LightMode.ON, on_time_ms=-1)


def test_info_pushing_and_system_queries() -> None:
    assert body(commands.get_version("20002")) == {"sequence_id": "20002", "command": "get_version"}
    assert commands.get_version("1").section == "info"
    assert body(commands.pushall("20001")) == {
        "sequence_id": "20001",
        "command": "pushall",
        "version": 1,
        "push_target": 1,
    }
    assert commands.pushall("1").section == "pushing"
    assert body(commands.start_pushing("3"))["command"] == "start"
    access = commands.get_access_code("20051")
    assert access.key == ("system", "get_access_code", "20051")


# --- properties ------------------------------------------------------------------------------


@given(
    name=st.text(min_size=1, max_size=60),
    subtask=st.none() | st.text(max_size=60),
    mapping=st.none()
    | st.lists(st.integers(-1, 135) | st.sampled_from([EXTERNAL_SPOOL, EXTERNAL_LEFT]), max_size=8),
    dual=st.booleans(),
)
def test_project_file_emits_valid_json_or_a_command_error(
    name: str, subtask: str | None, mapping: list[int] | None, dual: bool
) -> None:
    try:
        command = commands.project_file(
            "20021",
            model=H2D if dual else P1S,
            file_name=name + ".3mf",
            ams_mapping=mapping,
            task_id=1,
            subtask_name=subtask,
        )
    except CommandError:
        return
    sent = body(command)
    assert sent["file"] == name + ".3mf"
    if mapping is not None:
        assert len(sent["ams_mapping"]) == len(sent["ams_mapping2"]) == len(mapping)


@given(st.text(max_size=200))
def test_gcode_line_emits_valid_json_or_a_command_error(gcode: str) -> None:
    try:
        command = commands.gcode_line("1", gcode)
    except CommandError:
        return
    assert body(command)["param"].rstrip("\n") == gcode.rstrip("\n")


@given(st.from_type(object), st.from_type(object))
def test_builders_raise_only_protocol_errors_on_arbitrary_values(a: object, b: object) -> None:
    calls = [
        lambda: commands.set_fan("1", a, b),  # type: ignore[arg-type]
        lambda: commands.ledctrl("1", a, b),  # type: ignore[arg-type]
        lambda: commands.print_speed("1", a),  # type: ignore[arg-type]
        lambda: commands.skip_objects("1", a, b),  # type: ignore[arg-type]
        lambda: commands.clean_print_error("1", subtask_id=a, print_error=b),  # type: ignore[arg-type]
    ]
    for call in calls:
        try:
            orjson.loads(call().payload)
        except ProtocolError:
            continue


# --- the shared field checks ---------------------------------------------------------------------


@pytest.mark.parametrize("code", [0x00, 0x1F, 0x7F, 0xD800, 0xDFFF])
def test_file_names_with_c0_del_or_lone_surrogates_are_refused(code: int) -> None:
    with pytest.raises(CommandError, match="file_name must not contain control characters"):
        start(file_name=f"cube{chr(code)}.gcode.3mf")


# exclude_categories=(): the default alphabet leaves out surrogates (category Cs).
@given(st.text(st.characters(exclude_categories=()), max_size=40))
def test_text_is_refused_exactly_when_it_holds_c0_del_or_a_surrogate(text: str) -> None:
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F or 0xD800 <= ord(ch) <= 0xDFFF for ch in text):
        with pytest.raises(CommandError, match="name must not contain control characters"):
            check_text("name", text, max_len=40, allow_empty=True)
    else:
        assert check_text("name", text, max_len=40, allow_empty=True) == text


@pytest.mark.parametrize("value", [BedType.TEXTURED_PLATE, "textured_plate"])
def test_a_choice_is_taken_as_a_member_or_its_value(value: object) -> None:
    assert check_choice("bed_type", BedType, value) is BedType.TEXTURED_PLATE


def test_a_member_of_another_enum_is_refused_by_value() -> None:
    with pytest.raises(CommandError, match=r"bed_type must be one of 'auto'.*got <LightMode\.ON"):
        check_choice("bed_type", BedType, LightMode.ON)
