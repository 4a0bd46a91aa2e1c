"""A printer's live status as the API shows it: `PrinterStatus` and its parts.

The same models serve `GET /api/v1/printers/{serial}/status` and the WebSocket, which sends a
printer's full status once and then only the parts that changed (`job`, `temperatures`, ...,
named as the fields of `PrinterStatus`). Parts are built from the fleet's frozen dataclasses
(`from_attributes`); a merge keeps every part a report did not touch as the very same object,
so `PartCache` serialises each part object once, however many clients receive it.
"""

from collections.abc import Callable, Mapping
from collections.abc import Set as AbstractSet
from datetime import datetime
from types import MappingProxyType
from typing import Any, Final

import orjson
from pydantic import BaseModel, ConfigDict, Field

from bambufarm.fleet.config import PrinterSnapshot
from bambufarm.fleet.connection import Connection, ConnectionState
from bambufarm.protocol.errors import HmsError
from bambufarm.protocol.hms import HmsCode, Severity
from bambufarm.protocol.state import GcodeState, PrinterState, SdState

WallTime = Callable[[float], datetime]


class _Part(BaseModel):
    """Parts read the fleet's dataclasses by attribute."""

    model_config = ConfigDict(from_attributes=True)


class ConnectionOut(_Part):
    """The link to the printer: its state, why, and since when."""

    state: ConnectionState
    reason: str
    since: datetime


class JobOut(_Part):
    """The current or last print job."""

    gcode_state: GcodeState = Field(description="IDLE, PREPARE, RUNNING, PAUSE, FINISH, FAILED…")
    file: str
    subtask_name: str
    progress: int | None = Field(description="Percent done.")
    remaining_minutes: int | None
    layer: int | None
    total_layers: int | None
    print_stage: int | None
    stage: int | None
    print_type: str
    task_id: str
    subtask_id: str
    gcode_start_time: int | None = Field(description="Unix seconds.")
    prepare_percent: int | None
    print_error: int = Field(description="0 when clean; else the printer's error number.")
    skipped_objects: list[int]
    ams_mapping: list[int] | None


class ExtruderOut(_Part):
    """One nozzle of a dual-nozzle printer."""

    id: int
    temp: int | None
    target: int | None
    loaded: tuple[int, int] | None = Field(description="(AMS id, slot) of the loaded filament.")


class TemperaturesOut(_Part):
    """Temperatures and targets in °C."""

    nozzle: float | None
    nozzle_target: float | None
    bed: float | None
    bed_target: float | None
    chamber: float | None
    chamber_target: float | None
    extruders: list[ExtruderOut]
    active_extruder: int | None


class FansOut(_Part):
    """Fan speeds in percent."""

    part: int | None
    aux: int | None
    chamber: int | None
    heatbreak: int | None


class SpeedOut(_Part):
    """Print speed level (1 silent … 4 ludicrous) and its percentage."""

    level: int | None
    magnitude: int | None


class AmsTrayOut(_Part):
    """One AMS slot (or the external spool) and the filament in it."""

    id: int
    state: int | None
    type: str = Field(description="Material, e.g. PLA; empty when there is no spool.")
    sub_brand: str
    info_idx: str
    id_name: str
    color: str = Field(description="RRGGBBAA.")
    weight_g: int | None
    diameter: float | None
    remain: int = Field(description="Percent left, -1 unknown.")
    tray_uuid: str
    nozzle_temp_min: int | None
    nozzle_temp_max: int | None
    k: float | None


class AmsUnitOut(_Part):
    """One AMS unit."""

    id: int
    humidity: int | None
    humidity_level: int | None
    humidity_raw: int | None
    temp: float | None
    dry_time: int | None
    trays: list[AmsTrayOut]


class AmsOut(_Part):
    """The AMS units, the external spool(s), and which tray is active."""

    units: list[AmsUnitOut]
    external: list[AmsTrayOut]
    tray_now: int | None
    tray_pre: int | None
    tray_tar: int | None
    status: int | None
    version: int | None


class HmsOut(BaseModel):
    """One active HMS condition, decoded."""

    code: str = Field(examples=["0300_0100_0001_0007"])
    attr: int
    value: int = Field(description="The `code` word of the report.")
    severity: Severity
    module: str
    ams_unit: int | None
    ams_slot: int | None
    summary: str
    wiki_url: str | None


class StorageOut(_Part):
    """The printer's storage."""

    sdcard: bool | None
    sd_state: SdState
    free: int | None
    total: int | None


class NetworkOut(_Part):
    """The printer's network link."""

    wifi_dbm: int | None
    ip: str | None


class NozzleOut(_Part):
    """The installed nozzle."""

    diameter: float | None
    type: str


class CameraOut(_Part):
    """Camera settings as reported."""

    rtsp_url: str | None
    resolution: str
    recording: bool | None
    timelapse: bool | None


class FirmwareModuleOut(_Part):
    """One module of the printer (mainboard, AMS, toolhead…) and its versions."""

    name: str
    sw_ver: str
    hw_ver: str
    product_name: str
    sn: str


class FirmwareOut(_Part):
    """Firmware version and modules, from `get_version`."""

    version: str | None
    product_name: str | None
    modules: list[FirmwareModuleOut]


class PrinterStatus(BaseModel):
    """Everything known about a printer right now; kept (as last known) while it is offline."""

    serial: str
    connection: ConnectionOut
    job: JobOut
    temperatures: TemperaturesOut
    fans: FansOut
    speed: SpeedOut
    lights: dict[str, str] = Field(description="Light name → on / off / flashing.")
    ams: AmsOut
    hms: list[HmsOut]
    storage: StorageOut
    network: NetworkOut
    nozzle: NozzleOut
    camera: CameraOut
    firmware: FirmwareOut
    developer_mode: bool | None = Field(
        description="False: the printer takes only signed commands; null: it does not say."
    )
    sequence: int | None = Field(description="sequence_id of the last report merged.")
    report_count: int


def connection_out(connection: Connection, wall_time: WallTime) -> ConnectionOut:
    """The API view of a link."""
    return ConnectionOut(
        state=connection.state, reason=connection.reason, since=wall_time(connection.since)
    )


def hms_list(state: PrinterState, model_name: str = "") -> list[HmsOut]:
    """The printer's active HMS conditions, decoded (pairs outside uint32 are left out)."""
    series = wiki_series(model_name)
    out: list[HmsOut] = []
    for attr, value in state.hms:
        try:
            code = HmsCode.from_wire(attr, value)
        except HmsError:
            continue
        out.append(
            HmsOut(
                code=code.display,
                attr=code.attr,
                value=code.code,
                severity=code.severity,
                module=code.module_name,
                ams_unit=code.ams_unit,
                ams_slot=code.ams_slot,
                summary=code.summary,
                wiki_url=code.wiki_url(series) if series else None,
            )
        )
    return out


# The wiki files HMS pages under a series path; model names start with it.
_WIKI_SERIES: Final = (("P2S", "p2s"), ("X1", "x1"), ("P1", "p1"), ("A1", "a1"), ("H2", "h2"))


def wiki_series(model_name: str) -> str:
    """The wiki's series path for a model name ("P1S" → "p1"), or "" when not known."""
    upper = model_name.upper()
    return next((series for prefix, series in _WIKI_SERIES if upper.startswith(prefix)), "")


# Each part of PrinterStatus: how to build it from a state (and the printer's model name).
_PART_MODELS: Final[Mapping[str, type[_Part]]] = MappingProxyType(
    {
        "job": JobOut,
        "temperatures": TemperaturesOut,
        "fans": FansOut,
        "speed": SpeedOut,
        "ams": AmsOut,
        "storage": StorageOut,
        "network": NetworkOut,
        "nozzle": NozzleOut,
        "camera": CameraOut,
        "firmware": FirmwareOut,
    }
)
# The parts a WebSocket update can carry (the fleet's changed-field names we show, plus the
# link), in PrinterStatus's field order.
STATUS_ORDER: Final = (
    "connection", "job", "temperatures", "fans", "speed", "lights", "ams", "hms", "storage",
    "network", "nozzle", "camera", "firmware", "developer_mode",
)  # fmt: skip
STATUS_PARTS: Final = frozenset(STATUS_ORDER)


def part_value(name: str, state: PrinterState, model_name: str = "") -> Any:
    """One state part as JSON-ready Python values (the `name` field of PrinterStatus)."""
    model = _PART_MODELS.get(name)
    if model is not None:
        return model.model_validate(getattr(state, name)).model_dump(mode="json")
    if name == "lights":
        return dict(state.lights)
    if name == "hms":
        return [item.model_dump(mode="json") for item in hms_list(state, model_name)]
    if name == "developer_mode":
        return state.developer_mode
    raise KeyError(name)


def status_model(snapshot: PrinterSnapshot, wall_time: WallTime, model_name: str) -> PrinterStatus:
    """The full status of one printer."""
    state = snapshot.state
    parts = {name: part_value(name, state, model_name) for name in STATUS_PARTS - {"connection"}}
    return PrinterStatus(
        serial=snapshot.serial,
        connection=connection_out(snapshot.connection, wall_time),
        sequence=state.sequence,
        report_count=state.report_count,
        **parts,
    )


class PartCache:
    """JSON of status parts by part object: each object is serialised once for every client.

    Keyed by (serial, part): the entry holds the object it was made from and is reused while
    the printer's state still holds that very object (parts are immutable). Bounded by the
    number of printers times the number of parts.
    """

    def __init__(self, wall_time: WallTime) -> None:
        self._wall_time = wall_time
        self._entries: dict[tuple[str, str], tuple[object, bytes]] = {}
        self.hits = 0
        self.misses = 0

    def part(self, snapshot: PrinterSnapshot, name: str, model_name: str) -> bytes:
        """The JSON of part `name` of this printer now."""
        source: object = (
            snapshot.connection if name == "connection" else getattr(snapshot.state, name)
        )
        key = (snapshot.serial, name)
        cached = self._entries.get(key)
        if cached is not None and cached[0] is source:
            self.hits += 1
            return cached[1]
        self.misses += 1
        if name == "connection":
            value: Any = connection_out(snapshot.connection, self._wall_time).model_dump(
                mode="json"
            )
        else:
            value = part_value(name, snapshot.state, model_name)
        data = orjson.dumps(value)
        self._entries[key] = (source, data)
        return data

    def status(self, snapshot: PrinterSnapshot, model_name: str) -> bytes:
        """A whole `PrinterStatus` as JSON, assembled from the cached parts."""
        state = snapshot.state
        pieces = [b'{"serial":', orjson.dumps(snapshot.serial)]
        for name in STATUS_ORDER:
            pieces += [b',"', name.encode(), b'":', self.part(snapshot, name, model_name)]
        pieces += [
            b',"sequence":', orjson.dumps(state.sequence),
            b',"report_count":', orjson.dumps(state.report_count), b"}",
        ]  # fmt: skip
        return b"".join(pieces)

    def update(self, snapshot: PrinterSnapshot, parts: AbstractSet[str], model_name: str) -> bytes:
        """`{"serial", "sequence", "report_count", "parts": {name: part}}` for changed parts."""
        state = snapshot.state
        body = b",".join(
            b'"' + name.encode() + b'":' + self.part(snapshot, name, model_name)
            for name in STATUS_ORDER
            if name in parts
        )
        return b"".join(
            (
                b'{"serial":', orjson.dumps(snapshot.serial),
                b',"sequence":', orjson.dumps(state.sequence),
                b',"report_count":', orjson.dumps(state.report_count),
                b',"parts":{', body, b"}}",
            )
        )  # fmt: skip

    def forget(self, serial: str) -> None:
        """Drop a removed printer's entries."""
        for name in STATUS_PARTS:
            self._entries.pop((serial, name), None)
