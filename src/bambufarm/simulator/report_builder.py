"""The `print.push_status` report of a simulated printer: full content per model, and deltas.

`initial_report()` builds the power-on content for a model (protocol.md §1.5, fields typed as
on the wire: many numbers are strings). `ReportState` holds that content, records which paths
changed since the last publication, and serialises either the whole object (`msg: 0`) or only
what changed (`msg: 1`). Deltas follow the merge rules of protocol.md §1.4: nested objects carry
only changed keys, `ams.ams[]` and `tray[]` entries are matched by `id`, every other list is a
snapshot sent whole. Keys are never removed, so merging the deltas into a full report always
yields the next full report.
"""

from dataclasses import dataclass
from typing import Any

from bambufarm.protocol.models import CameraKind, ReportMode

from .identity import AMS_HT_FIRST_ID, AmsKind, PrinterIdentity, TraySpec
from .quirks import Quirks

AMBIENT_C = 25.0
# P1/A1 have no chamber sensor and report a fixed placeholder (protocol.md §1.5.2).
CHAMBER_PLACEHOLDER = 5
# home_flag from the §1.5.7 example: SD state bits 8-9 = 1 ("normal"), which slicers require
# before they enable "Send" (protocol.md §1.10).
HOME_FLAG = 224_478_464
# Capability bits seen on current firmware (HA fixtures), with bit 31 (port-6000 file tunnel)
# cleared so that slicers use FTPS, and bit 29 (signing required) set only for `secured`.
_FUN_BASE = 0x3EC1_8FFF_9CFF & ~(1 << 31) & ~(1 << 29)
FUN_SIGNED_BIT = 1 << 29
MASK_255_255_255_0 = 0x00FF_FFFF  # 255.255.255.0 read little-endian, as in net.info[].mask
IDLE_STAGE_FULL = -1  # X1 family reports stg_cur -1 when idle
IDLE_STAGE_DELTA = 255  # P1/A1 and newer report 255
# Models speaking the "new protocol" (device.*, percent/remain_time aliases, extended tray
# states): P2S, A2L, H2 family, X2D (HA fixtures; protocol.md §1.5.2).
_NEW_PROTOCOL = frozenset({"N7", "N9", "O1D", "O1E", "O1S", "O1C", "N6"})
_ESP32 = frozenset({"C11", "C12", "N1", "N2S"})  # P1P, P1S, A1 mini, A1


@dataclass(frozen=True, slots=True)
class Material:
    """Temperatures a filament type is printed at (slicer-profile defaults)."""

    nozzle_min: int
    nozzle_max: int
    nozzle: int  # printing temperature the simulator heats to
    bed: int


_MATERIALS = {
    "PLA": Material(190, 230, 220, 55),
    "PLA-S": Material(190, 230, 220, 35),
    "PETG": Material(220, 270, 250, 70),
    "ABS": Material(240, 270, 260, 90),
    "ASA": Material(240, 280, 260, 90),
    "TPU": Material(200, 250, 230, 35),
    "PA": Material(260, 290, 280, 100),
    "PC": Material(260, 290, 280, 100),
}


def material(name: str) -> Material:
    """The temperature profile of a filament type ("PLA", "PETG-CF", ...), PLA if unknown."""
    key = name.upper()
    if key in _MATERIALS:
        return _MATERIALS[key]
    return _MATERIALS.get(key.split("-")[0], _MATERIALS["PLA"])


@dataclass(frozen=True, slots=True)
class ById:
    """A path step into a list of objects: the element whose `id` equals `id`."""

    id: str | int


Path = tuple[str | ById, ...]


def is_full_mode(identity: PrinterIdentity) -> bool:
    """True for printers that publish the whole object every tick (X1 family)."""
    return identity.model.report_mode is ReportMode.FULL


def is_new_protocol(identity: PrinterIdentity) -> bool:
    """True for P2S / H2 / X2D / A2L, which report the `device` block and extended trays."""
    return identity.model.code in _NEW_PROTOCOL


def uses_sdcard_gcode_name(identity: PrinterIdentity) -> bool:
    """True where `gcode_file` is the 3MF name (P1/A1), not the extracted plate path."""
    return identity.model.code in _ESP32


def idle_stage(identity: PrinterIdentity) -> int:
    """The `stg_cur` value of a printer doing nothing."""
    return IDLE_STAGE_FULL if is_full_mode(identity) else IDLE_STAGE_DELTA


def fun_hex(secured: bool) -> str:
    """The `fun` capability string: bit 29 set when unsigned commands are refused."""
    return f"{_FUN_BASE | (FUN_SIGNED_BIT if secured else 0):X}"


def pack_temp(current: float, target: float) -> int:
    """New-protocol packed temperature: current °C in the low 16 bits, target in the high."""
    return (int(target) & 0xFFFF) << 16 | (int(current) & 0xFFFF)


def colour_of(tray: TraySpec) -> str:
    """The `tray_color` of a spec, all zeros for an empty slot."""
    return "00000000" if tray.empty else tray.colour


def tray_wire(identity: PrinterIdentity, spec: TraySpec, tray_id: str, part: str) -> dict[str, Any]:
    """One tray object as reported (protocol.md §1.5.6); an empty slot is cleared but complete."""
    extended = is_new_protocol(identity)
    if spec.empty and not part.startswith("ext"):
        # An empty AMS slot is reported as its id alone (legacy) or with state 8 (extended).
        return {"id": tray_id, "state": 8} if extended else {"id": tray_id}
    mat = material(spec.material) if not spec.empty else Material(0, 0, 0, 0)
    tag = identity.hardware_id(f"tag/{part}", 16) if spec.bambu else "0" * 16
    uuid = identity.hardware_id(f"uuid/{part}", 32) if spec.bambu else "0" * 32
    tray: dict[str, Any] = {
        "id": tray_id,
        "tray_type": spec.material,
        "tray_sub_brands": spec.sub_brand,
        "tray_info_idx": spec.info_idx,
        "tray_id_name": "",
        "tray_color": colour_of(spec),
        "cols": [colour_of(spec)],
        "ctype": 0,
        "tray_weight": str(spec.weight_g),
        "tray_diameter": "0.00" if spec.empty else "1.75",
        "remain": 0 if spec.empty else spec.remain,
        "nozzle_temp_min": str(mat.nozzle_min),
        "nozzle_temp_max": str(mat.nozzle_max),
        "bed_temp": "0",
        "bed_temp_type": "0",
        "drying_temp": "0",
        "drying_time": "0",
        "tag_uid": tag,
        "tray_uuid": uuid,
        "total_len": 330000,
        "k": 0.02,
        "n": 1.0,
        "cali_idx": -1,
        "xcam_info": "0" * 24,
    }
    if extended:
        tray["state"] = 8 if spec.empty else 11
    return tray


def _bits(values: list[int]) -> str:
    mask = 0
    for bit in values:
        mask |= 1 << bit
    return f"{mask:x}"


def ams_block(identity: PrinterIdentity) -> dict[str, Any]:
    """The `print.ams` root object for the identity's AMS units."""
    units: list[dict[str, Any]] = []
    exist: list[int] = []
    trays_present: list[int] = []
    bambu: list[int] = []
    for unit in identity.ams:
        # An AMS HT shows up as unit bit 4+n and tray bit 16+n (one X1C fixture; inferred).
        is_ht = unit.kind is AmsKind.AMS_HT
        unit_bit = 4 + unit.unit_id - AMS_HT_FIRST_ID if is_ht else unit.unit_id
        exist.append(unit_bit)
        trays = []
        for slot, spec in enumerate(unit.trays):
            trays.append(tray_wire(identity, spec, str(slot), f"ams{unit.unit_id}/{slot}"))
            tray_bit = 16 + unit.unit_id - AMS_HT_FIRST_ID if is_ht else unit.unit_id * 4 + slot
            if not spec.empty:
                trays_present.append(tray_bit)
                if spec.bambu:
                    bambu.append(tray_bit)
        wire: dict[str, Any] = {
            "id": str(unit.unit_id),
            "humidity": str(unit.humidity),
            "temp": f"{unit.temp_c:.1f}",
            "tray": trays,
        }
        if unit.kind in (AmsKind.AMS_2_PRO, AmsKind.AMS_HT):
            wire["humidity_raw"] = str(10 + 8 * (5 - unit.humidity))
            wire["dry_time"] = 0
        units.append(wire)
    return {
        "ams": units,
        "ams_exist_bits": _bits(exist),
        "tray_exist_bits": _bits(trays_present),
        "tray_is_bbl_bits": _bits(bambu),
        "tray_read_done_bits": _bits(trays_present),
        "tray_reading_bits": "0",
        "tray_now": "255",
        "tray_pre": "255",
        "tray_tar": "255",
        "insert_flag": True,
        "power_on_flag": False,
        "calibrate_remain_flag": True,
        "version": 1,
    }


def external_wire(identity: PrinterIdentity) -> tuple[str, Any]:
    """`vt_tray` (single nozzle, id 254) or `vir_slot` (dual: 254 left, 255 right)."""
    specs = identity.external_trays()
    if identity.model.dual_nozzle:
        # identity.external lists the main/right holder (255) first; the wire lists 254 first.
        ids = ("255", "254")
        slots = [tray_wire(identity, s, i, f"ext{i}") for s, i in zip(specs, ids, strict=True)]
        return "vir_slot", sorted(slots, key=lambda t: t["id"])
    return "vt_tray", tray_wire(identity, specs[0], "254", "ext254")


def lights(identity: PrinterIdentity) -> list[dict[str, str]]:
    """The light nodes a model reports, all in their power-on mode."""
    nodes = [{"node": "chamber_light", "mode": "on"}]
    if is_full_mode(identity) or is_new_protocol(identity):
        nodes.append({"node": "work_light", "mode": "off"})
    if identity.model.name.startswith("H2"):
        nodes.append({"node": "chamber_light2", "mode": "on"})
    return nodes


def device_block(
    identity: PrinterIdentity, nozzle_c: float, bed_c: float, chamber_c: float
) -> dict[str, Any]:
    """The new-protocol `device` object with packed temperatures (protocol.md §1.5.2)."""
    nozzles = identity.model.nozzles
    return {
        "extruder": {"info": extruder_info([(nozzle_c, 0.0)] * nozzles), "state": 0},
        "bed": {"info": {"temp": pack_temp(bed_c, 0.0)}, "state": 0},
        "ctc": {"info": {"temp": int(chamber_c)}, "state": 0},
        "nozzle": {
            "exist": (1 << nozzles) - 1,
            "info": [
                {"id": i, "diameter": 0.4, "type": "HS01", "tm": 0, "wear": 0}
                for i in range(nozzles)
            ],
            "state": 0,
        },
        "type": 1,
    }


def extruder_info(
    temps: list[tuple[float, float]], active_tray: int = 0xFFFF
) -> list[dict[str, Any]]:
    """`device.extruder.info[]`: packed temp per nozzle; `snow` = active tray of nozzle 0."""
    return [
        {"id": i, "temp": pack_temp(cur, tar), "snow": active_tray if i == 0 else 0xFFFF}
        for i, (cur, tar) in enumerate(temps)
    ]


def initial_report(identity: PrinterIdentity, quirks: Quirks) -> dict[str, Any]:
    """The power-on `print` object (without command/msg/sequence_id) for the identity's model."""
    model = identity.model
    full = is_full_mode(identity)
    new = is_new_protocol(identity)
    chamber: float = AMBIENT_C if (full or new) else CHAMBER_PLACEHOLDER
    data: dict[str, Any] = {
        "gcode_state": "IDLE",
        "mc_print_stage": "1",
        "mc_print_sub_stage": 0,
        "mc_percent": 0,
        "mc_remaining_time": 0,
        "layer_num": 0,
        "total_layer_num": 0,
        "gcode_file": "",
        "gcode_file_prepare_percent": "0",
        "gcode_start_time": "0",
        "subtask_name": "",
        "project_id": "0",
        "profile_id": "0",
        "task_id": "0",
        "subtask_id": "0",
        "print_type": "idle",
        "print_error": quirks.print_error,
        "mc_print_error_code": "0",
        "fail_reason": "0",
        "stg": [],
        "stg_cur": idle_stage(identity),
        "spd_lvl": 2,
        "spd_mag": 100,
        "s_obj": [],
        "nozzle_temper": AMBIENT_C,
        "nozzle_target_temper": 0.0,
        "bed_temper": AMBIENT_C,
        "bed_target_temper": 0.0,
        "chamber_temper": chamber,
        "nozzle_diameter": "0.4",
        "nozzle_type": "hardened_steel" if full else "stainless_steel",
        "cooling_fan_speed": "0",
        "big_fan1_speed": "0",
        "big_fan2_speed": "0",
        "heatbreak_fan_speed": "0",
        "fan_gear": 0,
        "wifi_signal": "-53dBm",
        "sdcard": True,
        "home_flag": HOME_FLAG,
        "hw_switch_state": 1,
        "lights_report": lights(identity),
        "net": {"conf": 0, "info": [{"ip": identity.ip_wire, "mask": MASK_255_255_255_0}]},
        "online": {"ahb": bool(identity.ams), "rfid": False, "version": 1},
        "ipcam": _ipcam(identity),
        "xcam": {
            "allow_skip_parts": False,
            "buildplate_marker_detector": full or new,
            "first_layer_inspector": full,
            "halt_print_sensitivity": "medium",
            "print_halt": True,
            "printing_monitor": True,
            "spaghetti_detector": True,
        },
        "xcam_status": "0",
        "hms": [entry.to_wire() for entry in quirks.hms],
        "lifecycle": "product",
        "mess_production_state": "active",
        "force_upgrade": False,
        "upgrade_state": {
            "sequence_id": 0,
            "progress": "",
            "status": "IDLE",
            "consistency_request": False,
            "dis_state": 0,
            "err_code": 0,
            "force_upgrade": False,
            "message": "",
            "module": "",
            "new_version_state": 2,
            "new_ver_list": [],
        },
        "upload": {"status": "idle", "progress": 0, "message": ""},
        "print_gcode_action": 0,
        "print_real_action": 0,
        "ams_status": 0,
        "ams_rfid_status": 0,
        "ams": ams_block(identity),
        "fun": fun_hex(quirks.secured),
    }
    key, external = external_wire(identity)
    data[key] = external
    if new:
        data["percent"] = 0
        data["remain_time"] = 0
        data["device"] = device_block(identity, AMBIENT_C, AMBIENT_C, chamber)
    if model.nozzles == 2:
        data["nozzle_type"] = "HS01"
    return data


def _ipcam(identity: PrinterIdentity) -> dict[str, Any]:
    ipcam: dict[str, Any] = {
        "ipcam_dev": "1",
        "ipcam_record": "enable",
        "timelapse": "disable",
        "resolution": "1080p" if identity.model.camera is CameraKind.RTSPS else "",
        "tutk_server": "disable",
        "mode_bits": 3,
    }
    if identity.model.camera is CameraKind.RTSPS:
        # RTSPS on 322 (protocol.md §3.1); the client adds credentials itself.
        ipcam["rtsp_url"] = f"rtsps://{identity.ip}/streaming/live/1"
    return ipcam
