"""Typed telemetry of a printer: temperatures, fans, speed, lights, HMS, storage, network.

Each `build_*` takes the merged `print` object (protocol.md §1.5.2-§1.5.4) and the previous
value of its part; a field whose wire value cannot be read keeps its previous value.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from bambufarm.protocol.coerce import to_bool, to_float, to_int, to_opt_str, to_str

_EMPTY: Mapping[str, Any] = MappingProxyType({})
NO_LIGHTS: Mapping[str, str] = MappingProxyType({})
# Fan speeds are sent on a 0-15 scale (protocol.md §1.5.3).
FAN_SCALE = 15
# home_flag bits 8-9: SD card state (protocol.md §1.5.4).
_SD_SHIFT, _SD_MASK = 8, 0b11
# Packed temperatures on dual-nozzle models: low 16 bits current, high 16 bits target (§1.5.2).
_TEMP_MASK = 0xFFFF


class SdState(StrEnum):
    """SD card state from `home_flag` bits 8-9; UNKNOWN when the printer does not send it."""

    NONE = "none"
    NORMAL = "normal"
    ABNORMAL = "abnormal"
    READ_ONLY = "read_only"
    UNKNOWN = "unknown"


_SD_STATES = (SdState.NONE, SdState.NORMAL, SdState.ABNORMAL, SdState.READ_ONLY)


@dataclass(frozen=True, slots=True)
class Extruder:
    """One nozzle of a dual-nozzle printer (`device.extruder.info[]`)."""

    id: int  # 0 right (main), 1 left (deputy)
    temp: int | None = None
    target: int | None = None
    # `snow` = ams_id << 8 | slot of the loaded filament; 0xFFFF none (HA).
    loaded: tuple[int, int] | None = None


@dataclass(frozen=True, slots=True)
class Temperatures:
    """Actual and target temperatures in degrees Celsius."""

    nozzle: float | None = None
    nozzle_target: float | None = None
    bed: float | None = None
    bed_target: float | None = None
    chamber: float | None = None
    chamber_target: float | None = None
    extruders: tuple[Extruder, ...] = ()
    active_extruder: int | None = None


@dataclass(frozen=True, slots=True)
class Fans:
    """Fan speeds in percent (wire: strings on a 0-15 scale)."""

    part: int | None = None  # cooling_fan_speed
    aux: int | None = None  # big_fan1_speed
    chamber: int | None = None  # big_fan2_speed
    heatbreak: int | None = None  # heatbreak_fan_speed


@dataclass(frozen=True, slots=True)
class Speed:
    """Print speed: level 1 silent, 2 standard, 3 sport, 4 ludicrous; magnitude in percent."""

    level: int | None = None
    magnitude: int | None = None


@dataclass(frozen=True, slots=True)
class Storage:
    """Storage the printer prints from."""

    sdcard: bool | None = None
    sd_state: SdState = SdState.UNKNOWN
    free: int | None = None  # `storage.free`, when sent (newer firmware)
    total: int | None = None


@dataclass(frozen=True, slots=True)
class Network:
    """Network link as the printer reports it."""

    wifi_dbm: int | None = None
    ip: str | None = None  # from net.info[0].ip


@dataclass(frozen=True, slots=True)
class Nozzle:
    """Installed nozzle."""

    diameter: float | None = None
    type: str = ""  # "hardened_steel", "stainless_steel" or a SKU such as "HS01"


@dataclass(frozen=True, slots=True)
class Camera:
    """Camera settings from `ipcam`."""

    rtsp_url: str | None = None  # None when RTSP is disabled or not offered
    resolution: str = ""
    recording: bool | None = None
    timelapse: bool | None = None


_BLANK_EXTRUDER = Extruder(-1)
_NO_CAMERA = Camera()


def build_temperatures(raw: Mapping[str, Any], previous: Temperatures) -> Temperatures:
    """Temperatures; dual-nozzle models send packed values under `device` instead."""
    device = raw.get("device")
    if not isinstance(device, dict):
        device = _EMPTY
    extruder = device.get("extruder")
    if not isinstance(extruder, dict):
        extruder = _EMPTY
    extruders = _build_extruders(extruder.get("info"), previous.extruders)
    # (inferred from a public client's tests) bits 4-7 of device.extruder.state = active nozzle.
    ext_state = to_int(extruder.get("state"), -1)
    if ext_state is None:
        active = None
    elif ext_state == -1:
        active = previous.active_extruder  # not a number: keep what we had
    else:
        active = (ext_state >> 4) & 0xF
    nozzle = to_float(raw.get("nozzle_temper"), previous.nozzle)
    nozzle_target = to_float(raw.get("nozzle_target_temper"), previous.nozzle_target)
    if nozzle is None and nozzle_target is None:
        for entry in extruders:
            if entry.id == active:
                nozzle = None if entry.temp is None else float(entry.temp)
                nozzle_target = None if entry.target is None else float(entry.target)
    bed, bed_target = _packed_pair(device.get("bed"), previous.bed, previous.bed_target)
    bed = to_float(raw.get("bed_temper"), previous.bed) if "bed_temper" in raw else bed
    if "bed_target_temper" in raw:
        bed_target = to_float(raw.get("bed_target_temper"), previous.bed_target)
    chamber, chamber_target = _packed_pair(
        device.get("ctc"), previous.chamber, previous.chamber_target
    )
    if "chamber_temper" in raw:
        chamber = to_float(raw.get("chamber_temper"), previous.chamber)
    return Temperatures(
        nozzle, nozzle_target, bed, bed_target, chamber, chamber_target, extruders, active
    )


def _packed_pair(
    block: object, current: float | None, target: float | None
) -> tuple[float | None, float | None]:
    """(current, target) from `device.<part>.info.temp` packed as target << 16 | current."""
    if not isinstance(block, dict):
        return None, None
    info = block.get("info")
    if not isinstance(info, dict):
        return None, None
    value = info.get("temp")
    if value is None:
        return None, None
    packed = to_int(value, None)
    if packed is None:
        return current, target
    return float(packed & _TEMP_MASK), float((packed >> 16) & _TEMP_MASK)


def _build_extruders(value: object, previous: tuple[Extruder, ...]) -> tuple[Extruder, ...]:
    """The nozzles of a dual-nozzle printer."""
    if value is None:
        return ()
    if not isinstance(value, list):
        return previous
    by_id = {entry.id: entry for entry in previous}
    out: list[Extruder] = []
    for item in value:
        if not isinstance(item, dict):
            continue
        extruder_id = to_int(item.get("id"), None)
        if extruder_id is None:
            continue
        before = by_id.get(extruder_id, _BLANK_EXTRUDER)
        temp, target = before.temp, before.target
        value = item.get("temp")
        packed = to_int(value, None)
        if value is None:
            temp = target = None
        elif packed is not None:
            temp, target = packed & _TEMP_MASK, (packed >> 16) & _TEMP_MASK
        loaded = before.loaded
        value = item.get("snow")
        snow = to_int(value, None)
        if value is None or snow == _TEMP_MASK:
            loaded = None
        elif snow is not None:
            loaded = ((snow >> 8) & 0xFF, snow & 0xFF)
        out.append(Extruder(extruder_id, temp, target, loaded))
    return tuple(out)


def _fan(value: object, previous: int | None) -> int | None:
    """A 0-15 fan value as percent; out-of-range values keep the previous percent."""
    level = to_int(value, None)
    if level is None:
        return None if value is None else previous
    if not 0 <= level <= FAN_SCALE:
        return previous
    return round(level * 100 / FAN_SCALE)


def build_fans(raw: Mapping[str, Any], previous: Fans) -> Fans:
    """Fan percentages."""
    return Fans(
        _fan(raw.get("cooling_fan_speed"), previous.part),
        _fan(raw.get("big_fan1_speed"), previous.aux),
        _fan(raw.get("big_fan2_speed"), previous.chamber),
        _fan(raw.get("heatbreak_fan_speed"), previous.heatbreak),
    )


def build_speed(raw: Mapping[str, Any], previous: Speed) -> Speed:
    """Speed level and magnitude."""
    return Speed(
        to_int(raw.get("spd_lvl"), previous.level),
        to_int(raw.get("spd_mag"), previous.magnitude),
    )


def build_lights(value: object, previous: Mapping[str, str]) -> Mapping[str, str]:
    """Light node -> mode from the `lights_report` snapshot list."""
    if value is None:
        return NO_LIGHTS
    if not isinstance(value, list):
        return previous
    lights: dict[str, str] = {}
    for item in value:
        if not isinstance(item, dict):
            return previous
        node, mode = item.get("node"), item.get("mode")
        if not isinstance(node, str) or not isinstance(mode, str):
            return previous
        lights[node] = mode
    return MappingProxyType(lights)


def build_hms(value: object, previous: tuple[tuple[int, int], ...]) -> tuple[tuple[int, int], ...]:
    """Active HMS entries as (attr, code); a list with an unreadable entry keeps the previous."""
    if value is None:
        return ()
    if not isinstance(value, list):
        return previous
    entries: list[tuple[int, int]] = []
    for item in value:
        if not isinstance(item, dict):
            return previous
        attr, code = to_int(item.get("attr"), None), to_int(item.get("code"), None)
        if attr is None or code is None:
            return previous
        entries.append((attr, code))
    return tuple(entries)


def build_storage(raw: Mapping[str, Any], previous: Storage) -> Storage:
    """SD card presence and state, plus free/total space when sent."""
    home_flag = to_int(raw.get("home_flag"), None)
    if home_flag is not None:
        sd_state = _SD_STATES[(home_flag >> _SD_SHIFT) & _SD_MASK]
    elif raw.get("home_flag") is None:
        sd_state = SdState.UNKNOWN
    else:
        sd_state = previous.sd_state
    storage = raw.get("storage")
    if storage is None:
        free: int | None = None
        total: int | None = None
    elif isinstance(storage, dict):
        free = to_int(storage.get("free"), previous.free)
        total = to_int(storage.get("total"), previous.total)
    else:
        free, total = previous.free, previous.total
    return Storage(to_bool(raw.get("sdcard"), previous.sdcard), sd_state, free, total)


def build_network(raw: Mapping[str, Any], previous: Network) -> Network:
    """Wi-Fi signal and IP address."""
    return Network(
        _wifi_dbm(raw.get("wifi_signal"), previous.wifi_dbm),
        _ip(raw.get("net"), previous.ip),
    )


def _wifi_dbm(value: object, previous: int | None) -> int | None:
    """dBm from "-53dBm" (or a bare number)."""
    if isinstance(value, str):
        text = value.strip()
        if text[-3:].lower() == "dbm":
            text = text[:-3]
        return to_int(text, previous)
    return to_int(value, previous)


def _ip(net: object, previous: str | None) -> str | None:
    """Dotted quad from net.info[0].ip, a little-endian int (1359612426 -> 10.10.10.81)."""
    if net is None:
        return None
    if not isinstance(net, dict):
        return previous
    info = net.get("info")
    if info is None:
        return None
    if not isinstance(info, list):
        return previous
    if not info:
        return None
    first = info[0]
    if not isinstance(first, dict):
        return previous
    value = to_int(first.get("ip"), None)
    if value is None:
        return None if first.get("ip") is None else previous
    value &= 0xFFFFFFFF  # int32 on some firmware
    if value == 0:
        return None
    return f"{value & 0xFF}.{(value >> 8) & 0xFF}.{(value >> 16) & 0xFF}.{value >> 24}"


def build_nozzle(raw: Mapping[str, Any], previous: Nozzle) -> Nozzle:
    """Installed nozzle diameter and type."""
    return Nozzle(
        to_float(raw.get("nozzle_diameter"), previous.diameter),
        to_str(raw.get("nozzle_type"), previous.type),
    )


def build_camera(ipcam: object, previous: Camera) -> Camera:
    """RTSP URL and recording settings from `ipcam`."""
    if ipcam is None:
        return _NO_CAMERA
    if not isinstance(ipcam, dict):
        return previous
    url = to_opt_str(ipcam.get("rtsp_url"), previous.rtsp_url)
    if url is not None and not url.startswith("rtsp"):
        url = None  # "disable" or ""
    return Camera(
        url,
        to_str(ipcam.get("resolution"), previous.resolution),
        to_bool(ipcam.get("ipcam_record"), previous.recording),
        to_bool(ipcam.get("timelapse"), previous.timelapse),
    )
