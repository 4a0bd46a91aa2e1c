"""One simulated print job: what `project_file` asked for, and how far the printer has got.

The job walks the timeline of protocol.md §1.5.9 in simulated seconds: the download/unzip
(`gcode_file_prepare_percent` 0→100), the preparation stages (`stg_cur` 2 heat bed → 1 bed
levelling → 14 nozzle clean), then printing, whose pace follows the speed level. Progress is
kept in "nominal seconds" (seconds of the slicer's prediction, which assumes standard speed),
so a speed change takes effect from that moment on without rewriting the past.
"""

import math
import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from bambufarm.protocol.threemf import Plate

from .identity import AMS_HT_FIRST_ID, PrinterIdentity
from .report_builder import ById, Path
from .report_state import ReportState

# Simulated seconds of each preparation step. Real printers take minutes; these keep a
# compressed demo lively while still showing every stage to a client polling at 1 Hz.
DOWNLOAD_S = 10.0  # fetch + unzip: prepare percent rises 10 %/s
STAGE_S = {2: 30.0, 1: 60.0, 14: 20.0}  # heatbed preheat, auto bed levelling, nozzle clean
STAGE_HEAT_BED, STAGE_LEVELLING, STAGE_NOZZLE_CLEAN = 2, 1, 14
STAGE_PRINTING = 0
STAGE_USER_PAUSE = 16
STAGE_RUNOUT_PAUSE = 6

# spd_lvl → speed in percent of standard (spd_mag), as the printer's presets define them.
SPEED_PERCENT = {1: 50, 2: 100, 3: 124, 4: 166}
EXTERNAL_TRAY_IDS = (254, 255)  # vt_tray / vir_slot holders in ams_mapping and tray_now

_PLATE_PARAM = re.compile(r"Metadata/plate_(\d{1,4})\.gcode$")
_URL_PREFIXES = (
    "ftp:///",
    "ftp://",
    "file:///sdcard/",
    "file:///mnt/sdcard/",
    "file:///media/usb0/",
    "file:///",
)


class Phase(StrEnum):
    """Where a job is on its timeline."""

    DOWNLOAD = "download"
    STAGES = "stages"
    PRINTING = "printing"
    DONE = "done"


@dataclass(slots=True)
class TrayUse:
    """Filament one job takes from one tray: where the tray is reported, and how much."""

    path: Path  # report path of the tray object
    used_g: float  # the whole job's use from this tray (sum over filaments mapped to it)
    start_remain: int  # tray `remain` % when the job started
    weight_g: int  # spool net weight; consumption moves `remain` by used/weight


@dataclass(slots=True)
class Job:
    """The mutable progress of one print job."""

    file: str  # storage-relative name of the 3MF
    subtask_name: str
    plate: int
    prediction_s: float  # slicer estimate at standard speed
    total_layers: int
    stages: tuple[int, ...]
    uses: list[TrayUse] = field(default_factory=list)
    nozzle_c: float = 220.0  # printing temperatures for the first filament
    bed_c: float = 55.0
    hang: bool = False  # an ams_mapping points at an empty tray: PREPARE forever (firmware)
    phase: Phase = Phase.DOWNLOAD
    phase_s: float = 0.0  # simulated seconds spent in the current step
    stage_index: int = 0
    done_s: float = 0.0  # nominal (standard-speed) seconds printed

    @property
    def fraction(self) -> float:
        """Printed fraction 0.0-1.0."""
        return min(1.0, self.done_s / self.prediction_s)

    @property
    def stage(self) -> int:
        """The current preparation stage id."""
        return self.stages[self.stage_index]

    def advance(self, dt: float, speed_percent: int) -> None:
        """Move the job `dt` simulated seconds on, through as many steps as that covers."""
        while dt > 0 and self.phase is not Phase.DONE:
            if self.phase is Phase.DOWNLOAD:
                step = min(dt, DOWNLOAD_S - self.phase_s)
                self.phase_s += step
                if self.phase_s >= DOWNLOAD_S:
                    if self.hang:
                        return  # firmware waits for a filament that is not there, silently
                    self._next_phase(Phase.STAGES if self.stages else Phase.PRINTING)
            elif self.phase is Phase.STAGES:
                step = min(dt, STAGE_S[self.stage] - self.phase_s)
                self.phase_s += step
                if self.phase_s >= STAGE_S[self.stage]:
                    if self.stage_index + 1 < len(self.stages):
                        self.stage_index += 1
                        self.phase_s = 0.0
                    else:
                        self._next_phase(Phase.PRINTING)
            else:
                factor = speed_percent / 100
                step = min(dt, (self.prediction_s - self.done_s) / factor)
                self.done_s += step * factor
                if self.done_s >= self.prediction_s - 1e-6:
                    self.done_s = self.prediction_s
                    self.phase = Phase.DONE
            dt -= step

    def _next_phase(self, phase: Phase) -> None:
        self.phase = phase
        self.phase_s = 0.0

    @property
    def prepare_percent(self) -> int:
        """`gcode_file_prepare_percent` while downloading; 100 after."""
        if self.phase is Phase.DOWNLOAD:
            return min(100, int(self.phase_s * 100 / DOWNLOAD_S))
        return 100

    def percent(self) -> int:
        """`mc_percent`: whole percent printed."""
        return min(100, int(self.fraction * 100))

    def layer(self) -> int:
        """`layer_num`: the layer being printed (1-based) or 0 before printing starts."""
        if self.phase in (Phase.DOWNLOAD, Phase.STAGES):
            return 0
        return min(self.total_layers, int(self.fraction * self.total_layers) + 1)

    def remaining_minutes(self, speed_percent: int) -> int:
        """`mc_remaining_time`: minutes left at the current speed (the wire uses minutes)."""
        left_s = (self.prediction_s - self.done_s) * 100 / speed_percent
        return math.ceil(left_s / 60 - 1e-9)

    def remain_of(self, use: TrayUse) -> int:
        """The tray's `remain` % now, after this job's share of consumption."""
        consumed_pct = use.used_g * self.fraction * 100 / use.weight_g
        return max(0, round(use.start_remain - consumed_pct))


def file_name(request: dict[str, Any]) -> str | None:
    """The storage-relative 3MF name from a `project_file` `url`, or else its `file` field.

    Accepts every spelling clients use (protocol.md §12.13): `ftp:///name`, `ftp://name`,
    `file:///sdcard/name`, `file:///sdcard/cache/name` (kept as `cache/name`), and a bare
    `file` with or without a leading slash.
    """
    name: str | None = None
    url = request.get("url")
    if isinstance(url, str) and url:
        for prefix in _URL_PREFIXES:
            if url.startswith(prefix):
                name = url[len(prefix) :].lstrip("/")
                break
    if not name:
        raw = request.get("file")
        if isinstance(raw, str):
            name = raw.lstrip("/").removeprefix("sdcard/")
    # The storage confines names too; a traversal attempt simply names no file here.
    if not name or ".." in name.split("/"):
        return None
    return name


def plate_number(request: dict[str, Any]) -> int:
    """The plate from `param` ("Metadata/plate_2.gcode"), plate 1 when absent or odd."""
    param = request.get("param")
    if isinstance(param, str) and (match := _PLATE_PARAM.search(param)):
        return max(1, int(match.group(1)))
    return 1


def ams_mapping(request: dict[str, Any]) -> list[int]:
    """The job's filament→tray list (index = filament slot - 1); [] when none was sent.

    Falls back to `ams_mapping2` ({"ams_id", "slot_id"} per filament) when `ams_mapping` is
    absent or the empty string some clients send.
    """
    raw = request.get("ams_mapping")
    if isinstance(raw, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in raw):
        return list(raw)
    raw2 = request.get("ams_mapping2")
    if isinstance(raw2, list):
        mapping: list[int] = []
        for entry in raw2:
            if not isinstance(entry, dict):
                return []
            ams_id, slot_id = entry.get("ams_id"), entry.get("slot_id")
            if not isinstance(ams_id, int) or not isinstance(slot_id, int):
                return []
            if ams_id in (254, 255):
                mapping.append(-1 if slot_id == 255 else ams_id)
            elif ams_id >= 128:
                mapping.append(ams_id)  # AMS HT: the unit id is the tray id
            else:
                mapping.append(ams_id * 4 + slot_id)
        return mapping
    return []


def subtask_name(request: dict[str, Any], file: str) -> str:
    """The job's display name: `subtask_name` if sent, else the file name without extension."""
    name = request.get("subtask_name")
    if isinstance(name, str) and name:
        return name
    base = file.rsplit("/", 1)[-1]
    for suffix in (".gcode.3mf", ".3mf", ".gcode"):
        if base.endswith(suffix):
            return base[: -len(suffix)]
    return base


def wants_levelling(request: dict[str, Any]) -> bool:
    """Whether the job asked for auto bed levelling (either spelling, or the tri-state)."""
    for key in ("bed_leveling", "bed_levelling"):
        if request.get(key) is True:
            return True
    return request.get("auto_bed_leveling") in (1, 2)


def tray_path(identity: PrinterIdentity, data: dict[str, Any], tray: int) -> Path | None:
    """The report path of global tray id `tray` (AMS slot or external holder), if it exists."""
    if tray in EXTERNAL_TRAY_IDS:
        if "vt_tray" in data:
            return ("vt_tray",)
        ids = {slot["id"] for slot in data.get("vir_slot", ())}
        return ("vir_slot", ById(str(tray))) if str(tray) in ids else None
    unit, slot = (tray, 0) if tray >= AMS_HT_FIRST_ID else divmod(tray, 4)
    for ams_unit in identity.ams:
        if ams_unit.unit_id == unit and slot < ams_unit.kind.slots:
            return ("ams", "ams", ById(str(unit)), "tray", ById(str(slot)))
    return None


def map_trays(
    job: Job, plate: Plate, mapping: list[int], identity: PrinterIdentity, report: ReportState
) -> int | None:
    """Record the trays the job draws from; return the first tray, None if unmapped.

    A filament mapped to a missing or empty tray sets `job.hang`: real firmware then waits in
    PREPARE indefinitely without raising an error.
    """
    used: dict[int, float] = {}
    for filament in plate.filaments:
        index = filament.slot - 1
        if not 0 <= index < len(mapping) or mapping[index] < 0:
            continue
        tray = mapping[index]
        path = tray_path(identity, report.data, tray)
        if path is None or not report.get(path).get("tray_type"):
            job.hang = True
            continue
        used[tray] = used.get(tray, 0.0) + (filament.used_g or 0.0)
    for tray, grams in used.items():
        path = tray_path(identity, report.data, tray)
        if path is None:  # cannot happen: every tray in `used` resolved above
            continue
        wire = report.get(path)
        weight = _int_or_zero(wire.get("tray_weight"))
        remain = wire.get("remain", -1)
        # Only spools with a known weight and remain estimate (RFID) move `remain`; others
        # report -1 and the manager accounts for them from slice_info (protocol.md §1.5.6).
        if weight > 0 and isinstance(remain, int) and remain >= 0:
            job.uses.append(TrayUse(path, grams, remain, weight))
    return next(iter(used), None)


def _int_or_zero(text: object) -> int:
    if isinstance(text, str) and text.isdigit():
        return int(text)
    return 0
