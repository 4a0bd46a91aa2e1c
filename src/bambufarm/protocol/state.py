"""The manager's view of one printer: `PrinterState`, built by merging reports (protocol.md §1.4).

`merge(state, report)` is pure. A full report (`print.msg == 0`) replaces the printer's wire
object; a delta (`msg == 1`) is deep-merged into it (`rawmerge`). The merged wire object stays
inside the state and is shared copy-on-write with the next one, and only the typed parts whose
wire keys a delta touched are rebuilt: a 1 KB progress delta rebuilds the job, not the AMS.

Typed values are converted tolerantly (`coerce`): a field whose wire value cannot be read keeps
its previous value, so a report is never lost to one odd field.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from bambufarm.protocol.ams import Ams, AmsTray, AmsUnit, build_ams
from bambufarm.protocol.coerce import to_hex, to_int
from bambufarm.protocol.firmware import Firmware, FirmwareModule, firmware_from_version
from bambufarm.protocol.job import BUSY_STATES, GcodeState, Job, build_job
from bambufarm.protocol.rawmerge import merge_print
from bambufarm.protocol.report import Report
from bambufarm.protocol.telemetry import (
    NO_LIGHTS,
    Camera,
    Extruder,
    Fans,
    Network,
    Nozzle,
    SdState,
    Speed,
    Storage,
    Temperatures,
    build_camera,
    build_fans,
    build_hms,
    build_lights,
    build_network,
    build_nozzle,
    build_speed,
    build_storage,
    build_temperatures,
)

# The typed parts live in their own modules; this one is where other packages import them from.
__all__ = [
    "BUSY_STATES",
    "FUN_SIGNING_REQUIRED",
    "Ams",
    "AmsTray",
    "AmsUnit",
    "Camera",
    "Extruder",
    "Fans",
    "Firmware",
    "FirmwareModule",
    "GcodeState",
    "Job",
    "Network",
    "Nozzle",
    "PrinterState",
    "SdState",
    "Speed",
    "Storage",
    "Temperatures",
    "empty_state",
    "merge",
]

_EMPTY: Mapping[str, Any] = MappingProxyType({})
# Frozen values, so one shared default instance per part is safe.
_JOB0, _TEMPS0, _FANS0, _SPEED0 = Job(), Temperatures(), Fans(), Speed()
_AMS0, _STORAGE0, _NETWORK0 = Ams(), Storage(), Network()
_NOZZLE0, _CAMERA0, _FIRMWARE0 = Nozzle(), Camera(), Firmware()

# `fun` bit 29 set = the printer requires signed MQTT commands, i.e. Developer Mode is off
# (protocol.md §9.3: "3EC1AFFF9CFF" off vs "3EC18FFF9CFF" on).
FUN_SIGNING_REQUIRED = 1 << 29


@dataclass(frozen=True, slots=True)
class PrinterState:
    """Everything the manager knows about one printer, typed and immutable.

    `raw` is the merged `print` object as sent on the wire, for fields not typed here. It is
    shared with earlier and later states: never mutate it. It does not take part in equality,
    which compares the typed view only.
    """

    serial: str
    job: Job = _JOB0
    temperatures: Temperatures = _TEMPS0
    fans: Fans = _FANS0
    speed: Speed = _SPEED0
    # node -> mode ("on", "off", "flashing"); read-only mapping
    lights: Mapping[str, str] = field(default_factory=lambda: NO_LIGHTS)
    ams: Ams = _AMS0
    hms: tuple[tuple[int, int], ...] = ()  # active (attr, code) pairs, decoded by protocol.hms
    storage: Storage = _STORAGE0
    network: Network = _NETWORK0
    nozzle: Nozzle = _NOZZLE0
    camera: Camera = _CAMERA0
    firmware: Firmware = _FIRMWARE0
    fun: str | None = None  # capability bits as sent (hex)
    developer_mode: bool | None = None  # None when the printer does not send `fun`
    sequence: int | None = None  # sequence_id of the last push merged
    report_count: int = 0  # pushes merged since empty_state
    raw: Mapping[str, Any] = field(default_factory=lambda: _EMPTY, compare=False, repr=False)

    @property
    def print_error(self) -> int:
        """The current print error (0 = none)."""
        return self.job.print_error


def empty_state(serial: str) -> PrinterState:
    """The state of a printer nothing has been heard from yet."""
    return PrinterState(serial)


def merge(state: PrinterState, report: Report) -> PrinterState:
    """The state after `report`; pure: neither `state` nor `report` is modified."""
    new = state
    for name, body in report.sections.items():
        if name == "print":
            new = _merge_print(new, body)
        elif name == "info":
            firmware = firmware_from_version(body, new.firmware)
            if firmware is not None:
                new = _with_firmware(new, firmware)
    return new


# Which typed part each top-level `print` key feeds; a delta rebuilds only the parts it touches.
_JOB, _TEMPS, _FANS, _SPEED, _LIGHTS, _AMS, _HMS = range(7)
_STORAGE, _NETWORK, _NOZZLE, _CAMERA, _FUN = range(7, 12)
_ALL_PARTS = frozenset(range(12))
_PART_OF_KEY: Mapping[str, int] = MappingProxyType(
    {
        **dict.fromkeys(
            (
                "gcode_state", "gcode_file", "file", "subtask_name", "mc_percent", "percent",
                "mc_remaining_time", "remain_time", "layer_num", "total_layer_num",
                "mc_print_stage", "stg_cur", "stg", "print_type", "task_id", "subtask_id",
                "project_id", "profile_id", "gcode_start_time", "gcode_file_prepare_percent",
                "print_error", "s_obj", "ams_mapping",
            ),
            _JOB,
        ),
        **dict.fromkeys(
            (
                "nozzle_temper", "nozzle_target_temper", "bed_temper", "bed_target_temper",
                "chamber_temper", "device",
            ),
            _TEMPS,
        ),
        **dict.fromkeys(
            ("cooling_fan_speed", "big_fan1_speed", "big_fan2_speed", "heatbreak_fan_speed"),
            _FANS,
        ),
        **dict.fromkeys(("spd_lvl", "spd_mag"), _SPEED),
        "lights_report": _LIGHTS,
        **dict.fromkeys(("ams", "vt_tray", "vir_slot", "ams_status"), _AMS),
        "hms": _HMS,
        **dict.fromkeys(("sdcard", "home_flag", "storage"), _STORAGE),
        **dict.fromkeys(("wifi_signal", "net"), _NETWORK),
        **dict.fromkeys(("nozzle_diameter", "nozzle_type"), _NOZZLE),
        "ipcam": _CAMERA,
        "fun": _FUN,
    }
)  # fmt: skip
_KEYS_OF_PART = tuple(
    tuple(key for key, owner in _PART_OF_KEY.items() if owner == part) for part in _ALL_PARTS
)


def _changed_parts(new: Mapping[str, Any], old: Mapping[str, Any]) -> set[int]:
    """The parts whose wire keys differ between two full objects (X1 repeats most of them)."""
    changed: set[int] = set()
    for part, keys in enumerate(_KEYS_OF_PART):
        for key in keys:
            if new.get(key) != old.get(key):
                changed.add(part)
                break
    return changed


def _merge_print(state: PrinterState, body: Mapping[str, Any]) -> PrinterState:
    """Merge one `print` section; command acks other than push_status change nothing."""
    command = body.get("command")
    if command is not None and command != "push_status":
        return state
    msg = body.get("msg")
    full = msg in (0, "0") and not isinstance(msg, bool)
    if full:
        raw: Mapping[str, Any] = body
        parts = _changed_parts(raw, state.raw)
    else:
        # Printers send only changed keys in a delta, so every key present counts as touched.
        raw = merge_print(state.raw, body)
        parts = {_PART_OF_KEY.get(key, -1) for key in body}
    job = build_job(raw, body, state.job) if _JOB in parts else state.job
    fun, developer_mode = state.fun, state.developer_mode
    if _FUN in parts:
        fun, developer_mode = _build_fun(raw.get("fun"), fun, developer_mode)
    return PrinterState(
        state.serial,
        job,
        build_temperatures(raw, state.temperatures) if _TEMPS in parts else state.temperatures,
        build_fans(raw, state.fans) if _FANS in parts else state.fans,
        build_speed(raw, state.speed) if _SPEED in parts else state.speed,
        build_lights(raw.get("lights_report"), state.lights) if _LIGHTS in parts else state.lights,
        build_ams(raw, state.ams, state.raw) if _AMS in parts else state.ams,
        build_hms(raw.get("hms"), state.hms) if _HMS in parts else state.hms,
        build_storage(raw, state.storage) if _STORAGE in parts else state.storage,
        build_network(raw, state.network) if _NETWORK in parts else state.network,
        build_nozzle(raw, state.nozzle) if _NOZZLE in parts else state.nozzle,
        build_camera(raw.get("ipcam"), state.camera) if _CAMERA in parts else state.camera,
        state.firmware,
        fun,
        developer_mode,
        _sequence(body.get("sequence_id"), state.sequence),
        state.report_count + 1,
        raw,
    )


def _sequence(value: object, previous: int | None) -> int | None:
    """The push's sequence number; a push without one keeps the previous."""
    return previous if value is None else to_int(value, previous)


def _build_fun(
    value: object, previous: str | None, previous_mode: bool | None
) -> tuple[str | None, bool | None]:
    """`fun` as sent and the Developer-Mode flag it implies (bit 29 clear = Developer Mode)."""
    if value is None:
        return None, None
    bits = to_hex(value, None)
    if bits is None:
        return previous, previous_mode
    text = value if isinstance(value, str) else format(bits, "X")
    return text, not bits & FUN_SIGNING_REQUIRED


def _with_firmware(state: PrinterState, firmware: Firmware) -> PrinterState:
    """`state` with new firmware details."""
    return PrinterState(
        state.serial, state.job, state.temperatures, state.fans, state.speed, state.lights,
        state.ams, state.hms, state.storage, state.network, state.nozzle, state.camera,
        firmware, state.fun, state.developer_mode, state.sequence, state.report_count,
        state.raw,
    )  # fmt: skip
