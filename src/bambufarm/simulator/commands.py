"""Command handling of a simulated printer: one request payload in, reply payloads out.

Rules from protocol.md §12: every section of a payload is handled (§12.10); every request
carrying a `sequence_id` is answered with the same section, `command` and `sequence_id` (in the
type received) plus `result`, unknown commands with `result: "failed"` (§12.8); every reply is
one object whose top-level values are objects (§12.7). On a `secured` printer every unsigned
`print.*` command is refused with the signing error of §9.2.
"""

import logging
import math
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson

from .print_job import SPEED_PERCENT, STAGE_USER_PAUSE, ams_mapping, file_name
from .report_builder import material

if TYPE_CHECKING:
    from .printer import SimPrinter

logger = logging.getLogger(__name__)

VERIFY_FAILED = 84_033_543  # 0x05024007: signature absent or bad (protocol.md §9.2)
_LED_MODES = frozenset({"on", "off", "flashing"})
_ON_OFF = frozenset({"enable", "disable"})
_RESOLUTIONS = frozenset({"720p", "1080p"})
_AMS_CONTROL = frozenset({"resume", "pause", "reset", "done", "abort"})
# M106 P<n> → report key; P10 (secondary aux, P2S/X2D) has no legacy report field.
_FAN_KEYS = {1: "cooling_fan_speed", 2: "big_fan1_speed", 3: "big_fan2_speed"}
_GCODE_WORD = re.compile(r"([A-Z])(-?\d+(?:\.\d*)?)")

Reply = dict[str, Any]
Handler = Callable[["CommandHandlers", dict[str, Any]], Reply]


def _ok(**extra: Any) -> Reply:
    return {"result": "success", "reason": "", **extra}


def _failed(reason: str, **extra: Any) -> Reply:
    return {"result": "failed", "reason": reason, **extra}


def _choice(value: object, allowed: frozenset[str]) -> bool:
    """Whether `value` is one of the allowed strings (any JSON value may arrive)."""
    return isinstance(value, str) and value in allowed


def _int(value: object) -> int | None:
    """An int from an int or a decimal string, as clients send both; None otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return None


class CommandHandlers:
    """Dispatches the sections of a request payload to the printer."""

    __slots__ = ("_printer",)

    def __init__(self, printer: "SimPrinter") -> None:
        self._printer = printer

    def handle(self, message: dict[str, Any]) -> list[bytes]:
        """Handle every section of one decoded request; return the payloads to publish."""
        printer = self._printer
        out: list[bytes] = []
        signed = _is_signed(message.get("header"))
        state_changed = False
        for section, body in message.items():
            if section == "header" or not isinstance(body, dict):
                continue
            command = body.get("command")
            if section == "pushing" and command == "pushall":
                out.append(printer.full_report())
            if section == "print" and printer.quirks.secured and not signed:
                reply = _failed("mqtt message verify failed", err_code=VERIFY_FAILED)
            else:
                handler = _HANDLERS.get((section, command)) if isinstance(command, str) else None
                if handler is None:
                    reply = _failed(f"unsupported command {section}.{command}")
                else:
                    before = printer.report.changes
                    reply = handler(self, body)
                    state_changed |= printer.report.changes != before
            if "sequence_id" in body or (
                isinstance(command, str) and (section, command) in _QUERIES
            ):
                out.append(_reply(section, body, reply))
            elif reply["result"] != "success":
                logger.debug("%s: %s.%s refused: %s", printer.identity.serial, section,
                             command, reply["reason"])  # fmt: skip
        if state_changed and printer.pushing:
            out.append(printer.immediate_report())
        return out

    # ------------------------------------------------------------------ pushing / info

    def _pushall(self, body: dict[str, Any]) -> Reply:
        return _ok()  # the full report itself was queued by handle()

    def _push_start(self, body: dict[str, Any]) -> Reply:
        self._printer.pushing = True
        return _ok()

    def _push_stop(self, body: dict[str, Any]) -> Reply:
        self._printer.pushing = False
        return _ok()

    def _get_version(self, body: dict[str, Any]) -> Reply:
        return _ok(module=self._printer.identity.version_modules())

    def _get_history(self, body: dict[str, Any]) -> Reply:
        return _ok(firmware=[])

    # ------------------------------------------------------------------ print: job control

    def _project_file(self, body: dict[str, Any]) -> Reply:
        printer = self._printer
        if printer.gcode_state in ("PREPARE", "RUNNING", "PAUSE"):
            return _failed(f"printer is busy ({printer.gcode_state})")
        name = file_name(body)
        if name is None:
            return _failed("no url or file names the 3MF to print")
        raw = body.get("ams_mapping")
        if raw not in (None, "") and not isinstance(raw, list):
            return _failed("ams_mapping must be a list of tray ids")
        printer.start_job(body, name, ams_mapping(body))
        return _ok()

    def _pause(self, body: dict[str, Any]) -> Reply:
        if not self._printer.pause(STAGE_USER_PAUSE):
            return _failed(f"nothing to pause ({self._printer.gcode_state})")
        return _ok()

    def _resume(self, body: dict[str, Any]) -> Reply:
        if not self._printer.resume():
            return _failed(f"not paused ({self._printer.gcode_state})")
        return _ok()

    def _stop(self, body: dict[str, Any]) -> Reply:
        # Stopping an idle printer is harmless on real firmware: acknowledge it.
        self._printer.stop()
        return _ok()

    def _print_speed(self, body: dict[str, Any]) -> Reply:
        level = _int(body.get("param"))
        if level not in SPEED_PERCENT:
            return _failed("param must be the speed level 1-4")
        self._printer.set_speed(level)
        return _ok()

    def _clean_print_error(self, body: dict[str, Any]) -> Reply:
        self._printer.report.put("print_error", 0)
        return _ok()

    def _skip_objects(self, body: dict[str, Any]) -> Reply:
        objects = body.get("obj_list")
        if not isinstance(objects, list) or not all(_int(o) is not None for o in objects):
            return _failed("obj_list must be a list of object ids")
        report = self._printer.report
        skipped: list[int] = list(report.data["s_obj"])
        skipped += [o for o in (_int(v) for v in objects) if o is not None and o not in skipped]
        report.put("s_obj", skipped)
        return _ok()

    def _accept(self, body: dict[str, Any]) -> Reply:
        # Commands whose effect the simulator does not model (calibration, print options).
        return _ok()

    # ------------------------------------------------------------------ print: temperatures

    def _gcode_line(self, body: dict[str, Any]) -> Reply:
        param = body.get("param")
        if not isinstance(param, str):
            return _failed("param must be G-code text")
        for line in param.split("\n"):
            words = dict(_GCODE_WORD.findall(line.split(";", 1)[0].upper()))
            code = line.split(";", 1)[0].strip().upper().split(" ", 1)[0]
            reason = self._gcode(code, words)
            if reason:
                return _failed(reason)
        # Firmware answers gcode_line in capitals (protocol.md §1.3 example).
        return {"result": "SUCCESS", "reason": "SUCCESS", "err_code": 0}

    def _gcode(self, code: str, words: dict[str, str]) -> str:
        printer = self._printer
        value = float(words["S"]) if "S" in words else None
        if code in ("M104", "M109") and value is not None:
            index = int(float(words.get("T", "0")))
            if not printer.thermals.set_nozzle_target(index, value):
                return f"no nozzle T{index}"
        elif code in ("M140", "M190") and value is not None:
            printer.thermals.set_bed_target(value)
        elif code in ("M141", "M191") and value is not None:
            printer.thermals.set_chamber_target(value)
        elif code == "M106":
            fan = int(float(words.get("P", "1")))
            if fan in _FAN_KEYS:
                level = math.floor(max(0.0, min(255.0, value or 0.0)) * 15 / 255 + 0.5)
                printer.report.put(_FAN_KEYS[fan], str(level))
        elif code == "M107":
            printer.report.put("cooling_fan_speed", "0")
        return ""

    def _set_bed_temp(self, body: dict[str, Any]) -> Reply:
        temp = body.get("temp")
        if not isinstance(temp, int | float) or isinstance(temp, bool):
            return _failed("temp must be a number")
        self._printer.thermals.set_bed_target(float(temp))
        return _ok()

    def _set_nozzle_temp(self, body: dict[str, Any]) -> Reply:
        temp = body.get("target_temp")
        index = _int(body.get("extruder_index", 0))
        if not isinstance(temp, int | float) or isinstance(temp, bool) or index is None:
            return _failed("target_temp must be a number")
        if not self._printer.thermals.set_nozzle_target(index, float(temp)):
            return _failed(f"no extruder {index}")
        return _ok()

    def _set_ctt(self, body: dict[str, Any]) -> Reply:
        temp = body.get("ctt_val")
        if not isinstance(temp, int | float) or isinstance(temp, bool):
            return _failed("ctt_val must be a number")
        self._printer.thermals.set_chamber_target(float(temp))
        return _ok()

    # ------------------------------------------------------------------ print: AMS

    def _ams_change_filament(self, body: dict[str, Any]) -> Reply:
        printer = self._printer
        if printer.gcode_state in ("PREPARE", "RUNNING"):
            return _failed(f"printer is busy ({printer.gcode_state})")
        target = _int(body.get("target"))
        if target is None:
            return _failed("target must be a tray id")
        report = printer.report
        previous = report.data["ams"]["tray_now"]
        if target != 255:  # 255 unloads
            path = printer.tray_path(target)
            if path is None or not report.get(path).get("tray_type"):
                return _failed(f"tray {target} holds no filament", errno=-1)
        report.set(("ams", "tray_pre"), previous)
        report.set(("ams", "tray_tar"), str(target))
        report.set(("ams", "tray_now"), str(target))
        return _ok()

    def _ams_filament_setting(self, body: dict[str, Any]) -> Reply:
        printer = self._printer
        ams_id = _int(body.get("ams_id"))
        slot = _int(body.get("slot_id", body.get("tray_id")))
        if ams_id is None or slot is None:
            return _failed("ams_id and tray_id/slot_id must be integers")
        if ams_id in (254, 255):
            tray = 255 if "vt_tray" in printer.report.data else ams_id
        elif ams_id >= 128:
            tray = ams_id
        else:
            # BD sends the slot index in tray_id; a global id (>= 4) names the same slot.
            tray = ams_id * 4 + slot % 4
        path = printer.tray_path(tray)
        if path is None:
            return _failed(f"no tray {slot} in AMS {ams_id}")
        fields = _tray_fields(body)
        if fields is None:
            return _failed("tray_type and tray_color must be strings")
        for key, value in fields.items():
            printer.report.set((*path, key), value)
        version = printer.report.data["ams"]["version"]
        printer.report.set(("ams", "version"), version + 1)
        return _ok()

    def _ams_control(self, body: dict[str, Any]) -> Reply:
        if not _choice(body.get("param"), _AMS_CONTROL):
            return _failed(f"param must be one of {', '.join(sorted(_AMS_CONTROL))}")
        return _ok()

    # ------------------------------------------------------------------ system / camera

    def _ledctrl(self, body: dict[str, Any]) -> Reply:
        node, mode = body.get("led_node"), body.get("led_mode")
        report = self._printer.report
        lights: list[dict[str, str]] = report.data["lights_report"]
        if not _choice(mode, _LED_MODES):
            return _failed("led_mode must be on, off or flashing")
        if not any(light["node"] == node for light in lights):
            return _failed(f"no light {node!r} on this printer")
        updated = [{**li, "mode": mode} if li["node"] == node else li for li in lights]
        report.put("lights_report", updated)
        return _ok()

    def _get_access_code(self, body: dict[str, Any]) -> Reply:
        return _ok(access_code=self._printer.identity.access_code)

    def _ipcam_setting(self, key: str, value: object, allowed: frozenset[str]) -> Reply:
        if not _choice(value, allowed):
            return _failed(f"{key} must be one of {', '.join(sorted(allowed))}")
        self._printer.report.set(("ipcam", key), value)
        return _ok()

    def _record(self, body: dict[str, Any]) -> Reply:
        return self._ipcam_setting("ipcam_record", body.get("control"), _ON_OFF)

    def _timelapse(self, body: dict[str, Any]) -> Reply:
        return self._ipcam_setting("timelapse", body.get("control"), _ON_OFF)

    def _resolution(self, body: dict[str, Any]) -> Reply:
        return self._ipcam_setting("resolution", body.get("resolution"), _RESOLUTIONS)

    def _xcam_control(self, body: dict[str, Any]) -> Reply:
        module, control = body.get("module_name"), body.get("control")
        xcam: dict[str, Any] = self._printer.report.data["xcam"]
        if not _choice(module, frozenset(xcam)) or not isinstance(control, bool):
            return _failed("module_name must name an xcam detector and control be a boolean")
        self._printer.report.set(("xcam", str(module)), control)
        return _ok()


def _tray_fields(body: dict[str, Any]) -> dict[str, Any] | None:
    tray_type = body.get("tray_type", "")
    colour = body.get("tray_color", "00000000")
    if not isinstance(tray_type, str) or not isinstance(colour, str):
        return None
    colour = colour.upper().lstrip("#")
    if not tray_type:  # clearing a slot (BD reset_ams_slot): empty strings, zero colour
        colour = "00000000"
    profile = material(tray_type)
    low = _int(body.get("nozzle_temp_min"))
    high = _int(body.get("nozzle_temp_max"))
    info_idx = body.get("tray_info_idx", "")
    sub = body.get("tray_sub_brands", "")
    return {
        "tray_type": tray_type,
        "tray_info_idx": info_idx if isinstance(info_idx, str) else "",
        "tray_sub_brands": sub if isinstance(sub, str) else "",
        "tray_color": colour,
        "cols": [colour],
        "nozzle_temp_min": str(
            low if low is not None else (profile.nozzle_min if tray_type else 0)
        ),
        "nozzle_temp_max": str(
            high if high is not None else (profile.nozzle_max if tray_type else 0)
        ),
    }


def _is_signed(header: object) -> bool:
    # The simulator cannot verify Bambu signatures (that needs Bambu's keys, protocol.md §9.2);
    # a payload carrying a signature envelope is taken as signed so tests can tell the paths apart.
    return isinstance(header, dict) and isinstance(header.get("sign_string"), str)


def _reply(section: str, body: dict[str, Any], reply: Reply) -> bytes:
    # Echo the request's fields (printers usually do, protocol.md §1.3), then the result;
    # command and sequence_id go back exactly as received, an int id staying an int.
    answer = {**body, **reply, "command": body.get("command")}
    if "sequence_id" in body:
        answer["sequence_id"] = body["sequence_id"]
    return orjson.dumps({section: answer})


# Requests whose answer is the point: clients send these without a sequence_id too (the
# connect handshake of protocol.md §12.10) and wait for the reply.
_QUERIES = frozenset(
    {("info", "get_version"), ("system", "get_access_code"), ("upgrade", "get_history")}
)

_HANDLERS: dict[tuple[str, str], Handler] = {
    ("pushing", "pushall"): CommandHandlers._pushall,
    ("pushing", "start"): CommandHandlers._push_start,
    ("pushing", "stop"): CommandHandlers._push_stop,
    ("info", "get_version"): CommandHandlers._get_version,
    ("upgrade", "get_history"): CommandHandlers._get_history,
    ("print", "project_file"): CommandHandlers._project_file,
    ("print", "pause"): CommandHandlers._pause,
    ("print", "resume"): CommandHandlers._resume,
    ("print", "stop"): CommandHandlers._stop,
    ("print", "print_speed"): CommandHandlers._print_speed,
    ("print", "clean_print_error"): CommandHandlers._clean_print_error,
    ("print", "skip_objects"): CommandHandlers._skip_objects,
    ("print", "calibration"): CommandHandlers._accept,
    ("print", "print_option"): CommandHandlers._accept,
    ("print", "gcode_line"): CommandHandlers._gcode_line,
    ("print", "set_bed_temp"): CommandHandlers._set_bed_temp,
    ("print", "set_nozzle_temp"): CommandHandlers._set_nozzle_temp,
    ("print", "set_ctt"): CommandHandlers._set_ctt,
    ("print", "ams_change_filament"): CommandHandlers._ams_change_filament,
    ("print", "ams_filament_setting"): CommandHandlers._ams_filament_setting,
    ("print", "ams_control"): CommandHandlers._ams_control,
    ("system", "ledctrl"): CommandHandlers._ledctrl,
    ("system", "get_access_code"): CommandHandlers._get_access_code,
    ("camera", "ipcam_record_set"): CommandHandlers._record,
    ("camera", "ipcam_timelapse"): CommandHandlers._timelapse,
    ("camera", "ipcam_resolution_set"): CommandHandlers._resolution,
    ("xcam", "xcam_control_set"): CommandHandlers._xcam_control,
}
