"""Request builders for the command catalogue (protocol.md §1.8): pure functions → `Command`.

Each builder takes the sequence id explicitly (from the printer's `SequenceCounter`), checks
its values and raises `CommandError` naming what is allowed. Temperatures and fans go out as
G-code through `gcode_line`, which every firmware accepts; the structured `set_bed_temp` /
`set_nozzle_temp` commands exist only where capability bits say so (§1.8.6).

Nothing here produces the signed envelope of secured firmware (§9.2); printers with
signatures enforced answer with `signature_required` acks (see `acks`).

The AMS builders live in `ams_commands` and are re-exported here, so that callers need one
import: `from bambufarm.protocol import commands` then `commands.ams_load(...)`.
"""

from collections.abc import Sequence
from enum import IntEnum, IntFlag, StrEnum
from itertools import islice
from typing import Any

from bambufarm.protocol.ams_commands import (
    EXTERNAL_LEFT,
    EXTERNAL_SPOOL,
    NOZZLE_TEMP_MAX,
    UNMAPPED,
    AmsAction,
    AmsMapping,
    ams_control,
    ams_filament_reset,
    ams_filament_setting,
    ams_get_rfid,
    ams_load,
    ams_unload,
    encode_ams_mapping,
)
from bambufarm.protocol.envelope import (
    INT32_MAX,
    Command,
    SequenceCounter,
    build_command,
    check_bool,
    check_choice,
    check_int,
    check_number,
    check_text,
)
from bambufarm.protocol.errors import CommandError
from bambufarm.protocol.models import PrinterModel

__all__ = [
    "EXTERNAL_LEFT",
    "EXTERNAL_SPOOL",
    "INT32_MAX",
    "UNMAPPED",
    "AmsAction",
    "AmsMapping",
    "BedType",
    "Calibration",
    "Command",
    "Fan",
    "LightMode",
    "LightNode",
    "PrintOption",
    "SequenceCounter",
    "SpeedLevel",
    "ams_control",
    "ams_filament_reset",
    "ams_filament_setting",
    "ams_get_rfid",
    "ams_load",
    "ams_unload",
    "build_command",
    "calibration",
    "clean_print_error",
    "encode_ams_mapping",
    "gcode_file",
    "gcode_line",
    "get_access_code",
    "get_version",
    "home",
    "ledctrl",
    "pause",
    "print_option",
    "print_speed",
    "project_file",
    "pushall",
    "resume",
    "set_bed_temp",
    "set_chamber_temp",
    "set_fan",
    "set_nozzle_temp",
    "skip_objects",
    "start_pushing",
    "stop",
]

BED_TEMP_MAX = 120
CHAMBER_TEMP_MAX = 65
MAX_PLATE = 999  # Studio numbers plates from 1; far more than any build plate holds
# A gcode_line goes through the printer's small MQTT buffer (the P1/A1 run an ESP32);
# anything longer than a few lines belongs in a file printed with gcode_file.
GCODE_LINE_MAX = 4096
MAX_SKIPPED_OBJECTS = 1024


class SpeedLevel(IntEnum):
    """`print_speed` levels, reflected in the report's `spd_lvl`."""

    SILENT = 1
    STANDARD = 2
    SPORT = 3
    LUDICROUS = 4


class LightNode(StrEnum):
    """Lights `system.ledctrl` can switch (which exist depends on the model)."""

    CHAMBER = "chamber_light"
    CHAMBER2 = "chamber_light2"  # H2 series
    WORK = "work_light"  # X1 toolhead light
    HEATBED = "heatbed_light"  # H2 series


class LightMode(StrEnum):
    """`ledctrl` modes."""

    ON = "on"
    OFF = "off"
    FLASHING = "flashing"


class Fan(IntEnum):
    """Fans by their `M106 P<n>` index."""

    PART = 1
    AUX = 2
    CHAMBER = 3
    SECONDARY_AUX = 10  # P2S / X2D


class BedType(StrEnum):
    """`project_file` bed types; AUTO lets the printer use what the file was sliced for."""

    AUTO = "auto"
    COOL_PLATE = "cool_plate"
    ENGINEERING_PLATE = "eng_plate"
    HIGH_TEMP_PLATE = "hot_plate"
    TEXTURED_PLATE = "textured_plate"
    SUPERTACK_PLATE = "supertack_plate"


class Calibration(IntFlag):
    """`calibration` option bits (bit 3 is motor noise, not flow: protocol.md §0.3)."""

    LIDAR = 1
    BED_LEVELING = 2
    VIBRATION = 4
    MOTOR_NOISE = 8
    NOZZLE = 16
    HIGH_TEMP_BED = 32
    CLUMP_POSITION = 64


class PrintOption(StrEnum):
    """On/off toggles of `print_option`, one per command."""

    AUTO_RECOVERY = "auto_recovery"
    AUTO_SWITCH_FILAMENT = "auto_switch_filament"
    AIR_PRINT_DETECT = "air_print_detect"
    NOZZLE_BLOB_DETECT = "nozzle_blob_detect"
    SOUND = "sound_enable"
    FILAMENT_TANGLE_DETECT = "filament_tangle_detect"


# --- job control -------------------------------------------------------------------------


def pause(seq: str) -> Command:
    """`print.pause`: pause the running job."""
    return build_command("print", "pause", seq, {"param": ""})


def resume(seq: str) -> Command:
    """`print.resume`: resume a paused job."""
    return build_command("print", "resume", seq, {"param": ""})


def stop(seq: str) -> Command:
    """`print.stop`: cancel the running job (the printer then reports print_error 0300400C)."""
    return build_command("print", "stop", seq, {"param": ""})


def _file_name(value: object) -> str:
    """A bare .3mf file name: no directories, no control characters."""
    name = check_text("file_name", value, max_len=255)
    if "/" in name or "\\" in name or name in (".", ".."):
        raise CommandError(f"file_name must be a bare file name without '/', got {name!r}")
    if not name.lower().endswith(".3mf") or len(name) <= len(".3mf"):
        raise CommandError(f"file_name must end with '.3mf', got {name!r}")
    if len(name.encode()) > 255:
        raise CommandError(f"file_name must be at most 255 bytes in UTF-8, got {name!r}")
    return name


def _stem(name: str) -> str:
    """The display name Studio uses: the file name without `.gcode.3mf` / `.3mf`."""
    for suffix in (".gcode.3mf", ".3mf"):
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def project_file(
    seq: str,
    *,
    model: PrinterModel,
    file_name: str,
    plate: int = 1,
    ams_mapping: Sequence[int] | None,
    use_ams: bool | None = None,
    task_id: int,
    subtask_name: str | None = None,
    bed_type: BedType | str = BedType.AUTO,
    timelapse: bool = False,
    bed_leveling: bool = True,
    flow_cali: bool = False,
    vibration_cali: bool = True,
    layer_inspect: bool = False,
    md5: str = "",
) -> Command:
    """`print.project_file`: start plate `plate` of a 3MF already uploaded to the printer.

    `ams_mapping[i]` is the global tray for filament i (0-based): 0-127 AMS (unit*4+slot),
    128-135 AMS HT, `EXTERNAL_SPOOL` / `EXTERNAL_LEFT` (dual nozzle) or -1 for unmapped.
    `task_id` must differ from the previous job's: P1S treats a repeated id as a continuation
    of the last job and stays idle (protocol.md §1.8.2).
    """
    name = _file_name(file_name)
    plate_no = check_int("plate", plate, 1, MAX_PLATE)
    task = check_int("task_id", task_id, 0, INT32_MAX)
    display = _stem(name) if subtask_name is None else subtask_name
    display = check_text("subtask_name", display, max_len=255, allow_empty=True)
    bed = check_choice("bed_type", BedType, bed_type)
    if not isinstance(md5, str) or not (
        md5 == "" or (len(md5) == 32 and all(ch in "0123456789abcdefABCDEF" for ch in md5))
    ):
        raise CommandError(f"md5 must be empty or 32 hex digits, got {md5!r}")
    mapping = (
        None
        if ams_mapping is None
        else encode_ams_mapping(ams_mapping, dual_nozzle=model.dual_nozzle)
    )
    feed_from_ams = mapping is not None and mapping.uses_ams
    if use_ams is None:
        use_ams = feed_from_ams
    elif check_bool("use_ams", use_ams) != feed_from_ams and mapping is not None:
        # A P1 without AMS rejects use_ams=true, and use_ams=false with AMS trays mapped
        # would print from the external spool: refuse the contradiction instead.
        raise CommandError(
            f"use_ams={use_ams} contradicts ams_mapping {list(mapping.flat)}: "
            + ("no AMS tray is mapped" if use_ams else "it maps AMS trays")
        )
    # X1/P1/A1 take a path on the SD card; H2 and newer take the ftp:/// form (§1.8.2).
    url = f"file:///sdcard/{name}" if model.sdcard_url else f"ftp:///{name}"
    leveling = check_bool("bed_leveling", bed_leveling)
    fields: dict[str, Any] = {
        "param": f"Metadata/plate_{plate_no}.gcode",
        "url": url,
        "file": name,
        "md5": md5.lower(),
        "subtask_name": display,
        "project_id": "0",
        "profile_id": "0",
        "task_id": str(task),
        "subtask_id": str(task),
        "bed_type": bed.value,
        "timelapse": check_bool("timelapse", timelapse),
        # Firmware generations disagree on the spelling; unknown keys are ignored (§1.8.2).
        "bed_leveling": leveling,
        "bed_levelling": leveling,
        "flow_cali": check_bool("flow_cali", flow_cali),
        "vibration_cali": check_bool("vibration_cali", vibration_cali),
        "layer_inspect": check_bool("layer_inspect", layer_inspect),
        "use_ams": use_ams,
        "cfg": "0",
    }
    if mapping is not None:
        fields |= mapping.wire()
    return build_command("print", "project_file", seq, fields)


def gcode_file(seq: str, path: str) -> Command:
    """`print.gcode_file`: print a plain G-code file by its absolute path on the printer."""
    checked = check_text("path", path, max_len=1024)
    if not checked.startswith("/") or "/../" in f"{checked}/":
        raise CommandError(f"path must be absolute without '..', got {checked!r}")
    return build_command("print", "gcode_file", seq, {"param": checked})


def skip_objects(seq: str, ids: Sequence[int], timestamp: int) -> Command:
    """`print.skip_objects`: stop printing the objects with these identify ids."""
    if isinstance(ids, str | bytes) or not isinstance(ids, Sequence):
        raise CommandError(f"ids must be a non-empty list of object ids, got {ids!r}")
    # islice, not len(): a huge range() would overflow len() before we could refuse it.
    items = list(islice(ids, MAX_SKIPPED_OBJECTS + 1))
    if not items:
        raise CommandError(f"ids must be a non-empty list of object ids, got {ids!r}")
    if len(items) > MAX_SKIPPED_OBJECTS:
        raise CommandError(f"at most {MAX_SKIPPED_OBJECTS} objects can be skipped at once")
    checked = [check_int(f"ids[{i}]", obj, 0, INT32_MAX) for i, obj in enumerate(items)]
    when = check_int("timestamp", timestamp, 0, 2**63 - 1, "(Unix seconds)")
    fields = {"obj_list": list(dict.fromkeys(checked)), "timestamp": when}
    return build_command("print", "skip_objects", seq, fields)


def clean_print_error(seq: str, *, subtask_id: str | int, print_error: int) -> Command:
    """`print.clean_print_error`: dismiss `print_error` raised during job `subtask_id`."""
    is_int = isinstance(subtask_id, int) and not isinstance(subtask_id, bool)
    subtask = str(subtask_id) if is_int else subtask_id
    # Cloud job ids can exceed int32, so only the form is checked: up to 20 decimal digits.
    if not (
        isinstance(subtask, str)
        and 0 < len(subtask) <= 20
        and subtask.isascii()
        and subtask.isdigit()
    ):
        raise CommandError(f"subtask_id must be a decimal id, got {subtask_id!r}")
    code = check_int("print_error", print_error, 0, 0xFFFF_FFFF)
    fields = {"subtask_id": subtask, "print_error": code}
    return build_command("print", "clean_print_error", seq, fields)


# --- G-code: temperatures, fans, homing ----------------------------------------------------


def gcode_line(seq: str, gcode: str) -> Command:
    """`print.gcode_line`: run raw G-code (several lines allowed, newline-terminated)."""
    if not isinstance(gcode, str) or not gcode.strip():
        raise CommandError(f"gcode must be a non-empty string, got {gcode!r}")
    if len(gcode) > GCODE_LINE_MAX:
        raise CommandError(f"gcode must be at most {GCODE_LINE_MAX} characters, got {len(gcode)}")
    if not gcode.isascii():
        raise CommandError(f"gcode must be ASCII, got {gcode!r}")
    if any((ord(ch) < 0x20 and ch not in "\t\r\n") or ord(ch) == 0x7F for ch in gcode):
        raise CommandError(
            f"gcode must not contain control characters other than tab and newline, got {gcode!r}"
        )
    text = gcode if gcode.endswith("\n") else gcode + "\n"
    return build_command("print", "gcode_line", seq, {"param": text})


def set_nozzle_temp(seq: str, temp: int, extruder: int | None = None) -> Command:
    """Set a nozzle's target temperature (°C) with `M104`; `extruder` 0/1 adds `T<n>`.

    Without `extruder` the command addresses the active nozzle, which is what single-nozzle
    printers expect; dual-nozzle printers (H2D: 0 right, 1 left) take `M104 T<n> S<t>`.
    """
    target = check_int("nozzle temperature", temp, 0, NOZZLE_TEMP_MAX, "°C")
    if extruder is None:
        return gcode_line(seq, f"M104 S{target}")
    tool = check_int("extruder", extruder, 0, 1)
    return gcode_line(seq, f"M104 T{tool} S{target}")


def set_bed_temp(seq: str, temp: int) -> Command:
    """Set the bed's target temperature (°C) with `M140`."""
    target = check_int("bed temperature", temp, 0, BED_TEMP_MAX, "°C")
    return gcode_line(seq, f"M140 S{target}")


def set_chamber_temp(seq: str, temp: int) -> Command:
    """Set the chamber's target temperature (°C) with `M141` (heated-chamber models)."""
    target = check_int("chamber temperature", temp, 0, CHAMBER_TEMP_MAX, "°C")
    return gcode_line(seq, f"M141 S{target}")


def set_fan(seq: str, fan: Fan | int, percent: float) -> Command:
    """Set a fan's speed in percent with `M106 P<fan> S<0-255>`."""
    which = check_choice("fan", Fan, fan)
    share = check_number("fan speed", percent, 0, 100, "%")
    return gcode_line(seq, f"M106 P{which.value} S{round(share * 255 / 100)}")


def home(seq: str) -> Command:
    """Home all axes with `G28`."""
    return gcode_line(seq, "G28")


def print_speed(seq: str, level: SpeedLevel | int) -> Command:
    """`print.print_speed`: silent, standard, sport or ludicrous."""
    checked = check_choice("speed level", SpeedLevel, level)
    return build_command("print", "print_speed", seq, {"param": str(checked.value)})


# --- options, calibration ------------------------------------------------------------------


def print_option(seq: str, option: PrintOption | str, enabled: bool) -> Command:
    """`print.print_option`: switch one printer option on or off."""
    checked = check_choice("print option", PrintOption, option)
    fields = {checked.value: check_bool(checked.value, enabled)}
    return build_command("print", "print_option", seq, fields)


def calibration(seq: str, options: Calibration | int) -> Command:
    """`print.calibration`: run the calibrations whose bits are set."""
    bits = check_int("calibration options", options, 1, int(max(Calibration)) * 2 - 1)
    return build_command("print", "calibration", seq, {"option": bits})


# --- system, info, pushing -----------------------------------------------------------------


def ledctrl(
    seq: str,
    node: LightNode | str,
    mode: LightMode | str,
    *,
    on_time_ms: int = 500,
    off_time_ms: int = 500,
    loop_times: int = 0,
    interval_time_ms: int = 0,
) -> Command:
    """`system.ledctrl`: switch a light; firmware wants the timing fields even when not flashing."""
    fields = {
        "led_node": check_choice("light", LightNode, node).value,
        "led_mode": check_choice("light mode", LightMode, mode).value,
        "led_on_time": check_int("on_time_ms", on_time_ms, 0, INT32_MAX, "ms"),
        "led_off_time": check_int("off_time_ms", off_time_ms, 0, INT32_MAX, "ms"),
        "loop_times": check_int("loop_times", loop_times, 0, INT32_MAX),
        "interval_time": check_int("interval_time_ms", interval_time_ms, 0, INT32_MAX, "ms"),
    }
    return build_command("system", "ledctrl", seq, fields)


def get_access_code(seq: str) -> Command:
    """`system.get_access_code`: the reply carries the access code (keep it out of logs)."""
    return build_command("system", "get_access_code", seq)


def get_version(seq: str) -> Command:
    """`info.get_version`: the reply lists firmware modules and counts as the ack."""
    return build_command("info", "get_version", seq)


def pushall(seq: str) -> Command:
    """`pushing.pushall`: ask for a full report (answered by push_status msg 0, not an ack)."""
    fields = {"version": 1, "push_target": 1}  # what Studio sends; older clients omit them
    return build_command("pushing", "pushall", seq, fields, expects_ack=False)


def start_pushing(seq: str) -> Command:
    """`pushing.start`: re-enable periodic reports after they stopped (no ack)."""
    return build_command("pushing", "start", seq, expects_ack=False)
